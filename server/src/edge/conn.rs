//! A connection as hyper sees it, and the clock that decides when it has been idle too long.
//!
//! The socket is shared (`Arc<TcpStream>`, read and written through `&TcpStream`): hyper reads
//! and writes it through [`Conn`], and an event stream's body keeps reading it while hyper writes
//! (hyper stops reading during a response, so a stream whose client has gone would otherwise be
//! noticed only by a failed write; see [`super::service`]).

use parking_lot::Mutex;
use std::{
    io,
    pin::Pin,
    sync::Arc,
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
}

impl Conn {
    pub fn new(prefix: Vec<u8>, tcp: Arc<TcpStream>, clock: Arc<Clock>) -> Self {
        Self {
            tcp,
            prefix,
            read: 0,
            clock,
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
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
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
/// request in progress (idle), and the time a request head may take from its first byte.
pub struct Clock {
    state: Mutex<State>,
    changed: Notify,
    /// HTTP/2 frames (pings, window updates) arrive between requests and begin no head: such a
    /// connection has only the idle deadline.
    http2: bool,
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
            http2,
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
        if self.http2 {
            return;
        }
        let mut state = self.state.lock();
        if state.in_flight == 0 && state.head_from.is_none() {
            state.head_from = Some(Instant::now());
            self.changed.notify_one();
        }
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
