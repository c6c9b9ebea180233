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
//! [`Membership::other_counts`]); the subscriptions themselves are read only when the
//! subscriptions API asks.

use super::Cluster;
use crate::{
    events::documents,
    fanout::RosterTake,
    history::{Membership, NodeState},
    registry::RosterLog,
};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// How often a node publishes its changes and says it is alive.
const PERIOD: Duration = Duration::from_millis(500);
/// How long a node counts as alive after it last said so.
const TTL: Duration = Duration::from_secs(5);
pub(crate) fn run(cluster: &Cluster, store: &dyn Membership) {
    // Unknown until the first publish: which starts with everything.
    let mut published = Instant::now() - TTL;
    let mut failures = 0u32;
    while !cluster.shutdown.stopping() {
        std::thread::sleep(PERIOD);
        // What was published may have expired (a publish can take as long as the TTL): then
        // the changes since would apply to nothing.
        let stale = published.elapsed() + PERIOD >= TTL;
        let Some(taken) = cluster.fanout.take_roster(stale) else {
            return;
        };
        // Serialised outside the lock: fan-out and subscribes never wait for it.
        let state = match taken {
            RosterTake::Everything(infos, counts) => NodeState {
                full: true,
                added: infos
                    .iter()
                    .map(|info| (info.id().to_owned(), documents(info)))
                    .collect(),
                removed: Vec::new(),
                counts: counts.into_iter().map(|(t, n)| (t, n as i64)).collect(),
            },
            RosterTake::Changes(log) => changes(&log),
        };
        let attempt = Instant::now();
        match store.publish_node(cluster.node.name(), &state, TTL) {
            Ok(alive) => {
                published = attempt;
                failures = 0;
                cluster.node.set_leader(alive.first().cloned());
            }
            Err(error) => {
                failures += 1;
                // Twice a second while Redis is down: the first failure and every 20th.
                if failures % 20 == 1 {
                    tracing::warn!("publishing this node's subscribers failed: {error}");
                }
                // Another node may lead meanwhile; this one does not know, so it does not.
                cluster.node.set_leader(None);
                cluster.fanout.resend_roster();
            }
        }
    }
}

fn changes(log: &RosterLog) -> NodeState {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for info in &log.opened {
        info.exact_topics()
            .for_each(|t| *counts.entry(t).or_default() += 1);
    }
    for info in &log.closed {
        info.exact_topics()
            .for_each(|t| *counts.entry(t).or_default() -= 1);
    }
    NodeState {
        full: false,
        added: log
            .opened
            .iter()
            .map(|info| (info.id().to_owned(), documents(info)))
            .collect(),
        removed: log.closed.iter().map(|info| info.id().to_owned()).collect(),
        counts: counts
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .map(|(t, n)| (t.to_owned(), n))
            .collect(),
    }
}
