//! Posting to a chat room, and the rooms' presence counts.
//!
//! Posts are validated (name 1–32 characters, text 1–2000, both trimmed), limited per client
//! address (see [`crate::client_addr`]: a burst of `--chat-burst`, then one message per
//! `--chat-refill`)
//! and published on the room's topic through the hub in-process, by `send`. Two ways lead
//! there, sharing the address's allowance: the chat form's server function (`send_chat`, through
//! `ChatDesk`, which the pages find in their context), and `POST /api/chat/{room}` with JSON
//! (`post`), for scripts and tests.

use crate::{
    AppState,
    client_addr::{ClientIp, limit_key, retry_after_secs},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};
use leptos::prelude::use_context;
use leptos::server_fn::{ServerFn, error::ServerFnUrlError};
use leptos_axum::ResponseOptions;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::pin::Pin;
use std::{collections::HashMap, net::IpAddr, num::NonZeroU32, time::Duration};
use tidings_app::api::{ChatService, SendChat, SendError};
use tidings_app::model::{ChatMessage, ChatPost, NAME_MAX, PRESENCE_EVENT, Presence, TEXT_MAX};
use tidings_app::model::{chat_topic, presence_topic, valid_room};
use tidings_hub::{NewUpdate, PublishError, Update};

/// Messages an address may send at once, unless `--chat-burst` says otherwise.
pub const BURST: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChatError {
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
    /// A form post that the browser says came from another site.
    #[error("posts from other sites are refused")]
    CrossSite,
    /// A server function called without its request (or its client's address) in context.
    #[error("the request is not available")]
    NoRequest,
}

impl ChatError {
    fn status(&self) -> StatusCode {
        match self {
            ChatError::BadRoom | ChatError::BadName | ChatError::BadText => StatusCode::BAD_REQUEST,
            ChatError::TooFast(_) => StatusCode::TOO_MANY_REQUESTS,
            ChatError::CrossSite => StatusCode::FORBIDDEN,
            ChatError::Hub(PublishError::Storage) | ChatError::NoRequest => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ChatError::Hub(PublishError::Unavailable | PublishError::ShuttingDown) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// `Retry-After`, in seconds, for the answers that have one.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ChatError::TooFast(wait) => Some(retry_after_secs(*wait)),
            ChatError::Hub(PublishError::Unavailable) => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        match &self {
            ChatError::Hub(PublishError::Storage) => crate::mercure::history_unavailable(),
            ChatError::Hub(PublishError::Unavailable) => crate::mercure::history_unreachable(),
            _ => {
                let mut response = crate::mercure::plain(self.status(), &self);
                if let Some(secs) = self.retry_after() {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, secs.into());
                }
                response
            }
        }
    }
}

impl From<ChatError> for SendError {
    fn from(error: ChatError) -> Self {
        SendError::from(&error)
    }
}

impl From<&ChatError> for SendError {
    /// The same status and reason as the JSON route's answer.
    fn from(error: &ChatError) -> Self {
        let reason = match error {
            ChatError::Hub(PublishError::Storage) => crate::mercure::HISTORY_UNAVAILABLE.into(),
            ChatError::Hub(PublishError::Unavailable) => crate::mercure::HISTORY_UNREACHABLE.into(),
            other => other.to_string(),
        };
        SendError {
            status: error.status().as_u16(),
            reason,
        }
    }
}

/// Per-address allowances (governor's GCRA, keys sharded by dashmap).
pub(crate) struct RateLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl RateLimiter {
    /// `burst` messages at once, then one per `refill` (both checked when the flags are read:
    /// a zero is taken as one message, or a millisecond).
    pub(crate) fn new(burst: u32, refill: Duration) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(refill.max(Duration::from_millis(1)))
            .expect("a period above zero")
            .allow_burst(burst);
        Self(governor::RateLimiter::keyed(quota))
    }

    /// Takes one message from `client`'s allowance, or says how long until one is allowed.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.0
            .check_key(&limit_key(client))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets addresses whose allowance is full again (they are indistinguishable from new
    /// ones), so memory follows the recent senders only.
    pub(crate) fn forget_idle(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }

    /// Addresses remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Checks `post`, takes one message from `client`'s allowance and publishes it in `room`;
/// returns the update's id.
pub(crate) async fn send(
    state: &AppState,
    client: IpAddr,
    room: &str,
    post: &ChatPost,
) -> Result<String, ChatError> {
    if !valid_room(room) {
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
        chat_topic(room),
        serde_json::to_string(&message).expect("serializable"),
    )
    .map_err(|_| ChatError::BadRoom)?;
    let id = update.id().to_owned();
    state.hub.publish(update).await?;
    Ok(id)
}

/// `POST /api/chat/{room}` with JSON `{"name", "text"}`: `200` with the update's id, or the
/// status and reason of [`ChatError`].
pub(crate) async fn post(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Path(room): Path<String>,
    Json(post): Json<ChatPost>,
) -> Result<Response, ChatError> {
    let id = send(&state, client, &room, &post).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        id,
    )
        .into_response())
}

/// The cookie the chat form's name is remembered in (a year, on the chat's pages only).
const NAME_COOKIE: &str = "tidings-name";

/// The chat form's [`ChatService`]: [`send`] for the request the server function answers.
pub(crate) struct ChatDesk(pub(crate) AppState);

impl ChatService for ChatDesk {
    fn send(
        &self,
        room: String,
        post: ChatPost,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>> {
        // The request and its answer, from the server function's context (read now: the future
        // runs after this returns).
        let request = use_context::<Parts>();
        let answer = use_context::<ResponseOptions>();
        let state = self.0.clone();
        Box::pin(async move {
            let (Some(request), Some(answer)) = (request, answer) else {
                return Err(ChatError::NoRequest.into());
            };
            let sent = async {
                // A form on another site may post here too (no preflight guards a form post):
                // what browsers say is cross-site is refused, so no page can chat in its
                // visitors' names.
                let site = request.headers.get("sec-fetch-site");
                if site.is_some_and(|site| site == "cross-site") {
                    return Err(ChatError::CrossSite);
                }
                let client = ClientIp::of(&request, &state).ok_or(ChatError::NoRequest)?;
                send(&state, client, &room, &post).await
            };
            let sent = sent.await;
            // A form posted without JavaScript is answered with a redirect back to the room,
            // a refusal's reason in the address (where `ServerAction` finds it). Leptos would
            // go back to the `Referer`, where an earlier reason may still be.
            if accepts_html(&request) {
                let room = if valid_room(&room) {
                    format!("/chat/{room}")
                } else {
                    "/chat".into()
                };
                let location = match &sent {
                    Ok(_) => room,
                    Err(error) => ServerFnUrlError::new(SendChat::PATH, SendError::from(error))
                        .to_url(&format!("http://localhost{room}"))
                        .map_or(room, |url| {
                            format!("{}?{}", url.path(), url.query().unwrap_or(""))
                        }),
                };
                leptos_axum::redirect(&location);
            }
            match sent {
                Ok(_) => {
                    if let Ok(cookie) = HeaderValue::from_str(&name_cookie(post.name.trim())) {
                        answer.append_header(header::SET_COOKIE, cookie);
                    }
                    Ok(())
                }
                Err(error) => {
                    if !accepts_html(&request) {
                        answer.set_status(error.status());
                        if let Some(secs) = error.retry_after() {
                            answer.insert_header(header::RETRY_AFTER, secs.into());
                        }
                    }
                    Err(error.into())
                }
            }
        })
    }

    fn remembered_name(&self) -> Option<String> {
        remembered_name(&use_context::<Parts>()?.headers)
    }
}

/// The name in the request's [`NAME_COOKIE`], if it is one.
fn remembered_name(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(NAME_COOKIE)?.strip_prefix('='))
        .and_then(|value| percent_decode_str(value).decode_utf8().ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.chars().count() <= NAME_MAX)
}

/// `Set-Cookie` remembering `name`.
fn name_cookie(name: &str) -> String {
    let value = utf8_percent_encode(name, NON_ALPHANUMERIC);
    format!("{NAME_COOKIE}={value}; Path=/chat; Max-Age=31536000; SameSite=Lax; HttpOnly")
}

/// Whether the request is a plain form post (browsers ask for HTML), not a script's.
fn accepts_html(request: &Parts) -> bool {
    request
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Checks of a room's count after which a count that keeps changing is announced as it stands.
const UNSETTLED_CHECKS: u32 = 4;

/// The rooms whose count differs from the one announced: the count at the last check, and at
/// how many checks in a row it has differed. A count is due once two checks in a row agree, so
/// a page moving to a fresh token (two connections for a few milliseconds) is not counted twice;
/// or after [`UNSETTLED_CHECKS`], so a client opening and closing a subscription in step with the
/// checks cannot hold a room's count back.
#[derive(Default)]
struct Settling(HashMap<String, (usize, u32)>);

impl Settling {
    /// Whether `room`'s count, `present` at this check, is to be announced (`announced`: the
    /// count announced last).
    fn due(&mut self, room: &str, present: usize, announced: Option<usize>) -> bool {
        if announced == Some(present) {
            self.forget(room);
            return false;
        }
        let (last, checks) = self.0.entry(room.to_owned()).or_insert((present, 0));
        let settled = *checks > 0 && *last == present;
        (*last, *checks) = (present, *checks + 1);
        settled || *checks >= UNSETTLED_CHECKS
    }

    fn forget(&mut self, room: &str) {
        self.0.remove(room);
    }

    /// Keeps only the rooms counted now: a client cannot make this grow with rooms it left.
    fn forget_all_but(&mut self, counted: &HashMap<String, usize>) {
        self.0.retain(|room, _| counted.contains_key(room));
    }
}

/// Publishes each room's presence count when it changes (checked every 250 ms; a change is
/// announced once two checks in a row see it, so what lasts less than that is not, or after
/// [`UNSETTLED_CHECKS`] checks if it keeps changing), on the room's
/// presence topic as a `presence` event, private when the server signs page tokens (the pages
/// subscribe with one; see `page_tokens`). Rooms are the exact `/chat/{room}` subscriptions, on
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
pub(crate) async fn presence_task(state: AppState) {
    // What this node published, as far as it knows.
    let mut published: HashMap<String, usize> = HashMap::new();
    let mut led = false;
    // Announce every room at the next successful read: this node just took over.
    let mut announce_all = false;
    // Another node may have led before this one: its zeros are announced again on takeover.
    let mut followed = false;
    let mut settling = Settling::default();
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
        settling.forget_all_but(&counts);
        for (room, present) in counts {
            if !everything && !settling.due(&room, present, published.get(&room).copied()) {
                continue;
            }
            settling.forget(&room);
            let data = serde_json::to_string(&Presence { present }).expect("serializable");
            // Presence is state, not history: sent to those connected, never stored.
            let Ok(update) = (NewUpdate {
                event_type: Some(PRESENCE_EVENT.into()),
                // For the pages' tokens when the server can sign them (see `page_tokens`).
                private: state.auth.signs_page_tokens(),
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
    fn a_remembered_name_comes_back_as_it_was_sent() {
        for name in ["ann", "Zoë; x=1", "a b,c\"d"] {
            let cookie = name_cookie(name);
            let value = cookie.split(';').next().unwrap();
            let mut headers = HeaderMap::new();
            let header = format!("other=1; {value}; more=2");
            headers.insert(header::COOKIE, header.parse().unwrap());
            assert_eq!(remembered_name(&headers).as_deref(), Some(name), "{cookie}");
        }
    }

    #[test]
    fn a_count_is_due_once_two_checks_agree_or_after_four_that_do_not() {
        let mut settling = Settling::default();
        // One check sees a page twice (it moves to a fresh token): nothing to announce.
        assert!(!settling.due("r", 2, Some(1)));
        assert!(!settling.due("r", 1, Some(1)));
        // Someone joins: due at the second check that sees it.
        assert!(!settling.due("r", 2, Some(1)));
        assert!(settling.due("r", 2, Some(1)));
        // Someone joins while a client flaps a subscription in step with the checks: each count
        // differs from the one before (two checks never agree), due at the fourth all the same.
        let mut settling = Settling::default();
        let due: Vec<bool> = [3, 2, 3, 2]
            .into_iter()
            .map(|present| settling.due("r", present, Some(1)))
            .collect();
        assert_eq!(due, [false, false, false, true]);
        // Rooms no longer counted are forgotten.
        settling.forget_all_but(&HashMap::new());
        assert!(settling.0.is_empty());
    }

    #[test]
    fn the_limiter_allows_a_burst_then_limits_per_address() {
        let refill = Duration::from_secs(2);
        let limiter = RateLimiter::new(BURST, refill);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        for _ in 0..BURST {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= refill, "{wait:?}");
        assert!(limiter.check(b).is_ok(), "other addresses are not affected");
        assert_eq!(limiter.len(), 2);
        limiter.forget_idle();
        assert_eq!(limiter.len(), 2, "both are still recent");
    }
}
