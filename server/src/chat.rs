//! `POST /api/chat/{room}`: posting to a chat room, and the rooms' presence counts.
//!
//! Posts are validated (name 1–32 characters, text 1–2000, both trimmed), limited per client
//! address (see [`crate::client_addr`]: a burst of [`BURST`], then one message per [`REFILL`])
//! and published on the room's topic through the hub in-process.

use crate::{
    AppState,
    client_addr::{ClientIp, limit_key, retry_after_secs},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};
use std::{collections::HashMap, net::IpAddr, num::NonZeroU32, time::Duration};
use tidings_app::model::{ChatMessage, ChatPost, NAME_MAX, PRESENCE_EVENT, Presence, TEXT_MAX};
use tidings_app::model::{chat_topic, presence_topic, valid_room};
use tidings_hub::{NewUpdate, PublishError, Update};

/// Messages an address may send at once.
pub const BURST: u32 = 5;
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
    /// How long until the next message is allowed.
    #[error("too many messages: wait a moment")]
    TooFast(Duration),
    #[error("{0}")]
    Hub(#[from] PublishError),
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        let status = match &self {
            ChatError::Hub(PublishError::Storage) => {
                return crate::mercure::history_unavailable();
            }
            ChatError::Hub(PublishError::Unavailable) => {
                return crate::mercure::history_unreachable();
            }
            ChatError::BadRoom | ChatError::BadName | ChatError::BadText => StatusCode::BAD_REQUEST,
            ChatError::TooFast(_) => StatusCode::TOO_MANY_REQUESTS,
            ChatError::Hub(PublishError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = crate::mercure::plain(status, &self);
        if let ChatError::TooFast(wait) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs(wait).into());
        }
        response
    }
}

/// Per-address allowances (governor's GCRA, keys sharded by dashmap).
pub struct RateLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl Default for RateLimiter {
    fn default() -> Self {
        let burst = NonZeroU32::new(BURST).expect("BURST > 0");
        let quota = Quota::with_period(REFILL)
            .expect("REFILL > 0")
            .allow_burst(burst);
        Self(governor::RateLimiter::keyed(quota))
    }
}

impl RateLimiter {
    /// Takes one message from `client`'s allowance, or says how long until one is allowed.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.0
            .check_key(&limit_key(client))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets addresses whose allowance is full again (they are indistinguishable from new
    /// ones), so memory follows the recent senders only.
    pub fn forget_idle(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }

    /// Addresses remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

pub async fn post(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Path(room): Path<String>,
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
    state
        .chat_limiter
        .check(client)
        .map_err(ChatError::TooFast)?;
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

/// Publishes each room's presence count when it changes (checked every 250 ms), on the room's
/// presence topic as a `presence` event. Rooms are the exact `/chat/{room}` subscriptions, on
/// every node of a cluster.
///
/// Only the leading node publishes, so each change is sent once, and only it reads the counts,
/// and only the rooms' (the exact topics under `/chat/`): four reads a second of every topic
/// every other node counts cost Redis about 1 MB/s for 100 idle subscriptions of 100 topics.
/// A node that takes over does not know what the previous leader announced: it announces every
/// room that has people or anyone watching its presence topic (an exact subscription to it,
/// counted like the rooms), so whoever listens hears the count as it is now, zero included.
/// (A node that led from its first check, such as a single server, had no predecessor: it
/// announces the rooms with people only.)
pub async fn presence_task(state: AppState) {
    // What this node published, as far as it knows.
    let mut published: HashMap<String, usize> = HashMap::new();
    let mut led = false;
    // Announce every room at the next successful read: this node just took over.
    let mut announce_all = false;
    // Another node may have led before this one: its zeros are announced again on takeover.
    let mut followed = false;
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let leads = state.hub.leads();
        announce_all |= leads && !led;
        led = leads;
        if !leads {
            followed = true;
            continue;
        }
        let Ok(found) = state
            .hub
            .subscriber_counts("/chat/", |t| {
                t.strip_prefix("/chat/").is_some_and(|rest| {
                    valid_room(rest) || rest.strip_suffix("/presence").is_some_and(valid_room)
                })
            })
            .await
        else {
            continue;
        };
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut watched = Vec::new();
        for (topic, n) in found {
            let Some(rest) = topic.strip_prefix("/chat/") else {
                continue;
            };
            match rest.strip_suffix("/presence") {
                Some(room) if n > 0 => watched.push(room.to_owned()),
                Some(_) => {}
                None => *counts.entry(rest.to_owned()).or_default() += n,
            }
        }
        let everything = std::mem::take(&mut announce_all);
        // Rooms that emptied since the last check; after a takeover, every watched room.
        for room in published
            .keys()
            .chain(watched.iter().filter(|_| everything && followed))
        {
            counts.entry(room.clone()).or_insert(0);
        }
        for (room, present) in counts {
            if !everything && published.get(&room) == Some(&present) {
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
    fn the_limiter_allows_a_burst_then_limits_per_address() {
        let limiter = RateLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        for _ in 0..BURST {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= REFILL, "{wait:?}");
        assert!(limiter.check(b).is_ok(), "other addresses are not affected");
        assert_eq!(limiter.len(), 2);
        limiter.forget_idle();
        assert_eq!(limiter.len(), 2, "both are still recent");
    }
}
