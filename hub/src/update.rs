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
    /// A public update on one topic with a fresh id.
    pub fn public(topic: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            id: new_id(),
            topics: vec![topic.into()],
            data: data.into(),
            private: false,
            event_type: None,
            retry: None,
        }
    }

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

/// The most topics one update may have.
pub const MAX_TOPICS: usize = 1000;

/// The hub's own namespace: nobody else may publish there.
pub const RESERVED_PATH: &str = "/.well-known/mercure";

/// Why an update is refused. Each message is the one-line reason the publisher is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("missing topic")]
    NoTopic,
    #[error("too many topics (at most {MAX_TOPICS})")]
    TooManyTopics,
    #[error("a topic must not be empty or contain control characters")]
    BadTopic,
    #[error("topic {0:?} is inside {RESERVED_PATH}, which is reserved for the hub")]
    ReservedTopic(String),
    #[error("id must not start with '#' or contain CR, LF or NUL")]
    BadId,
    #[error("type must not contain CR, LF or NUL")]
    BadType,
}

impl Update {
    /// Checks an update that a publisher sent: everything [`Update::check_internal`] checks, and
    /// that no topic lies in the hub's reserved namespace.
    pub fn check(&self) -> Result<(), UpdateError> {
        self.check_internal()?;
        if let Some(topic) = self.topics.iter().find(|t| is_reserved_topic(t)) {
            return Err(UpdateError::ReservedTopic(topic.clone()));
        }
        Ok(())
    }

    /// Checks what the SSE encoding and the history depend on.
    pub fn check_internal(&self) -> Result<(), UpdateError> {
        if self.topics.is_empty() {
            return Err(UpdateError::NoTopic);
        }
        if self.topics.len() > MAX_TOPICS {
            return Err(UpdateError::TooManyTopics);
        }
        if self
            .topics
            .iter()
            .any(|t| t.is_empty() || t.chars().any(char::is_control))
        {
            return Err(UpdateError::BadTopic);
        }
        if self.id.is_empty() || self.id.starts_with('#') || self.id.contains(['\r', '\n', '\0']) {
            return Err(UpdateError::BadId);
        }
        if self
            .event_type
            .as_deref()
            .is_some_and(|t| t.contains(['\r', '\n', '\0']))
        {
            return Err(UpdateError::BadType);
        }
        Ok(())
    }
}

/// A fresh update id: `urn:uuid:` and a UUIDv7, so ids also sort by creation time.
pub fn new_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::now_v7())
}

/// Whether `topic`, resolved as a URI reference against the hub's URL, has a path inside
/// `/.well-known/mercure`, whatever its scheme and authority. Relative references count too:
/// `mercure/x` resolves against `/.well-known/mercure` to `/.well-known/mercure/x`.
pub fn is_reserved_topic(topic: &str) -> bool {
    let end = topic.find(['?', '#']).unwrap_or(topic.len());
    let reference = &topic[..end];
    let scheme_len = reference
        .find(':')
        .filter(|&i| {
            i > 0
                && reference[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && reference[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .map_or(0, |i| i + 1);
    let rest = &reference[scheme_len..];
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path
            .find('/')
            .map_or("", |i| &authority_and_path[i..]),
        None => rest,
    };
    let absolute = if path.starts_with('/') {
        path.to_owned()
    } else if scheme_len > 0 {
        // `urn:x` and the like: an opaque path, never the hub's.
        return false;
    } else {
        format!("/.well-known/{path}")
    };
    let normalized = remove_dot_segments(&absolute);
    normalized == RESERVED_PATH || normalized.starts_with("/.well-known/mercure/")
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_topics_are_recognised_however_written() {
        for t in [
            "/.well-known/mercure",
            "/.well-known/mercure/subscriptions/x/y",
            "https://example.com/.well-known/mercure/subscriptions",
            "//other.example/.well-known/mercure",
            "mercure/subscriptions",
            "/a/../.well-known/mercure?x=1",
        ] {
            assert!(is_reserved_topic(t), "{t} is reserved");
        }
        for t in [
            "https://example.com/books/1",
            "/.well-known/mercurex",
            "/.well-known/other",
            "urn:uuid:123",
            "chat",
            "https://example.com/x?/.well-known/mercure",
        ] {
            assert!(!is_reserved_topic(t), "{t} is not reserved");
        }
    }

    #[test]
    fn checks_give_the_reason() {
        let ok = Update {
            id: new_id(),
            topics: vec!["/a".into()],
            data: String::new(),
            private: false,
            event_type: None,
            retry: None,
        };
        assert_eq!(ok.check(), Ok(()));
        assert!(ok.id.starts_with("urn:uuid:"));
        let with = |f: &dyn Fn(&mut Update)| {
            let mut u = ok.clone();
            f(&mut u);
            u.check()
        };
        assert_eq!(with(&|u| u.topics.clear()), Err(UpdateError::NoTopic));
        assert_eq!(
            with(&|u| u.topics = vec!["t".into(); 1001]),
            Err(UpdateError::TooManyTopics)
        );
        assert_eq!(
            with(&|u| u.topics.push("a\u{0}b".into())),
            Err(UpdateError::BadTopic)
        );
        assert_eq!(with(&|u| u.id = "#x".into()), Err(UpdateError::BadId));
        assert_eq!(with(&|u| u.id = "a\rb".into()), Err(UpdateError::BadId));
        assert_eq!(
            with(&|u| u.event_type = Some("a\nb".into())),
            Err(UpdateError::BadType)
        );
        assert!(matches!(
            with(&|u| u.topics.push("/.well-known/mercure/x".into())),
            Err(UpdateError::ReservedTopic(_))
        ));
    }
}
