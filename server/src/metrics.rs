//! Counters the server keeps about itself, and `GET /metrics` in the Prometheus text format;
//! the health probes: `GET /healthz`, `/mercure/health/ready` and `/mercure/health/live`.
//!
//! The hub counts its own figures (it knows nothing of Prometheus); this module reads a copy of
//! them ([`tidings_hub::Stats`]) at scrape time. The format is small enough to write directly,
//! which keeps the hot path free of any registry lookups.
//!
//! Gauges of the server's own are kept by guards: a guard is taken when the thing it counts starts
//! and decrements the gauge when dropped, so a count cannot leak through an early return or a
//! dropped connection.

use crate::AppState;
use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use std::{
    fmt::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

#[derive(Debug, Default)]
pub struct Metrics {
    counter_streams: Arc<AtomicUsize>,
    pub publish_latency: Histogram,
}

impl Metrics {
    /// Counter streams (`/web/StreamChat`) now open.
    pub fn counter_streams_open(&self) -> usize {
        self.counter_streams.load(Ordering::Relaxed)
    }

    /// Counts one more open counter stream until the returned guard is dropped.
    pub fn counter_stream_opened(&self) -> GaugeGuard {
        GaugeGuard::new(self.counter_streams.clone())
    }
}

/// Holds one unit of a gauge.
#[derive(Debug)]
pub struct GaugeGuard(Arc<AtomicUsize>);

impl GaugeGuard {
    fn new(gauge: Arc<AtomicUsize>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Upper bounds of the publish latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram with fixed buckets, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let hub = state.hub.stats();
    let mut out = String::with_capacity(2048);
    let figures: [(&str, &str, &str, u64); 13] = [
        (
            "tidings_subscribers",
            "gauge",
            "Hub subscribers connected now.",
            hub.subscribers,
        ),
        (
            "tidings_subscribers_total",
            "counter",
            "Hub subscriptions opened.",
            hub.subscribers_total,
        ),
        (
            "tidings_updates_published_total",
            "counter",
            "Updates committed and fanned out.",
            hub.updates_published,
        ),
        (
            "tidings_events_delivered_total",
            "counter",
            "Events queued to subscribers (history replays excluded).",
            hub.events_delivered,
        ),
        (
            "tidings_subscribers_evicted_total",
            "counter",
            "Subscribers disconnected for falling behind.",
            hub.subscribers_evicted,
        ),
        (
            "tidings_counter_streams",
            "gauge",
            "Open /web/StreamChat streams.",
            state.metrics.counter_streams_open() as u64,
        ),
        (
            "tidings_connections",
            "gauge",
            "Open connections, of every kind.",
            state.connections.open() as u64,
        ),
        (
            "tidings_history_updates",
            "gauge",
            "Updates retained in the history.",
            hub.history_updates,
        ),
        (
            "tidings_distinct_selectors",
            "gauge",
            "Distinct selectors (exact topics and templates) in the subscriber index.",
            hub.distinct_selectors,
        ),
        (
            "tidings_template_tests_total",
            "counter",
            "Template matches tried by the fan-out (only templates whose literal prefix starts the topic).",
            hub.template_tests,
        ),
        (
            "tidings_history_gaps_total",
            "counter",
            "Streams told that history they asked for is gone (the tidings-history-gap event).",
            hub.history_gaps,
        ),
        (
            "tidings_templates",
            "gauge",
            "Distinct URI templates compiled and in use (subscriptions and token claims).",
            hub.templates,
        ),
        (
            "tidings_templates_compiled_total",
            "counter",
            "URI template compilations (a template in use is shared, not compiled again).",
            hub.templates_compiled,
        ),
    ];
    for (name, kind, help, value) in figures {
        metric(&mut out, name, kind, help, value);
    }
    state.metrics.publish_latency.write(
        &mut out,
        "tidings_publish_seconds",
        "Time from a publish request's arrival at the hub to its acknowledgement (durable and fanned out).",
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `GET /healthz`: 200 when the history can be written now (a recent write succeeded, or a
/// probe write does) and, on a cluster, the node follows the shared history; 503 otherwise.
/// The caller learns which of two things is wrong (the store cannot be reached, or it cannot
/// be written); the details go to the log.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.hub.health().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", unhealthy(&reason)),
        )
            .into_response(),
    }
}

/// `GET /mercure/health/ready`, the readiness probe at the reference Mercure hub's path: what
/// `/healthz` checks (the history can be written; on a cluster, followed), answered as that
/// hub answers, `{"status":"ok"}`, else 503 `{"status":"error","error":"…"}`.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.hub.health().await {
        Ok(()) => health_json(StatusCode::OK, None),
        Err(reason) => health_json(StatusCode::SERVICE_UNAVAILABLE, Some(unhealthy(&reason))),
    }
}

/// `GET /mercure/health/live`, the liveness probe at the reference hub's path: the process
/// answers requests. A failing history is not a reason to restart it (readiness says so, and
/// the history recovers without one), so this asks nothing of the hub.
pub async fn live() -> Response {
    health_json(StatusCode::OK, None)
}

/// Logs why the hub is unhealthy, and returns the line a client is told: which of two things
/// is wrong (the store cannot be reached, or it cannot be written), without the details.
fn unhealthy(reason: &tidings_hub::Unhealthy) -> &'static str {
    tracing::error!("unhealthy: {reason}");
    if reason.unreachable {
        "history unreachable: the shared store (Redis) does not answer"
    } else {
        "history unavailable"
    }
}

fn health_json(status: StatusCode, error: Option<&str>) -> Response {
    let body = match error {
        None => serde_json::json!({ "status": "ok" }),
        Some(error) => serde_json::json!({ "status": "error", "error": error }),
    };
    (status, axum::Json(body)).into_response()
}
