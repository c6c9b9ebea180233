//! An update: what a publisher sends and subscribers receive.
//!
//! Parse, don't validate: an [`Update`] is built once, at the edge, from a [`NewUpdate`] (the
//! publisher's fields as sent) and cannot be invalid afterwards. Its fields are private, so no
//! later code can break what the SSE encoding and the history rely on (no line break in an id
//! or type, at least one topic, none in the hub's reserved namespace unless the hub made it).
//!
//! What a publisher may not send is Mercure 1.0's rule (draft-07 said less), applied to every
//! publish, since a publish does not say which version its publisher speaks: no topic in the
//! hub's namespace however it is written (resolved, dot segments removed, escapes of unreserved
//! characters decoded), no topic `*`, no id `earliest`, no type `mercure`, and no control or
//! format character in a topic, an id or a type.

use crate::{mark::EARLIEST, selector::is_format, sse::Event};
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

    /// Checks a publisher's update: everything the encoding and the history depend on, and the
    /// names Mercure keeps for the hub: no topic in its reserved namespace, no topic `*` (the
    /// selector of every topic), no id `earliest` (what a subscriber sends for the whole
    /// history), no type `mercure` (the hub's subscription events).
    pub fn parse(self) -> Result<Update, UpdateError> {
        // An empty topic would resolve to the hub's own URL; it is refused below, as empty.
        if let Some(topic) = self
            .topics
            .iter()
            .find(|t| !t.is_empty() && is_reserved_topic(t))
        {
            return Err(UpdateError::ReservedTopic(topic.clone()));
        }
        if self.topics.iter().any(|t| t == WILDCARD) {
            return Err(UpdateError::WildcardTopic);
        }
        if self.id.as_deref() == Some(EARLIEST) {
            return Err(UpdateError::ReservedId);
        }
        if self.event_type.as_deref() == Some(RESERVED_TYPE) {
            return Err(UpdateError::ReservedType);
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
            .any(|t| t.is_empty() || t.chars().any(is_forbidden_char))
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
            .is_some_and(|t| t.chars().any(is_forbidden_char))
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

/// The topic selector of every topic, so no topic of its own.
const WILDCARD: &str = "*";

/// The event type Mercure 1.0 keeps for the hub's subscription events.
const RESERVED_TYPE: &str = "mercure";

/// Why an update is refused. Each message is the one-line reason the publisher is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("missing topic")]
    NoTopic,
    #[error("too many topics (at most {MAX_TOPICS})")]
    TooManyTopics,
    #[error("a topic must not be empty or contain control or format characters")]
    BadTopic,
    #[error("topic {0:?} is inside {RESERVED_PATH}, which is reserved for the hub")]
    ReservedTopic(String),
    #[error("topic \"*\" is reserved: it is the selector of every topic")]
    WildcardTopic,
    #[error(
        "id must not start with '#', start or end with a space or tab, or contain control or \
         format characters (a tab inside is fine)"
    )]
    BadId,
    #[error("id \"earliest\" is reserved: subscribers send it to ask for the whole history")]
    ReservedId,
    #[error("type must not contain control or format characters")]
    BadType,
    #[error("type \"mercure\" is reserved for the hub's subscription events")]
    ReservedType,
}

/// Whether an id can come back as a browser sends it, in `Last-Event-ID` (RFC 9110 §5.5: a
/// field value has no leading or trailing whitespace, and no control character but HTAB), has
/// no format character, and is not a fragment (Mercure reserves `#` ids).
///
/// Mercure 1.0 forbids every C0 character in an id, HTAB too; a tab inside stays accepted, as
/// it was before 1.0 (it comes back intact), so ids already published keep working.
fn resumable(id: &str) -> bool {
    let blank = |c: char| c == ' ' || c == '\t';
    !id.starts_with('#')
        && !id.starts_with(blank)
        && !id.ends_with(blank)
        && !id.chars().any(|c| c != '\t' && is_forbidden_char(c))
}

/// Whether `c` may not appear in a topic, an id or a type (Mercure 1.0): a control character
/// (C0, DEL, C1: general category Cc) or a format character (Cf: the bidirectional and
/// zero-width controls, invisible, which let one name pass for another).
fn is_forbidden_char(c: char) -> bool {
    c.is_control() || is_format(c)
}

/// A fresh update id: `urn:uuid:` and a UUIDv7, so ids also sort by creation time.
pub fn new_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::now_v7())
}

/// Whether `topic` addresses the hub's reserved namespace (Mercure 1.0, publication): resolved
/// against the hub's URL by the WHATWG URL parser (as browsers and URL Patterns resolve it), its
/// path, with escapes of unreserved characters decoded and dot segments removed, is
/// `/.well-known/mercure` or below it, whatever the scheme and authority. So `mercure/x`
/// (relative to the hub), `/x/../.well-known/mercure`, `/.well-known/%6Dercure`,
/// `\.well-known\mercure` and `https://any.host/.well-known/mercure/…` are all reserved. A
/// topic the parser refuses names no path of the hub's, and is not.
///
/// The hub does not know the scheme its clients reach it by (behind a proxy), and `https:x` is
/// relative to an `https:` hub but not to an `http:` one: a topic is reserved if it addresses
/// the namespace against either.
pub fn is_reserved_topic(topic: &str) -> bool {
    let reserved = |path: &str| {
        // An opaque path (`urn:x`) is no path of the hub's.
        path.starts_with('/') && {
            let path = remove_dot_segments(&decode_unreserved(path));
            path == RESERVED_PATH
                || path
                    .strip_prefix(RESERVED_PATH)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    };
    [
        "https://hub.invalid/.well-known/mercure",
        "http://hub.invalid/.well-known/mercure",
    ]
    .into_iter()
    .any(|hub| {
        url::Url::parse(hub)
            .and_then(|hub| hub.join(topic))
            .is_ok_and(|resolved| reserved(resolved.path()))
    })
}

/// `path` with every escape of an unreserved character (RFC 3986 §2.3: letters, digits, `-`,
/// `.`, `_`, `~`) decoded; other escapes stay as they are.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
        match decoded {
            Some(byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            None => {
                // `path` is a str: copy the whole character starting here.
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&path[i..i + len]);
                i += len;
            }
        }
    }
    out
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                // A dot segment at the end leaves the path ending in `/`.
                if i + 1 == segments.len() {
                    out.push("");
                }
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

    /// `/a` with `change` made, parsed as a publisher's.
    fn with(change: &dyn Fn(&mut NewUpdate)) -> Result<Update, UpdateError> {
        let mut update = NewUpdate::new("/a", "");
        change(&mut update);
        update.parse()
    }

    /// Mercure 1.0's reserved-namespace rule: the path as the URL parser resolves it against the
    /// hub, escapes of unreserved characters decoded, dot segments removed.
    #[test]
    fn reserved_topics_are_recognised_resolved_and_normalized() {
        for t in [
            "/.well-known/%6Dercure/subscriptions/x/y",
            "/.well-known/%6dercure",
            "/%2Ewell-known/mercure",
            "/%2e%77ell-known/merc%75re/x",
            "/x/../.well-known/mercure/y",
            "/x/%2e%2E/.well-known/mercure",
            "/.well-known/mercure/./x",
            "/.well-known/mercure/.",
            "/.well-known/./mercure",
            "/.well-known/mercure/../mercure/x",
            "/.well-known/mercure/",
            "./mercure",
            "../.well-known/mercure",
            "\\.well-known\\mercure\\x",
            "https://example.com\\.well-known\\mercure",
            " /.well-known/mercure",
            "https:/.well-known/mercure",
            "http:/.well-known/mercure",
            "https://example.com/a/b/../../.well-known/mercure#x",
            "foo://x/.well-known/mercure",
            // The hub's own URL, with a query or a fragment of their own.
            "?x=1",
            "#top",
        ] {
            assert!(is_reserved_topic(t), "{t} is reserved");
        }
        for t in [
            // Paths are case-sensitive, and an escaped `/` is not a `/`.
            "/.well-known/%4Dercure",
            "/.WELL-KNOWN/mercure",
            "/.well-known/mercure%2Fx",
            "/.well-known%2Fmercure",
            "/.well-known/mercure/..",
            "/.well-known/mercure-x",
            "urn:x:/.well-known/mercure",
            "https://example.com/x#/.well-known/mercure",
            // Not a URL: it names no path of the hub's (the spec's rule).
            "https://exa mple.com/.well-known/mercure",
        ] {
            assert!(!is_reserved_topic(t), "{t} is not reserved");
        }
    }

    #[test]
    fn the_names_mercure_keeps_for_the_hub_are_refused() {
        assert_eq!(
            with(&|u| u.topics.push("*".into())),
            Err(UpdateError::WildcardTopic)
        );
        assert!(with(&|u| u.topics.push("/*".into())).is_ok());
        assert_eq!(
            with(&|u| u.id = Some("earliest".into())),
            Err(UpdateError::ReservedId)
        );
        assert!(with(&|u| u.id = Some("Earliest".into())).is_ok());
        assert_eq!(
            with(&|u| u.event_type = Some("mercure".into())),
            Err(UpdateError::ReservedType)
        );
        assert!(with(&|u| u.event_type = Some("mercure-x".into())).is_ok());
        assert!(
            NewUpdate {
                event_type: Some("mercure".into()),
                ..NewUpdate::new("/.well-known/mercure/x", "")
            }
            .parse_internal()
            .is_ok(),
            "the hub may send its own events"
        );
    }

    #[test]
    fn control_and_format_characters_are_refused_in_topics_ids_and_types() {
        for bad in [
            "\u{200b}",
            "\u{202e}",
            "\u{feff}",
            "\u{ad}",
            "\u{e0041}",
            "\u{9f}",
        ] {
            let text = format!("a{bad}b");
            assert_eq!(
                with(&|u| u.topics.push(text.clone())),
                Err(UpdateError::BadTopic),
                "{bad:?}"
            );
            assert_eq!(
                with(&|u| u.id = Some(text.clone())),
                Err(UpdateError::BadId),
                "{bad:?}"
            );
            assert_eq!(
                with(&|u| u.event_type = Some(text.clone())),
                Err(UpdateError::BadType),
                "{bad:?}"
            );
        }
        for bad in ["a\tb", "a\u{1}b", "a\u{7f}b", "a\u{85}b"] {
            assert_eq!(
                with(&|u| u.event_type = Some(bad.into())),
                Err(UpdateError::BadType),
                "{bad:?}"
            );
        }
        assert!(with(&|u| u.event_type = Some("é-✓ x".into())).is_ok());
    }
}
