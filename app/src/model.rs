//! What the live pages show, as it travels: server-rendered snapshots (through server functions)
//! and hub updates (JSON in the update's data). Shared by the server, which publishes, and the
//! browser, which renders.

use serde::{Deserialize, Serialize};

/// The hub topic of a chat room's messages.
pub fn chat_topic(room: &str) -> String {
    format!("/chat/{room}")
}

/// The hub topic of a chat room's presence count (event type [`PRESENCE_EVENT`]).
pub fn presence_topic(room: &str) -> String {
    format!("/chat/{room}/presence")
}

pub const PRESENCE_EVENT: &str = "presence";
/// Every room's presence topic: what a page token may subscribe to (presence counts are private
/// updates when the server can sign page tokens).
pub const PRESENCE_TEMPLATE: &str = "/chat/{room}/presence";
/// One topic per symbol; pages subscribe with the template.
pub const TICKER_TEMPLATE: &str = "/ticker/{symbol}";
pub const NEWS_TOPIC: &str = "/news";
pub const MONITOR_TOPIC: &str = "/monitor";
/// The rooms offered on `/chat` (any valid name works).
pub const ROOMS: [&str; 3] = ["general", "rust", "random"];

/// A room name: 1–32 of `a-z`, `0-9`, `-`.
pub fn valid_room(room: &str) -> bool {
    (1..=32).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Limits of a chat message, in characters, after trimming.
pub const NAME_MAX: usize = 32;
pub const TEXT_MAX: usize = 2000;

/// A chat message as published (the update's id is its identity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub text: String,
    pub at_ms: u64,
}

/// What a visitor sends to post.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatPost {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Presence {
    pub present: usize,
}

/// A subscriber token the server gives its own pages (see `api::page_token`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriberToken {
    pub token: String,
    /// How long it stays valid from when the server answered, in milliseconds (relative, so
    /// the browser's clock need not agree with the server's).
    pub expires_in_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatSnapshot {
    pub messages: Vec<ChatMessage>,
    pub present: usize,
    pub last_event_id: String,
    /// The name this visitor last sent with (remembered by the server in a cookie), for the form.
    #[serde(default)]
    pub remembered_name: String,
    /// Whether presence counts are private updates (the page subscribes with a page token).
    #[serde(default)]
    pub private_presence: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub symbol: String,
    pub price: f64,
    pub change: f64,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TickerSnapshot {
    /// Recent quotes of every symbol, oldest first.
    pub quotes: Vec<Quote>,
    pub last_event_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    #[serde(default)]
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewsSnapshot {
    /// Newest first.
    pub headlines: Vec<Headline>,
    pub last_event_id: String,
}

/// One second of the hub's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorSample {
    pub at_ms: u64,
    pub subscribers: u64,
    pub publishes_per_s: f64,
    pub deliveries_per_s: f64,
    pub evictions: u64,
    pub history: u64,
    pub memory_bytes: u64,
    pub cpu_percent: f64,
    pub uptime_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorSnapshot {
    /// Oldest first.
    pub samples: Vec<MonitorSample>,
    pub last_event_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room("general"));
        assert!(valid_room("rust-2024"));
        for bad in ["", "General", "a b", "a/b", "<x>", &"a".repeat(33)] {
            assert!(!valid_room(bad), "{bad:?}");
        }
    }
}
