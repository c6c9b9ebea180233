//! Server functions: each page's server-rendered state, read from the hub in-process, and
//! sending to a chat room.
//!
//! During SSR they run directly; their results travel to the browser inside the page, so
//! hydration does not call them again. After client-side navigation the browser calls them over
//! HTTP. Each snapshot carries the id to subscribe from (see [`crate::live`]).
//!
//! What they need from the server they find in their context: the [`tidings_hub::Hub`], and for
//! the chat a [`ChatService`], the server's own code for posting (the same as its JSON route's).

use crate::model::*;
use leptos::{
    prelude::*,
    server,
    server_fn::{
        codec::JsonEncoding,
        error::{FromServerFnError, ServerFnErrorErr},
    },
};
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
mod hub {
    use leptos::prelude::*;
    use tidings_hub::{Hub, Selector, Snapshot};

    pub fn get() -> Result<Hub, ServerFnError> {
        use_context::<Hub>().ok_or_else(|| ServerFnError::new("the hub is not available"))
    }

    pub async fn snapshot(
        selector: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<Snapshot, ServerFnError> {
        let selector = Selector::parse(selector).map_err(|e| ServerFnError::new(e.to_string()))?;
        get()?
            .snapshot(vec![selector], limit, max_scan)
            .await
            .map_err(|error| {
                // Its text holds SQLite's messages and paths: logged here, not shown in the page.
                tracing::error!("{error}");
                ServerFnError::new("the history is unavailable")
            })
    }

    /// Parses each update's JSON data, giving it the update's id; skips what does not parse.
    pub fn parse<T: crate::feed::FeedItem>(snapshot: &Snapshot) -> Vec<T> {
        snapshot
            .updates
            .iter()
            .filter_map(|u| T::from_update(u.id(), u.data()))
            .collect()
    }
}

/// Why a chat message was not sent: the HTTP status and the one-line reason, the same as
/// `POST /api/chat/{room}` answers with. Shown as `"<status>: <reason>"`, with JavaScript or
/// without.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendError {
    /// `0` when the server could not be reached.
    pub status: u16,
    pub reason: String,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            0 => f.write_str(&self.reason),
            status => write!(f, "{status}: {}", self.reason),
        }
    }
}

impl std::error::Error for SendError {}

impl FromServerFnError for SendError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(error: ServerFnErrorErr) -> Self {
        let (status, reason) = match error {
            ServerFnErrorErr::Request(error) => {
                (0, format!("the server could not be reached ({error})"))
            }
            ServerFnErrorErr::Args(error) => (400, format!("the form is incomplete ({error})")),
            other => (500, other.to_string()),
        };
        Self { status, reason }
    }
}

/// Posting to chat rooms, as the server does it: provided by the server as context (an
/// `Arc<dyn ChatService>`), since it knows the request (the client's address, its cookies) and
/// shapes the answer (status, `Retry-After`, the remembered name).
#[cfg(feature = "ssr")]
pub trait ChatService: Send + Sync + 'static {
    /// Checks, rate-limits and publishes `post` in `room` for the current request's client,
    /// exactly as `POST /api/chat/{room}` does, and remembers the name it was sent with.
    fn send(
        &self,
        room: String,
        post: ChatPost,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>>;

    /// The name the current request's visitor last sent with, if any.
    fn remembered_name(&self) -> Option<String>;
}

#[cfg(feature = "ssr")]
fn chat_service() -> Option<std::sync::Arc<dyn ChatService>> {
    use_context::<std::sync::Arc<dyn ChatService>>()
}

/// Sends a message to `room`: what the chat form posts, as `room`, `name` and `text`. A form
/// posted without JavaScript is answered with a redirect back to the room (the reason of a
/// refusal in its address, where the page finds it).
#[server(endpoint = "send_chat")]
pub async fn send_chat(room: String, name: String, text: String) -> Result<(), SendError> {
    let chat = chat_service().ok_or_else(|| SendError {
        status: 503,
        reason: "chat is not available".into(),
    })?;
    chat.send(room, ChatPost { name, text }).await
}

/// The subscriber tokens the server gives its own pages: provided by the server as context (an
/// `Arc<dyn PageTokens>`), since it holds the key.
#[cfg(feature = "ssr")]
pub trait PageTokens: Send + Sync + 'static {
    /// A token that may subscribe to `subscribe`, for the server's configured lifetime; `None`
    /// when the server cannot sign one.
    fn issue(&self, subscribe: &[&str]) -> Option<SubscriberToken>;

    /// Whether [`PageTokens::issue`] can sign: presence counts are private then.
    fn signs(&self) -> bool;
}

#[cfg(feature = "ssr")]
fn page_tokens() -> Option<std::sync::Arc<dyn PageTokens>> {
    use_context::<std::sync::Arc<dyn PageTokens>>()
}

/// A fresh subscriber token for this app's pages: it may receive the private updates the pages
/// show (the chat rooms' presence counts). The live module asks for one before a stream that
/// needs it opens, and again before it ends (see `live`). An error when the server cannot sign
/// tokens (an asymmetric `--jwt-alg`): presence is then public and no page asks.
#[server(endpoint = "page_token")]
pub async fn page_token() -> Result<SubscriberToken, ServerFnError> {
    page_tokens()
        .and_then(|tokens| tokens.issue(&[PRESENCE_TEMPLATE]))
        .ok_or_else(|| ServerFnError::new("page tokens are not available"))
}

/// How many subscribers a chat room has now (its presence count), on every node; `0` when
/// the other nodes cannot be asked (the live presence event corrects it).
#[cfg(feature = "ssr")]
pub async fn room_presence(hub: &tidings_hub::Hub, room: &str) -> usize {
    let topic = chat_topic(room);
    hub.subscriber_counts(&topic.clone(), move |t| t == topic)
        .await
        .ok()
        .and_then(|counts| counts.first().map(|(_, n)| *n))
        .unwrap_or(0)
}

#[server]
pub async fn load_chat(room: String) -> Result<ChatSnapshot, ServerFnError> {
    if !valid_room(&room) {
        return Err(ServerFnError::new(
            "a room name is 1 to 32 of a-z, 0-9 and -",
        ));
    }
    let snapshot = hub::snapshot(&chat_topic(&room), 50, 20_000).await?;
    Ok(ChatSnapshot {
        messages: hub::parse(&snapshot),
        present: room_presence(&hub::get()?, &room).await,
        remembered_name: chat_service()
            .and_then(|chat| chat.remembered_name())
            .unwrap_or_default(),
        private_presence: page_tokens().is_some_and(|tokens| tokens.signs()),
        last_event_id: snapshot.last_event_id,
    })
}

#[server]
pub async fn load_ticker() -> Result<TickerSnapshot, ServerFnError> {
    let snapshot = hub::snapshot(TICKER_TEMPLATE, 8 * 40, 5_000).await?;
    Ok(TickerSnapshot {
        quotes: hub::parse(&snapshot),
        last_event_id: snapshot.last_event_id,
    })
}

#[server]
pub async fn load_news() -> Result<NewsSnapshot, ServerFnError> {
    let snapshot = hub::snapshot(NEWS_TOPIC, 20, 50_000).await?;
    let mut headlines = hub::parse(&snapshot);
    headlines.reverse();
    Ok(NewsSnapshot {
        headlines,
        last_event_id: snapshot.last_event_id,
    })
}

#[server]
pub async fn load_monitor() -> Result<MonitorSnapshot, ServerFnError> {
    let snapshot = hub::snapshot(MONITOR_TOPIC, 180, 5_000).await?;
    Ok(MonitorSnapshot {
        samples: hub::parse(&snapshot),
        last_event_id: snapshot.last_event_id,
    })
}
