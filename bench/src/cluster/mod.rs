//! Cluster mode: release nodes (`tidings --redis-url …`, children as in [`crate::server`]) on a
//! `redis-server` of the bench's own ([`tidings_testkit::RedisServer`]), over loopback HTTP:
//!
//! - [`rate`]: durable publishes per second through one node, `appendfsync everysec` and
//!   `always`;
//! - [`latency`]: publish→receive latency across three nodes, with up to 2,000 subscribers on
//!   each;
//! - [`outage`]: how long node 2's subscribers take to catch up after a 5 s Redis outage.
//!
//! The bench process, the nodes and Redis share this machine's cores, so every figure here
//! includes the load generator's own cost.
//!
//! Publishers are raw HTTP/1.1 keep-alive connections ([`Publisher`]); subscribers are raw TCP
//! streams ([`crate::server::open`]) read by [`follow`]. Each update's data is
//! `<seq> <attempt> <sent>`: its number, which try of the publisher stored it, and when it was
//! sent (µs since the run's start), so a subscriber can tell missing, duplicate and late ones.

mod latency;
mod outage;
mod rate;

use crate::{
    Table,
    server::{self, Child, random_key},
};
use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tidings_testkit::RedisServer;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::Notify,
};

/// The topic every figure publishes and subscribes to.
const TOPIC: &str = "/bench";
const SUBSCRIBE: &[u8] = b"GET /.well-known/mercure?topic=/bench HTTP/1.1\r\nHost: x\r\n\r\n";
/// One publish, request to response.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The section; `open_files` is this process's limit, which bounds the subscribers it holds.
pub async fn section(table: &mut Table, open_files: u64) {
    for fsync in ["everysec", "always"] {
        if let Err(error) = rate::measure(table, fsync).await {
            table.row(
                format!("durable publishes/s, appendfsync {fsync}"),
                format!("not measured: {error}"),
            );
        }
    }
    if let Err(error) = latency::measure(table, open_files).await {
        table.row("cross-node latency", format!("not measured: {error}"));
    }
    if let Err(error) = outage::measure(table).await {
        table.row(
            "catch-up after a Redis outage",
            format!("not measured: {error}"),
        );
    }
}

/// Nodes on one Redis; dropped in this order: nodes, Redis, their folders.
struct Cluster {
    nodes: Vec<Child>,
    redis: RedisServer,
    token: String,
    _data: tempfile::TempDir,
}

impl Cluster {
    async fn start(fsync: &'static str, nodes: usize) -> io::Result<Self> {
        let binary = server::binary()?;
        let redis = tokio::task::spawn_blocking(move || RedisServer::start_with_fsync(fsync))
            .await
            .map_err(|_| io::Error::other("redis-server did not start (is it installed?)"))?;
        let key = random_key()?;
        let data = tempfile::tempdir()?;
        let args = ["--redis-url".to_owned(), redis.url()];
        let nodes = (1..=nodes)
            .map(|n| {
                let dir = data.path().join(n.to_string());
                std::fs::create_dir(&dir)?;
                Child::spawn_with(&binary, &dir, &key, &args)
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            nodes,
            redis,
            token: token(&key)?,
            _data: data,
        })
    }

    fn node(&self, n: usize) -> SocketAddr {
        self.nodes[n - 1].addr
    }

    /// A row per node that logged WARN or ERROR lines, with the first of them.
    fn report_problems(&self, table: &mut Table, during: &str) {
        for (n, node) in self.nodes.iter().enumerate() {
            let problems = node.take_problems();
            if let Some(first) = problems.first.first() {
                table.row(
                    format!(
                        "  node {n} logged {} WARN/ERROR lines {during}",
                        problems.count,
                        n = n + 1
                    ),
                    format!("first: {}", first.trim()),
                );
            }
        }
    }

    /// The nodes' WARN and ERROR lines (the first few of each), on stderr: not figures.
    fn log_problems(&self, during: &str) {
        for (n, node) in self.nodes.iter().enumerate() {
            let problems = node.take_problems();
            if problems.count > 0 {
                eprintln!(
                    "   node {} logged {} WARN/ERROR lines ({during}):",
                    n + 1,
                    problems.count
                );
                for line in &problems.first {
                    eprintln!("     {}", line.trim());
                }
            }
        }
    }
}

/// An HS256 token that may publish on every topic.
fn token(key: &str) -> io::Result<String> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"mercure": {"publish": ["*"]}}),
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .map_err(io::Error::other)
}

/// Microseconds since `epoch`.
fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// A publisher on one keep-alive HTTP/1.1 connection.
struct Publisher {
    stream: BufReader<TcpStream>,
    head: String,
    line: String,
}

impl Publisher {
    async fn connect(node: SocketAddr, token: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(node).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            head: format!(
                "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            ),
            line: String::new(),
        })
    }

    /// Publishes `data` (form-encoded already) on [`TOPIC`]; the response's status.
    async fn publish(&mut self, data: &str) -> io::Result<u16> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.exchange(data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "a publish had no answer"))?
    }

    async fn exchange(&mut self, data: &str) -> io::Result<u16> {
        let body = format!("topic={TOPIC}&data={data}");
        let request = format!("{}{}\r\n\r\n{body}", self.head, body.len());
        self.stream.get_mut().write_all(request.as_bytes()).await?;
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
                "the node closed the publisher's connection",
            ));
        }
        Ok(&self.line)
    }
}

/// The data of update `seq`, try `attempt`, sent now (form-encoded: `+` is a space).
fn payload(seq: u64, attempt: u32, epoch: Instant) -> String {
    format!("{seq}+{attempt}+{}", micros_since(epoch))
}

/// What one subscriber received.
#[derive(Default)]
struct Tally {
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
    fn missing(&self, acked: &[u64]) -> u64 {
        acked.iter().filter(|&&seq| !self.has(seq)).count() as u64
    }
}

/// Reads a subscriber's stream until `stop` (or its end), recording each update; `progress`
/// follows [`Tally::low_water`], and `first_seen(sent)` is called on each update's first arrival.
async fn follow(
    mut stream: TcpStream,
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
                tally.ended = Some("closed by the node".into());
                break;
            }
            Err(error) => {
                tally.ended = Some(error.to_string());
                break;
            }
            Ok(n) => filled += n,
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
struct Readers {
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
    progress: Vec<Arc<AtomicU64>>,
    stop: Arc<Notify>,
}

impl Readers {
    fn new() -> Self {
        Self {
            tasks: Vec::new(),
            progress: Vec::new(),
            stop: Arc::new(Notify::new()),
        }
    }

    fn spawn(&mut self, stream: TcpStream, first_seen: impl FnMut(u64) + Send + 'static) {
        let progress = Arc::new(AtomicU64::new(0));
        self.progress.push(progress.clone());
        let stop = self.stop.clone();
        self.tasks
            .push(tokio::spawn(follow(stream, progress, stop, first_seen)));
    }

    /// Waits until every reader has all of updates `0..n`, for at most `limit`; how long it
    /// took, or `None`.
    async fn wait_for(&self, n: u64, limit: Duration) -> Option<Duration> {
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
    async fn stop(self) -> Vec<Tally> {
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
struct Losses {
    missing: u64,
    duplicates: u64,
    retried_twice: u64,
    ended: usize,
    first_end: Option<String>,
}

impl Losses {
    fn of(tallies: &[Tally], acked: &[u64]) -> Self {
        Self {
            missing: tallies.iter().map(|t| t.missing(acked)).sum(),
            duplicates: tallies.iter().map(|t| t.duplicates).sum(),
            retried_twice: tallies.iter().map(|t| t.retried_twice).sum(),
            ended: tallies.iter().filter(|t| t.ended.is_some()).count(),
            first_end: tallies.iter().find_map(|t| t.ended.clone()),
        }
    }

    fn failed(&self) -> bool {
        self.missing > 0 || self.duplicates > 0
    }

    fn summary(&self) -> String {
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

/// Opens `n` subscriptions to [`TOPIC`] on `node`; an error unless all of them open.
async fn subscribe(node: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    let request: Arc<[u8]> = Arc::from(SUBSCRIBE);
    let opened = server::open(node, vec![request; n]).await;
    if opened.streams.len() < n {
        return Err(io::Error::other(format!(
            "subscribing on {node}: {}",
            opened.summary()
        )));
    }
    Ok(opened.streams)
}

/// Latencies in microseconds, in buckets 1.6 % wide (64 per power of two), shared by many
/// tasks: sharded, so that two threads seldom count into the same cache line.
struct Histogram {
    shards: Vec<Vec<AtomicU64>>,
}

const HISTOGRAM_SHARDS: usize = 16;
const HISTOGRAM_BUCKETS: usize = 64 * 42;

impl Histogram {
    fn new() -> Self {
        Self {
            shards: (0..HISTOGRAM_SHARDS)
                .map(|_| (0..HISTOGRAM_BUCKETS).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    fn record(&self, shard: usize, micros: u64) {
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
    fn quantiles_ms(&self, ps: &[f64]) -> (Vec<f64>, f64) {
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
