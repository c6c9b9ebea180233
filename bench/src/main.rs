//! `make bench`: measures the hub core in this process, on a real SQLite file.
//!
//! - durable publishes per second, with many concurrent publishers (group commit at work);
//! - server CPU per delivered event, for a burst fanned out to many subscribers;
//! - resident memory per idle subscriber.
//!
//! Each figure is the median of several runs. CPU is the process's user+system time
//! (getrusage), so it counts every thread, the writer included. HTTP is not in these numbers:
//! they isolate the core the HTTP layer adds to.

use futures_util::StreamExt;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tidings_hub::{Hub, HubConfig, Selector, SqliteHistory, SubscribeRequest, Update};

const RUNS: usize = 5;

fn hub(dir: &tempfile::TempDir, config: HubConfig) -> Hub {
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

fn cpu_time() -> Duration {
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "tidings hub core, in-process, median of {RUNS} runs, {} cores",
            num_cpus()
        );
        let mut rates = Vec::new();
        for _ in 0..RUNS {
            rates.push(publish_throughput(64, 500).await);
        }
        println!(
            "durable publishes/s (64 concurrent publishers): {:.0}",
            median(rates)
        );

        let mut costs = Vec::new();
        for _ in 0..RUNS {
            costs.push(fan_out_cost(1000, 400).await);
        }
        println!(
            "CPU per delivered event (1000 subscribers x 400 updates): {:.3} µs",
            median(costs)
        );

        let mut memory = Vec::new();
        for _ in 0..RUNS {
            memory.push(memory_per_subscriber(10_000).await);
        }
        println!(
            "memory per idle subscriber (10000, hub core only): {:.0} bytes",
            median(memory)
        );
    });
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
