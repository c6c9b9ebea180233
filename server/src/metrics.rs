//! Counters the server keeps about itself.
//!
//! Gauges are kept by guards: a guard is taken when the thing it counts starts and decrements the
//! gauge when dropped, so a count cannot leak through an early return or a dropped connection.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

#[derive(Debug, Default)]
pub struct Metrics {
    counter_streams: Arc<AtomicUsize>,
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
