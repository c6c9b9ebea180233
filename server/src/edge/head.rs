//! A new connection's first request head: read under one deadline, checked, and sorted into an
//! event stream to serve lean or anything else for hyper.
//!
//! Checked here, so that both paths refuse alike what HTTP/1.1 forbids (RFC 9112): a bare CR
//! anywhere in a head (§2.2), anything `httparse` cannot parse, and a request without exactly
//! one `Host` (§3.2; HTTP/1.0 may omit it). A connection that opens with the HTTP/2 preface is
//! hyper's.

use http::Version;

/// What the head asked for, once complete.
#[derive(Debug)]
pub enum Head {
    /// A `GET` of an event stream with nothing after it: served lean.
    Stream(StreamHead),
    /// Anything else: hyper's, with the bytes read so far.
    Other,
}

/// A stream request, parsed.
#[derive(Debug)]
pub struct StreamHead {
    pub path: String,
    pub version: Version,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Why a head is refused; each is answered, then the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request")]
    Malformed,
    #[error("bare CR in the request head")]
    BareCr,
    #[error("a request needs exactly one Host header")]
    Host,
    #[error("the request head is too large")]
    TooLarge,
    #[error("the request head took too long")]
    Timeout,
}

impl Refusal {
    /// The whole answer.
    pub fn response(self) -> Vec<u8> {
        let status = match self {
            Refusal::Malformed | Refusal::BareCr | Refusal::Host => "400 Bad Request",
            Refusal::TooLarge => "431 Request Header Fields Too Large",
            Refusal::Timeout => "408 Request Timeout",
        };
        super::closing_answer(status, "", &self.to_string())
    }
}

/// The start of the HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Sorts what has arrived: `Ok(None)` while the head is incomplete.
pub fn parse(buf: &[u8], streams: &[&str]) -> Result<Option<Head>, Refusal> {
    let h2 = H2_PREFACE.len().min(buf.len());
    if buf[..h2] == H2_PREFACE[..h2] {
        return Ok((h2 == H2_PREFACE.len()).then_some(Head::Other));
    }
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => {
            if has_bare_cr(buf) {
                return Err(Refusal::BareCr);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
        Err(_) if has_bare_cr(buf) => return Err(Refusal::BareCr),
        Err(_) => return Err(Refusal::Malformed),
    };
    if has_bare_cr(&buf[..length]) {
        return Err(Refusal::BareCr);
    }
    let version = if request.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let hosts = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(Refusal::Host);
    }
    let (Some("GET"), Some(path)) = (request.method, request.path) else {
        return Ok(Some(Head::Other));
    };
    let route = path.split('?').next().unwrap_or(path);
    let has_body_or_upgrade = |h: &httparse::Header<'_>| {
        h.name.eq_ignore_ascii_case("upgrade")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
    };
    let plain = !request.headers.iter().any(has_body_or_upgrade);
    // A pipelined request after the stream is hyper's to refuse or serve.
    if length != buf.len() || !plain || !streams.contains(&route) {
        return Ok(Some(Head::Other));
    }
    Ok(Some(Head::Stream(StreamHead {
        path: path.to_owned(),
        version,
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_owned()))
            .collect(),
    })))
}

/// A CR not followed by LF (a CR at the very end may still get its LF).
pub fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|pair| pair[0] == b'\r' && pair[1] != b'\n')
}

/// Whether a request that reached hyper has the one `Host` HTTP/1.x needs (HTTP/2 names its
/// authority in the request line instead).
pub fn host_ok(version: Version, headers: &http::HeaderMap) -> bool {
    let hosts = headers.get_all(http::header::HOST).iter().count();
    if version == Version::HTTP_11 {
        hosts == 1
    } else {
        hosts <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAMS: &[&str] = &["/s"];

    #[test]
    fn sorts_heads() {
        let stream = parse(b"GET /s?x HTTP/1.1\r\nHost: a\r\n\r\n", STREAMS).unwrap();
        assert!(matches!(stream, Some(Head::Stream(h)) if h.path == "/s?x"));
        for other in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"POST /s HTTP/1.1\r\nHost: a\r\ncontent-length: 1\r\n\r\nx",
            b"GET /s HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(matches!(parse(other, STREAMS), Ok(Some(Head::Other))));
        }
        assert!(matches!(parse(b"GET /s HTTP/1.1\r\nHo", STREAMS), Ok(None)));
        assert!(matches!(parse(b"PRI * HT", STREAMS), Ok(None)));
        assert!(matches!(parse(b"GET /s HTTP/1.1\r", STREAMS), Ok(None)));
    }

    #[test]
    fn refuses_what_http_forbids() {
        let refused = |bytes: &[u8]| parse(bytes, STREAMS).unwrap_err();
        assert_eq!(refused(b"GET /s HTTP/1.1\rHost: a\r\r"), Refusal::BareCr);
        assert_eq!(refused(b"GET /s HTTP/1.1\r\nHost: a\rb"), Refusal::BareCr);
        assert_eq!(
            refused(b"GET /s HTTP/1.1\r\nHo\x01st: a\r\r"),
            Refusal::BareCr
        );
        assert_eq!(
            refused(b"GET /s HTTP/1.1\r\nHo\x01st: a\r\n\r\n"),
            Refusal::Malformed
        );
        assert_eq!(refused(b"GET /s HTTP/1.1\r\n\r\n"), Refusal::Host);
        assert_eq!(
            refused(b"GET /s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Refusal::Host
        );
        assert!(parse(b"GET /s HTTP/1.0\r\n\r\n", STREAMS).is_ok());
    }

    #[test]
    fn refusals_are_whole_http_answers() {
        let answer = String::from_utf8(Refusal::Timeout.response()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
