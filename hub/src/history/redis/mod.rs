//! History in a Redis stream, so that several nodes can share one.
//!
//! Keys under a configurable prefix (`tidings:` by default):
//!
//! - `<prefix>stream`: the updates, one entry each, with the explicit id `<position>-0`, so a
//!   position is a plain increasing `u64`, as in SQLite, and a stream range is a position range.
//! - `<prefix>meta`: a hash: `seq` (the last position handed out: positions are never reused,
//!   even when pruning empties the stream), `clock` (the newest `created_ms`, which keeps it
//!   non-decreasing along the stream), the horizon (`through`, `volatile:<prefix>`), how far
//!   each volatile rule has looked (`scanned:<prefix>`, so pruning reads only what became due
//!   since), `epoch` (a random name given when the history was created: another one means
//!   Redis lost the history), `probe`, and `liveidkey` (the key every node authenticates
//!   live-only events' ids with).
//! - `<prefix>ids`: a sorted set with every member at score 0, `<id>\0<position, 20 digits>`:
//!   the lexicographic order puts an id's earliest position first, so [`History::position_of`]
//!   is one `ZRANGEBYLEX`, and pruning removes exactly the members of what it drops. (`\0`
//!   cannot occur in an id.)
//!
//! - `<prefix>live`: live-only events (subscription events, presence), capped at
//!   [`LIVE_MAX`] entries: ids `<seq>-0` from the meta field `liveseq`, each with the field
//!   `after`, the stored position current when it was sent.
//! - `<prefix>witness:<random>`: one per node (per opened history), a counter the node writes
//!   right after each read of the streams, which tells it whether Redis went back to an older
//!   state since (see [`Witness`]).
//! - The roster: `<prefix>nodes` (the alive nodes, scored by when each expires) and per node
//!   `<prefix>node:<id>:subs` (a hash: subscriber id, its subscriptions' documents) and
//!   `…:counts` (a sorted set with every member at score 0, `<topic>\0<subscribers>`, so that
//!   the topics under a prefix, with their counts, are one `ZRANGEBYLEX`).
//!
//! Every node follows both streams with one `XREAD BLOCK` ([`SharedHistory::follow`]) and fans
//! out what it reads, its own publishes included, so every node delivers Redis's order.
//!
//! Every write is one Lua script, so a batch gets consecutive positions and lands whole or not
//! at all, and the id index never disagrees with the stream. Timestamps come from the Redis
//! server's clock, not the node's, so that nodes with skewed clocks age updates alike.
//!
//! Durability is the server's: `appendonly yes` with `appendfsync always` makes a reply mean
//! the write is on disk. Opening warns when the server says it keeps no append-only file.
//!
//! The code is split by concern: this file holds the connection, the key names and what
//! the others share (decoding an entry, the cached horizon); [`log`] the stored history
//! (appending, reading, pruning: [`History`]); [`follow`] how a node follows both streams
//! ([`SharedHistory`]); [`membership`] what nodes publish about themselves. Each Lua script is
//! a `.lua` file beside them, loaded with `include_str!`.
//!
//! [`History`]: super::History
//! [`History::position_of`]: super::History::position_of
//! [`SharedHistory`]: super::SharedHistory
//! [`SharedHistory::follow`]: super::SharedHistory::follow

mod follow;
mod log;
mod membership;

use self::follow::Witness;
use super::{HistoryError, Horizon, Result};
use crate::{
    live_id::{self, LiveIdKey},
    update::{Stored, Update},
};
use parking_lot::{Mutex, RwLock};
use redis::{Client, Connection, RedisError, Script};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// How long connecting, and then any one reply, may take: past it the store counts as failed
/// (a health check reports it) instead of blocking the writer thread for ever.
const TIMEOUT: Duration = Duration::from_secs(5);

/// How long calls fail at once after the server was found unreachable.
const PAUSE: Duration = Duration::from_millis(500);

/// Live-only events kept in Redis (roughly: trimmed with `MAXLEN ~`). A node that falls further
/// behind than this misses some, which only live-only events may do.
pub const LIVE_MAX: usize = 10_000;

/// History in a Redis stream (see the module documentation for the layout).
///
/// The row count and the horizon are cached in memory like [`super::SqliteHistory`]'s, since
/// the trait reads them without a fallible call; each write refreshes the count from `XLEN`.
pub struct RedisHistory {
    client: Client,
    /// Where the server is, without credentials: for error messages.
    address: String,
    idle: Mutex<Vec<Connection>>,
    /// When a call last found the server unreachable, until one succeeds.
    unreachable_since: Mutex<Option<std::time::Instant>>,
    /// The follower's own connection: an `XREAD BLOCK` holds a connection while it waits.
    following: Mutex<Option<Connection>>,
    stream: String,
    meta: String,
    ids: String,
    live: String,
    /// Prefix of the keys each node publishes about itself.
    prefix: String,
    /// The alive nodes: a sorted set scored by when each expires.
    nodes: String,
    /// Replicas that must have a batch before it is acknowledged (`WAIT`), and for how long.
    wait: Option<(u32, Duration)>,
    rows: AtomicU64,
    horizon: RwLock<Horizon>,
    append: Script,
    drop_volatile: Script,
    drop_through: Script,
    count_floor: Script,
    read_capped: Script,
    due: Script,
    send_live: Script,
    alive: Script,
    counts: Script,
    /// The meta hash's `epoch`, a random name given when the history was created: another
    /// value (or none) means Redis lost the history, and positions may be handed out again.
    epoch: Mutex<String>,
    /// The meta hash's `liveidkey`: the live ids' key, set with the epoch (`HSETNX`, so every
    /// node of a cluster has the same).
    live_key: Mutex<LiveIdKey>,
    /// `<prefix>witness:<random>`: this instance's witness key (see [`Witness`]).
    witness_key: String,
    witness: Mutex<Witness>,
}

/// Shared by the scripts: the index member of an id at a position (the position as Lua's
/// decimal string, padded to 20 digits like Rust's `{:020}`).
const MEMBER_LUA: &str = include_str!("member.lua");

/// One entry as `XRANGE` returns it.
type Entry = (String, Vec<String>);

impl RedisHistory {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`) and opens the
    /// history under `prefix`, e.g. `tidings:`. Fails with a clear error if the server cannot
    /// be reached.
    pub fn open(url: &str, prefix: &str) -> Result<Self> {
        let client = Client::open(url)
            .map_err(|e| HistoryError::new(format!("invalid Redis address: {e}")))?;
        let address = client.get_connection_info().addr().to_string();
        let history = Self {
            client,
            address,
            idle: Mutex::new(Vec::new()),
            unreachable_since: Mutex::new(None),
            following: Mutex::new(None),
            stream: format!("{prefix}stream"),
            meta: format!("{prefix}meta"),
            ids: format!("{prefix}ids"),
            live: format!("{prefix}live"),
            prefix: prefix.to_owned(),
            nodes: format!("{prefix}nodes"),
            wait: None,
            rows: AtomicU64::new(0),
            horizon: RwLock::new(Horizon::default()),
            append: Script::new(&format!("{MEMBER_LUA}{}", log::APPEND_LUA)),
            drop_volatile: Script::new(&format!("{MEMBER_LUA}{}", log::DROP_VOLATILE_LUA)),
            drop_through: Script::new(&format!("{MEMBER_LUA}{}", log::DROP_THROUGH_LUA)),
            count_floor: Script::new(log::COUNT_FLOOR_LUA),
            read_capped: Script::new(log::READ_CAPPED_LUA),
            due: Script::new(log::DUE_LUA),
            send_live: Script::new(follow::SEND_LIVE_LUA),
            alive: Script::new(membership::ALIVE_LUA),
            counts: Script::new(membership::COUNTS_LUA),
            epoch: Mutex::new(String::new()),
            live_key: Mutex::new([0; 32]),
            witness_key: format!("{prefix}witness:{}", crate::update::new_id()),
            witness: Mutex::new(Witness::default()),
        };
        history.with(|con| redis::cmd("PING").query::<String>(con))?;
        history.warn_unless_durable();
        history.claim_epoch()?;
        let rows: u64 = history.with(|con| redis::cmd("XLEN").arg(&history.stream).query(con))?;
        history.rows.store(rows, Ordering::Relaxed);
        *history.horizon.write() = history.load_horizon()?;
        Ok(history)
    }

    /// Where the server is (host and port, never credentials).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Acknowledges a batch only once `replicas` replicas have it too (Redis `WAIT`), or fails
    /// after `timeout`. A batch that timed out is on the primary: it was not lost, but it is
    /// not acknowledged either, so the publisher's retry may store it twice.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Runs `f` on a pooled connection. A connection that failed is dropped, not pooled: after
    /// a timeout its replies may be out of step.
    ///
    /// For [`PAUSE`] after the server was found unreachable, calls fail at once instead of
    /// each waiting out [`TIMEOUT`] again: a hung Redis costs the publishers queued behind one
    /// timed-out batch a prompt 503, not a timeout each.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        if let Some(since) = *self.unreachable_since.lock()
            && since.elapsed() < PAUSE
        {
            return Err(HistoryError::unavailable(format!(
                "Redis at {} unreachable (trying again shortly)",
                self.address
            )));
        }
        let pooled = self.idle.lock().pop();
        let mut con = match pooled {
            Some(con) => con,
            None => self.connect().inspect_err(|e| self.note_failure(e))?,
        };
        let result = f(&mut con).map_err(|e| self.error(e));
        let result = result.inspect_err(|e| self.note_failure(e))?;
        *self.unreachable_since.lock() = None;
        let mut idle = self.idle.lock();
        if idle.len() < 8 {
            idle.push(con);
        }
        Ok(result)
    }

    /// After the server was found unreachable, its pooled connections are likely dead too:
    /// dropped, so that each does not fail (and pause calls) in turn once it is back.
    fn note_failure(&self, error: &HistoryError) {
        if error.is_unavailable() {
            *self.unreachable_since.lock() = Some(std::time::Instant::now());
            self.idle.lock().clear();
        }
    }

    fn connect(&self) -> Result<Connection> {
        let con = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| self.error(e))?;
        con.set_read_timeout(Some(TIMEOUT))
            .and_then(|()| con.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| self.error(e))?;
        Ok(con)
    }

    /// Classifies a failure: the server down, busy, loading or failing over is "unavailable"
    /// (retry later: 503), anything else a failure of the store.
    fn error(&self, e: RedisError) -> HistoryError {
        let transient_code = matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "READONLY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")
        );
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || transient_code
        {
            HistoryError::unavailable(format!("Redis at {} unreachable: {e}", self.address))
        } else {
            HistoryError::new(format!("Redis at {}: {e}", self.address))
        }
    }

    /// Warns when the server keeps no append-only file (an acknowledged update can then be
    /// lost in a crash), or may evict keys when full (the history then loses updates, and its
    /// bookkeeping, silently). Servers that refuse `CONFIG` (managed ones) are trusted.
    fn warn_unless_durable(&self) {
        let config = |name: &str| -> Option<String> {
            let reply: Vec<String> = self
                .with(|con| redis::cmd("CONFIG").arg("GET").arg(name).query(con))
                .ok()?;
            reply.get(1).cloned()
        };
        if config("appendonly").is_some_and(|v| v == "no") {
            tracing::warn!(
                address = %self.address,
                "Redis keeps no append-only file: updates may be lost in a crash \
                 (set appendonly yes, appendfsync always)"
            );
        }
        if config("maxmemory-policy").is_some_and(|v| v != "noeviction") {
            tracing::warn!(
                address = %self.address,
                "Redis may evict keys when full: the history would lose updates \
                 (set maxmemory-policy noeviction)"
            );
        }
    }

    /// The history's epoch and live ids' key, given now if it has none, noted here.
    fn claim_epoch(&self) -> Result<()> {
        let mine = crate::update::new_id();
        let key = live_id::key_to_hex(&live_id::new_key());
        let (epoch, key): (String, String) = self.with(|con| {
            redis::pipe()
                .cmd("HSETNX")
                .arg(&self.meta)
                .arg("epoch")
                .arg(&mine)
                .ignore()
                .cmd("HSETNX")
                .arg(&self.meta)
                .arg("liveidkey")
                .arg(&key)
                .ignore()
                .cmd("HGET")
                .arg(&self.meta)
                .arg("epoch")
                .cmd("HGET")
                .arg(&self.meta)
                .arg("liveidkey")
                .query(con)
        })?;
        *self.live_key.lock() = live_id::key_from_hex(&key)
            .ok_or_else(|| HistoryError::new(format!("{}'s liveidkey is malformed", self.meta)))?;
        *self.epoch.lock() = epoch;
        Ok(())
    }

    /// The horizon as the last prune left it; for a history without one yet, everything below
    /// the oldest entry (or every position handed out, if none is left), as SQLite does.
    fn load_horizon(&self) -> Result<Horizon> {
        let meta: Vec<(String, String)> =
            self.with(|con| redis::cmd("HGETALL").arg(&self.meta).query(con))?;
        let (mut horizon, found) = horizon_of(meta);
        if !found {
            let oldest = self.range("-", "+", 1)?.pop();
            horizon.through = match oldest {
                Some(oldest) => oldest.position - 1,
                None => self
                    .with(|con| {
                        redis::cmd("HGET")
                            .arg(&self.meta)
                            .arg("seq")
                            .query::<Option<u64>>(con)
                    })?
                    .unwrap_or(0),
            };
            // HSETNX: another node opening at the same time computed the same value, or pruned.
            self.with(|con| {
                redis::cmd("HSETNX")
                    .arg(&self.meta)
                    .arg("through")
                    .arg(horizon.through)
                    .query::<()>(con)
            })?;
        }
        Ok(horizon)
    }

    /// Raises the cached horizon (never lowers it: another node may have pruned further).
    fn raise_horizon(&self, through: u64, volatile: &[(String, u64)]) {
        let mut horizon = self.horizon.write();
        horizon.through = horizon.through.max(through);
        for (prefix, floor) in volatile {
            match horizon.volatile.iter_mut().find(|(p, _)| p == prefix) {
                Some((_, known)) => *known = (*known).max(*floor),
                None => horizon.volatile.push((prefix.clone(), *floor)),
            }
        }
    }

    /// Raises the cached horizon to what `meta` (the `HGETALL` of the meta hash) says.
    fn note_meta(&self, meta: Vec<(String, String)>) {
        let (horizon, _) = horizon_of(meta);
        self.raise_horizon(horizon.through, &horizon.volatile);
    }
}

/// The horizon in the meta hash's fields, and whether it has been set.
fn horizon_of(meta: Vec<(String, String)>) -> (Horizon, bool) {
    let mut horizon = Horizon::default();
    let mut found = false;
    for (key, value) in meta {
        let Ok(position) = value.parse::<u64>() else {
            continue;
        };
        if key == "through" {
            horizon.through = position;
            found = true;
        } else if let Some(prefix) = key.strip_prefix("volatile:") {
            horizon.volatile.push((prefix.to_owned(), position));
        }
    }
    (horizon, found)
}

/// The arguments the scripts take per update: id, topics, data, private, type, retry.
fn update_args(invocation: &mut redis::ScriptInvocation<'_>, update: &Update) {
    let topics: Vec<&str> = update.topics().collect();
    invocation
        .arg(update.id())
        .arg(topics.join("\n"))
        .arg(update.data())
        .arg(if update.is_private() { "1" } else { "0" })
        .arg(update.event_type().unwrap_or(""))
        .arg(update.retry().map(|r| r.to_string()).unwrap_or_default());
}

/// An entry's position: the first part of its stream id.
fn position(id: &str) -> Result<u64> {
    id.split('-')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| HistoryError::new(format!("not a Tidings stream entry id: {id}")))
}

fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks_exact(2)
        .find(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str())
}

fn stored(entry: &Entry) -> Result<Stored> {
    Ok(Stored {
        position: position(&entry.0)?,
        update: update_of(entry)?,
    })
}

/// The update an entry of either stream holds.
fn update_of((id, fields): &Entry) -> Result<Arc<Update>> {
    let get = |name| {
        field(fields, name)
            .ok_or_else(|| HistoryError::new(format!("stream entry {id} lacks the field {name}")))
    };
    let retry = get("retry")?;
    Ok(Arc::new(Update::restore(
        get("id")?.to_owned(),
        get("topics")?.split('\n').map(str::to_owned).collect(),
        get("data")?.to_owned(),
        get("private")? == "1",
        Some(get("type")?)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        if retry.is_empty() {
            None
        } else {
            Some(retry.parse().map_err(|_| {
                HistoryError::new(format!("stream entry {id} has a bad retry: {retry}"))
            })?)
        },
    )))
}
