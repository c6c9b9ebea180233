//! A connection as hyper sees it, and the clock that decides when it has been idle too long.
//!
//! The socket is shared (`Arc<TcpStream>`, read and written through `&TcpStream`): hyper reads
//! and writes it through [`Conn`], and an HTTP/1 event stream's body keeps reading it while
//! hyper writes (hyper notices a close during a response only while its own read buffer is
//! empty, so not behind pipelined bytes; see `Tracked` in the module above). A write that makes
//! no progress for the write timeout fails, so a client that stops reading is let go. Over TLS,
//! rustls reads and writes through a [`Conn`], so all of this holds beneath it.

use parking_lot::Mutex;
use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Notify,
    time::Instant,
};

/// A connection with the bytes already read from it (the first head) put back in front.
pub struct Conn {
    tcp: Arc<TcpStream>,
    prefix: Vec<u8>,
    read: usize,
    clock: Arc<Clock>,
    write_timeout: Duration,
    /// Armed while a write waits for room in the socket's buffer; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    pub fn new(
        prefix: Vec<u8>,
        tcp: Arc<TcpStream>,
        clock: Arc<Clock>,
        write_timeout: Duration,
    ) -> Self {
        Self {
            tcp,
            prefix,
            read: 0,
            clock,
            write_timeout,
            stalled: None,
        }
    }

    /// A write is waiting: pending, or timed out once it has waited too long.
    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.tcp.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.stall(cx),
            }
            match write(&self.tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => {
                    self.stalled = None;
                    return Poll::Ready(written);
                }
            }
        }
    }
}

impl AsyncRead for Conn {
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
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            match this.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    if n > 0 {
                        this.clock.bytes_read();
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |tcp| tcp.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |tcp| tcp.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = socket2::SockRef::from(self.tcp.as_ref());
        Poll::Ready(match socket.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

/// What the connection is doing, for its two deadlines: the time it may stay open with no
/// request in progress (idle), and the time a request head may take from its first byte. Over
/// TLS the bytes are the encrypted ones, so a handshake begins a head too.
pub struct Clock {
    state: Mutex<State>,
    changed: Notify,
    /// HTTP/2 frames (pings, window updates) arrive between requests and begin no head: such a
    /// connection has only the idle deadline.
    http2: AtomicBool,
}

struct State {
    in_flight: u32,
    idle_since: Instant,
    head_from: Option<Instant>,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No request for the idle timeout: close.
    Idle,
    /// A request head begun but not finished in time: `408`, close.
    Head,
}

impl Clock {
    pub fn new(http2: bool) -> Arc<Self> {
        Arc::new(Self {
            http2: AtomicBool::new(http2),
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                head_from: None,
            }),
            changed: Notify::new(),
        })
    }

    /// Bytes arrived: with no request in progress, they begin a head.
    fn bytes_read(&self) {
        if self.http2.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock();
        if state.in_flight == 0 && state.head_from.is_none() {
            state.head_from = Some(Instant::now());
            self.changed.notify_one();
        }
    }

    /// The connection turned out to be HTTP/2 (a TLS handshake chose it): idle from now, with
    /// only the idle deadline, the handshake's head deadline done with.
    pub fn speaks_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
        let mut state = self.state.lock();
        state.head_from = None;
        state.idle_since = Instant::now();
        self.changed.notify_one();
    }

    /// A head is complete and its request is being answered, until the guard is dropped (with
    /// the response's body).
    pub fn request(self: &Arc<Self>) -> InFlight {
        let mut state = self.state.lock();
        state.in_flight += 1;
        state.head_from = None;
        self.changed.notify_one();
        InFlight(self.clone())
    }

    fn deadline(&self, idle: Duration, head: Duration) -> Option<(Instant, Expired)> {
        let state = self.state.lock();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_from {
            Some(from) => (from + head, Expired::Head),
            None => (state.idle_since + idle, Expired::Idle),
        })
    }

    /// Resolves when a deadline passes.
    pub async fn expired(&self, idle: Duration, head: Duration) -> Expired {
        loop {
            let changed = self.changed.notified();
            match self.deadline(idle, head) {
                None => changed.await,
                Some((when, what)) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(when) => {
                            if self.deadline(idle, head) == Some((when, what)) {
                                return what;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A request being answered; dropped with its response body.
pub struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
        self.0.changed.notify_one();
    }
}
