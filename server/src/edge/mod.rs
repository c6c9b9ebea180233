//! The connection edge: the life of every connection, from accept to close.
//!
//! A public hub faces anonymous clients, and a connection costs a descriptor and memory before
//! it has asked for anything. So every connection, whatever it carries, is:
//!
//! - counted at accept against its address's cap and the total ([`budget`]), and refused at
//!   once past either (`429`, closed);
//! - given one deadline for each request head, from its first byte (`--head-timeout`; then
//!   `408`, closed), and one for the time it may stay open with no request in progress
//!   (`--idle-timeout`; then closed): before its first request, and between requests on a
//!   kept-alive connection ([`conn::Clock`]). A request body that stalls for the idle timeout
//!   fails, and a write that makes no progress for `--write-timeout` closes the connection,
//!   so a request in progress is bounded too;
//! - refused with `400` if its head is not HTTP/1.1 as RFC 9112 has it ([`head`]).
//!
//! Then a first request that is an event stream is served lean ([`lean`]); anything else goes to
//! hyper with the bytes already read put back ([`conn::Conn`]). Hyper answers through the same
//! router; an HTTP/1 event stream it serves is answered with `connection: close`, and its body
//! keeps reading the socket (dropping what a client pipelines behind a stream), so a client that
//! leaves is noticed at once on every path, not at the next failed write.
//!
//! An HTTP/2 connection (prior knowledge on plain text, ALPN `h2` over TLS) has the idle deadline
//! (between its streams; hyper's pings find a dead peer), hyper's header-list limit set to
//! `--max-head-bytes`, at most `--max-streams-per-connection` streams in progress, and a send
//! buffer per stream of 64 KiB. Each stream is a request of its own through the router, so the
//! per-address subscription limits count every stream.
//!
//! With `--tls-cert` every connection is TLS ([`tls`]), under the same caps and deadlines: the
//! handshake runs beneath the connection's clock, so it has the idle deadline until its first
//! byte and then the head deadline, which goes on to cover the first request head over
//! HTTP/1.1 (a handshake that never ends is closed with nothing said). ALPN picks the protocol;
//! every request is hyper's (no lean path: rustls keeps buffers of its own anyway), and
//! refusals past the caps are a close rather than a plain-text answer the client could not
//! read.

pub mod budget;
mod conn;
mod head;
mod lean;
pub mod tls;

use axum::{Router, body::Body, extract::ConnectInfo};
use budget::{Admitted, ConnectionBudget};
use bytes::Bytes;
use conn::{Clock, Conn, Expired, InFlight};
use head::{Head, Refusal};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tls::Certificates;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How a connection is bounded; from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From a head's first byte to its end.
    pub head_timeout: Duration,
    /// With no request in progress.
    pub idle_timeout: Duration,
    /// The longest request head.
    pub max_head_bytes: usize,
    /// How long a write may make no progress.
    pub write_timeout: Duration,
    /// The most streams an HTTP/2 connection may have in progress.
    pub max_streams: u32,
}

/// What every connection task needs.
#[derive(Clone)]
pub struct Edge {
    app: Router,
    streams: &'static [&'static str],
    limits: Arc<Limits>,
    budget: Arc<ConnectionBudget>,
    /// With a certificate, every connection is TLS.
    tls: Option<Arc<Certificates>>,
    shutdown: CancellationToken,
}

impl Edge {
    /// `streams` are the paths a first request may open lean.
    pub fn new(
        app: Router,
        streams: &'static [&'static str],
        limits: Limits,
        budget: Arc<ConnectionBudget>,
        tls: Option<Arc<Certificates>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            app,
            streams,
            limits: Arc::new(limits),
            budget,
            tls,
            shutdown,
        }
    }

    /// Accepts until shutdown; each connection runs in a task of its own, which ends on
    /// shutdown once its current answer is done (streams end then too).
    pub async fn accept(self, listener: TcpListener) {
        let mut failures = 0u64;
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => match self.budget.admit(peer.ip()) {
                    Ok(admitted) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(self.clone().connection(tcp, peer, admitted));
                    }
                    // The answer fits any socket's send buffer: written at once or not at all.
                    // A TLS client could not read it: it only sees the close.
                    Err(refused) => {
                        if self.tls.is_none() {
                            let _ = tcp.try_write(&refused.response());
                        }
                    }
                },
                // Out of descriptors, or the like: as hyper's servers do, wait and go on (logged
                // at first and then every 100th time).
                Err(error) if !is_connection_error(&error) => {
                    if failures.is_multiple_of(100) {
                        tracing::error!(
                            "accepting a connection failed ({failures} before): {error}"
                        );
                    }
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {}
            }
        }
    }

    async fn connection(self, mut tcp: TcpStream, peer: SocketAddr, _admitted: Admitted) {
        if let Some(certificates) = self.tls.clone() {
            return Box::pin(self.serve_tls(tcp, peer, &certificates)).await;
        }
        let head = tokio::select! {
            () = self.shutdown.cancelled() => return,
            head = self.first_head(&mut tcp) => head,
        };
        match head {
            // A stream lives for hours on a small task: the head's bytes are freed first, and
            // hyper's much larger connection state is boxed, so it is no part of a lean task.
            Ok((Head::Stream(head), buf)) => {
                drop(buf);
                let write_timeout = self.limits.write_timeout;
                lean::serve(self.app, tcp, peer, head, write_timeout).await;
            }
            Ok((Head::Other, buf)) => Box::pin(self.hyper(tcp, buf, peer)).await,
            Err(Some(refusal)) => answer_and_close(&tcp, &refusal.response()).await,
            Err(None) => {}
        }
    }

    /// Reads the first head: until the idle timeout for its first byte, then until the head
    /// timeout for the rest, and never more than the longest head. `Err(None)`: closed or idle,
    /// nothing to answer.
    async fn first_head(&self, tcp: &mut TcpStream) -> Result<(Head, Vec<u8>), Option<Refusal>> {
        let max = self.limits.max_head_bytes;
        let mut buf = Vec::with_capacity(1024);
        let mut deadline = Instant::now() + self.limits.idle_timeout;
        loop {
            let start = buf.len();
            let room = (max - start) as u64;
            let mut limited = (&mut *tcp).take(room);
            match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
                Err(_) if start == 0 => return Err(None),
                Err(_) => return Err(Some(Refusal::Timeout)),
                Ok(Ok(0) | Err(_)) => return Err(None),
                Ok(Ok(_)) if start == 0 => {
                    deadline = Instant::now() + self.limits.head_timeout;
                }
                Ok(Ok(_)) => {}
            }
            // Parsed again only once a line may have ended (or a CR came alone): a head sent a
            // byte at a time costs one parse a line, not one a byte.
            let fresh = &buf[start.saturating_sub(1)..];
            if buf.len() < max && !fresh.contains(&b'\n') && !head::has_bare_cr(fresh) {
                continue;
            }
            match head::parse(&buf, self.streams)? {
                Some(head) => return Ok((head, buf)),
                None if buf.len() >= max => return Err(Some(Refusal::TooLarge)),
                None => {}
            }
        }
    }

    /// Serves a plain-text connection with hyper, `buf` first: HTTP/2 if it opened with the
    /// preface (prior knowledge), else HTTP/1.
    async fn hyper(self, tcp: TcpStream, buf: Vec<u8>, peer: SocketAddr) {
        let tcp = Arc::new(tcp);
        let http2 = buf.starts_with(head::H2_PREFACE);
        let clock = Clock::new(http2);
        let io = Conn::new(buf, tcp.clone(), clock.clone(), self.limits.write_timeout);
        self.serve(io, tcp, clock, http2, false, peer).await;
    }

    /// Serves a TLS connection: the handshake (under the connection's clock: see the module
    /// docs), then hyper, in the protocol ALPN chose.
    async fn serve_tls(self, tcp: TcpStream, peer: SocketAddr, certificates: &Certificates) {
        let tcp = Arc::new(tcp);
        let clock = Clock::new(false);
        let io = Conn::new(
            Vec::new(),
            tcp.clone(),
            clock.clone(),
            self.limits.write_timeout,
        );
        let limits = &self.limits;
        let stream = tokio::select! {
            () = self.shutdown.cancelled() => return,
            _ = clock.expired(limits.idle_timeout, limits.head_timeout) => return,
            accepted = certificates.acceptor().accept(io) => match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!("TLS handshake with {peer} failed: {error}");
                    return;
                }
            },
        };
        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if http2 {
            clock.speaks_http2();
        }
        self.serve(stream, tcp, clock, http2, true, peer).await;
    }

    /// Serves `io` (over `tcp`) with hyper until it closes, its clock expires or the server
    /// shuts down. `tls`: `io` is TLS, so nothing may be written on `tcp` itself.
    async fn serve<I>(
        self,
        io: I,
        tcp: Arc<TcpStream>,
        clock: Arc<Clock>,
        http2: bool,
        tls: bool,
        peer: SocketAddr,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let limits = self.limits.clone();
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // A backstop only: the clock's deadlines come first.
            .header_read_timeout(limits.idle_timeout + limits.head_timeout)
            .max_buf_size(limits.max_head_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
            .max_send_buf_size(H2_SEND_BUFFER)
            .max_concurrent_streams(limits.max_streams)
            .keep_alive_interval(limits.idle_timeout)
            .keep_alive_timeout(limits.head_timeout);
        // The protocol is known before hyper: by the preface, or by ALPN.
        let builder = if http2 {
            builder.http2_only()
        } else {
            builder.http1_only()
        };
        let service = Service {
            app: self.app.clone(),
            // HTTP/2 streams are not watched (each is closed by a frame of its own), and its
            // spawned stream tasks must not keep the socket open past the connection. Over TLS
            // the watch reads beneath rustls: after a stream's answer (`connection: close`)
            // nothing the client sends matters but its close.
            tcp: (!http2).then(|| tcp.clone()),
            clock: clock.clone(),
            peer,
            body_stall: limits.idle_timeout,
        };
        let serve = hyper::service::service_fn(move |request| service.clone().call(request));
        let connection = builder.serve_connection(TokioIo::new(io), serve);
        tokio::pin!(connection);
        // Once closing, the connection gets the head timeout to finish what it is doing.
        let mut closing: Option<Instant> = None;
        loop {
            let close = tokio::select! {
                _ = connection.as_mut() => return,
                () = self.shutdown.cancelled(), if closing.is_none() => true,
                expired = clock.expired(limits.idle_timeout, limits.head_timeout),
                    if closing.is_none() =>
                {
                    if expired == Expired::Head {
                        if !tls {
                            answer_and_close(&tcp, &Refusal::Timeout.response()).await;
                        }
                        return;
                    }
                    // Idle: for HTTP/1.1 this closes at once; HTTP/2 says GOAWAY first.
                    true
                }
                () = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)),
                    if closing.is_some() => return,
            };
            if close {
                closing = Some(Instant::now() + limits.head_timeout);
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What an HTTP/2 stream may have waiting to be sent.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// A whole plain-text answer written past hyper, after which the connection closes: the status
/// (`"400 Bad Request"`), `extra` header lines (each ending in CRLF), and `reason` as the body's
/// one line.
fn closing_answer(status: &str, extra: &str, reason: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    )
    .into_bytes()
}

/// How long a refused connection is read (and what it sends dropped) after its answer, so that
/// closing with unread bytes does not reset the connection before the client reads the answer.
const LINGER: Duration = Duration::from_secs(1);

/// Writes a short answer, closes the sending side, and waits a moment for the client to close.
async fn answer_and_close(tcp: &TcpStream, answer: &[u8]) {
    let _ = tcp.try_write(answer);
    let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
    let mut scratch = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            if tcp.readable().await.is_err() {
                return;
            }
            match tcp.try_read(&mut scratch) {
                Ok(0) => return,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
                _ => {}
            }
        }
    })
    .await;
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One hyper connection's requests, answered by the router.
#[derive(Clone)]
struct Service {
    app: Router,
    /// The socket, for HTTP/1 streams to watch.
    tcp: Option<Arc<TcpStream>>,
    clock: Arc<Clock>,
    peer: SocketAddr,
    /// How long a request body may go without a byte.
    body_stall: Duration,
}

impl Service {
    async fn call(self, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let in_flight = self.clock.request();
        let version = request.version();
        if !head::host_ok(version, request.headers()) {
            let mut response = Response::new(Body::from(format!("{}\n", Refusal::Host)));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(response.map(|body| Body::new(Tracked::new(body, in_flight, None))));
        }
        let stall = self.body_stall;
        let mut request = request.map(|body| Body::new(Stalling::new(body, stall)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let Ok(response) = self.app.oneshot(request).await;
        let (mut parts, body) = response.into_parts();
        let stream = parts.status == StatusCode::OK
            && parts.headers.get(header::CONTENT_TYPE)
                == Some(&HeaderValue::from_static("text/event-stream"))
            && version <= Version::HTTP_11;
        if stream {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let watch = self.tcp.filter(|_| stream);
        Ok(Response::from_parts(
            parts,
            Body::new(Tracked::new(body, in_flight, watch)),
        ))
    }
}

/// A response body that counts as a request in progress until dropped and, for an event
/// stream, ends when its client closes the connection.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
    watch: Option<Arc<TcpStream>>,
}

impl Tracked {
    fn new(body: Body, in_flight: InFlight, watch: Option<Arc<TcpStream>>) -> Self {
        Self {
            body,
            _in_flight: in_flight,
            watch,
        }
    }

    /// Whether the client has closed; reads (and drops) what it sent meanwhile.
    fn client_gone(&self, cx: &mut Context<'_>) -> bool {
        let Some(tcp) = &self.watch else {
            return false;
        };
        let mut scratch = [0u8; 4096];
        // A client that sends this much on a stream's connection is no client of a stream.
        for _ in 0..16 {
            match tcp.poll_read_ready(cx) {
                Poll::Pending => return false,
                Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(())) => match tcp.try_read(&mut scratch) {
                    Ok(0) => return true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return true,
                },
            }
        }
        true
    }
}

/// A request body that fails once it goes `every` without a byte (counted from its first
/// poll): a client that sends a large body slowly, or stops, holds its connection no longer.
struct Stalling {
    body: Incoming,
    every: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stalling {
    fn new(body: Incoming, every: Duration) -> Self {
        Self {
            body,
            every,
            timer: None,
        }
    }
}

/// What a stalled request body fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled")]
struct Stalled;

impl http_body::Body for Stalling {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let every = this.every;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Stalled.into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.client_gone(cx) {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
