//! The active-subscriptions API: `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`,
//! JSON-LD documents as in the Mercure spec (draft-07); and Mercure 1.0's
//! `…/subscriptions/{match_type}/{match}[/{subscriber}]`, JSON documents with the cursor in the
//! `Link` header. A two-segment path whose first segment is a matcher type (`exact`,
//! `urlpattern`) is 1.0's collection for that matcher; any other is draft-07's single
//! subscription. `…/subscriptions` is both versions' collection of every subscription: its
//! form is the caller's token's (a Mercure 1.0 access token gets 1.0's). A token whose grants
//! cover the requested URL's path is needed; on the 1.0 endpoints, a 1.0 access token
//! ([`super::caller`]). Every answer carries the `rel="mercure"` link with the `last-event-id`
//! cursor.

use super::{
    caller::Subscriber,
    challenge::{BearerError, Challenge},
    plain,
};
use crate::AppState;
use axum::{
    extract::{Path, State},
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tidings_hub::{MatchKind, Subscriptions, subscription_topic, subscription_topic_v1};

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionsError {
    #[error("the subscriptions API needs a subscriber token")]
    NoToken(Challenge),
    #[error("the token's mercure.subscribe claim does not cover {0}")]
    NotAllowed(String),
    #[error("the token does not grant subscribe on {0}")]
    NotGranted(String, Challenge),
    #[error("no such subscription")]
    NotFound,
    #[error("{0}")]
    Hub(#[from] tidings_hub::SubscribeError),
}

impl IntoResponse for SubscriptionsError {
    fn into_response(self) -> Response {
        let status = match &self {
            SubscriptionsError::NoToken(_) => StatusCode::UNAUTHORIZED,
            SubscriptionsError::NotAllowed(_) | SubscriptionsError::NotGranted(..) => {
                StatusCode::FORBIDDEN
            }
            SubscriptionsError::NotFound => StatusCode::NOT_FOUND,
            SubscriptionsError::Hub(tidings_hub::SubscribeError::Unavailable) => {
                return super::history_unreachable();
            }
            SubscriptionsError::Hub(tidings_hub::SubscribeError::ShuttingDown) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SubscriptionsError::Hub(tidings_hub::SubscribeError::Storage) => {
                return super::history_unavailable();
            }
        };
        let challenge = match &self {
            SubscriptionsError::NoToken(challenge)
            | SubscriptionsError::NotGranted(_, challenge) => Some(challenge.clone()),
            _ => None,
        };
        let response = plain(status, self);
        match challenge {
            Some(challenge) => challenge.apply(response),
            None => response,
        }
    }
}

/// The collection of every subscription.
const ALL: &str = "/.well-known/mercure/subscriptions";

/// Whether `path` (as requested, percent-encoded) is one of Mercure 1.0's endpoints of the API:
/// `…/subscriptions/{match_type}/{match}/{subscriber}`, or `…/subscriptions/{a}/{b}` when `a`
/// names a matcher type (as [`one`] decides). `…/subscriptions` itself is both versions'.
pub fn is_mercure_1_path(path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix(super::PATH)
        .and_then(|rest| rest.strip_prefix("/subscriptions/"))
    else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments[..] {
        [_, _, _] => true,
        [first, _] => percent_encoding::percent_decode_str(first)
            .decode_utf8()
            .is_ok_and(|first| MatchKind::from_name(&first).is_some()),
        _ => false,
    }
}

/// The caller's grants (a draft-07 token's `mercure.subscribe` claim, an access token's
/// `subscribe` details) must cover the requested path. Whether its token is a Mercure 1.0 access
/// token: on the endpoint both versions share, that decides the form of the answer.
fn authorize(
    state: &AppState,
    subscriber: Option<Subscriber>,
    uri: &Uri,
) -> Result<bool, SubscriptionsError> {
    let resource = state.auth.resource();
    let Subscriber(verified, _) =
        subscriber.ok_or_else(|| SubscriptionsError::NoToken(resource.no_token()))?;
    let path = uri.path();
    let allowed = verified.subscribe_selectors(&state.hub).unwrap_or_default();
    if allowed.iter().any(|s| s.matches(path)) {
        Ok(verified.is_access_token())
    } else if verified.is_access_token() {
        Err(SubscriptionsError::NotGranted(
            path.to_owned(),
            resource.refused(BearerError::InsufficientScope),
        ))
    } else {
        Err(SubscriptionsError::NotAllowed(path.to_owned()))
    }
}

/// A document, with the cursor to subscribe from to miss no later change (Mercure 1.0's
/// `rel="mercure"` link; draft-07 clients read `lastEventID` in the body).
fn document(content_type: &'static str, doc: Value, last_event_id: &str) -> Response {
    let link = format!(
        "<{}>; rel=\"mercure\"; last-event-id=\"{}\"; type=\"mercure\"; content-type=\"application/json\"",
        super::PATH,
        last_event_id.replace(['"', '\\'], "")
    );
    let mut response = ([(header::CONTENT_TYPE, content_type)], doc.to_string()).into_response();
    if let Ok(link) = header::HeaderValue::from_str(&link) {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

fn json_ld(doc: Value, last_event_id: &str) -> Response {
    document("application/ld+json", doc, last_event_id)
}

async fn collection(state: &AppState, id: String, topic: Option<&str>) -> Response {
    let tidings_hub::Subscriptions {
        active,
        last_event_id,
    } = match state.hub.subscriptions().await {
        Ok(subscriptions) => subscriptions,
        Err(error) => return SubscriptionsError::Hub(error).into_response(),
    };
    let subscriptions: Vec<Value> = active
        .into_iter()
        .filter(|a| topic.is_none_or(|t| a.selector == t))
        .map(|a| a.document)
        .collect();
    json_ld(
        json!({
            "@context": "https://mercure.rocks/",
            "id": id,
            "type": "Subscriptions",
            "lastEventID": last_event_id,
            "subscriptions": subscriptions,
        }),
        &last_event_id,
    )
}

/// `…/subscriptions`: every subscription. A Mercure 1.0 caller (an access token) gets 1.0's
/// collection (`application/json`, the cursor in the `Link` header only) of the subscriptions
/// made the 1.0 way, whose events are in that form too (so the list and the events that keep it
/// up to date agree; draft-07's documents have no matcher type); a draft-07 caller gets
/// draft-07's JSON-LD collection of every subscription, each document in its own form.
pub async fn all(
    State(state): State<AppState>,
    subscriber: Option<Subscriber>,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    let mercure_1 = authorize(&state, subscriber, &uri)?;
    if !mercure_1 {
        return Ok(collection(&state, ALL.into(), None).await);
    }
    let Subscriptions {
        active,
        last_event_id,
    } = state.hub.subscriptions().await?;
    let subscriptions: Vec<Value> = active
        .into_iter()
        .filter(|a| a.match_type.is_some())
        .map(|a| a.document)
        .collect();
    let doc = json!({"id": ALL, "type": "subscriptions", "subscriptions": subscriptions});
    Ok(document("application/json", doc, &last_event_id))
}

pub async fn of_topic(
    State(state): State<AppState>,
    subscriber: Option<Subscriber>,
    Path(topic): Path<String>,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, subscriber, &uri)?;
    let id = subscription_topic(&topic, "");
    Ok(collection(&state, id.trim_end_matches('/').to_owned(), Some(&topic)).await)
}

/// `…/subscriptions/{a}/{b}`: Mercure 1.0's collection for one matcher when `a` is a matcher
/// type, else draft-07's one subscription.
pub async fn one(
    State(state): State<AppState>,
    caller: Option<Subscriber>,
    Path((first, second)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, caller, &uri)?;
    let Subscriptions {
        active,
        last_event_id,
    } = state.hub.subscriptions().await?;
    if let Some(kind) = MatchKind::from_name(&first) {
        let subscriptions: Vec<Value> = active
            .into_iter()
            .filter(|a| a.match_type == Some(kind) && a.selector == second)
            .map(|a| a.document)
            .collect();
        let id = subscription_topic_v1(kind, &second, None);
        let doc = json!({"id": id, "type": "subscriptions", "subscriptions": subscriptions});
        return Ok(document("application/json", doc, &last_event_id));
    }
    let found = active
        .into_iter()
        .find(|a| a.match_type.is_none() && a.selector == first && a.subscriber == second)
        .ok_or(SubscriptionsError::NotFound)?;
    let mut doc = found.document;
    doc["lastEventID"] = json!(last_event_id);
    Ok(json_ld(doc, &last_event_id))
}

/// `…/subscriptions/{match_type}/{match}/{subscriber}`: one Mercure 1.0 subscription, its
/// document as its subscription events carry it.
pub async fn one_v1(
    State(state): State<AppState>,
    caller: Option<Subscriber>,
    Path((kind, matcher, subscriber)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, caller, &uri)?;
    let kind = MatchKind::from_name(&kind).ok_or(SubscriptionsError::NotFound)?;
    let Subscriptions {
        active,
        last_event_id,
    } = state.hub.subscriptions().await?;
    let found = active
        .into_iter()
        .find(|a| a.match_type == Some(kind) && a.selector == matcher && a.subscriber == subscriber)
        .ok_or(SubscriptionsError::NotFound)?;
    Ok(document("application/json", found.document, &last_event_id))
}
