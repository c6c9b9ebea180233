//! The hub's own health, published every second on the monitor topic for the `/monitor` page.
//!
//! A sample reads `/proc`, which fails when the process is out of descriptors, exactly when the
//! figures matter: a failed reading skips that sample (the next one spans both intervals), and
//! every difference saturates, so nothing here can panic.

use crate::AppState;
use std::time::{Duration, Instant};
use tidings_app::model::{MONITOR_TOPIC, MonitorSample};
use tidings_hub::Update;

/// What one sample reads.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    published: u64,
    delivered: u64,
    cpu: Duration,
}

impl Reading {
    fn take(state: &AppState) -> Option<Self> {
        let stats = state.hub.stats();
        Some(Self {
            at: Instant::now(),
            published: stats.updates_published,
            delivered: stats.events_delivered,
            cpu: cpu_time()?,
        })
    }

    /// Rates over the time since `earlier`, whatever the two readings hold.
    fn rates_since(&self, earlier: &Reading) -> (f64, f64, f64) {
        let seconds = self
            .at
            .saturating_duration_since(earlier.at)
            .as_secs_f64()
            .max(1e-3);
        (
            self.published.saturating_sub(earlier.published) as f64 / seconds,
            self.delivered.saturating_sub(earlier.delivered) as f64 / seconds,
            self.cpu.saturating_sub(earlier.cpu).as_secs_f64() / seconds * 100.0,
        )
    }
}

pub async fn run(state: AppState, interval: Duration) {
    let started = Instant::now();
    let mut last = Reading::take(&state);
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (Some(now), Some(memory_bytes)) = (Reading::take(&state), rss_bytes()) else {
            continue;
        };
        let Some(earlier) = last.replace(now) else {
            continue;
        };
        let (publishes_per_s, deliveries_per_s, cpu_percent) = now.rates_since(&earlier);
        let stats = state.hub.stats();
        let sample = MonitorSample {
            at_ms: crate::now_ms(),
            subscribers: stats.subscribers,
            publishes_per_s,
            deliveries_per_s,
            evictions: stats.subscribers_evicted,
            history: stats.history_updates,
            memory_bytes,
            cpu_percent,
            uptime_s: started.elapsed().as_secs(),
        };
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

/// This process's user + system CPU time, if `/proc` can be read.
fn cpu_time() -> Option<Duration> {
    cpu_time_in(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// From `/proc/self/stat`: fields 14 and 15, utime and stime, in clock ticks (100 per second on
/// Linux).
fn cpu_time_in(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let total = ticks(11)?.checked_add(ticks(12)?)?;
    Some(Duration::from_millis(total.saturating_mul(10)))
}

/// Resident memory of this process, if `/proc` can be read.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_or_odd_reading_never_panics() {
        // A read that failed (empty, cut short) is no reading.
        assert_eq!(cpu_time_in(""), None);
        assert_eq!(cpu_time_in("1 (tidings) S 1 2"), None);
        assert_eq!(
            cpu_time_in("1 (a) b) S 0 0 0 0 0 0 0 0 0 0 250 50 0"),
            Some(Duration::from_secs(3))
        );
        // Counters and CPU time lower than before (a reading that failed once read as zero):
        // zero rates, not an overflow.
        let at = Instant::now();
        let before = Reading {
            at,
            published: 10,
            delivered: 10,
            cpu: Duration::from_secs(5),
        };
        let after = Reading {
            at: at + Duration::from_secs(1),
            published: 0,
            delivered: 0,
            cpu: Duration::ZERO,
        };
        assert_eq!(after.rates_since(&before), (0.0, 0.0, 0.0));
        let (publishes, _, cpu) = before.rates_since(&after);
        assert!(publishes.is_finite() && cpu.is_finite(), "time going back");
    }
}
