//! `make bench`: figures of the hub core, measured in this process on a real SQLite file, and of
//! the real server binary under connection churn. Numbers are reported, never asserted.
//!
//! The hub core (each figure the median of several runs):
//! - durable publishes per second, with many concurrent publishers (group commit at work);
//! - server CPU per delivered event, for a burst fanned out to many subscribers;
//! - resident memory per idle subscriber;
//! - publish latency (p50, p99) with 30,000 distinct URI templates registered (30 subscriptions
//!   of 1000), for topics that match one template and topics that match none, the template tests
//!   each publish cost, and the same latency with no subscriber at all;
//! - the time to subscribe with 1000 selectors (all exact, all templates): parsing and
//!   registering them;
//! - history replay throughput: a subscription from `earliest` reading 100,000 updates, in
//!   updates/s and MB/s.
//!
//! CPU is the process's user+system time (getrusage), so it counts every thread, the writer
//! included. HTTP is not in these numbers: they isolate the core the HTTP layer adds to.
//!
//! The server (`target/release/tidings`, built by `make bench` first; `TIDINGS_BIN` names
//! another): its resident memory (VmRSS) before, during and after four rounds of 19,000 plain
//! subscriptions over raw TCP from 127.0.0.1–127.0.0.4 ([`load`]), and with 30 subscriptions of 1000
//! distinct templates each; see [`server`].
//!
//! Cluster mode (release nodes on a `redis-server` of the bench's own): durable publishes/s over
//! HTTP with `appendfsync everysec` and `always`, cross-node publish→receive latency with up to
//! 2,000 subscribers on each of three nodes, and the catch-up after a Redis outage; see
//! [`cluster`].
//!
//! Over HTTP, what a user deploys against nginx + nchan (the usual choice), each server on one
//! CPU and the load generator on another: idle subscribers held and their memory, CPU per
//! delivered event (burst, steady), publish→receive latency, publishes/s, replay; and the same
//! server on HTTPS (HTTP/1.1 over TLS, a certificate `openssl` makes for it, [`tls`]) against
//! itself on HTTP: idle subscribers and their memory (also as HTTP/2 streams), burst CPU per
//! delivered event; see [`http`].
//!
//! The browser's first load of the counter page (release site, Chromium): the WASM bundle's
//! size, the bytes a cold load transfers, the time to the first live event; see [`browser`].
//!
//! One argument runs one section only: `core`, `server`, `cluster`, `http` or `browser` (`make
//! bench ONLY=…`).

mod browser;
mod cluster;
mod http;
mod load;
mod scale;
mod server;
mod tls;

use futures_util::StreamExt;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tidings_hub::{Hub, HubConfig, Selector, SqliteHistory, SubscribeRequest, Update};

pub const RUNS: usize = 5;

pub fn hub(dir: &tempfile::TempDir, config: HubConfig) -> Hub {
    let history = Arc::new(SqliteHistory::open(dir.path()).expect("history"));
    Hub::start(
        history,
        HubConfig {
            subscription_events: false,
            ..config
        },
    )
    .expect("hub")
}

/// This process's CPU time so far, user and system, every thread.
pub fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median of [`RUNS`] runs of `run`, one after the other.
async fn median_of<F: Future<Output = f64>>(mut run: impl FnMut() -> F) -> f64 {
    let mut values = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        values.push(run().await);
    }
    median(values)
}

/// Durable publishes per second with `publishers` concurrent publishers.
async fn publish_throughput(publishers: usize, per_publisher: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir, HubConfig::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let topic = format!("/bench/{p}");
                for _ in 0..per_publisher {
                    hub.publish(Update::public(&topic, "{\"price\": 101.25}").unwrap())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = (publishers * per_publisher) as f64 / started.elapsed().as_secs_f64();
    hub.shutdown().await;
    rate
}

/// CPU time per delivered event when `updates` updates go to `subscribers` subscribers.
async fn fan_out_cost(subscribers: usize, updates: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(
        &dir,
        HubConfig {
            subscriber_buffer: updates + 16,
            ..HubConfig::default()
        },
    );
    let payload = "{\"symbol\":\"ACME\",\"price\":101.25,\"change\":-0.42}";
    // Every event has the same length (fixed-size ids, same data), so a subscriber knows it has
    // everything by counting bytes: the consumer's own cost stays out of the figure.
    let expected_bytes = Update::public("/ticker/S0", payload)
        .unwrap()
        .encode()
        .len()
        * (updates / 4 * 4);
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let sub = hub
            .subscribe(SubscribeRequest {
                selectors: vec![Selector::parse("/ticker/{symbol}").unwrap()],
                scope: None,
                payload: None,
                last_event_id: None,
                expires_at: None,
                routed: false,
            })
            .await
            .unwrap();
        readers.push(tokio::spawn(async move {
            let mut stream = sub.stream;
            let mut bytes = 0usize;
            while bytes < expected_bytes {
                bytes += stream.next().await.expect("stream").len();
            }
            bytes
        }));
    }
    let cpu_before = cpu_time();
    let publishes: Vec<_> = (0..4)
        .map(|p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for _ in 0..updates / 4 {
                    hub.publish(Update::public(format!("/ticker/S{p}"), payload).unwrap())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for p in publishes {
        p.await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    let cpu = cpu_time() - cpu_before;
    hub.shutdown().await;
    cpu.as_secs_f64() * 1e6 / (subscribers * (updates / 4 * 4)) as f64
}

/// Resident bytes per idle subscriber, from opening `n` subscriptions.
async fn memory_per_subscriber(n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir, HubConfig::default());
    let before = rss_bytes();
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        subs.push(
            hub.subscribe(SubscribeRequest {
                selectors: vec![Selector::parse(&format!("/user/{i}")).unwrap()],
                scope: None,
                payload: None,
                last_event_id: None,
                expires_at: None,
                routed: false,
            })
            .await
            .unwrap(),
        );
    }
    let per = (rss_bytes().saturating_sub(before)) as f64 / n as f64;
    drop(subs);
    hub.shutdown().await;
    per
}

/// The value at rank `p` (0 to 1) of `sorted`, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The sections, in order; an argument names the one to run.
const SECTIONS: [&str; 5] = ["core", "server", "cluster", "http", "browser"];

fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.is_empty());
    if let Some(only) = &only
        && !SECTIONS.contains(&only.as_str())
    {
        eprintln!("unknown section {only:?}: one of {SECTIONS:?}, or none for all");
        std::process::exit(2);
    }
    let runs = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let open_files = raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut table = Table::default();
    runtime.block_on(async {
        if runs("core") {
            core(&mut table).await;
        }
        if runs("server") {
            table.section(format!(
                "the server binary (open files: soft limit {}, hard limit {})",
                open_files.0, open_files.1
            ));
            if let Err(error) = server::memory(&mut table, open_files.0).await {
                table.row("server figures", format!("not measured: {error}"));
            }
            if let Err(error) = server::connection_cap(&mut table).await {
                table.row("connection cap figures", format!("not measured: {error}"));
            }
        }
        if runs("cluster") {
            table.section(format!(
                "cluster on Redis (release nodes; the load generator, the nodes and Redis share \
                 these {} cores)",
                num_cpus()
            ));
            cluster::section(&mut table, open_files.0).await;
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    // On threads of its own, pinned to CPUs.
    if runs("http") {
        http::section(&mut table, open_files.0);
    }
    if runs("browser") {
        browser::section(&mut table);
    }
    table.print();
}

/// The hub core, in this process.
async fn core(table: &mut Table) {
    table.section(format!(
        "the hub core, in-process, median of {RUNS} runs unless said ({} cores)",
        num_cpus()
    ));
    table.row(
        "durable publishes/s (64 concurrent publishers)",
        format!("{:.0} /s", median_of(|| publish_throughput(64, 500)).await),
    );
    table.row(
        "CPU per delivered event (1000 subscribers x 400 updates)",
        format!("{:.3} µs", median_of(|| fan_out_cost(1000, 400)).await),
    );
    table.row(
        "memory per idle subscriber (10000, hub core only)",
        format!(
            "{:.0} bytes",
            median_of(|| memory_per_subscriber(10_000)).await
        ),
    );

    scale::publish_latency(table).await;
    scale::subscribe_time(table).await;
    scale::replay(table).await;
}

/// Raises this process's soft limit of open files to the hard limit (the server child inherits
/// it); returns (soft, hard) as they are afterwards.
fn raise_open_files() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or fill the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                eprintln!(
                    "cannot raise the open-file limit to {}: {}",
                    limit.rlim_max,
                    std::io::Error::last_os_error()
                );
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    (limit.rlim_cur, limit.rlim_max)
}

/// The figures, printed as they come and together at the end.
#[derive(Default)]
pub struct Table {
    entries: Vec<Entry>,
}

enum Entry {
    Section(String),
    Row(String, String),
    /// Printed as it is (a table of its own, already aligned).
    Line(String),
}

impl Table {
    pub fn section(&mut self, title: impl Into<String>) {
        let title = title.into();
        println!("-- {title}");
        self.entries.push(Entry::Section(title));
    }

    pub fn row(&mut self, figure: impl Into<String>, value: impl Into<String>) {
        let (figure, value) = (figure.into(), value.into());
        println!("   {figure}: {value}");
        self.entries.push(Entry::Row(figure, value));
    }

    pub fn line(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("   {text}");
        self.entries.push(Entry::Line(text));
    }

    fn print(&self) {
        let rows = self.entries.iter().filter_map(|e| match e {
            Entry::Row(figure, value) => Some((figure.chars().count(), value.chars().count())),
            _ => None,
        });
        let width = rows.clone().map(|(f, _)| f).max().unwrap_or(0);
        let values = rows.map(|(_, v)| v).max().unwrap_or(0);
        let lines = self.entries.iter().filter_map(|e| match e {
            Entry::Line(text) => Some(text.chars().count()),
            _ => None,
        });
        println!();
        println!(
            "{:=<1$}",
            "",
            (width + 4 + values).max(lines.max().unwrap_or(0) + 2)
        );
        println!("tidings bench: summary");
        for entry in &self.entries {
            match entry {
                Entry::Section(title) => println!("\n{title}"),
                Entry::Row(figure, value) => println!("  {figure:<width$}  {value}"),
                Entry::Line(text) => println!("  {text}"),
            }
        }
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
