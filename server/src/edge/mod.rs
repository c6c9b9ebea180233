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
//!   kept-alive connection ([`conn::Clock`]);
//! - refused with `400` if its head is not HTTP/1.1 as RFC 9112 has it ([`head`]).
//!
//! Then a first request that is an event stream is served lean ([`lean`]); anything else goes to
//! hyper with the bytes already read put back ([`conn::Conn`]). Hyper answers through the same
//! router; an event stream it serves is answered with `connection: close`, and its body keeps
//! reading the socket (dropping what a client pipelines behind a stream), so a client that
//! leaves is noticed at once on every path, not at the next failed write.

pub mod budget;
mod conn;
mod head;
mod lean;

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
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
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
}

/// What every connection task needs.
#[derive(Clone)]
pub struct Edge {
    app: Router,
    streams: &'static [&'static str],
    limits: Arc<Limits>,
    budget: Arc<ConnectionBudget>,
    shutdown: CancellationToken,
}

impl Edge {
    /// `streams` are the paths a first request may open lean.
    pub fn new(
        app: Router,
        streams: &'static [&'static str],
        limits: Limits,
        budget: Arc<ConnectionBudget>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            app,
            streams,
            limits: Arc::new(limits),
            budget,
            shutdown,
        }
    }

    /// Accepts until shutdown; each connection runs in a task of its own, which ends on
    /// shutdown once its current answer is done (streams end then too).
    pub async fn accept(self, listener: TcpListener) {
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
                    Err(refused) => {
                        let _ = tcp.try_write(&refused.response());
                    }
                },
                // Out of descriptors, or the like: as hyper's servers do, wait and go on.
                Err(error) if !is_connection_error(&error) => {
                    tracing::error!("accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {}
            }
        }
    }

    async fn connection(self, mut tcp: TcpStream, peer: SocketAddr, _admitted: Admitted) {
        let head = tokio::select! {
            () = self.shutdown.cancelled() => return,
            head = self.first_head(&mut tcp) => head,
        };
        match head {
            Ok((Head::Stream(head), _)) => lean::serve(self.app, tcp, peer, head).await,
            Ok((Head::Other, buf)) => self.hyper(tcp, buf, peer).await,
            Err(Some(refusal)) => answer_and_close(&tcp, &refusal.response()).await,
            Err(None) => {}
        }
    }

    /// Reads the first head: until the idle timeout for its first byte, then until the head
    /// timeout for the rest. `Err(None)`: closed or idle, nothing to answer.
    async fn first_head(&self, tcp: &mut TcpStream) -> Result<(Head, Vec<u8>), Option<Refusal>> {
        let mut buf = Vec::with_capacity(1024);
        let mut deadline = Instant::now() + self.limits.idle_timeout;
        loop {
            let read = tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)).await;
            match read {
                Err(_) if buf.is_empty() => return Err(None),
                Err(_) => return Err(Some(Refusal::Timeout)),
                Ok(Ok(0) | Err(_)) => return Err(None),
                Ok(Ok(n)) if n == buf.len() => {
                    deadline = Instant::now() + self.limits.head_timeout;
                }
                Ok(Ok(_)) => {}
            }
            match head::parse(&buf, self.streams)? {
                Some(head) => return Ok((head, buf)),
                None if buf.len() >= self.limits.max_head_bytes => {
                    return Err(Some(Refusal::TooLarge));
                }
                None => {}
            }
        }
    }

    /// Serves the connection with hyper, `buf` first.
    async fn hyper(self, tcp: TcpStream, buf: Vec<u8>, peer: SocketAddr) {
        let tcp = Arc::new(tcp);
        let clock = Clock::new(buf.starts_with(head::H2_PREFACE));
        let limits = self.limits.clone();
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // A backstop only: the clock's deadlines come first.
            .header_read_timeout(limits.idle_timeout + limits.head_timeout)
            .max_buf_size(limits.max_head_bytes.max(8192));
        let service = Service {
            app: self.app.clone(),
            tcp: tcp.clone(),
            clock: clock.clone(),
            peer,
        };
        let io = TokioIo::new(Conn::new(buf, tcp.clone(), clock.clone()));
        let serve = hyper::service::service_fn(move |request| service.clone().call(request));
        let connection = builder.serve_connection(io, serve);
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                () = self.shutdown.cancelled(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                expired = clock.expired(limits.idle_timeout, limits.head_timeout), if !closing => {
                    if expired == Expired::Head {
                        answer_and_close(&tcp, &Refusal::Timeout.response()).await;
                        return;
                    }
                    // Idle: for HTTP/1.1 this closes at once; HTTP/2 says GOAWAY first.
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
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
    tcp: Arc<TcpStream>,
    clock: Arc<Clock>,
    peer: SocketAddr,
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
        let mut request = request.map(Body::new);
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
        let watch = stream.then(|| self.tcp.clone());
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
        let mut scratch = [0u8; 256];
        loop {
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
