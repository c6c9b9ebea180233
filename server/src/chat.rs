//! `POST /api/chat/{room}`: posting to a chat room, and the rooms' presence counts.
//!
//! Posts are validated (name 1–32 characters, text 1–2000, both trimmed), limited per client
//! (a token bucket: a burst of [`BURST`], then one message per [`REFILL`]) and published on the
//! room's topic through the hub in-process. The client is the browser's `X-Tidings-Client` id,
//! else its address.

use crate::AppState;
use axum::{
    Json,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tidings_app::model::{ChatMessage, ChatPost, NAME_MAX, PRESENCE_EVENT, Presence, TEXT_MAX};
use tidings_app::model::{chat_topic, presence_topic, valid_room};
use tidings_hub::{NewUpdate, PublishError, Update};

/// Messages a client may send at once.
pub const BURST: f64 = 5.0;
/// Time for one more message to be allowed.
pub const REFILL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("a room name is 1 to 32 of a-z, 0-9 and -")]
    BadRoom,
    #[error("the name must be 1 to {NAME_MAX} characters")]
    BadName,
    #[error("the message must be 1 to {TEXT_MAX} characters")]
    BadText,
    #[error("too many messages: wait a moment")]
    TooFast,
    #[error("{0}")]
    Hub(#[from] PublishError),
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        let status = match self {
            ChatError::BadRoom | ChatError::BadName | ChatError::BadText => StatusCode::BAD_REQUEST,
            ChatError::TooFast => StatusCode::TOO_MANY_REQUESTS,
            ChatError::Hub(PublishError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
            ChatError::Hub(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = crate::mercure::plain(status, &self);
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, REFILL.as_secs().into());
        }
        response
    }
}

/// Per-client token buckets.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `client`; `false` if it has none left.
    pub fn allow(&self, client: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() > 100_000 {
            // Forget clients whose bucket is full again: they are indistinguishable from new.
            let full = REFILL.mul_f64(BURST);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets.entry(client.to_owned()).or_insert((BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() / REFILL.as_secs_f64()).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    Json(post): Json<ChatPost>,
) -> Result<Response, ChatError> {
    if !valid_room(&room) {
        return Err(ChatError::BadRoom);
    }
    let name = post.name.trim();
    let text = post.text.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(ChatError::BadName);
    }
    if text.is_empty() || text.chars().count() > TEXT_MAX {
        return Err(ChatError::BadText);
    }
    let client = headers
        .get("x-tidings-client")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map_or_else(|| peer.ip().to_string(), str::to_owned);
    if !state.chat_limiter.allow(&client) {
        return Err(ChatError::TooFast);
    }
    let message = ChatMessage {
        id: String::new(),
        name: name.into(),
        text: text.into(),
        at_ms: crate::now_ms(),
    };
    let update = Update::public(
        chat_topic(&room),
        serde_json::to_string(&message).expect("serializable"),
    )
    .map_err(|_| ChatError::BadRoom)?;
    let id = update.id().to_owned();
    state.hub.publish(update).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        id,
    )
        .into_response())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Publishes each room's presence count when it changes (checked every 250 ms), on the room's
/// presence topic as a `presence` event. Rooms are the exact `/chat/{room}` subscriptions.
pub async fn presence_task(state: AppState) {
    let mut published: HashMap<String, usize> = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let mut counts: HashMap<String, usize> = state
            .hub
            .exact_counts(|t| t.strip_prefix("/chat/").is_some_and(valid_room))
            .into_iter()
            .filter_map(|(topic, n)| Some((topic.strip_prefix("/chat/")?.to_owned(), n)))
            .collect();
        // Rooms that emptied since the last check.
        for room in published.keys() {
            counts.entry(room.clone()).or_insert(0);
        }
        for (room, present) in counts {
            if published.get(&room) == Some(&present) {
                continue;
            }
            let data = serde_json::to_string(&Presence { present }).expect("serializable");
            // Presence is state, not history: sent to those connected, never stored.
            let Ok(update) = (NewUpdate {
                event_type: Some(PRESENCE_EVENT.into()),
                ..NewUpdate::new(presence_topic(&room), data)
            })
            .parse() else {
                continue;
            };
            if state.hub.publish_live(update).await.is_err() {
                return;
            }
            if present == 0 {
                published.remove(&room);
            } else {
                published.insert(room, present);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_limits() {
        let limiter = RateLimiter::default();
        for _ in 0..BURST as usize {
            assert!(limiter.allow("a"));
        }
        assert!(!limiter.allow("a"), "the burst is used up");
        assert!(limiter.allow("b"), "other clients are not affected");
    }
}
