//! The active-subscriptions API: `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`,
//! JSON-LD documents as in the Mercure spec. A subscriber token whose `mercure.subscribe` claim
//! matches the requested URL's path is needed.

use super::{caller::Subscriber, plain};
use crate::AppState;
use axum::{
    extract::{Path, State},
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tidings_hub::subscription_topic;

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionsError {
    #[error("the subscriptions API needs a subscriber token")]
    NoToken,
    #[error("the token's mercure.subscribe claim does not cover {0}")]
    NotAllowed(String),
    #[error("no such subscription")]
    NotFound,
    #[error("{0}")]
    Hub(#[from] tidings_hub::SubscribeError),
}

impl IntoResponse for SubscriptionsError {
    fn into_response(self) -> Response {
        let status = match self {
            SubscriptionsError::NoToken => StatusCode::UNAUTHORIZED,
            SubscriptionsError::NotAllowed(_) => StatusCode::FORBIDDEN,
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
        plain(status, self)
    }
}

/// The caller's `mercure.subscribe` claim must cover the requested path.
fn authorize(
    state: &AppState,
    subscriber: Option<Subscriber>,
    uri: &Uri,
) -> Result<(), SubscriptionsError> {
    let Subscriber(verified, _) = subscriber.ok_or(SubscriptionsError::NoToken)?;
    let path = uri.path();
    let allowed = verified.subscribe_selectors(&state.hub).unwrap_or_default();
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
    subscriber: Option<Subscriber>,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, subscriber, &uri)?;
    Ok(collection(&state, "/.well-known/mercure/subscriptions".into(), None).await)
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

pub async fn one(
    State(state): State<AppState>,
    caller: Option<Subscriber>,
    Path((topic, subscriber)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, SubscriptionsError> {
    authorize(&state, caller, &uri)?;
    let tidings_hub::Subscriptions {
        active,
        last_event_id,
    } = state.hub.subscriptions().await?;
    let found = active
        .into_iter()
        .find(|a| a.selector == topic && a.subscriber == subscriber)
        .ok_or(SubscriptionsError::NotFound)?;
    let mut doc = found.document;
    doc["lastEventID"] = json!(last_event_id);
    Ok(json_ld(doc))
}
