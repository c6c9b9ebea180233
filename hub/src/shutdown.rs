//! The hub's shutdown, in its two steps: first every subscription stream ends (while publishes
//! already queued are still committed), then the hub's threads stop.
//!
//! Streams wait on [`Shutdown::streams_closed`]; the threads, which block on the history rather
//! than await, look at [`Shutdown::stopping`] between rounds.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub(crate) struct Shutdown {
    streams: CancellationToken,
    threads: AtomicBool,
}

impl Shutdown {
    /// Ends every subscription stream.
    pub(crate) fn close_streams(&self) {
        self.streams.cancel();
    }

    pub(crate) fn streams_closing(&self) -> bool {
        self.streams.is_cancelled()
    }

    /// Resolves once the streams are to end.
    pub(crate) async fn streams_closed(&self) {
        self.streams.cancelled().await;
    }

    /// Tells the threads to stop.
    pub(crate) fn stop_threads(&self) {
        self.threads.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.threads.load(Ordering::Relaxed)
    }
}
