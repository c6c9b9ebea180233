//! `GET /.well-known/mercure`: subscribe to topic selectors and receive an event stream.

use super::{caller::Subscriber, history_unavailable, plain};
use crate::AppState;
use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use std::convert::Infallible;
use tidings_hub::{Selector, SelectorError, SubscribeError as HubError, SubscribeRequest};

/// The most selectors one subscription may have.
pub const MAX_SELECTORS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("missing topic: subscribe with ?topic=<selector>")]
    NoTopic,
    #[error("too many topics (at most {MAX_SELECTORS})")]
    TooManyTopics,
    #[error("topic {0:?}: {1}")]
    BadSelector(String, SelectorError),
    #[error("Last-Event-ID must be text without control characters")]
    BadLastEventId,
    #[error("this hub needs a subscriber token")]
    AnonymousRefused,
    #[error("{0}")]
    Hub(#[from] HubError),
}

impl IntoResponse for SubscribeError {
    fn into_response(self) -> Response {
        let status = match &self {
            SubscribeError::Hub(HubError::Storage) => return history_unavailable(),
            SubscribeError::NoTopic
            | SubscribeError::TooManyTopics
            | SubscribeError::BadSelector(..)
            | SubscribeError::BadLastEventId => StatusCode::BAD_REQUEST,
            SubscribeError::AnonymousRefused => StatusCode::UNAUTHORIZED,
            SubscribeError::Hub(HubError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
        };
        plain(status, self)
    }
}

/// The token (verified by the extractor, before anything else) and the anonymous rule are
/// checked before any selector is compiled.
pub async fn subscribe(
    State(state): State<AppState>,
    subscriber: Option<Subscriber>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, SubscribeError> {
    let (scope, payload, expires_at) = match subscriber {
        Some(Subscriber(verified)) => (
            verified.subscribe_selectors(&state.hub),
            verified.claims.mercure.payload.clone(),
            verified.expires_at(),
        ),
        None if state.config.no_anonymous => return Err(SubscribeError::AnonymousRefused),
        None => (None, None, None),
    };

    let mut topics = Vec::new();
    let mut query_last_id = None;
    for (name, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match &*name {
            "topic" => topics.push(value.into_owned()),
            "lastEventID" => query_last_id = Some(value.into_owned()),
            _ => {}
        }
    }
    if topics.is_empty() {
        return Err(SubscribeError::NoTopic);
    }
    if topics.len() > MAX_SELECTORS {
        return Err(SubscribeError::TooManyTopics);
    }
    let selectors = topics
        .into_iter()
        .map(|t| Selector::parse(&t).map_err(|e| SubscribeError::BadSelector(t, e)))
        .collect::<Result<Vec<_>, _>>()?;

    // The header (what a reconnecting browser sends) wins over the query parameter.
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| SubscribeError::BadLastEventId)?
                .to_owned(),
        ),
        None => query_last_id,
    };
    if last_event_id
        .as_deref()
        .is_some_and(|id| id.chars().any(char::is_control))
    {
        return Err(SubscribeError::BadLastEventId);
    }

    let subscription = state
        .hub
        .subscribe(SubscribeRequest {
            selectors,
            scope,
            payload,
            last_event_id,
            expires_at,
        })
        .await?;
    let header_value = HeaderValue::from_str(&subscription.last_event_id)
        .unwrap_or_else(|_| HeaderValue::from_static("earliest"));
    let body = Body::from_stream(subscription.stream.map(Ok::<_, Infallible>));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
            ),
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
            (HeaderName::from_static("last-event-id"), header_value),
        ],
        body,
    )
        .into_response())
}
