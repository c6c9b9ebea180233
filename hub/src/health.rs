//! Whether the history can be written now: the last write's outcome while it is recent (one
//! second), else a probe (a small durable write by the writer); and on a cluster, whether the
//! follower can follow the shared history.
//!
//! Concurrent checks wait for one probe's answer instead of queueing probes of their own: a
//! flood of health checks costs one write a second at most.

use crate::error::Unhealthy;
use parking_lot::Mutex;
use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How long a write's outcome answers health checks.
const TTL: Duration = Duration::from_secs(1);
/// How long a probe may take before the writer counts as stuck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Health {
    /// The last write's outcome and when it was known.
    written: Mutex<(Instant, Result<(), Unhealthy>)>,
    /// Held while a probe is under way.
    probing: tokio::sync::Mutex<()>,
    /// Why following a shared history fails now, if it does.
    following: Mutex<Option<Unhealthy>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            written: Mutex::new((Instant::now() - TTL * 2, Ok(()))),
            probing: tokio::sync::Mutex::new(()),
            following: Mutex::new(None),
        }
    }
}

impl Health {
    /// A write's outcome (a commit or a probe).
    pub(crate) fn written(&self, result: Result<(), Unhealthy>) {
        *self.written.lock() = (Instant::now(), result);
    }

    /// What the follower found: `None` once it follows again.
    pub(crate) fn following(&self, failure: Option<Unhealthy>) {
        *self.following.lock() = failure;
    }

    /// The hub's health: a following failure, else the last write's outcome if recent, else
    /// what `probe` answers (`None`: the writer could not be asked) within five seconds.
    pub(crate) async fn check<P>(&self, probe: impl FnOnce() -> Option<P>) -> Result<(), Unhealthy>
    where
        P: Future<Output = Option<Result<(), Unhealthy>>>,
    {
        if let Some(reason) = self.following.lock().clone() {
            return Err(reason);
        }
        let recent = || {
            let (at, result) = &*self.written.lock();
            (at.elapsed() < TTL).then(|| result.clone())
        };
        if let Some(result) = recent() {
            return result;
        }
        let _probing = self.probing.lock().await;
        if let Some(result) = recent() {
            return result;
        }
        let Some(answer) = probe() else {
            return Err(Unhealthy::new("the writer's queue is full or closed"));
        };
        match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(Unhealthy::new("the writer has stopped")),
            Err(_) => Err(Unhealthy::new("the writer did not answer within 5 s")),
        }
    }
}
