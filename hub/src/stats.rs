//! What the hub counts about itself. The counters are the hub's own, counted through methods
//! named for what happened; callers get [`Stats`], a plain copy, so nothing outside can change
//! them.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    updates_published: AtomicU64,
    events_delivered: AtomicU64,
    subscribers_evicted: AtomicU64,
    subscribers_total: AtomicU64,
    template_tests: AtomicU64,
    gaps: AtomicU64,
}

impl Counters {
    pub(crate) fn published(&self, updates: u64) {
        add(&self.updates_published, updates);
    }

    /// One fan-out: events queued, and templates tested to find their subscribers.
    pub(crate) fn fanned_out(&self, delivered: u64, template_tests: u64) {
        add(&self.events_delivered, delivered);
        add(&self.template_tests, template_tests);
    }

    pub(crate) fn evicted(&self) {
        add(&self.subscribers_evicted, 1);
    }

    pub(crate) fn subscribed(&self) {
        add(&self.subscribers_total, 1);
    }

    /// A stream was told that history it asked for is gone.
    pub(crate) fn gap(&self) {
        add(&self.gaps, 1);
    }

    /// The counters' part of [`Stats`]; the caller fills in the rest.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            subscribers_total: load(&self.subscribers_total),
            updates_published: load(&self.updates_published),
            events_delivered: load(&self.events_delivered),
            subscribers_evicted: load(&self.subscribers_evicted),
            template_tests: load(&self.template_tests),
            history_gaps: load(&self.gaps),
            ..Stats::default()
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The hub's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Subscribers connected now.
    pub subscribers: u64,
    /// Subscriptions opened since start.
    pub subscribers_total: u64,
    /// Updates committed and fanned out.
    pub updates_published: u64,
    /// Events put in subscribers' queues (history replays excluded).
    pub events_delivered: u64,
    /// Subscribers disconnected for falling behind.
    pub subscribers_evicted: u64,
    /// Updates retained in the history.
    pub history_updates: u64,
    /// Distinct selectors in the index (exact topics and templates).
    pub distinct_selectors: u64,
    /// Template matches tried by the fan-out: with the prefix index, only templates whose
    /// literal prefix starts the topic are tried.
    pub template_tests: u64,
    /// Streams told that history they asked for is gone (the gap event).
    pub history_gaps: u64,
    /// Distinct templates compiled and held now, for subscriptions and token claims.
    pub templates: u64,
    /// Template compilations since start: a repeated template costs none, a refused request
    /// none either.
    pub templates_compiled: u64,
}
