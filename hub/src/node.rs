//! This process among the nodes of a cluster: its name, and which node leads.
//!
//! The leader is the first alive node in the shared roster, as the roster last heard; it
//! publishes what is derived from the whole cluster (presence counts) and prunes the shared
//! history, so that each is done once. A hub with a history of its own always leads.

use parking_lot::Mutex;

pub(crate) struct Node {
    name: String,
    /// Whether other nodes share the history: else this one leads, alone.
    clustered: bool,
    /// The first alive node, as the roster last heard.
    leader: Mutex<Option<String>>,
}

impl Node {
    pub(crate) fn new(clustered: bool) -> Self {
        // Start time first: sorted by name, the nodes are in the order they started, and the
        // first (the leader) is the oldest, which a node joining does not displace.
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Node {
            name: format!("{started_ms:013}-urn:uuid:{}", uuid::Uuid::now_v7()),
            clustered,
            leader: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn leads(&self) -> bool {
        !self.clustered || self.leader.lock().as_deref() == Some(self.name.as_str())
    }

    /// What the roster heard: the first alive node, or `None` when it cannot tell (the store
    /// is unreachable, and another node may lead meanwhile).
    pub(crate) fn set_leader(&self, leader: Option<String>) {
        *self.leader.lock() = leader;
    }
}
