//! The cluster: for a history several nodes share, the two threads that sit beside local
//! delivery. The [follower](follower) reads every update back from the store and hands it to
//! the fan-out, in the store's order; the [roster](roster) tells the other nodes about this
//! one's subscribers and learns which node leads.
//!
//! They are given the fan-out, the health record and the node, never the writer: publishing
//! goes to the store, and comes back to every node through its follower (as socketioxide's
//! Redis adapter sits on a local-delivery interface, not on the server).

mod follower;
mod roster;

use crate::{
    error::SubscribeError,
    fanout::Fanout,
    health::Health,
    history::{Cursor, History, HistoryError, Membership},
    node::Node,
    shutdown::Shutdown,
};
use std::{sync::Arc, thread::JoinHandle};

/// What the cluster's threads work with.
pub(crate) struct Cluster {
    pub history: Arc<dyn History>,
    pub fanout: Arc<Fanout>,
    pub health: Arc<Health>,
    pub node: Arc<Node>,
    pub shutdown: Arc<Shutdown>,
}

impl Cluster {
    /// Starts the follower, from `cursor`, and the roster; they stop when
    /// [`Shutdown::stopping`] says so.
    pub(crate) fn start(self, cursor: Cursor) -> Result<Vec<JoinHandle<()>>, HistoryError> {
        let cluster = Arc::new(self);
        let follower = {
            let cluster = cluster.clone();
            spawn("follower", move || follower::run(&cluster, cursor))?
        };
        let roster = spawn("roster", move || {
            if let Some(store) = cluster.history.shared() {
                roster::run(&cluster, store.membership());
            }
        })?;
        Ok(vec![follower, roster])
    }
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, HistoryError> {
    std::thread::Builder::new()
        .name(format!("tidings-{name}"))
        .spawn(run)
        .map_err(|e| HistoryError::new(format!("cannot start the {name} thread: {e}")))
}

/// Runs a read of what the other nodes published, off the executor.
pub(crate) async fn ask_other_nodes<T: Send + 'static>(
    history: &Arc<dyn History>,
    read: impl FnOnce(&dyn Membership) -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, SubscribeError> {
    let history = history.clone();
    tokio::task::spawn_blocking(move || match history.shared() {
        Some(store) => read(store.membership()),
        None => Err(HistoryError::new("not a shared history")),
    })
    .await
    .map_err(|_| SubscribeError::ShuttingDown)?
    .map_err(|error| {
        // Asked every 250 ms by presence: the follower's log says Redis is down.
        tracing::debug!("reading the other nodes' subscriptions failed: {error}");
        SubscribeError::from(&error)
    })
}
