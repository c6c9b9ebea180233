//! The active-subscriptions API: `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`,
//! JSON-LD documents as in the Mercure spec. A subscriber token whose `mercure.subscribe` claim
//! matches the requested URL's path is needed.

use super::{
    auth::{TokenError, find_token, query_token},
    plain,
};
use crate::AppState;
use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tidings_hub::{subscription_json, subscription_topic};

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionsError {
    #[error("the subscriptions API needs a subscriber token")]
    NoToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the token's mercure.subscribe claim does not cover {0}")]
    NotAllowed(String),
    #[error("no such subscription")]
    NotFound,
}

impl IntoResponse for SubscriptionsError {
    fn into_response(self) -> Response {
        let status = match self {
            SubscriptionsError::NoToken | SubscriptionsError::Token(_) => StatusCode::UNAUTHORIZED,
            SubscriptionsError::NotAllowed(_) => StatusCode::FORBIDDEN,
            SubscriptionsError::NotFound => StatusCode::NOT_FOUND,
        };
        plain(status, self)
    }
}

fn authorize(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<(), SubscriptionsError> {
    let query_token = query_token(uri.query());
    let (token, source) =
        find_token(headers, query_token.as_deref())?.ok_or(SubscriptionsError::NoToken)?;
    let verified = state.auth.verify_subscriber(token, source)?;
    let path = uri.path();
    let allowed = verified.subscribe_selectors().unwrap_or_default();
    if allowed.iter().any(|s| s.matches(path)) {
        Ok(())
    } else {
        Err(SubscriptionsError::NotAllowed(path.to_owned()))
    }
}

fn json_ld(doc: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/ld+json")],
        doc.to_string(),
    )
        .into_response()
}

fn collection(state: &AppState, id: String, topic: Option<&str>) -> Response {
    let tidings_hub::Subscriptions {
        active,
        last_event_id,
    } = state.hub.subscriptions();
    let subscriptions: Vec<Value> = active
        .iter()
        .filter(|a| topic.is_none_or(|t| a.selector == t))
        .map(|a| subscription_json(&a.subscriber, &a.selector, true))
        .collect();
    json_ld(json!({
        "@context": "https://mercure.rocks/",
        "id": id,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": subscriptions,
    }))
}

pub async fn all(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, &headers, &uri)?;
    Ok(collection(
        &state,
        "/.well-known/mercure/subscriptions".into(),
        None,
    ))
}

pub async fn of_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, &headers, &uri)?;
    let id = subscription_topic(&topic, "");
    Ok(collection(
        &state,
        id.trim_end_matches('/').to_owned(),
        Some(&topic),
    ))
}

pub async fn one(
    State(state): State<AppState>,
    Path((topic, subscriber)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, &headers, &uri)?;
    let tidings_hub::Subscriptions {
        active,
        last_event_id,
    } = state.hub.subscriptions();
    let found = active
        .iter()
        .find(|a| a.selector == topic && a.subscriber.id() == subscriber)
        .ok_or(SubscriptionsError::NotFound)?;
    let mut doc = subscription_json(&found.subscriber, &found.selector, true);
    doc["lastEventID"] = json!(last_event_id);
    Ok(json_ld(doc))
}
