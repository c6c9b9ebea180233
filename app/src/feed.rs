//! What a live page shows: its server-rendered items followed by what arrives live, as one list.
//!
//! Every live page renders a snapshot on the server and then receives updates through
//! [`crate::live`]. Merging the two is the same everywhere: parse each event's JSON data, give it
//! the update's id if the item has one, put it before or after the snapshot, and keep a bounded
//! number. A page says which ([`Feed`]) and gets a memo of the list; the merge itself is the pure
//! function [`merge`].

use crate::{
    live::{Live, LiveEvent},
    model::{ChatMessage, Headline, MonitorSample, Quote},
};
use leptos::prelude::*;
use serde::de::DeserializeOwned;

/// An item a feed holds: JSON in an update's data.
pub trait FeedItem: DeserializeOwned {
    /// Takes the update's id, for items whose identity it is. Most have none.
    fn set_id(&mut self, _id: &str) {}

    /// The item in `data` (an update's), with the update's `id`; `None` if it does not parse.
    fn from_update(id: &str, data: &str) -> Option<Self> {
        let mut item: Self = serde_json::from_str(data).ok()?;
        item.set_id(id);
        Some(item)
    }
}

impl FeedItem for ChatMessage {
    fn set_id(&mut self, id: &str) {
        id.clone_into(&mut self.id);
    }
}

impl FeedItem for Headline {
    fn set_id(&mut self, id: &str) {
        id.clone_into(&mut self.id);
    }
}

impl FeedItem for Quote {}

impl FeedItem for MonitorSample {}

/// Where new items go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// After the snapshot (chat, the monitor's samples): the snapshot is oldest first.
    OldestFirst,
    /// Before the snapshot, the newest on top (news): the snapshot is newest first.
    NewestFirst,
}

/// How a page's list is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    pub order: Order,
    /// How many items are kept, the newest.
    pub keep: usize,
    /// Only events of this type, when a subscription receives several (chat's `presence`).
    pub event_type: Option<&'static str>,
}

impl Feed {
    pub fn oldest_first(keep: usize) -> Self {
        Self {
            order: Order::OldestFirst,
            keep,
            event_type: None,
        }
    }

    pub fn newest_first(keep: usize) -> Self {
        Self {
            order: Order::NewestFirst,
            ..Self::oldest_first(keep)
        }
    }

    /// Only events of `event_type`.
    pub fn only(self, event_type: &'static str) -> Self {
        Self {
            event_type: Some(event_type),
            ..self
        }
    }
}

/// The page's list: `initial` (the snapshot, in `feed`'s order) and the live events of `live`.
pub fn use_feed<T>(live: Live, initial: Vec<T>, feed: Feed) -> Memo<Vec<T>>
where
    T: FeedItem + Clone + PartialEq + Send + Sync + 'static,
{
    Memo::new(move |_| merge(&initial, &live.events.read(), feed))
}

/// The snapshot and the live events (oldest first, as received) as one list in `feed`'s order,
/// at most `feed.keep` long. Events that do not parse, or of other types, are left out.
pub fn merge<T: FeedItem + Clone>(initial: &[T], events: &[LiveEvent], feed: Feed) -> Vec<T> {
    let arrived = events
        .iter()
        .filter(|e| feed.event_type.is_none_or(|t| e.event_type == t))
        .filter_map(|e| T::from_update(&e.id, &e.data));
    match feed.order {
        Order::OldestFirst => {
            let mut all: Vec<T> = initial.iter().cloned().chain(arrived).collect();
            let excess = all.len().saturating_sub(feed.keep);
            all.drain(..excess);
            all
        }
        Order::NewestFirst => {
            let mut all: Vec<T> = arrived.collect();
            all.reverse();
            all.extend(initial.iter().cloned());
            all.truncate(feed.keep);
            all
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, event_type: &str, data: &str) -> LiveEvent {
        LiveEvent {
            id: id.into(),
            event_type: event_type.into(),
            data: data.into(),
            received_ms: 0.0,
        }
    }

    fn message(id: &str, text: &str) -> ChatMessage {
        ChatMessage {
            id: id.into(),
            name: "ann".into(),
            text: text.into(),
            at_ms: 1,
        }
    }

    fn chat_event(id: &str, text: &str) -> LiveEvent {
        let data = format!(r#"{{"name":"ann","text":"{text}","at_ms":1}}"#);
        event(id, "message", &data)
    }

    fn texts(list: &[ChatMessage]) -> Vec<(&str, &str)> {
        list.iter()
            .map(|m| (m.id.as_str(), m.text.as_str()))
            .collect()
    }

    #[test]
    fn oldest_first_appends_live_items_with_their_ids_and_keeps_the_newest() {
        let initial = [message("1", "a"), message("2", "b")];
        let events = [
            chat_event("3", "c"),
            event("", "presence", r#"{"present":2}"#),
            event("4", "message", "not json"),
            chat_event("5", "e"),
        ];
        let feed = Feed::oldest_first(3).only("message");
        assert_eq!(
            texts(&merge(&initial, &events, feed)),
            [("2", "b"), ("3", "c"), ("5", "e")]
        );
        assert_eq!(
            texts(&merge(&initial, &[], Feed::oldest_first(200))),
            [("1", "a"), ("2", "b")]
        );
    }

    #[test]
    fn newest_first_puts_live_items_on_top_and_keeps_the_newest() {
        let headline = |id: &str, title: &str| Headline {
            id: id.into(),
            title: title.into(),
            url: None,
            at_ms: 0,
        };
        let initial = [headline("2", "two"), headline("1", "one")];
        let events = [
            event("3", "message", r#"{"title":"three"}"#),
            event("4", "message", r#"{"title":"four"}"#),
        ];
        let merged = merge(&initial, &events, Feed::newest_first(3));
        let titles: Vec<_> = merged
            .iter()
            .map(|h| (h.id.as_str(), h.title.as_str()))
            .collect();
        assert_eq!(titles, [("4", "four"), ("3", "three"), ("2", "two")]);
    }

    #[test]
    fn items_without_an_id_ignore_it_and_every_type_counts_without_a_filter() {
        let quote = r#"{"symbol":"ACME","price":1.5,"change":0.5,"at_ms":7}"#;
        let events = [event("9", "message", quote), event("10", "other", quote)];
        let merged: Vec<Quote> = merge(&[], &events, Feed::oldest_first(usize::MAX));
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].symbol, "ACME");
    }
}
