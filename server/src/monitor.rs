//! The hub's own health, published every second on the monitor topic for the `/monitor` page.

use crate::AppState;
use std::time::{Duration, Instant};
use tidings_app::model::{MONITOR_TOPIC, MonitorSample};
use tidings_hub::Update;

pub async fn run(state: AppState, interval: Duration) {
    let started = Instant::now();
    let stats = state.hub.stats();
    let mut last = (
        Instant::now(),
        stats.updates_published,
        stats.events_delivered,
        cpu_time(),
    );
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let stats = state.hub.stats();
        let now = (
            Instant::now(),
            stats.updates_published,
            stats.events_delivered,
            cpu_time(),
        );
        let seconds = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        let sample = MonitorSample {
            at_ms: crate::now_ms(),
            subscribers: stats.subscribers,
            publishes_per_s: (now.1 - last.1) as f64 / seconds,
            deliveries_per_s: (now.2 - last.2) as f64 / seconds,
            evictions: stats.subscribers_evicted,
            history: stats.history_updates,
            memory_bytes: rss_bytes(),
            cpu_percent: (now.3 - last.3).as_secs_f64() / seconds * 100.0,
            uptime_s: started.elapsed().as_secs(),
        };
        last = now;
        let Ok(update) = Update::public(
            MONITOR_TOPIC,
            serde_json::to_string(&sample).expect("serializable"),
        ) else {
            return;
        };
        // On a cluster, only the leading node publishes its figures.
        if !state.hub.leads() {
            continue;
        }
        if let Err(tidings_hub::PublishError::ShuttingDown) = state.hub.publish(update).await {
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
