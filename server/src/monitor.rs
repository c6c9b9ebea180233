//! The hub's own health, published every second on the monitor topic for the `/monitor` page.

use crate::AppState;
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};
use tidings_app::model::{MONITOR_TOPIC, MonitorSample};
use tidings_hub::Update;

pub async fn run(state: AppState, interval: Duration) {
    let started = Instant::now();
    let metrics = state.hub.metrics();
    let mut last = (
        Instant::now(),
        metrics.updates_published.load(Ordering::Relaxed),
        metrics.events_delivered.load(Ordering::Relaxed),
        cpu_time(),
    );
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let metrics = state.hub.metrics();
        let now = (
            Instant::now(),
            metrics.updates_published.load(Ordering::Relaxed),
            metrics.events_delivered.load(Ordering::Relaxed),
            cpu_time(),
        );
        let seconds = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        let sample = MonitorSample {
            at_ms: crate::now_ms(),
            subscribers: state.hub.subscriber_count() as u64,
            publishes_per_s: (now.1 - last.1) as f64 / seconds,
            deliveries_per_s: (now.2 - last.2) as f64 / seconds,
            evictions: metrics.subscribers_evicted.load(Ordering::Relaxed),
            history: metrics.history_len.load(Ordering::Relaxed),
            memory_bytes: rss_bytes(),
            cpu_percent: (now.3 - last.3).as_secs_f64() / seconds * 100.0,
            uptime_s: started.elapsed().as_secs(),
        };
        last = now;
        let update = Update::public(
            MONITOR_TOPIC,
            serde_json::to_string(&sample).expect("serializable"),
        );
        if state.hub.publish(update).await.is_err() {
            return;
        }
    }
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    // /proc/self/stat fields 14 and 15: utime and stime, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Resident memory of this process.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
