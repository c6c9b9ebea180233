//! `GET /web/StreamChat`: the seed's demo stream, the numbers 1 to 100, one per interval.
//!
//! Each number is an event `id: N` / `data: N`, so a browser that loses the connection reconnects
//! with `Last-Event-ID: N` and the stream continues at N+1. After the last number the stream
//! ends; the browser's next reconnect gets `204 No Content`, the one answer that tells an
//! `EventSource` to stop for good.
//!
//! No task runs per connection: the response body is a stream that produces the next number only
//! when hyper polls it. A client that goes away makes hyper drop the body, and with it the timer.

use crate::{
    AppState,
    client_addr::{ClientIp, retry_after_secs},
    mercure::limits::LimitError,
};
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{StreamExt, stream};
use std::convert::Infallible;
use tidings_app::counter::LAST;
use tidings_hub::Event;
use tokio::time::{MissedTickBehavior, interval};

/// Why a stream request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("Last-Event-ID must be a whole number from 0 to {LAST}")]
    BadLastEventId,
    /// Counter streams count against the same budgets as hub subscriptions.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl IntoResponse for CounterError {
    fn into_response(self) -> Response {
        let (status, retry_after) = match &self {
            CounterError::BadLastEventId => (StatusCode::BAD_REQUEST, None),
            CounterError::Limit(LimitError::TooFast(wait)) => {
                (StatusCode::TOO_MANY_REQUESTS, Some(retry_after_secs(*wait)))
            }
            CounterError::Limit(_) => (StatusCode::TOO_MANY_REQUESTS, Some(5)),
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The handler.
pub async fn stream(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Result<Response, CounterError> {
    let last_seen = match headers.get("last-event-id") {
        None => 0,
        Some(value) => parse_last_event_id(value)?,
    };
    if last_seen >= LAST {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }

    let slot = state.subscriber_limits.admit(client)?;
    let mut ticks = interval(state.config.stream_interval());
    // After a stall, keep the pace instead of bursting to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let open = state.metrics.counter_stream_opened();
    let events = stream::unfold((last_seen + 1, ticks), |(n, mut ticks)| async move {
        if n > LAST {
            return None;
        }
        // The first tick completes at once, so the first number goes out without delay.
        ticks.tick().await;
        let text = n.to_string();
        let bytes = Event {
            id: Some(&text),
            data: &text,
            ..Event::default()
        }
        .encode();
        Some((Ok::<_, Infallible>(bytes), (n + 1, ticks)))
    })
    // On shutdown the stream ends, so the connection can close and the process exit; the
    // browser reconnects later with its Last-Event-ID and loses nothing.
    .take_until(state.shutdown.clone().cancelled_owned())
    // The guard lives as long as the body: dropped when the stream ends or the client leaves.
    .map(move |item| {
        let _ = (&open, &slot);
        item
    });

    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(events),
    )
        .into_response())
}

fn parse_last_event_id(value: &HeaderValue) -> Result<u32, CounterError> {
    let text = value.to_str().map_err(|_| CounterError::BadLastEventId)?;
    // Digits only: `u32::from_str` would also take "+5".
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CounterError::BadLastEventId);
    }
    match text.parse::<u32>() {
        Ok(n) if n <= LAST => Ok(n),
        _ => Err(CounterError::BadLastEventId),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_accepts_exactly_0_to_last() {
        let parse = |s: &str| parse_last_event_id(&HeaderValue::from_str(s).unwrap()).ok();
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse("42"), Some(42));
        assert_eq!(parse("100"), Some(100));
        for bad in ["", "101", "-1", "+5", " 5", "5x", "99999999999999999999"] {
            assert_eq!(parse(bad), None, "{bad:?} should be refused");
        }
    }
}
