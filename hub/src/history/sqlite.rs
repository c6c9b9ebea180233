//! History in one SQLite file (WAL mode), `history.sqlite3` in the data folder.

use super::{Heads, History, HistoryError, Horizon, Result, Retention};
use crate::{
    live_id::{self, LiveIdKey},
    update::{Stored, Update},
};
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// History in one SQLite file.
///
/// One connection writes (the hub has a single writer), a small pool reads; WAL lets readers run
/// beside the writer. `synchronous = FULL` makes every commit durable against power loss, not
/// only against a crash of the process; the hub commits many publishes per transaction, so the
/// cost of that fsync is shared. The row count and the pruning horizon are kept in memory (the
/// horizon also in the `meta` table, so it survives a restart): reading them costs no query.
pub struct SqliteHistory {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    rows: AtomicU64,
    horizon: RwLock<Horizon>,
    live_key: LiveIdKey,
    live_seq_start: u64,
}

/// Each process numbers live-only events from its start count shifted this far: 2^40 events a
/// run, 2^24 runs.
const LIVE_SEQ_SHIFT: u32 = 40;

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
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

const COLUMNS: &str = "position, id, topics, data, private, type, retry";

impl SqliteHistory {
    /// Opens (creating if needed) the history in `data_dir`, after checking that the file is a
    /// sound database: a corrupt one is refused with a clear error rather than failing later.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            HistoryError::new(format!(
                "cannot create data folder {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("history.sqlite3");
        let unusable = |e: rusqlite::Error| {
            HistoryError::new(format!(
                "the history {} cannot be used (corrupt, or not a Tidings history?): {e}",
                path.display()
            ))
        };
        let writer = Connection::open(&path).map_err(unusable)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(unusable)?;
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(unusable)?;
        let check: String = writer
            .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
            .map_err(unusable)?;
        if check != "ok" {
            return Err(HistoryError::new(format!(
                "the history {} is corrupt: {check}",
                path.display()
            )));
        }
        writer.execute_batch(SCHEMA).map_err(unusable)?;
        let rows: i64 = writer.query_row("SELECT count(*) FROM updates", [], |row| row.get(0))?;
        let horizon = load_horizon(&writer)?;
        let (live_key, starts) = load_live_ids(&writer)?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            rows: AtomicU64::new(rows as u64),
            horizon: RwLock::new(horizon),
            live_key,
            live_seq_start: starts.min(u64::MAX >> LIVE_SEQ_SHIFT) << LIVE_SEQ_SHIFT,
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

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Stored>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params, stored_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn query_one(&self, sql: &str) -> Result<Option<Stored>> {
        Ok(self.query(sql, [])?.pop())
    }
}

fn stored_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    stored_from_row_at(row, 0)
}

/// An update from [`COLUMNS`], starting at column `at`.
fn stored_from_row_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Stored> {
    let topics: String = row.get(at + 2)?;
    Ok(Stored {
        position: row.get::<_, i64>(at)? as u64,
        update: Arc::new(Update::restore(
            row.get(at + 1)?,
            topics.split('\n').map(str::to_owned).collect(),
            row.get(at + 3)?,
            row.get(at + 4)?,
            row.get(at + 5)?,
            row.get::<_, Option<i64>>(at + 6)?.map(|r| r as u64),
        )),
    })
}

/// The horizon as the last prune left it; for a history written before the horizon was kept,
/// everything below the oldest retained update (or every position ever used, if none is).
fn load_horizon(conn: &Connection) -> Result<Horizon> {
    let mut horizon = Horizon::default();
    let mut stmt = conn.prepare("SELECT key, value FROM meta WHERE key LIKE 'pruned:%'")?;
    let mut found = false;
    for row in stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })? {
        let (key, value) = row?;
        let Ok(position) = value.parse::<u64>() else {
            continue;
        };
        if key == "pruned:" {
            horizon.through = position;
            found = true;
        } else if let Some(prefix) = key.strip_prefix("pruned:volatile:") {
            horizon.volatile.push((prefix.to_owned(), position));
        }
    }
    if !found {
        // A history written before the horizon was kept: everything below the oldest retained
        // update may have been pruned (or, with none retained, every position used so far).
        let oldest: Option<i64> =
            conn.query_row("SELECT min(position) FROM updates", [], |row| row.get(0))?;
        horizon.through = match oldest {
            Some(oldest) => oldest as u64 - 1,
            None => conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'updates'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .optional()?
                .unwrap_or(0) as u64,
        };
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('pruned:', ?1)",
            [horizon.through.to_string()],
        )?;
    }
    Ok(horizon)
}

/// The live ids' key (made on first use) and how many times the history was opened, this time
/// included, both kept in `meta`.
fn load_live_ids(conn: &Connection) -> Result<(LiveIdKey, u64)> {
    let read = |key: &str| -> Result<Option<String>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    };
    let key = match read("live-id-key")? {
        Some(text) => live_id::key_from_hex(&text)
            .ok_or_else(|| HistoryError::new("the history's live-id-key is malformed"))?,
        None => {
            let key = live_id::new_key();
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('live-id-key', ?1)",
                [live_id::key_to_hex(&key)],
            )?;
            key
        }
    };
    let starts = read("starts")?
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('starts', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [starts.to_string()],
    )?;
    Ok((key, starts))
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
                let topics: Vec<&str> = update.topics().collect();
                insert.execute(params![
                    update.id(),
                    topics.join("\n"),
                    update.data(),
                    update.is_private(),
                    update.event_type(),
                    update.retry().map(|r| r as i64),
                    now,
                ])?;
                positions.push(tx.last_insert_rowid() as u64);
            }
        }
        tx.commit()?;
        self.rows.fetch_add(batch.len() as u64, Ordering::Relaxed);
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
            &format!(
                "SELECT {COLUMNS} FROM updates
                 WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3"
            ),
            params![after as i64, until as i64, limit as i64],
        )
    }

    /// Each row's size is read before its data: the row that would go past `max_bytes` is
    /// never loaded.
    fn read_capped(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Stored>> {
        let until = until.min(i64::MAX as u64);
        let limit = limit.min(i64::MAX as usize);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT length(CAST(data AS BLOB)) + length(CAST(id AS BLOB)), {COLUMNS}
                 FROM updates WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3"
            ))?;
            let mut rows = stmt.query(params![after as i64, until as i64, limit as i64])?;
            let mut read = Vec::new();
            let mut bytes = 0usize;
            while let Some(row) = rows.next()? {
                let size = row.get::<_, i64>(0)?.max(0) as usize;
                if !read.is_empty() && bytes.saturating_add(size) > max_bytes {
                    break;
                }
                bytes = bytes.saturating_add(size);
                read.push(stored_from_row_at(row, 1)?);
            }
            Ok(read)
        })
    }

    fn read_back(&self, before: u64, limit: usize) -> Result<Vec<Stored>> {
        let before = before.min(i64::MAX as u64);
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM updates
                 WHERE position < ?1 ORDER BY position DESC LIMIT ?2"
            ),
            params![before as i64, limit as i64],
        )
    }

    fn heads(&self) -> Result<Heads> {
        Ok(Heads {
            last: self.query_one(&format!(
                "SELECT {COLUMNS} FROM updates ORDER BY position DESC LIMIT 1"
            ))?,
            last_public: self.query_one(&format!(
                "SELECT {COLUMNS} FROM updates WHERE private = 0 ORDER BY position DESC LIMIT 1"
            ))?,
        })
    }

    fn len(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    fn horizon(&self) -> Horizon {
        self.horizon.read().clone()
    }

    /// Volatile rules first, so that what they drop never counts against `max_events`; then
    /// count and age. Each step publishes how far it reaches before it deletes.
    fn prune(&self, retention: &Retention) -> Result<u64> {
        let mut conn = self.writer.lock();
        let now = now_ms();
        let mut dropped = 0;

        let mut volatile = Vec::new();
        for (prefix, age) in &retention.volatile {
            // The time index narrows this to old rows; the prefix test picks the topic's.
            let cutoff = now - age.as_millis() as i64;
            let floor: Option<i64> = conn.query_row(
                "SELECT max(position) FROM updates
                 WHERE created_ms < ?1 AND substr(topics, 1, ?2) = ?3",
                params![cutoff, prefix.chars().count() as i64, prefix],
                |row| row.get(0),
            )?;
            if let Some(floor) = floor {
                volatile.push((prefix.clone(), floor as u64));
            }
        }
        if !volatile.is_empty() {
            {
                let mut horizon = self.horizon.write();
                for (prefix, floor) in &volatile {
                    match horizon.volatile.iter_mut().find(|(p, _)| p == prefix) {
                        Some((_, known)) => *known = (*known).max(*floor),
                        None => horizon.volatile.push((prefix.clone(), *floor)),
                    }
                }
            }
            let tx = conn.transaction()?;
            for (prefix, floor) in &volatile {
                dropped += tx.execute(
                    "DELETE FROM updates WHERE position <= ?1 AND substr(topics, 1, ?2) = ?3",
                    params![*floor as i64, prefix.chars().count() as i64, prefix],
                )?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key)
                     DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    params![format!("pruned:volatile:{prefix}"), floor.to_string()],
                )?;
            }
            tx.commit()?;
            self.rows.fetch_sub(dropped as u64, Ordering::Relaxed);
        }

        let before = self.horizon.read().through;
        let mut through = before;
        let excess = self.len().saturating_sub(retention.max_events);
        if excess > 0 {
            let floor: Option<i64> = conn
                .query_row(
                    "SELECT position FROM updates ORDER BY position LIMIT 1 OFFSET ?1",
                    [excess as i64 - 1],
                    |row| row.get(0),
                )
                .optional()?;
            through = through.max(floor.unwrap_or(0) as u64);
        }
        if let Some(age) = retention.max_age {
            let cutoff = now - age.as_millis() as i64;
            let floor: Option<i64> = conn.query_row(
                "SELECT max(position) FROM updates WHERE created_ms < ?1",
                [cutoff],
                |row| row.get(0),
            )?;
            through = through.max(floor.unwrap_or(0) as u64);
        }
        if through > before {
            self.horizon.write().through = through;
            let tx = conn.transaction()?;
            let count = tx.execute("DELETE FROM updates WHERE position <= ?1", [through as i64])?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('pruned:', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [through.to_string()],
            )?;
            tx.commit()?;
            self.rows.fetch_sub(count as u64, Ordering::Relaxed);
            dropped += count;
        }
        Ok(dropped as u64)
    }

    fn live_id_key(&self) -> LiveIdKey {
        self.live_key
    }

    fn live_seq_start(&self) -> u64 {
        self.live_seq_start
    }

    fn probe(&self) -> Result<()> {
        self.writer.lock().execute(
            "INSERT INTO meta (key, value) VALUES ('probe', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [now_ms().to_string()],
        )?;
        Ok(())
    }
}

// Tests: `hub/tests/history.rs`, one behaviour suite for every store.
