//! The load generator: raw HTTP/1.1 clients over loopback TCP, or over TLS on it ([`Stream`]),
//! shared by the sections that load a real server (the server binary, the cluster, the HTTP
//! comparison with nchan and Tidings over HTTPS).
//!
//! - [`open`] opens many subscriptions at once, from source addresses 127.0.0.1–127.0.0.4;
//! - [`Publisher`] publishes on one keep-alive connection, to the Mercure hub or to any
//!   `POST`-a-body publisher (nchan's);
//! - [`Readers`] follow many subscriptions, one task each, and [`Tally`] what each received:
//!   update numbers (missing, duplicate) and send times (latency, into a [`Histogram`]).
//!
//! An update's data is `<seq> <attempt> <sent>[ <padding>]`: its number, which try of the
//! publisher stored it, and when it was sent (µs since the run's start), so a subscriber can
//! tell missing, duplicate and late ones.

use futures_util::StreamExt;
use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, SocketAddr},
    os::fd::AsRawFd,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf},
    net::{TcpSocket, TcpStream},
    sync::Notify,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// The last byte of the client source addresses, 127.0.0.x: 19,000 connections to one server
/// port need more than one address's ephemeral ports once closed ones linger in TIME_WAIT.
const SOURCES: std::ops::RangeInclusive<u8> = 1..=4;
/// Connections being opened at once (below the servers' accept backlogs).
const IN_FLIGHT: usize = 256;
/// One connection: connect, send, read the status line.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// All of one batch's connections.
const OPEN_TIMEOUT: Duration = Duration::from_secs(180);
/// One publish, request to response.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// A client's connection: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// `tcp` as it is, or after a TLS handshake with `tls` (checking the server's certificate
    /// for 127.0.0.1).
    pub async fn over(tcp: TcpStream, tls: Option<&TlsConnector>) -> io::Result<Self> {
        match tls {
            None => Ok(Self::Plain(tcp)),
            Some(tls) => Ok(Self::Tls(Box::new(
                tls.connect(crate::tls::server_name(), tcp).await?,
            ))),
        }
    }

    /// What TLS was negotiated: version, cipher suite, ALPN protocol; `None` in plain text.
    pub fn tls_summary(&self) -> Option<String> {
        let Self::Tls(tls) = self else { return None };
        let session = tls.get_ref().1;
        let alpn = session.alpn_protocol().map_or("no ALPN".into(), |p| {
            String::from_utf8_lossy(p).into_owned()
        });
        Some(format!(
            "{:?} {:?} {alpn}",
            session.protocol_version()?,
            session.negotiated_cipher_suite()?.suite()
        ))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Subscriptions opened by [`open`].
pub struct Opened {
    pub streams: Vec<Stream>,
    wanted: usize,
    took: Duration,
    first_error: Option<String>,
}

impl Opened {
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}/{} open in {:.1} s",
            self.streams.len(),
            self.wanted,
            self.took.as_secs_f64()
        );
        if let Some(error) = &self.first_error {
            text += &format!(" (first failure: {error})");
        }
        text
    }

    /// [`Self::summary`] as an error unless every subscription opened.
    pub fn all(self) -> io::Result<Vec<Stream>> {
        if self.streams.len() < self.wanted {
            return Err(io::Error::other(self.summary()));
        }
        Ok(self.streams)
    }
}

/// Opens one connection per request, spread over the source addresses, [`IN_FLIGHT`] at a
/// time; each must be answered `HTTP/1.1 200`.
pub async fn open(server: SocketAddr, requests: Vec<Arc<[u8]>>) -> Opened {
    open_over(server, None, requests).await
}

/// [`open`], over TLS with `tls` if given (a handshake each, within the connection's time).
pub async fn open_over(
    server: SocketAddr,
    tls: Option<&TlsConnector>,
    requests: Vec<Arc<[u8]>>,
) -> Opened {
    let sources: Vec<Ipv4Addr> = SOURCES.map(|d| Ipv4Addr::new(127, 0, 0, d)).collect();
    let wanted = requests.len();
    let started = Instant::now();
    let attempts = futures_util::stream::iter(requests.into_iter().enumerate())
        .map(|(i, request)| {
            let source = sources[i % sources.len()];
            async move {
                tokio::time::timeout(CONNECT_TIMEOUT, open_one(server, source, tls, &request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in 10 s"))
                    })
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut attempts = std::pin::pin!(attempts);
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    let mut opened = Opened {
        streams: Vec::with_capacity(wanted),
        wanted,
        took: Duration::ZERO,
        first_error: None,
    };
    loop {
        match tokio::time::timeout_at(deadline, attempts.next()).await {
            Ok(Some(Ok(stream))) => opened.streams.push(stream),
            Ok(Some(Err(error))) => {
                opened.first_error.get_or_insert_with(|| error.to_string());
            }
            Ok(None) => break,
            Err(_) => {
                opened
                    .first_error
                    .get_or_insert_with(|| format!("not all open within {OPEN_TIMEOUT:?}"));
                break;
            }
        }
    }
    opened.took = started.elapsed();
    opened
}

async fn open_one(
    server: SocketAddr,
    source: Ipv4Addr,
    tls: Option<&TlsConnector>,
    request: &[u8],
) -> io::Result<Stream> {
    let mut stream = Stream::over(connect_from(server, source).await?, tls).await?;
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await?;
    if &status != b"HTTP/1.1 200" {
        return Err(io::Error::other(format!(
            "answered {:?}",
            String::from_utf8_lossy(&status)
        )));
    }
    Ok(stream)
}

/// Subscriptions opened as HTTP/2 streams by [`open_h2`]: their connections' tasks (aborted
/// when dropped) and the streams' bodies, unread.
pub struct H2Opened {
    connections: Vec<tokio::task::JoinHandle<()>>,
    pub streams: Vec<h2::RecvStream>,
    pub connected: usize,
    wanted: usize,
    took: Duration,
    first_error: Option<String>,
}

impl H2Opened {
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}/{} streams open on {} connections in {:.1} s",
            self.streams.len(),
            self.wanted,
            self.connected,
            self.took.as_secs_f64()
        );
        if let Some(error) = &self.first_error {
            text += &format!(" (first failure: {error})");
        }
        text
    }
}

impl Drop for H2Opened {
    fn drop(&mut self) {
        for connection in &self.connections {
            connection.abort();
        }
    }
}

/// `n` `GET`s of `target` as HTTP/2 streams over TLS (`tls` offering `h2`), `per_connection`
/// on each connection, the connections opened [`IN_FLIGHT`] at a time from the source
/// addresses; each must be answered `200`.
pub async fn open_h2(
    server: SocketAddr,
    tls: &TlsConnector,
    target: &str,
    n: usize,
    per_connection: usize,
) -> H2Opened {
    let sources: Vec<Ipv4Addr> = SOURCES.map(|d| Ipv4Addr::new(127, 0, 0, d)).collect();
    let started = Instant::now();
    let uri = format!("https://{server}{target}");
    let counts: Vec<usize> = (0..n.div_ceil(per_connection))
        .map(|c| per_connection.min(n - c * per_connection))
        .collect();
    let attempts = futures_util::stream::iter(counts.into_iter().enumerate())
        .map(|(i, count)| {
            let (source, uri) = (sources[i % sources.len()], uri.as_str());
            async move {
                tokio::time::timeout(OPEN_TIMEOUT, open_h2_one(server, source, tls, uri, count))
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "streams not open in time",
                        ))
                    })
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut attempts = std::pin::pin!(attempts);
    let mut opened = H2Opened {
        connections: Vec::new(),
        streams: Vec::with_capacity(n),
        connected: 0,
        wanted: n,
        took: Duration::ZERO,
        first_error: None,
    };
    while let Some(attempt) = attempts.next().await {
        match attempt {
            Ok((connection, streams, error)) => {
                opened.connections.push(connection);
                opened.connected += 1;
                opened.streams.extend(streams);
                if let Some(error) = error {
                    opened.first_error.get_or_insert(error);
                }
            }
            Err(error) => {
                opened.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    opened.took = started.elapsed();
    opened
}

/// One connection and its `count` streams: the connection's task, the streams answered `200`,
/// and the first failure of the others.
async fn open_h2_one(
    server: SocketAddr,
    source: Ipv4Addr,
    tls: &TlsConnector,
    uri: &str,
    count: usize,
) -> io::Result<(
    tokio::task::JoinHandle<()>,
    Vec<h2::RecvStream>,
    Option<String>,
)> {
    let tcp = connect_from(server, source).await?;
    let stream = tls.connect(crate::tls::server_name(), tcp).await?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(io::Error::other("the server did not choose h2"));
    }
    let (mut send, connection) = h2::client::handshake(stream)
        .await
        .map_err(io::Error::other)?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut responses = Vec::with_capacity(count);
    let mut first_error = None;
    for _ in 0..count {
        // Waits while the server's limit of concurrent streams is reached.
        send = match send.ready().await {
            Ok(send) => send,
            Err(error) => {
                first_error.get_or_insert(error.to_string());
                break;
            }
        };
        let request = http::Request::get(uri)
            .header("accept", "text/event-stream")
            .body(())
            .map_err(io::Error::other)?;
        match send.send_request(request, true) {
            Ok((response, _)) => responses.push(response),
            Err(error) => {
                first_error.get_or_insert(error.to_string());
                break;
            }
        }
    }
    let mut streams = Vec::with_capacity(count);
    for response in futures_util::future::join_all(responses).await {
        match response {
            Ok(response) if response.status() == 200 => streams.push(response.into_body()),
            Ok(response) => {
                first_error.get_or_insert(format!("answered {}", response.status()));
            }
            Err(error) => {
                first_error.get_or_insert(error.to_string());
            }
        }
    }
    Ok((connection, streams, first_error))
}

/// A connection from `source`, its port chosen at connect time (`IP_BIND_ADDRESS_NO_PORT`), so
/// that ports are shared between destinations and TIME_WAIT ones are reused on loopback.
pub async fn connect_from(server: SocketAddr, source: Ipv4Addr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads an int of the given size from a live local; the fd is open.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

/// An HS256 token that may publish on every topic.
pub fn token(key: &str) -> io::Result<String> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"mercure": {"publish": ["*"]}}),
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .map_err(io::Error::other)
}

/// Microseconds since `epoch`.
pub fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// A publisher on one keep-alive HTTP/1.1 connection, to one topic.
pub struct Publisher {
    stream: BufReader<Stream>,
    /// The request up to the body's length.
    head: String,
    /// What the body holds before the data.
    before_data: String,
    /// Whether the data goes form-encoded (a space as `+`).
    form: bool,
    line: String,
}

impl Publisher {
    /// To a Mercure hub at `server`: a form with `topic` and `data`, and the bearer `token`.
    pub async fn mercure(server: SocketAddr, token: &str, topic: &str) -> io::Result<Self> {
        Self::mercure_over(server, None, token, topic).await
    }

    /// [`Self::mercure`], over TLS with `tls` if given.
    pub async fn mercure_over(
        server: SocketAddr,
        tls: Option<&TlsConnector>,
        token: &str,
        topic: &str,
    ) -> io::Result<Self> {
        let head = format!(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
        );
        Self::connect(server, tls, head, format!("topic={topic}&data="), true).await
    }

    /// To `target` on `server`, whose body is the data as it is (nchan's publisher).
    pub async fn body(server: SocketAddr, target: &str) -> io::Result<Self> {
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: "
        );
        Self::connect(server, None, head, String::new(), false).await
    }

    async fn connect(
        server: SocketAddr,
        tls: Option<&TlsConnector>,
        head: String,
        before_data: String,
        form: bool,
    ) -> io::Result<Self> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(Stream::over(stream, tls).await?),
            head,
            before_data,
            form,
            line: String::new(),
        })
    }

    /// Publishes `data` (letters, digits and spaces); the response's status.
    pub async fn publish(&mut self, data: &str) -> io::Result<u16> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.exchange(data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "a publish had no answer"))?
    }

    async fn exchange(&mut self, data: &str) -> io::Result<u16> {
        let mut body = self.before_data.clone();
        if self.form {
            body.extend(data.chars().map(|c| if c == ' ' { '+' } else { c }));
        } else {
            body.push_str(data);
        }
        let request = format!("{}{}\r\n\r\n{body}", self.head, body.len());
        let stream = self.stream.get_mut();
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let status = self.read_line().await?;
        let status = status
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP status line: {status:?}")))?;
        let mut length = 0;
        loop {
            let header = self.read_line().await?.to_ascii_lowercase();
            if header.trim_end().is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse().map_err(io::Error::other)?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }

    async fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the publisher's connection",
            ));
        }
        Ok(&self.line)
    }
}

/// The data of update `seq`, try `attempt`, sent now.
pub fn payload(seq: u64, attempt: u32, epoch: Instant) -> String {
    format!("{seq} {attempt} {}", micros_since(epoch))
}

/// [`payload`] padded with `x`s to `len` bytes (if shorter).
pub fn padded_payload(seq: u64, epoch: Instant, len: usize) -> String {
    let mut data = payload(seq, 0, epoch) + " ";
    let pad = len.saturating_sub(data.len());
    data.extend(std::iter::repeat_n('x', pad));
    data
}

/// What one subscriber received.
#[derive(Default)]
pub struct Tally {
    /// Bit `seq` is set once update `seq` has arrived.
    seen: Vec<u64>,
    /// The try that stored each update received from a retried publish (absent: the first).
    attempts: HashMap<u64, u32>,
    /// The first `seq` not received yet.
    low_water: u64,
    /// The same update received twice: the same try (a real duplicate), or two tries of one
    /// publish whose first reply was lost (documented: the hub stores a retry anew).
    duplicates: u64,
    retried_twice: u64,
    /// Why the stream ended before it was stopped, if it did.
    ended: Option<String>,
    /// Bytes read from the stream, the response's head included.
    pub bytes: u64,
}

impl Tally {
    /// Records update `seq`; true the first time.
    fn record(&mut self, seq: u64, attempt: u32) -> bool {
        let (word, bit) = ((seq / 64) as usize, 1 << (seq % 64));
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit == 0 {
            self.seen[word] |= bit;
            if attempt > 0 {
                self.attempts.insert(seq, attempt);
            }
            while self.has(self.low_water) {
                self.low_water += 1;
            }
            return true;
        }
        if self.attempts.get(&seq).copied().unwrap_or(0) == attempt {
            self.duplicates += 1;
        } else {
            self.retried_twice += 1;
        }
        false
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// How many of the `acked` updates never arrived.
    pub fn missing(&self, acked: &[u64]) -> u64 {
        acked.iter().filter(|&&seq| !self.has(seq)).count() as u64
    }
}

/// Reads a subscriber's stream until `stop` (or its end), recording each update; `progress`
/// follows [`Tally::low_water`], and `first_seen(sent)` is called on each update's first arrival.
async fn follow(
    mut stream: Stream,
    progress: Arc<AtomicU64>,
    stop: Arc<Notify>,
    mut first_seen: impl FnMut(u64),
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    // Registered now: a stop signalled before the first poll still counts.
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let read = tokio::select! {
            biased;
            read = stream.read(&mut buf[filled..]) => read,
            () = &mut stopped => break,
        };
        match read {
            Ok(0) => {
                tally.ended = Some("closed by the server".into());
                break;
            }
            Err(error) => {
                tally.ended = Some(error.to_string());
                break;
            }
            Ok(n) => {
                filled += n;
                tally.bytes += n as u64;
            }
        }
        // Whole lines only; chunked-encoding lines and the HTTP head never start with `data: `.
        let mut start = 0;
        while let Some(end) = buf[start..filled].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + end];
            start += end + 1;
            if let Some((seq, attempt, sent)) = line.strip_prefix(b"data: ").and_then(parse)
                && tally.record(seq, attempt)
            {
                first_seen(sent);
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            filled = 0; // a line longer than any of ours: not ours
        }
        progress.store(tally.low_water, Ordering::Relaxed);
    }
    tally
}

/// `<seq> <attempt> <sent>`.
fn parse(data: &[u8]) -> Option<(u64, u32, u64)> {
    let mut fields = std::str::from_utf8(data).ok()?.split(' ');
    let mut next = || fields.next()?.trim_end_matches('\r').parse::<u64>().ok();
    Some((next()?, u32::try_from(next()?).ok()?, next()?))
}

/// Subscribers being read by [`follow`], each in its own task.
pub struct Readers {
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
    progress: Vec<Arc<AtomicU64>>,
    stop: Arc<Notify>,
}

impl Readers {
    pub fn new() -> Self {
        Self {
            tasks: Vec::new(),
            progress: Vec::new(),
            stop: Arc::new(Notify::new()),
        }
    }

    pub fn spawn(&mut self, stream: Stream, first_seen: impl FnMut(u64) + Send + 'static) {
        let progress = Arc::new(AtomicU64::new(0));
        self.progress.push(progress.clone());
        let stop = self.stop.clone();
        self.tasks
            .push(tokio::spawn(follow(stream, progress, stop, first_seen)));
    }

    /// Waits until every reader has all of updates `0..n`, for at most `limit`; how long it
    /// took, or `None`.
    pub async fn wait_for(&self, n: u64, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.progress.iter().all(|p| p.load(Ordering::Relaxed) >= n) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }

    /// Stops every reader; what each received.
    pub async fn stop(self) -> Vec<Tally> {
        self.stop.notify_waiters();
        let mut tallies = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            tallies.push(task.await.unwrap_or_default());
        }
        tallies
    }
}

/// Missing (of the `acked` updates), duplicate and twice-stored-retry counts over `tallies`,
/// and how many streams ended early (with the first reason).
pub struct Losses {
    pub missing: u64,
    pub duplicates: u64,
    pub retried_twice: u64,
    ended: usize,
    first_end: Option<String>,
}

impl Losses {
    pub fn of(tallies: &[Tally], acked: &[u64]) -> Self {
        Self {
            missing: tallies.iter().map(|t| t.missing(acked)).sum(),
            duplicates: tallies.iter().map(|t| t.duplicates).sum(),
            retried_twice: tallies.iter().map(|t| t.retried_twice).sum(),
            ended: tallies.iter().filter(|t| t.ended.is_some()).count(),
            first_end: tallies.iter().find_map(|t| t.ended.clone()),
        }
    }

    pub fn failed(&self) -> bool {
        self.missing > 0 || self.duplicates > 0
    }

    pub fn summary(&self) -> String {
        let mut text = format!("{} missing, {} duplicates", self.missing, self.duplicates);
        if self.retried_twice > 0 {
            text += &format!(
                ", {} twice from a retried publish (see docs/cluster.md)",
                self.retried_twice
            );
        }
        if let Some(reason) = &self.first_end {
            text += &format!(", {} streams ended early ({reason})", self.ended);
        }
        text
    }
}

/// Latencies in microseconds, in buckets 1.6 % wide (64 per power of two), shared by many
/// tasks: sharded, so that two threads seldom count into the same cache line.
pub struct Histogram {
    shards: Vec<Vec<AtomicU64>>,
}

const HISTOGRAM_SHARDS: usize = 16;
const HISTOGRAM_BUCKETS: usize = 64 * 42;

impl Histogram {
    pub fn new() -> Self {
        Self {
            shards: (0..HISTOGRAM_SHARDS)
                .map(|_| (0..HISTOGRAM_BUCKETS).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    pub fn record(&self, shard: usize, micros: u64) {
        self.shards[shard % HISTOGRAM_SHARDS][Self::bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The bucket of a value: the value itself below 128, else its top 7 bits and its scale.
    fn bucket(micros: u64) -> usize {
        let micros = micros.min(1 << 40);
        if micros < 128 {
            return micros as usize;
        }
        let shift = 63 - micros.leading_zeros() - 6;
        shift as usize * 64 + (micros >> shift) as usize
    }

    /// The largest value of a bucket.
    fn upper(bucket: usize) -> u64 {
        if bucket < 128 {
            return bucket as u64;
        }
        let shift = bucket / 64 - 1;
        let mantissa = (bucket - shift * 64) as u64;
        ((mantissa + 1) << shift) - 1
    }

    fn counts(&self) -> Vec<u64> {
        (0..HISTOGRAM_BUCKETS)
            .map(|b| {
                self.shards
                    .iter()
                    .map(|s| s[b].load(Ordering::Relaxed))
                    .sum()
            })
            .collect()
    }

    /// The values (in ms, within 1.6 %) at ranks `ps` (0 to 1), and the largest.
    pub fn quantiles_ms(&self, ps: &[f64]) -> (Vec<f64>, f64) {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        let at = |p: f64| {
            let rank = ((p * total as f64).ceil() as u64).clamp(1, total.max(1));
            let mut seen = 0;
            let bucket = counts.iter().position(|&c| {
                seen += c;
                seen >= rank
            });
            Self::upper(bucket.unwrap_or(0)) as f64 / 1000.0
        };
        (ps.iter().map(|&p| at(p)).collect(), at(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        for micros in [
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            20_000,
            123_456_789,
            1 << 40,
        ] {
            let bucket = Histogram::bucket(micros);
            assert!(Histogram::upper(bucket - 1) < micros, "{micros}");
            assert!(micros <= Histogram::upper(bucket), "{micros}");
            assert!(
                Histogram::upper(bucket) as f64 <= micros as f64 * 1.016,
                "{micros}"
            );
        }
        let histogram = Histogram::new();
        for micros in [0, 127, 128, 255, 256, 1000, 20_000, 1 << 40] {
            histogram.record(0, micros);
        }
        let (q, max) = histogram.quantiles_ms(&[0.5]);
        assert_eq!(q, [0.255]);
        assert!(max >= (1u64 << 40) as f64 / 1000.0);
    }

    #[test]
    fn tally_tells_duplicates_from_twice_stored_retries() {
        let mut tally = Tally::default();
        assert!(tally.record(0, 0));
        assert!(tally.record(2, 1));
        assert_eq!(tally.low_water, 1);
        assert!(tally.record(1, 0));
        assert_eq!(tally.low_water, 3);
        assert!(!tally.record(0, 0));
        assert!(!tally.record(2, 2));
        assert_eq!((tally.duplicates, tally.retried_twice), (1, 1));
        assert_eq!(tally.missing(&[0, 3, 4]), 2);
        assert_eq!(parse(b"12 0 345"), Some((12, 0, 345)));
    }
}
