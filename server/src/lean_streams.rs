//! Lean event streams: a subscription opened on a fresh connection is served without hyper.
//!
//! An idle subscriber is mostly its connection, and a connection served by hyper keeps two
//! 8 KiB buffers for as long as it lives (the read buffer the request head came in, and the
//! write buffer for response heads), which no setting shrinks. A hub holds tens of thousands
//! of connections that read nothing after their first request and write only events, so this
//! listener looks at each new connection's first request itself: a `GET` of an event stream
//! (the hub, the counter stream) is answered by the same router, with every layer and
//! extractor, and its body written straight to the socket, close-delimited, with no buffer
//! beyond the event being written. Anything else, and every later request on a connection, is
//! hyper's, given the connection with the bytes already read put back in front.
//!
//! It is an [`axum::serve::Listener`]: `axum::serve` keeps accepting and shutting down as
//! before.

use axum::{Router, body::Body, extract::ConnectInfo};
use bytes::Buf;
use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a new connection may take to send its first request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one chunk of events may take: past it the client is gone or stalled.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest non-stream answer (an error) collected to send with its length.
const MAX_PLAIN_BODY: usize = 64 * 1024;

/// The accepted connections that are hyper's to serve.
pub struct StreamListener {
    handed_over: mpsc::Receiver<(Rewind, SocketAddr)>,
    local: SocketAddr,
}

impl StreamListener {
    /// Accepts on `listener` until `shutdown` fires. `streams` are the paths served lean;
    /// `max_head` bounds the first request head read here (a longer one is hyper's, which
    /// answers it as it would any other).
    pub fn new(
        listener: TcpListener,
        app: Router,
        streams: &'static [&'static str],
        max_head: usize,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (hand_over, handed_over) = mpsc::channel(1024);
        let route = Route {
            app,
            streams,
            max_head,
            hand_over,
        };
        tokio::spawn(accept(listener, route, shutdown));
        Ok(Self { handed_over, local })
    }
}

impl axum::serve::Listener for StreamListener {
    type Io = Rewind;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Rewind, SocketAddr) {
        match self.handed_over.recv().await {
            Some(connection) => connection,
            // The accept loop ended (shutdown): no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// What each new connection needs to be routed.
#[derive(Clone)]
struct Route {
    app: Router,
    streams: &'static [&'static str],
    max_head: usize,
    hand_over: mpsc::Sender<(Rewind, SocketAddr)>,
}

async fn accept(listener: TcpListener, route: Route, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(route.clone().connection(tcp, peer));
            }
            // Out of file descriptors, or the like: as hyper's servers do, wait and go on.
            Err(error) if !is_connection_error(&error) => {
                tracing::error!("accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => {}
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The first request head, parsed.
struct Head {
    path: String,
    version: http::Version,
    headers: Vec<(String, Vec<u8>)>,
}

impl Route {
    async fn connection(self, mut tcp: TcpStream, peer: SocketAddr) {
        let mut buf = Vec::with_capacity(1024);
        let head = loop {
            match tokio::time::timeout(HEAD_TIMEOUT, tcp.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(_)) => {}
            }
            match self.parse(&buf) {
                Parsed::Partial if buf.len() < self.max_head => continue,
                Parsed::Stream(head) => break Some(head),
                Parsed::Partial | Parsed::Other => break None,
            }
        };
        match head {
            Some(head) => {
                drop(buf);
                self.serve(tcp, peer, head).await;
            }
            None => {
                let _ = self.hand_over.send((Rewind::new(buf, tcp), peer)).await;
            }
        }
    }

    /// A stream request is a complete `GET` of one of the stream paths, HTTP/1.x, without a
    /// body, an upgrade or anything after it (a pipelined request is hyper's).
    fn parse(&self, buf: &[u8]) -> Parsed {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let length = match request.parse(buf) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Other,
        };
        let (Some("GET"), Some(path), Some(version)) =
            (request.method, request.path, request.version)
        else {
            return Parsed::Other;
        };
        let route = path.split('?').next().unwrap_or(path);
        let has_body_or_upgrade = |h: &httparse::Header<'_>| {
            h.name.eq_ignore_ascii_case("upgrade")
                || h.name.eq_ignore_ascii_case("transfer-encoding")
                || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
        };
        let plain = !request.headers.iter().any(has_body_or_upgrade);
        if length != buf.len() || !plain || !self.streams.contains(&route) {
            return Parsed::Other;
        }
        Parsed::Stream(Head {
            path: path.to_owned(),
            version: if version == 0 {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            },
            headers: request
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_owned()))
                .collect(),
        })
    }

    /// Answers through the router, then writes the answer itself.
    async fn serve(self, mut tcp: TcpStream, peer: SocketAddr, head: Head) {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(&head.path)
            .version(head.version);
        for (name, value) in &head.headers {
            request = request.header(name.as_str(), value.as_slice());
        }
        let Ok(mut request) = request.body(Body::empty()) else {
            let _ = tcp.write_all(BAD_REQUEST).await;
            return;
        };
        drop(head);
        request.extensions_mut().insert(ConnectInfo(peer));
        // Boxed: the router's future is large, and the task outlives it by hours; unboxed, its
        // size would stay part of every connection's task.
        let Ok(response) = Box::pin(self.app.oneshot(request)).await;
        let (parts, body) = response.into_parts();
        let streaming = parts.status == StatusCode::OK
            && parts.headers.get(header::CONTENT_TYPE)
                == Some(&HeaderValue::from_static("text/event-stream"));
        let (plain_body, body) = if streaming {
            (None, Some(body))
        } else {
            let collected = http_body_util::Limited::new(body, MAX_PLAIN_BODY)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            (Some(collected), None)
        };
        let mut out = Vec::with_capacity(512);
        let status = parts.status;
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .as_bytes(),
        );
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH || name == header::CONNECTION {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\nconnection: close\r\n");
        if let Some(plain) = &plain_body {
            out.extend_from_slice(format!("content-length: {}\r\n", plain.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(plain) = plain_body {
            out.extend_from_slice(&plain);
        }
        drop(parts);
        if write(&mut tcp, &out).await.is_err() {
            return;
        }
        drop(out);
        if let Some(body) = body {
            stream(&mut tcp, body).await;
        }
        let _ = tcp.shutdown().await;
    }
}

enum Parsed {
    Partial,
    Stream(Head),
    Other,
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

async fn write(tcp: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, tcp.write_all(bytes))
        .await
        .map_err(|_| io::ErrorKind::TimedOut)?
}

/// Writes each chunk of the body as it comes (the hub hands over every queued event in one
/// chunk: one write per wakeup), until the body ends or the client leaves.
async fn stream(tcp: &mut TcpStream, mut body: Body) {
    let (mut reader, mut writer) = tcp.split();
    let mut scratch = [0u8; 64];
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            // Readable: the client closed (or sent something, which a stream does not expect).
            _ = reader.read(&mut scratch) => return,
        };
        let Some(Ok(frame)) = frame else { return };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        while data.has_remaining() {
            let written = tokio::time::timeout(WRITE_TIMEOUT, writer.write(data.chunk()))
                .map(|r| r.unwrap_or(Err(io::ErrorKind::TimedOut.into())))
                .await;
            match written {
                Ok(0) | Err(_) => return,
                Ok(n) => data.advance(n),
            }
        }
    }
}

/// A connection with bytes already read from it put back in front, for hyper.
pub struct Rewind {
    prefix: Vec<u8>,
    read: usize,
    inner: TcpStream,
}

impl Rewind {
    fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Self {
            prefix,
            read: 0,
            inner,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let rest = &this.prefix[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                // Given back: its memory too.
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
