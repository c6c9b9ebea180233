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

use crate::update::{Stored, Update};
use std::{sync::Arc, time::Duration};

/// A storage failure. Its text is for the operator's log, never for a client: it can carry
/// SQLite's own messages and file paths.
#[derive(Debug, thiserror::Error)]
#[error("history storage failed: {0}")]
pub struct HistoryError(String);

impl From<rusqlite::Error> for HistoryError {
    fn from(error: rusqlite::Error) -> Self {
        HistoryError(error.to_string())
    }
}

impl HistoryError {
    pub fn new(message: impl Into<String>) -> Self {
        HistoryError(message.into())
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

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
