//! An update: what a publisher sends and subscribers receive.
//!
//! Parse, don't validate: an [`Update`] is built once, at the edge, from a [`NewUpdate`] (the
//! publisher's fields as sent) and cannot be invalid afterwards. Its fields are private, so no
//! later code can break what the SSE encoding and the history rely on (no line break in an id
//! or type, at least one topic, none in the hub's reserved namespace unless the hub made it).

use crate::sse::Event;
use bytes::Bytes;
use std::sync::Arc;

/// A published update, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    id: String,
    topics: Vec<String>,
    data: String,
    private: bool,
    event_type: Option<String>,
    retry: Option<u64>,
}

/// The fields of an update as a publisher sends them, not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewUpdate {
    /// The event id; `None` or empty: a fresh `urn:uuid:` id.
    pub id: Option<String>,
    /// The first topic is canonical; the others are alternates. A subscriber of any gets it.
    pub topics: Vec<String>,
    pub data: String,
    /// Delivered only to subscribers whose `mercure.subscribe` claim matches one of the topics.
    pub private: bool,
    /// The SSE `event:` field; empty means none.
    pub event_type: Option<String>,
    /// The SSE `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

impl NewUpdate {
    /// A public update on one topic.
    pub fn new(topic: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            topics: vec![topic.into()],
            data: data.into(),
            ..Self::default()
        }
    }

    /// Checks a publisher's update: everything the encoding and the history depend on, and that
    /// no topic lies in the hub's reserved namespace.
    pub fn parse(self) -> Result<Update, UpdateError> {
        if let Some(topic) = self.topics.iter().find(|t| is_reserved_topic(t)) {
            return Err(UpdateError::ReservedTopic(topic.clone()));
        }
        self.parse_internal()
    }

    /// Checks an update of the hub's own, which may use the reserved namespace.
    pub(crate) fn parse_internal(self) -> Result<Update, UpdateError> {
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
        let id = match self.id {
            Some(id) if !id.is_empty() => id,
            _ => new_id(),
        };
        if !resumable(&id) {
            return Err(UpdateError::BadId);
        }
        let event_type = self.event_type.filter(|t| !t.is_empty());
        if event_type
            .as_deref()
            .is_some_and(|t| t.contains(['\r', '\n', '\0']))
        {
            return Err(UpdateError::BadType);
        }
        Ok(Update {
            id,
            topics: self.topics,
            data: self.data,
            private: self.private,
            event_type,
            retry: self.retry,
        })
    }
}

impl Update {
    /// A public update on one topic with a fresh id (for the server's own publishers).
    pub fn public(topic: impl Into<String>, data: impl Into<String>) -> Result<Self, UpdateError> {
        NewUpdate::new(topic, data).parse()
    }

    /// An update read back from the history, which only ever stored parsed updates.
    pub(crate) fn restore(
        id: String,
        topics: Vec<String>,
        data: String,
        private: bool,
        event_type: Option<String>,
        retry: Option<u64>,
    ) -> Self {
        Self {
            id,
            topics,
            data,
            private,
            event_type,
            retry,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> + Clone {
        self.topics.iter().map(String::as_str)
    }

    /// The canonical topic (the first).
    pub fn topic(&self) -> &str {
        &self.topics[0]
    }

    pub fn data(&self) -> &str {
        &self.data
    }

    pub fn is_private(&self) -> bool {
        self.private
    }

    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The SSE bytes of this update: encoded once, then shared by every subscriber.
    pub fn encode(&self) -> Bytes {
        self.encode_with_id(&self.id)
    }

    /// Appends the SSE bytes of this update to `buf`.
    pub(crate) fn encode_into(&self, buf: &mut bytes::BytesMut) {
        Event {
            id: Some(&self.id),
            event: self.event_type.as_deref(),
            retry: self.retry,
            data: &self.data,
        }
        .encode_into(buf);
    }

    /// The SSE bytes of this update under another id (one the hub made, valid like any).
    pub(crate) fn encode_with_id(&self, id: &str) -> Bytes {
        Event {
            id: Some(id),
            event: self.event_type.as_deref(),
            retry: self.retry,
            data: &self.data,
        }
        .encode()
    }
}

/// An update with its position in the history: positions only grow, and the fan-out delivers
/// updates in position order.
#[derive(Debug, Clone)]
pub struct Stored {
    pub position: u64,
    pub update: Arc<Update>,
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
    #[error(
        "id must not start with '#', start or end with a space or tab, or contain control \
         characters (a tab inside is fine)"
    )]
    BadId,
    #[error("type must not contain CR, LF or NUL")]
    BadType,
}

/// Whether an id can come back as a browser sends it, in `Last-Event-ID` (RFC 9110 §5.5: a
/// field value has no leading or trailing whitespace, and no control character but HTAB), and
/// is not a fragment (Mercure reserves `#` ids).
fn resumable(id: &str) -> bool {
    let blank = |c: char| c == ' ' || c == '\t';
    !id.starts_with('#')
        && !id.starts_with(blank)
        && !id.ends_with(blank)
        && !id.chars().any(|c| c.is_control() && c != '\t')
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
    fn parsing_gives_the_reason() {
        let ok = NewUpdate::new("/a", "");
        let update = ok.clone().parse().unwrap();
        assert!(update.id().starts_with("urn:uuid:"));
        assert_eq!(update.event_type(), None);
        let with = |f: &dyn Fn(&mut NewUpdate)| {
            let mut u = ok.clone();
            f(&mut u);
            u.parse()
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
        assert_eq!(
            with(&|u| u.topics.push(String::new())),
            Err(UpdateError::BadTopic)
        );
        assert_eq!(with(&|u| u.id = Some("#x".into())), Err(UpdateError::BadId));
        for bad in [
            "a\rb", "x ", " x", "\tx", "x\t", "a\u{1}b", "a\u{7f}", "a\u{85}",
        ] {
            assert_eq!(
                with(&|u| u.id = Some(bad.into())),
                Err(UpdateError::BadId),
                "{bad:?}"
            );
        }
        for good in ["é-1", "a\tb", "a b", "urn:x"] {
            assert!(with(&|u| u.id = Some(good.into())).is_ok(), "{good:?}");
        }
        assert_eq!(
            with(&|u| u.event_type = Some("a\nb".into())),
            Err(UpdateError::BadType)
        );
        assert!(matches!(
            with(&|u| u.topics.push("/.well-known/mercure/x".into())),
            Err(UpdateError::ReservedTopic(_))
        ));
        let internal = NewUpdate::new("/.well-known/mercure/x", "").parse_internal();
        assert!(internal.is_ok(), "the hub may use its own namespace");
        assert_eq!(
            with(&|u| u.id = Some(String::new())).unwrap().id().len(),
            45
        );
    }
}
