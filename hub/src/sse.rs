//! Server-Sent Events wire format.
//!
//! An event is encoded exactly once into [`Bytes`]; cloning those bytes is a reference-count bump,
//! so fanning an event out to many subscribers costs no further encoding or copying.
//!
//! The format is the one in the HTML standard ("Server-sent events", *Parsing an event stream*):
//! fields are `name: value` lines, an event ends with a blank line, and a line starting with `:` is
//! a comment that clients ignore (used for heartbeats). A field value cannot contain a line break,
//! so multi-line data becomes one `data:` line per line. The parser accepts CR, LF and CRLF as line
//! ends, so all three must split data here too, or a lone CR would smuggle a line break into the
//! stream and corrupt it.

use bytes::{BufMut, Bytes, BytesMut};

/// One event, ready to be encoded.
///
/// `id`, `event` (the type) and `retry` are optional; `data` is always sent, because the client
/// only dispatches an event that had at least one `data:` line, even an empty one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `id:` field. Must not contain CR, LF or NUL; callers validate this at the edge.
    pub id: Option<&'a str>,
    /// The `event:` field (the event type). Must not contain CR or LF.
    pub event: Option<&'a str>,
    /// The `retry:` field: the reconnection delay the client should use, in milliseconds.
    pub retry: Option<u64>,
    /// The payload; may contain any line breaks.
    pub data: &'a str,
}

impl Event<'_> {
    /// Encodes the event, blank line included.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.data.len() + 32);
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Appends the encoded event to `buf`, blank line included.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        debug_assert!(
            self.id.is_none_or(|id| !id.contains(['\r', '\n', '\0'])),
            "SSE id must be validated before encoding"
        );
        debug_assert!(
            self.event.is_none_or(|ty| !ty.contains(['\r', '\n'])),
            "SSE event type must be validated before encoding"
        );
        if let Some(id) = self.id {
            field(buf, b"id", id.as_bytes());
        }
        if let Some(event) = self.event {
            field(buf, b"event", event.as_bytes());
        }
        if let Some(retry) = self.retry {
            field(buf, b"retry", retry.to_string().as_bytes());
        }
        for line in data_lines(self.data) {
            field(buf, b"data", line.as_bytes());
        }
        buf.put_u8(b'\n');
    }
}

/// Encodes a comment line (`: text`), which keeps idle connections alive through proxies and
/// lets the server notice closed connections; clients ignore it.
pub fn comment(text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 4);
    for line in data_lines(text) {
        buf.put_slice(b": ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Encodes a lone `retry:` field (then a blank line, which dispatches nothing, since there is no
/// data): the client's reconnection delay from now on, in milliseconds.
pub(crate) fn retry(milliseconds: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    field(&mut buf, b"retry", milliseconds.to_string().as_bytes());
    buf.put_u8(b'\n');
    buf.freeze()
}

fn field(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.reserve(name.len() + value.len() + 3);
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_u8(b'\n');
}

/// Splits text into lines the way an SSE client would join them back: on CRLF, LF or CR.
/// Empty text is one empty line, so that an event with empty data is still dispatched.
fn data_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(event: Event<'_>) -> String {
        String::from_utf8(event.encode().to_vec()).unwrap()
    }

    #[test]
    fn minimal_event_has_data_and_blank_line() {
        let e = Event {
            data: "7",
            ..Event::default()
        };
        assert_eq!(encoded(e), "data: 7\n\n");
    }

    #[test]
    fn all_fields_in_order() {
        let e = Event {
            id: Some("42"),
            event: Some("tick"),
            retry: Some(1500),
            data: "x",
        };
        assert_eq!(encoded(e), "id: 42\nevent: tick\nretry: 1500\ndata: x\n\n");
    }

    #[test]
    fn every_line_break_kind_splits_data() {
        let e = Event {
            data: "a\nb\r\nc\rd",
            ..Event::default()
        };
        assert_eq!(encoded(e), "data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn blank_lines_and_leading_spaces_survive() {
        // The client strips exactly one space after the colon, so "data:  x" keeps " x".
        let e = Event {
            data: "\n  indented\n\n",
            ..Event::default()
        };
        assert_eq!(encoded(e), "data: \ndata:   indented\ndata: \ndata: \n\n");
    }

    #[test]
    fn empty_data_is_still_one_data_line() {
        let e = Event {
            id: Some("1"),
            ..Event::default()
        };
        assert_eq!(encoded(e), "id: 1\ndata: \n\n");
    }

    #[test]
    fn comment_is_ignored_by_clients() {
        assert_eq!(&comment("ping")[..], b": ping\n\n");
    }
}
