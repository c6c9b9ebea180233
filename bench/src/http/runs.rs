//! The runs, each on a server started for it: idle subscribers, fan-outs (burst, steady),
//! publishes/s and the replay. The subscribers are read on the section's thread; publishers run
//! on a thread of their own (on the same CPU), so that their schedule never waits behind the
//! subscribers' reads.

use super::{
    BURST_PUBLISHERS, BURST_SUBSCRIBERS, BURST_UPDATES, PUBLISHERS, RATE_UPDATES, REPLAY_UPDATES,
    STEADY_PUBLISHERS, STEADY_RATE, STEADY_SECONDS, STEADY_SUBSCRIBERS,
    servers::{Endpoint, Server},
};
use crate::load::{self, Histogram, Losses, Readers, Stream, micros_since, padded_payload};
use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::io::AsyncReadExt;

/// Every update's data, in bytes.
const PAYLOAD: usize = 100;
/// The pace of the updates the replay's subscriber misses: nchan's message ids count the
/// messages of a channel within a second in 16 bits, and past 32,767 in one second it loses
/// its place on resuming ("previous message id tags don't match").
const REPLAY_FILL_RATE: u64 = 20_000;
/// Before reading a server's memory.
const SETTLE: Duration = Duration::from_secs(1);
/// For the subscribers to hold every update once the last is acknowledged.
const DRAIN: Duration = Duration::from_secs(20);
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);

/// This process's CPU time: the load generator's (while this section runs, its threads are the
/// only busy ones), all on one CPU.
fn load_cpu() -> Duration {
    crate::cpu_time()
}

/// `asked` subscriptions to one topic held open: how many the server held, and its RSS growth
/// per held subscription in KiB (read [`SETTLE`] after it counted them all).
pub async fn idle_subscribers(server: &Server, asked: usize) -> io::Result<(usize, f64)> {
    tokio::time::sleep(SETTLE).await;
    let before = server.rss_kib()?;
    let request = server.endpoint.subscription("idle", None);
    let (cpu, load) = (server.cpu()?, load_cpu());
    let opened = server.endpoint.open(vec![request; asked]).await;
    let (cpu, load) = (server.cpu()? - cpu, load_cpu() - load);
    let held = opened.streams.len();
    let tls = opened.streams.first().and_then(|s| s.tls_summary());
    let after = rss_holding(server, held).await?;
    println!(
        "   {}: idle: {}{}, server CPU {:.2} s, load generator's {:.2} s; RSS {:.1} → {:.1} MiB",
        server.kind().name(),
        opened.summary(),
        tls.map_or(String::new(), |t| format!(" ({t})")),
        cpu.as_secs_f64(),
        load.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    release(server, opened, before, after, held).await
}

/// [`idle_subscribers`] as HTTP/2 streams over TLS (HTTPS only), `per_connection` on each
/// connection: how many the server held, and its RSS growth per held stream in KiB.
pub async fn idle_streams(
    server: &Server,
    asked: usize,
    per_connection: usize,
) -> io::Result<(usize, f64)> {
    let tls = server
        .endpoint
        .tls_h2
        .as_ref()
        .ok_or_else(|| io::Error::other("HTTP/2 is measured on HTTPS only"))?;
    tokio::time::sleep(SETTLE).await;
    let before = server.rss_kib()?;
    let target = "/.well-known/mercure?topic=idle";
    let opened = load::open_h2(server.endpoint.addr, tls, target, asked, per_connection).await;
    let held = opened.streams.len();
    let after = rss_holding(server, held).await?;
    println!(
        "   {}: idle over HTTP/2: {}; RSS {:.1} → {:.1} MiB",
        server.kind().name(),
        opened.summary(),
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    release(server, opened, before, after, held).await
}

/// The server's RSS in KiB, [`SETTLE`] after it counts `held` subscribers.
async fn rss_holding(server: &Server, held: usize) -> io::Result<u64> {
    server.wait_for_subscribers(held).await?;
    tokio::time::sleep(SETTLE).await;
    server.rss_kib()
}

/// Closes the `held` subscriptions of `opened` and waits until the server counts none: how many
/// it held, and its RSS growth per held one in KiB.
async fn release<T>(
    server: &Server,
    opened: T,
    before: u64,
    after: u64,
    held: usize,
) -> io::Result<(usize, f64)> {
    drop(opened);
    server.wait_for_subscribers(0).await?;
    Ok((
        held,
        after.saturating_sub(before) as f64 / held.max(1) as f64,
    ))
}

/// What a fan-out measured.
pub struct FanOut {
    subscribers: usize,
    acked: usize,
    pub refused: usize,
    /// How late the latest publish was written, against its schedule.
    pub behind: Duration,
    server_cpu: Duration,
    wall: Duration,
    pub losses: Losses,
    pub latencies: Arc<Histogram>,
    pub load_busy: f64,
}

impl FanOut {
    fn delivered(&self) -> u64 {
        (self.subscribers * self.acked) as u64 - self.losses.missing
    }

    pub fn cpu_per_event(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.delivered().max(1) as f64
    }

    pub fn summary(&self) -> String {
        format!(
            "{} deliveries in {:.1} s (publishes up to {:.0} ms late), server CPU {:.2} s ({:.2} \
             µs each); {}; load generator busy {:.0} %",
            self.delivered(),
            self.wall.as_secs_f64(),
            self.behind.as_secs_f64() * 1e3,
            self.server_cpu.as_secs_f64(),
            self.cpu_per_event(),
            self.losses.summary(),
            self.load_busy * 100.0
        )
    }
}

/// The burst: [`BURST_SUBSCRIBERS`] subscribers, [`BURST_UPDATES`] updates from
/// [`BURST_PUBLISHERS`] publishers, each publishing as soon as its previous one is answered.
pub async fn burst(server: &Server) -> io::Result<FanOut> {
    let schedule = Schedule {
        topic: "burst",
        updates: BURST_UPDATES,
        publishers: BURST_PUBLISHERS,
        rate: None,
    };
    fan_out(server, BURST_SUBSCRIBERS, schedule).await
}

/// The steady run: [`STEADY_SUBSCRIBERS`] subscribers, [`STEADY_RATE`] updates a second for
/// [`STEADY_SECONDS`] s, from [`STEADY_PUBLISHERS`] publishers taking turns.
pub async fn steady(server: &Server) -> io::Result<FanOut> {
    let schedule = Schedule {
        topic: "steady",
        updates: STEADY_RATE * STEADY_SECONDS,
        publishers: STEADY_PUBLISHERS,
        rate: Some(STEADY_RATE),
    };
    fan_out(server, STEADY_SUBSCRIBERS, schedule).await
}

/// `subscribers` subscriptions to the schedule's topic get its updates. The server's CPU and
/// the load generator's are read from just before the first publish until every subscriber has
/// them all (or [`DRAIN`] after the last was answered).
async fn fan_out(server: &Server, subscribers: usize, schedule: Schedule) -> io::Result<FanOut> {
    let updates = schedule.updates;
    let request = server.endpoint.subscription(schedule.topic, None);
    let streams = server
        .endpoint
        .open(vec![request; subscribers])
        .await
        .all()?;
    server.wait_for_subscribers(subscribers).await?;
    let latencies = Arc::new(Histogram::new());
    let epoch = Instant::now();
    let mut readers = Readers::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let latencies = latencies.clone();
        readers.spawn(stream, move |sent| {
            latencies.record(i, micros_since(epoch).saturating_sub(sent));
        });
    }
    let (cpu, load, started) = (server.cpu()?, load_cpu(), Instant::now());
    let published = publish(&server.endpoint, schedule, epoch).await;
    if published.as_ref().is_ok_and(|p| p.refused == 0) {
        readers.wait_for(updates, DRAIN).await;
    }
    let (server_cpu, wall) = (server.cpu()? - cpu, started.elapsed());
    let load_busy = (load_cpu() - load).as_secs_f64() / wall.as_secs_f64();
    let tallies = readers.stop().await;
    let published = published?;
    server.wait_for_subscribers(0).await?;
    let losses = Losses::of(&tallies, &published.acked);
    Ok(FanOut {
        subscribers,
        acked: published.acked.len(),
        refused: published.refused,
        behind: published.behind,
        server_cpu,
        wall,
        losses,
        latencies,
        load_busy,
    })
}

/// What [`publish`] did.
struct Published {
    /// The updates accepted.
    acked: Vec<u64>,
    refused: usize,
    took: Duration,
    /// How late the latest publish was written, against its schedule.
    behind: Duration,
}

/// Updates `0..updates` to `topic`: update `seq` through publisher `seq % publishers`, due at
/// `seq / rate` s if `rate` is given, else as soon as the publisher's previous one is answered.
struct Schedule {
    topic: &'static str,
    updates: u64,
    publishers: u64,
    rate: Option<u64>,
}

/// Publishes on `schedule`, on a thread of its own (which this thread's CPU affinity passes
/// to), so that it never waits behind the subscribers' reads.
async fn publish(endpoint: &Endpoint, schedule: Schedule, epoch: Instant) -> io::Result<Published> {
    let endpoint = endpoint.clone();
    let (done, published) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let publishing = publish_here(&endpoint, schedule, epoch);
        let _ = done.send(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| runtime.block_on(publishing)),
        );
    });
    published
        .await
        .map_err(|_| io::Error::other("the publishing thread failed"))?
}

async fn publish_here(
    endpoint: &Endpoint,
    schedule: Schedule,
    epoch: Instant,
) -> io::Result<Published> {
    let Schedule {
        topic,
        updates,
        publishers,
        rate,
    } = schedule;
    let mut tasks = Vec::new();
    let kind = endpoint.kind;
    let start = tokio::time::Instant::now();
    for p in 0..publishers {
        let mut publisher = endpoint.publisher(topic).await?;
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut refused, mut behind) = (Vec::new(), 0, Duration::ZERO);
            for seq in (p..updates).step_by(publishers as usize) {
                if let Some(rate) = rate {
                    let due = start + Duration::from_micros(seq * 1_000_000 / rate);
                    tokio::time::sleep_until(due).await;
                    behind = behind.max(due.elapsed());
                }
                let data = padded_payload(seq, epoch, PAYLOAD);
                if kind.accepts(publisher.publish(&data).await?) {
                    acked.push(seq);
                } else {
                    refused += 1;
                }
            }
            io::Result::Ok((acked, refused, behind))
        }));
    }
    let mut published = Published {
        acked: Vec::new(),
        refused: 0,
        took: Duration::ZERO,
        behind: Duration::ZERO,
    };
    for task in tasks {
        let (acked, refused, behind) = task.await.map_err(io::Error::other)??;
        published.acked.extend(acked);
        published.refused += refused;
        published.behind = published.behind.max(behind);
    }
    published.took = start.elapsed();
    Ok(published)
}

/// What the publishes and the replay measured.
pub struct Replay {
    pub publishes_per_second: f64,
    pub took: Duration,
    pub bytes: u64,
    pub losses: Losses,
    server_cpu: Duration,
    pub load_busy: f64,
}

impl Replay {
    pub fn summary(&self) -> String {
        format!(
            "{RATE_UPDATES} publishes at {:.0}/s; {REPLAY_UPDATES} missed, replayed in {:.0} ms, \
             {:.1} MB ({}), server CPU {:.2} s; load generator busy {:.0} %",
            self.publishes_per_second,
            self.took.as_secs_f64() * 1e3,
            self.bytes as f64 / 1e6,
            self.losses.summary(),
            self.server_cpu.as_secs_f64(),
            self.load_busy * 100.0
        )
    }
}

/// [`PUBLISHERS`] publishers publish [`RATE_UPDATES`] updates (timed: publishes/s); then a
/// subscriber receives one update and leaves, [`REPLAY_UPDATES`] updates are published at
/// [`REPLAY_FILL_RATE`] a second, and the subscriber comes back with the id it had, timed from
/// connecting until it holds every update it missed.
pub async fn publish_and_replay(server: &Server) -> io::Result<Replay> {
    let epoch = Instant::now();
    let endpoint = &server.endpoint;
    let schedule = Schedule {
        topic: "rate",
        updates: RATE_UPDATES,
        publishers: PUBLISHERS,
        rate: None,
    };
    let rate = publish(endpoint, schedule, epoch).await?;
    if rate.refused > 0 {
        return Err(io::Error::other(format!(
            "{} of {RATE_UPDATES} publishes refused",
            rate.refused
        )));
    }
    let publishes_per_second = rate.acked.len() as f64 / rate.took.as_secs_f64();

    let topic = "replay";
    let mut leaving = endpoint
        .open(vec![endpoint.subscription(topic, None)])
        .await
        .all()?
        .remove(0);
    server.wait_for_subscribers(1).await?;
    let status = endpoint.publisher(topic).await?.publish("seen").await?;
    if !endpoint.kind.accepts(status) {
        return Err(io::Error::other(format!(
            "the first publish was answered {status}"
        )));
    }
    let last_seen = first_event_id(&mut leaving).await?;
    drop(leaving);
    server.wait_for_subscribers(0).await?;

    let schedule = Schedule {
        topic,
        updates: REPLAY_UPDATES,
        publishers: PUBLISHERS,
        rate: Some(REPLAY_FILL_RATE),
    };
    let missed = publish(endpoint, schedule, epoch).await?;
    if missed.refused > 0 {
        // Some update would never come: no replay to time.
        return Err(io::Error::other(format!(
            "{} of {REPLAY_UPDATES} updates to replay refused",
            missed.refused
        )));
    }

    let (cpu, load, started) = (server.cpu()?, load_cpu(), Instant::now());
    let request = endpoint.subscription(topic, Some(&last_seen));
    let stream = endpoint.open(vec![request]).await.all()?.remove(0);
    let mut readers = Readers::new();
    readers.spawn(stream, drop);
    let replayed = readers.wait_for(REPLAY_UPDATES, REPLAY_TIMEOUT).await;
    let (server_cpu, took) = (server.cpu()? - cpu, started.elapsed());
    let load_busy = (load_cpu() - load).as_secs_f64() / took.as_secs_f64();
    let tallies = readers.stop().await;
    let losses = Losses::of(&tallies, &missed.acked);
    if replayed.is_none() && !losses.failed() {
        return Err(io::Error::other(format!(
            "the replay did not end within {REPLAY_TIMEOUT:?}"
        )));
    }
    Ok(Replay {
        publishes_per_second,
        took,
        bytes: tallies.iter().map(|t| t.bytes).sum(),
        losses,
        server_cpu,
        load_busy,
    })
}

/// Reads `stream` until its first event's `id:` line; the id.
async fn first_event_id(stream: &mut Stream) -> io::Result<String> {
    let read = async {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::other("the stream ended before an event"));
            }
            text.extend_from_slice(&buf[..n]);
            let complete = &text[..text.iter().rposition(|&b| b == b'\n').unwrap_or(0)];
            let id = String::from_utf8_lossy(complete)
                .lines()
                .find_map(|l| Some(l.strip_prefix("id: ")?.trim().to_owned()));
            if let Some(id) = id {
                return Ok(id);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| io::Error::other("no event within 10 s"))?
}
