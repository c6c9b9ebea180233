//! An update: what a publisher sends and subscribers receive.

use crate::sse::Event;
use bytes::Bytes;

/// A published update, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The event id. Unique unless the publisher chose a duplicate; lookups take the earliest.
    pub id: String,
    /// The first topic is canonical; the others are alternates. A subscriber of any gets it.
    pub topics: Vec<String>,
    pub data: String,
    /// Delivered only to subscribers whose `mercure.subscribe` claim matches one of the topics.
    pub private: bool,
    /// The SSE `event:` field.
    pub event_type: Option<String>,
    /// The SSE `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

impl Update {
    /// The SSE bytes of this update: encoded once, then shared by every subscriber.
    pub fn encode(&self) -> Bytes {
        Event {
            id: Some(&self.id),
            event: self.event_type.as_deref(),
            retry: self.retry,
            data: &self.data,
        }
        .encode()
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> + Clone {
        self.topics.iter().map(String::as_str)
    }
}

/// An update with its position in the history: positions only grow, and the fan-out delivers
/// updates in position order.
#[derive(Debug, Clone)]
pub struct Stored {
    pub position: u64,
    pub update: std::sync::Arc<Update>,
}
