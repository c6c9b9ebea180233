//! Durable history: the boundary between the hub and its storage.
//!
//! The hub needs few things of a store: append a batch of updates and learn their positions;
//! find where an id is; read what comes after a position; drop what the retention rules no
//! longer keep, and say how far that dropping has reached ([`Horizon`]), so that a replay can
//! tell a hole from an update that was never there. [`History`] is exactly that, so the fan-out
//! never sees how updates are kept. [`SqliteHistory`] is the embedded default; [`RedisHistory`]
//! is a store several nodes can share.
//!
//! Methods block (SQLite is a library, not a server); the hub calls them from its writer thread
//! or through `spawn_blocking`, never on the async executor.

mod redis;
mod sqlite;

pub use self::redis::RedisHistory;
pub use sqlite::SqliteHistory;

use crate::{
    live_id::LiveIdKey,
    update::{Stored, Update},
};
use std::{sync::Arc, time::Duration};

/// A storage failure. Its text is for the operator's log, never for a client: it can carry
/// SQLite's own messages and file paths.
#[derive(Debug, thiserror::Error)]
#[error("history storage failed: {message}")]
pub struct HistoryError {
    message: String,
    unavailable: bool,
}

impl From<rusqlite::Error> for HistoryError {
    fn from(error: rusqlite::Error) -> Self {
        HistoryError::new(error.to_string())
    }
}

impl HistoryError {
    pub fn new(message: impl Into<String>) -> Self {
        HistoryError {
            message: message.into(),
            unavailable: false,
        }
    }

    /// The store cannot be reached now (a server down, a timeout), but nothing says it lost
    /// anything: trying again later may work, so clients are told to retry (503), and a
    /// replay waits for it instead of declaring a gap.
    pub fn unavailable(message: impl Into<String>) -> Self {
        HistoryError {
            message: message.into(),
            unavailable: true,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

pub type Result<T> = std::result::Result<T, HistoryError>;

/// What the hub asks of a store.
pub trait History: Send + Sync + 'static {
    /// Durably appends `batch`, in order, and returns its positions. Returns only once the batch
    /// would survive a crash of the process.
    fn append(&self, batch: &[Arc<Update>]) -> Result<Vec<u64>>;
    /// The position of the earliest retained update with this id.
    fn position_of(&self, id: &str) -> Result<Option<u64>>;
    /// Up to `limit` updates with `after < position <= until`, in order.
    fn read(&self, after: u64, until: u64, limit: usize) -> Result<Vec<Stored>>;
    /// As [`History::read`], stopping before an update that would take what was read past
    /// `max_bytes` (counting data and ids); the first is read whatever its size. What a replay
    /// reads at once: never more than a frame.
    fn read_capped(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Stored>>;
    /// Up to `limit` updates with `position < before`, newest first.
    fn read_back(&self, before: u64, limit: usize) -> Result<Vec<Stored>>;
    /// The newest retained update, and the newest public one: where new subscribers start.
    fn heads(&self) -> Result<Heads>;
    /// The number of retained updates (rows, whatever their retention rule).
    fn len(&self) -> u64;
    /// Drops what `retention` no longer keeps. Returns how many updates were dropped. The
    /// horizon moves before anything is deleted, so a reader never misses a hole.
    fn prune(&self, retention: &Retention) -> Result<u64>;
    /// How far pruning has reached.
    fn horizon(&self) -> Horizon;
    /// A small durable write: fails when the store can no longer be written (disk full,
    /// read-only, corrupt), which is what a health check must know.
    fn probe(&self) -> Result<()>;
    /// The secret the ids of live-only events are authenticated with (see
    /// [`crate::live_id`]): random, made once per history and kept with it, so the ids survive a
    /// restart and, for a shared history, every node verifies every other's.
    fn live_id_key(&self) -> LiveIdKey;
    /// Where this process numbers live-only events from, when it is the history's only writer:
    /// above every number an earlier process gave, so an event sent after a restart is never
    /// taken for one a resuming client already has.
    fn live_seq_start(&self) -> u64 {
        0
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For a store that other processes append to as well: how this one learns of every
    /// update, its own included. `None` (the default): this process is the only writer, and the
    /// hub fans out what it appends itself.
    fn shared(&self) -> Option<&dyn SharedHistory> {
        None
    }
}

/// The recent state of some topics, for rendering a page before it goes live.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The newest matching public updates, oldest first.
    pub updates: Vec<Arc<Update>>,
    /// Subscribe with this as `lastEventID` to get exactly what comes after the snapshot.
    pub last_event_id: String,
}

/// Up to `limit` of the newest updates up to `head` that `wanted` accepts, oldest first
/// (scanning at most `max_scan` back), and the newest one's id.
pub(crate) fn newest_matching(
    history: &dyn History,
    head: u64,
    limit: usize,
    max_scan: usize,
    wanted: impl Fn(&Update) -> bool,
) -> Result<(Vec<Arc<Update>>, Option<String>)> {
    let mut found = Vec::new();
    let mut before = head + 1;
    let mut scanned = 0;
    while found.len() < limit && scanned < max_scan {
        let chunk = history.read_back(before, 512)?;
        let Some(oldest) = chunk.last() else { break };
        before = oldest.position;
        scanned += chunk.len();
        found.extend(chunk.into_iter().map(|s| s.update).filter(|u| wanted(u)));
    }
    let newest = found.first().map(|u| u.id().to_owned());
    found.truncate(limit);
    found.reverse();
    Ok((found, newest))
}

/// A history several hub processes share. Each one appends, and each one follows the store
/// to fan out every update, its own included, so that every node delivers one order: the
/// store's. Live-only events (subscription events, presence) travel beside the stored updates
/// in a bounded side channel, each placed after the stored position current when it was sent.
pub trait SharedHistory: Send + Sync {
    /// Where the store stands now: following from here delivers what comes next.
    fn cursor(&self) -> Result<Cursor>;
    /// Sends live-only events to every node, in order, without storing them durably.
    fn send_live(&self, batch: &[Arc<Update>]) -> Result<()>;
    /// What comes after `cursor`, waiting up to `wait` when nothing does. One caller at a time
    /// (the hub's follower thread). Says instead when the store went back to an older state
    /// since the previous call ([`Followed::lost`]), before anything read after it is used.
    fn follow(&self, cursor: Cursor, limit: usize, wait: Duration) -> Result<Followed>;
    /// Reloads what the store caches about itself (row count, pruning horizon): other
    /// processes prune too. Says where the store stands, and whether it lost its history
    /// since it was opened (it must then be followed afresh).
    fn refresh(&self) -> Result<Refreshed>;
    /// What the nodes sharing the store say about themselves.
    fn membership(&self) -> &dyn Membership;
}

/// The nodes sharing a store: what each publishes about itself (its subscribers, its topic
/// counts, that it is alive) and reads of the others'. Apart from the log: the roster's, not
/// the fan-out's.
pub trait Membership: Send + Sync {
    /// Publishes what `node` holds (see [`NodeState`]) for the other nodes to read, and that it
    /// is alive for `ttl`: past it, what it published expires. Returns the nodes alive now,
    /// sorted.
    fn publish_node(&self, node: &str, state: &NodeState, ttl: Duration) -> Result<Vec<String>>;
    /// Removes what `node` published about itself: it is leaving.
    fn leave(&self, node: &str) -> Result<()>;
    /// The subscriptions the alive nodes other than `node` hold: per subscriber, a JSON array
    /// of its subscriptions' documents.
    fn other_subscriptions(&self, node: &str) -> Result<Vec<String>>;
    /// Subscribers per exact topic that `prefix` starts, on the alive nodes other than
    /// `node`. Costs what it returns, not every topic the other nodes count: presence asks
    /// four times a second for the chat rooms alone, whatever else is subscribed to.
    fn other_counts(&self, node: &str, prefix: &str) -> Result<Vec<(String, usize)>>;
}

/// What a node tells the others about itself: its subscribers (each a JSON array of its
/// subscriptions' documents) and how many subscribe to each exact topic.
#[derive(Debug, Default)]
pub struct NodeState {
    /// Replace what the node published before (at start, and after a failure), rather than
    /// apply changes to it.
    pub full: bool,
    /// Subscriber id and its documents.
    pub added: Vec<(String, String)>,
    /// Subscriber ids.
    pub removed: Vec<String>,
    /// Per exact topic: the count when `full`, else how it changed.
    pub counts: Vec<(String, i64)>,
}

/// A point in a shared history: the last stored position and the last live event seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub position: u64,
    pub live: u64,
}

/// What [`SharedHistory::refresh`] found.
#[derive(Debug, Clone, Copy)]
pub struct Refreshed {
    /// The last stored position and live event handed out.
    pub store: Cursor,
    /// The store lost its history (restarted empty, evicted it): positions may be handed out
    /// again, and what was delivered from it cannot be resumed from.
    pub reset: bool,
}

/// What [`SharedHistory::follow`] read: stored updates and live events, each in order.
#[derive(Debug, Default)]
pub struct Followed {
    pub stored: Vec<Stored>,
    pub live: Vec<LiveEvent>,
    /// Where to follow from next: past everything read, entries that could not be read
    /// included (they are logged and skipped).
    pub read_to: Cursor,
    /// `stored` holds every stored update after the cursor that existed when the live events
    /// were read (it was not cut short by the limit): a live event placed after a position
    /// not among them was placed after updates that are gone, and can be delivered now.
    pub complete: bool,
    /// The store went back to an older state since the previous read (restored from an older
    /// snapshot, a replica that lacked the newest writes took over): what this node delivered
    /// may be gone and its positions handed out again. Nothing was read; the caller must end
    /// what it built on the lost state and follow the store afresh ([`SharedHistory::cursor`]).
    pub lost: bool,
}

/// A live-only event from a shared history.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Its place among live events, the same on every node.
    pub seq: u64,
    /// The last stored position when it was sent: it is delivered after that update.
    pub after: u64,
    pub update: Arc<Update>,
}

/// The newest updates at start-up.
#[derive(Debug, Clone, Default)]
pub struct Heads {
    pub last: Option<Stored>,
    pub last_public: Option<Stored>,
}

/// What the history keeps.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// The newest updates kept (counted in rows); older ones go.
    pub max_events: u64,
    /// Updates older than this go.
    pub max_age: Option<Duration>,
    /// Canonical-topic prefixes kept for a shorter time, such as frequent measurements that
    /// would otherwise push everything else out of `max_events`.
    pub volatile: Vec<(String, Duration)>,
}

/// How far pruning has reached: an update at or below these positions may be gone.
///
/// A replay that read `(after, …]` and then finds `through > after` (or, for a subscriber that
/// may select a volatile prefix, that prefix's position `> after`) may have missed updates, and
/// must say so rather than skip them silently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Horizon {
    /// By count or age: every update at or below this position may have been dropped.
    pub through: u64,
    /// By a volatile rule: updates whose canonical topic starts with the prefix, at or below
    /// the position, may have been dropped.
    pub volatile: Vec<(String, u64)>,
}

impl Horizon {
    /// Whether an update after `after` that one of `prefixes` could select may be gone.
    /// `prefixes` are the literal prefixes of a subscriber's selectors: two prefixes are
    /// related when one starts with the other.
    pub fn hides_after<'a>(
        &self,
        after: u64,
        prefixes: impl Iterator<Item = &'a str> + Clone,
    ) -> bool {
        self.through > after
            || self.volatile.iter().any(|(volatile, floor)| {
                *floor > after
                    && prefixes
                        .clone()
                        .any(|p| p.starts_with(volatile.as_str()) || volatile.starts_with(p))
            })
    }
}
