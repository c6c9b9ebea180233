//! Durable history: the boundary between the hub and its storage.
//!
//! The hub needs three things of a store: append a batch of updates and learn their positions;
//! find where an id is; read what comes after a position. [`History`] is exactly that, so the
//! fan-out never sees how updates are kept. [`SqliteHistory`] is the embedded default; a store
//! shared by several nodes (Redis Streams) implements the same trait and adds "follow new
//! appends" for updates that other nodes wrote.
//!
//! Methods block (SQLite is a library, not a server); the hub calls them from its writer thread
//! or through `spawn_blocking`, never on the async executor.

use crate::update::{Stored, Update};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A storage failure. The hub answers such a publish with 500 and keeps running.
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
    /// The last update's position and id, if any is retained.
    fn last(&self) -> Result<Option<(u64, String)>>;
    /// The number of retained updates.
    fn len(&self) -> Result<u64>;
    /// Drops what `retention` no longer keeps. Returns how many updates were dropped.
    fn prune(&self, retention: &Retention) -> Result<u64>;

    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// What the history keeps.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// The newest updates kept; older ones go.
    pub max_events: u64,
    /// Updates older than this go.
    pub max_age: Option<Duration>,
    /// Canonical-topic prefixes kept for a shorter time, such as frequent measurements that
    /// would otherwise push everything else out of `max_events`.
    pub volatile: Vec<(String, Duration)>,
}

/// History in one SQLite file (WAL mode), `history.sqlite3` in the data folder.
///
/// One connection writes (the hub has a single writer), a small pool reads; WAL lets readers run
/// beside the writer. `synchronous = FULL` makes every commit durable against power loss, not
/// only against a crash of the process; the hub commits many publishes per transaction, so the
/// cost of that fsync is shared.
pub struct SqliteHistory {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS updates (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL,
    topics     TEXT    NOT NULL, -- newline-separated; topics cannot contain control characters
    data       TEXT    NOT NULL,
    private    INTEGER NOT NULL,
    type       TEXT,
    retry      INTEGER,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_id ON updates (id, position);
CREATE INDEX IF NOT EXISTS updates_by_time ON updates (created_ms);
";

impl SqliteHistory {
    /// Opens (creating if needed) the history in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            HistoryError(format!(
                "cannot create data folder {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("history.sqlite3");
        let writer = Connection::open(&path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.execute_batch(SCHEMA)?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.readers.lock().pop() {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(Duration::from_secs(5))?;
                conn
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock();
        if pool.len() < 8 {
            pool.push(conn);
        }
        result
    }
}

impl SqliteHistory {
    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Stored>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params, |row| {
                let topics: String = row.get(2)?;
                Ok(Stored {
                    position: row.get::<_, i64>(0)? as u64,
                    update: Arc::new(Update {
                        id: row.get(1)?,
                        topics: topics.split('\n').map(str::to_owned).collect(),
                        data: row.get(3)?,
                        private: row.get(4)?,
                        event_type: row.get(5)?,
                        retry: row.get::<_, Option<i64>>(6)?.map(|r| r as u64),
                    }),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl History for SqliteHistory {
    fn append(&self, batch: &[Arc<Update>]) -> Result<Vec<u64>> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction()?;
        let mut positions = Vec::with_capacity(batch.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO updates (id, topics, data, private, type, retry, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let now = now_ms();
            for update in batch {
                insert.execute(params![
                    update.id,
                    update.topics.join("\n"),
                    update.data,
                    update.private,
                    update.event_type,
                    update.retry.map(|r| r as i64),
                    now,
                ])?;
                positions.push(tx.last_insert_rowid() as u64);
            }
        }
        tx.commit()?;
        Ok(positions)
    }

    fn position_of(&self, id: &str) -> Result<Option<u64>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached("SELECT min(position) FROM updates WHERE id = ?1")?
                .query_row([id], |row| row.get::<_, Option<i64>>(0))?
                .map(|p| p as u64))
        })
    }

    fn read(&self, after: u64, until: u64, limit: usize) -> Result<Vec<Stored>> {
        let until = until.min(i64::MAX as u64);
        self.query(
            "SELECT position, id, topics, data, private, type, retry FROM updates
             WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3",
            params![after as i64, until as i64, limit as i64],
        )
    }

    fn read_back(&self, before: u64, limit: usize) -> Result<Vec<Stored>> {
        let before = before.min(i64::MAX as u64);
        self.query(
            "SELECT position, id, topics, data, private, type, retry FROM updates
             WHERE position < ?1 ORDER BY position DESC LIMIT ?2",
            params![before as i64, limit as i64],
        )
    }

    fn last(&self) -> Result<Option<(u64, String)>> {
        self.with_reader(|conn| {
            Ok(conn
                .query_row(
                    "SELECT position, id FROM updates ORDER BY position DESC LIMIT 1",
                    [],
                    |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
                )
                .optional()?)
        })
    }

    fn len(&self) -> Result<u64> {
        self.with_reader(|conn| {
            Ok(conn.query_row("SELECT count(*) FROM updates", [], |row| {
                row.get::<_, i64>(0)
            })? as u64)
        })
    }

    fn prune(&self, retention: &Retention) -> Result<u64> {
        let conn = self.writer.lock();
        let mut dropped = conn.execute(
            "DELETE FROM updates WHERE position <= (SELECT max(position) FROM updates) - ?1",
            [retention.max_events as i64],
        )?;
        if let Some(age) = retention.max_age {
            let cutoff = now_ms() - age.as_millis() as i64;
            dropped += conn.execute("DELETE FROM updates WHERE created_ms < ?1", [cutoff])?;
        }
        for (prefix, age) in &retention.volatile {
            // The time index narrows this to old rows; the prefix test picks the topic's.
            let cutoff = now_ms() - age.as_millis() as i64;
            dropped += conn.execute(
                "DELETE FROM updates WHERE created_ms < ?1 AND substr(topics, 1, ?2) = ?3",
                params![cutoff, prefix.len() as i64, prefix],
            )?;
        }
        Ok(dropped as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str) -> Arc<Update> {
        Arc::new(Update {
            id: id.into(),
            topics: vec!["https://example.com/a".into(), "/alt".into()],
            data: "line 1\n\n  line 3".into(),
            private: true,
            event_type: Some("kind".into()),
            retry: Some(10),
        })
    }

    #[test]
    fn appends_reads_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let history = SqliteHistory::open(dir.path()).unwrap();
        assert!(history.is_empty().unwrap());
        let positions = history
            .append(&[update("a"), update("b"), update("a")])
            .unwrap();
        assert_eq!(positions.len(), 3);
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        drop(history);

        let history = SqliteHistory::open(dir.path()).unwrap();
        assert_eq!(history.len().unwrap(), 3);
        assert_eq!(history.last().unwrap(), Some((positions[2], "a".into())));
        // Duplicate ids resolve to the earliest.
        assert_eq!(history.position_of("a").unwrap(), Some(positions[0]));
        assert_eq!(history.position_of("nope").unwrap(), None);
        let read = history.read(positions[0], u64::MAX, 10).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(*read[0].update, *update("b"));
        assert_eq!(read[1].position, positions[2]);
        assert_eq!(
            history.read(0, positions[1], 1).unwrap()[0].position,
            positions[0]
        );
    }

    #[test]
    fn positions_keep_growing_after_pruning_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let history = SqliteHistory::open(dir.path()).unwrap();
        let first = history
            .append(&[update("1"), update("2"), update("3")])
            .unwrap();
        let keep = |max_events| Retention {
            max_events,
            ..Retention::default()
        };
        assert_eq!(history.prune(&keep(1)).unwrap(), 2);
        assert_eq!(history.len().unwrap(), 1);
        assert_eq!(history.position_of("1").unwrap(), None);
        assert_eq!(history.prune(&keep(0)).unwrap(), 1);
        drop(history);
        let history = SqliteHistory::open(dir.path()).unwrap();
        let next = history.append(&[update("4")]).unwrap();
        assert!(next[0] > first[2], "a position is never reused");
    }

    #[test]
    fn prunes_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let history = SqliteHistory::open(dir.path()).unwrap();
        history.append(&[update("old")]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let retention = Retention {
            max_events: 1000,
            max_age: Some(Duration::from_millis(10)),
            volatile: vec![],
        };
        assert_eq!(history.prune(&retention).unwrap(), 1);
        assert!(history.is_empty().unwrap());
    }

    #[test]
    fn volatile_topics_expire_sooner_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let history = SqliteHistory::open(dir.path()).unwrap();
        let on = |topic: &str| {
            Arc::new(Update {
                topics: vec![topic.into(), "/alt".into()],
                ..(*update(topic)).clone()
            })
        };
        history
            .append(&[on("/ticker/ACME"), on("/chat/general"), on("/monitor")])
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        history.append(&[on("/ticker/HOOLI")]).unwrap();
        let short = Duration::from_millis(10);
        let retention = Retention {
            max_events: 1000,
            max_age: None,
            volatile: vec![("/ticker/".into(), short), ("/monitor".into(), short)],
        };
        assert_eq!(
            history.prune(&retention).unwrap(),
            2,
            "the old ticker and monitor updates"
        );
        let left: Vec<String> = history
            .read(0, u64::MAX, 10)
            .unwrap()
            .iter()
            .map(|s| s.update.topics[0].clone())
            .collect();
        assert_eq!(left, ["/chat/general", "/ticker/HOOLI"]);
    }
}
