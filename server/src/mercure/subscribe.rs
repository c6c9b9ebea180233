//! `GET /.well-known/mercure`: subscribe to topic selectors and receive an event stream.

use super::{
    caller::Subscriber,
    history_unavailable, history_unreachable,
    limits::{LimitError, Slot},
    plain,
};
use crate::{
    AppState,
    client_addr::{ClientIp, retry_after_secs},
};
use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use std::convert::Infallible;
use tidings_hub::{SelectorRefused, SubscribeError as HubError, SubscribeRequest};

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("missing topic: subscribe with ?topic=<selector>")]
    NoTopic,
    #[error("the query is longer than {0} bytes")]
    QueryTooLong(usize),
    #[error("too many topics (at most {0})")]
    TooManyTopics(u32),
    #[error("too many URI templates among the topics (at most {0})")]
    TooManyTemplates(u32),
    #[error("topic {0:?}: {1}")]
    BadSelector(String, SelectorRefused),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("Last-Event-ID must be UTF-8 text without control characters")]
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
            SubscribeError::Hub(HubError::Unavailable) => return history_unreachable(),
            SubscribeError::NoTopic
            | SubscribeError::TooManyTopics(_)
            | SubscribeError::TooManyTemplates(_)
            | SubscribeError::BadSelector(_, SelectorRefused::Invalid(_))
            | SubscribeError::BadLastEventId => StatusCode::BAD_REQUEST,
            SubscribeError::QueryTooLong(_) => StatusCode::URI_TOO_LONG,
            SubscribeError::BadSelector(_, SelectorRefused::TooManyTemplates)
            | SubscribeError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            SubscribeError::AnonymousRefused => StatusCode::UNAUTHORIZED,
            SubscribeError::Hub(HubError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let retry_after = match &self {
            SubscribeError::Limit(LimitError::TooFast(wait)) => Some(retry_after_secs(*wait)),
            SubscribeError::Limit(_) | SubscribeError::BadSelector(..) => Some(5),
            _ => None,
        };
        let mut response = plain(status, self);
        if let Some(seconds) = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The query parameter asking for a routed subscription (`tidings-route=1`): see
/// [`tidings_hub::ROUTE_EVENT`].
pub const ROUTE_PARAMETER: &str = "tidings-route";

/// Everything cheap comes before anything costly: the query's length, the token (verified by the
/// extractor), the anonymous rule, the client's rate and open-subscription limits (per address,
/// per token, in all), and the number of selectors and templates are all checked before any
/// selector is compiled.
pub async fn subscribe(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    subscriber: Option<Subscriber>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, SubscribeError> {
    let config = &state.config;
    let query = query.unwrap_or_default();
    if query.len() > config.max_query_bytes {
        return Err(SubscribeError::QueryTooLong(config.max_query_bytes));
    }
    let (scope, payload, expires_at, token) = match subscriber {
        Some(Subscriber(verified, token)) => (
            verified.subscribe_selectors(&state.hub),
            verified.claims.mercure.payload.clone(),
            verified.expires_at(),
            Some(token),
        ),
        None if state.config.no_anonymous => return Err(SubscribeError::AnonymousRefused),
        None => (None, None, None, None),
    };

    let mut topics = Vec::new();
    let mut query_last_id = None;
    let mut routed = false;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "topic" => topics.push(value.into_owned()),
            "lastEventID" => query_last_id = Some(value.into_owned()),
            // Tidings' own: each update is preceded by the indices of the selectors it matches
            // (one connection serving several tabs). Other Mercure clients never send it.
            ROUTE_PARAMETER => routed = value == "1",
            _ => {}
        }
    }
    if topics.is_empty() {
        return Err(SubscribeError::NoTopic);
    }
    if topics.len() > config.max_selectors as usize {
        return Err(SubscribeError::TooManyTopics(config.max_selectors));
    }
    let templates = topics.iter().filter(|t| t.contains('{')).count();
    if templates > config.max_templates_per_subscription as usize {
        return Err(SubscribeError::TooManyTemplates(
            config.max_templates_per_subscription,
        ));
    }
    let slot: Slot = state.subscriber_limits.admit_with_token(client, token)?;
    let selectors = topics
        .into_iter()
        .map(|t| {
            state
                .hub
                .parse_selector(&t)
                .map_err(|e| SubscribeError::BadSelector(t, e))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // The header (what a reconnecting browser sends) wins over the query parameter. Browsers
    // send the id as UTF-8 (HTAB and non-ASCII are legal in a field value).
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            std::str::from_utf8(value.as_bytes())
                .map_err(|_| SubscribeError::BadLastEventId)?
                .to_owned(),
        ),
        None => query_last_id,
    };
    if last_event_id
        .as_deref()
        .is_some_and(|id| id.chars().any(|c| c.is_control() && c != '\t'))
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
            routed,
        })
        .await?;
    let header_value = HeaderValue::from_bytes(subscription.last_event_id.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("earliest"));
    // The slot is held by the body: the subscription counts until its stream is dropped.
    let body = Body::from_stream(subscription.stream.map(move |chunk| {
        let _held = &slot;
        Ok::<_, Infallible>(chunk)
    }));
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
