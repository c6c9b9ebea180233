//! The roster: on a cluster, what each node tells the others about its subscribers, so that
//! the subscriptions API and presence counts cover every node, and which node leads.
//!
//! Subscriptions opening and closing are logged as they happen (a bounded log); a thread
//! publishes the log to the shared store twice a second, with the node's liveness. What a node
//! published expires with it: a node killed with `kill -9` drops out of every count within
//! [`TTL`]. After a failure (or an overflowing log) the node publishes everything again, since
//! what it had published may have expired meanwhile.
//!
//! The topic counts are kept in Redis so that a read of the topics under one prefix (presence
//! reads the chat rooms') costs what it returns, not every topic a node counts (see
//! [`SharedHistory::other_counts`]); the subscriptions themselves are read only when the
//! subscriptions API asks.

use crate::{
    events::subscription_json,
    history::{NodeState, SharedHistory},
    hub::Shared,
    registry::SubscriberInfo,
    selector::Selector,
};
use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

/// How often a node publishes its changes and says it is alive.
const PERIOD: Duration = Duration::from_millis(500);
/// How long a node counts as alive after it last said so.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Changes the log holds at most; past it the next publish sends everything instead.
const MAX_LOG: usize = 100_000;

/// Subscribers opened and closed since the last publish.
#[derive(Default)]
pub(crate) struct RosterLog {
    opened: Vec<Arc<SubscriberInfo>>,
    closed: Vec<Arc<SubscriberInfo>>,
    /// Send everything next time.
    full: bool,
}

impl RosterLog {
    pub(crate) fn new() -> Self {
        RosterLog {
            full: true,
            ..RosterLog::default()
        }
    }

    pub(crate) fn opened(&mut self, info: &Arc<SubscriberInfo>) {
        if !self.full {
            self.opened.push(info.clone());
            self.overflow_check();
        }
    }

    pub(crate) fn closed(&mut self, info: &Arc<SubscriberInfo>) {
        if !self.full {
            self.closed.push(info.clone());
            self.overflow_check();
        }
    }

    fn overflow_check(&mut self) {
        if self.opened.len() + self.closed.len() > MAX_LOG {
            *self = RosterLog::new();
        }
    }
}

/// A subscriber's documents, one per selector, as a JSON array.
pub(crate) fn documents(info: &SubscriberInfo) -> String {
    let docs: Vec<serde_json::Value> = info
        .selectors
        .iter()
        .map(|s| subscription_json(info, s.as_str(), true))
        .collect();
    serde_json::Value::Array(docs).to_string()
}

fn exact_topics(info: &SubscriberInfo) -> impl Iterator<Item = &str> {
    info.selectors.iter().filter_map(|s| match s {
        Selector::Exact(topic) => Some(&**topic),
        _ => None,
    })
}

pub(crate) fn run(shared: &Shared, store: &dyn SharedHistory) {
    // Unknown until the first publish: which starts with everything.
    let mut published = Instant::now() - TTL;
    let mut failures = 0u32;
    while !shared.stopping.load(Ordering::Relaxed) {
        std::thread::sleep(PERIOD);
        // What was published may have expired (a publish can take as long as the TTL): then
        // the changes since would apply to nothing.
        let stale = published.elapsed() + PERIOD >= TTL;
        let taken = {
            let mut registry = shared.registry.write();
            let Some(log) = registry.roster.as_mut() else {
                return;
            };
            if log.full || stale {
                // Under the registry's lock: the log restarts exactly where this copy ends.
                *log = RosterLog::default();
                Taken::Everything(
                    registry.infos().cloned().collect(),
                    registry.exact_counts(|_| true),
                )
            } else {
                Taken::Changes(std::mem::take(log))
            }
        };
        // Serialised outside the lock: fan-out and subscribes never wait for it.
        let state = match taken {
            Taken::Everything(infos, counts) => NodeState {
                full: true,
                added: infos
                    .iter()
                    .map(|info| (info.id.clone(), documents(info)))
                    .collect(),
                removed: Vec::new(),
                counts: counts.into_iter().map(|(t, n)| (t, n as i64)).collect(),
            },
            Taken::Changes(log) => changes(&log),
        };
        let attempt = Instant::now();
        match store.publish_node(&shared.node, &state, TTL) {
            Ok(alive) => {
                published = attempt;
                failures = 0;
                *shared.leader.lock() = alive.first().cloned();
            }
            Err(error) => {
                failures += 1;
                // Twice a second while Redis is down: the first failure and every 20th.
                if failures % 20 == 1 {
                    tracing::warn!("publishing this node's subscribers failed: {error}");
                }
                // Another node may lead meanwhile; this one does not know, so it does not.
                *shared.leader.lock() = None;
                if let Some(log) = shared.registry.write().roster.as_mut() {
                    *log = RosterLog::new();
                }
            }
        }
    }
}

/// What the roster takes from the registry under its lock.
enum Taken {
    Everything(Vec<Arc<SubscriberInfo>>, Vec<(String, usize)>),
    Changes(RosterLog),
}

fn changes(log: &RosterLog) -> NodeState {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for info in &log.opened {
        exact_topics(info).for_each(|t| *counts.entry(t).or_default() += 1);
    }
    for info in &log.closed {
        exact_topics(info).for_each(|t| *counts.entry(t).or_default() -= 1);
    }
    NodeState {
        full: false,
        added: log
            .opened
            .iter()
            .map(|info| (info.id.clone(), documents(info)))
            .collect(),
        removed: log.closed.iter().map(|info| info.id.clone()).collect(),
        counts: counts
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .map(|(t, n)| (t.to_owned(), n))
            .collect(),
    }
}
