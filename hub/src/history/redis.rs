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

use super::{
    Cursor, Followed, Heads, History, HistoryError, Horizon, LiveEvent, NodeState, Refreshed,
    Result, Retention, SharedHistory,
};
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

/// Entries fetched per round trip when scanning.
const CHUNK: usize = 512;

/// Live-only events kept in Redis (roughly: trimmed with `MAXLEN ~`). A node that falls further
/// behind than this misses some, which only live-only events may do.
pub const LIVE_MAX: usize = 10_000;

/// History in a Redis stream (see the module documentation for the layout).
///
/// How long a node's witness outlives its last renewal (every follow round, twice a second at
/// least): a node cut off from Redis for longer follows it afresh when it is back.
const WITNESS_TTL: Duration = Duration::from_secs(24 * 3600);

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

/// What notices Redis going back to an older state, whatever was written since.
///
/// The epoch notices a history that is gone, and positions going back a history that is
/// shorter; neither notices Redis restored from a snapshot that was taken after the epoch was
/// given and then written past its old positions again (`DEBUG RELOAD`, a restart from an
/// older RDB or append-only file, a replica without the newest writes taking over). Redis's
/// run id and replication id do not tell either: a reload keeps both, and a restart that lost
/// nothing changes the run id. So each follower keeps a witness in Redis: a counter of its
/// own, written in the same pipeline as every read, right after it (`SET … GET`, which
/// returns the value it replaces). The write comes after the read, so a state that holds what
/// was read and not lost later holds the write too; a state restored from before that write
/// holds an older value, or none. Seeing anything but its last value, the follower knows that
/// Redis went back past a write it acknowledged, before it uses what it read.
#[derive(Debug, Default)]
struct Witness {
    /// The value Redis confirmed last (`None` before the first read).
    confirmed: Option<u64>,
    /// The newest value sent since without a reply (the read failed): Redis may hold it, or
    /// any value sent since `confirmed`.
    attempted: Option<u64>,
}

impl Witness {
    fn next(&self) -> u64 {
        self.attempted.or(self.confirmed).unwrap_or(0) + 1
    }

    /// Whether `found` (what Redis held when `next` was written) says that nothing was lost.
    fn kept(&self, found: Option<u64>) -> bool {
        match (self.confirmed, found) {
            (None, _) => true,
            (Some(confirmed), Some(found)) => {
                (confirmed..=self.attempted.unwrap_or(confirmed)).contains(&found)
            }
            (Some(_), None) => false,
        }
    }
}

/// Shared by the scripts: the index member of an id at a position (the position as Lua's
/// decimal string, padded to 20 digits like Rust's `{:020}`).
const MEMBER_LUA: &str = "
local function member(id, pos)
  return id .. '\\0' .. string.rep('0', 20 - #pos) .. pos
end
";

/// KEYS: stream, meta, ids. ARGV: n, then per update: id, topics, data, private, type, retry.
/// Returns the first position and the stream's length. (Should `seq` have fallen behind the
/// stream, as after Redis lost the meta hash, positions continue after the newest entry.)
const APPEND_LUA: &str = "
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local clock = tonumber(redis.call('HGET', KEYS[2], 'clock') or '0')
if now < clock then now = clock end
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then
  local newest = tonumber(string.match(top[1][1], '^%d+'))
  if newest > seq then redis.call('HSET', KEYS[2], 'seq', newest) end
end
local last = redis.call('HINCRBY', KEYS[2], 'seq', n)
local first = last - n + 1
local created = string.format('%d', now)
for i = 0, n - 1 do
  local a = 1 + i * 6
  local pos = string.format('%d', first + i)
  redis.call('XADD', KEYS[1], pos .. '-0',
    'id', ARGV[a + 1], 'topics', ARGV[a + 2], 'data', ARGV[a + 3],
    'private', ARGV[a + 4], 'type', ARGV[a + 5], 'retry', ARGV[a + 6], 'created_ms', created)
  redis.call('ZADD', KEYS[3], 0, member(ARGV[a + 1], pos))
end
redis.call('HSET', KEYS[2], 'clock', created)
return {first, redis.call('XLEN', KEYS[1])}
";

/// KEYS: stream, meta, ids. ARGV: a volatile prefix, its floor (empty: none), how far its
/// rule has looked, then pairs (position, id). Raises the prefix's horizon to the floor and
/// its `scanned:` mark, then drops the entries. Returns dropped and length.
const DROP_VOLATILE_LUA: &str = "
local function raise(field, value)
  local known = redis.call('HGET', KEYS[2], field)
  if not known or tonumber(value) > tonumber(known) then
    redis.call('HSET', KEYS[2], field, value)
  end
end
if ARGV[2] ~= '' then raise('volatile:' .. ARGV[1], ARGV[2]) end
raise('scanned:' .. ARGV[1], ARGV[3])
local dropped = 0
for j = 4, #ARGV, 2 do
  dropped = dropped + redis.call('XDEL', KEYS[1], ARGV[j] .. '-0')
  redis.call('ZREM', KEYS[3], member(ARGV[j + 1], ARGV[j]))
end
return {dropped, redis.call('XLEN', KEYS[1])}
";

/// KEYS: stream. ARGV: after (a position), cutoff (ms), prefix, limit, want (`1`: list the
/// matches). Looks at up to `limit` entries after `after`, in order, stopping at the first one
/// created at or after `cutoff` (`created_ms` never decreases along the stream). Returns the
/// last position looked at (`after` if none), `1` if it stopped at a young entry or the end
/// (else `0`: call again from there), then, if wanted, the position and id of each entry
/// looked at whose topics start with `prefix`. Inside Redis, so that only what is due crosses
/// the network, and a young history is not read at all.
const DUE_LUA: &str = "
local after = ARGV[1]
local cutoff = tonumber(ARGV[2])
local prefix = ARGV[3]
local limit = tonumber(ARGV[4])
local want = ARGV[5] == '1'
local out = {after, '0'}
local looked = 0
while looked < limit do
  local chunk = redis.call('XRANGE', KEYS[1], '(' .. after .. '-0', '+', 'COUNT', math.min(100, limit - looked))
  if #chunk == 0 then out[2] = '1' return out end
  for _, entry in ipairs(chunk) do
    local created, topics, id = 0, '', ''
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'created_ms' then created = tonumber(fields[f + 1]) or 0
      elseif fields[f] == 'topics' then topics = fields[f + 1]
      elseif fields[f] == 'id' then id = fields[f + 1] end
    end
    if created >= cutoff then out[2] = '1' return out end
    after = string.match(entry[1], '^%d+')
    out[1] = after
    looked = looked + 1
    if want and string.sub(topics, 1, #prefix) == prefix then
      out[#out + 1] = after
      out[#out + 1] = id
    end
  end
end
return out
";

/// What one [`DUE_LUA`] call found.
struct Due {
    /// The last position looked at.
    last: u64,
    /// It stopped at a young entry or the end: nothing more is due.
    done: bool,
    /// Position and id of each entry looked at that the prefix starts, if wanted.
    matches: Vec<(u64, String)>,
}

/// Entries one [`DUE_LUA`] call looks at, at most: none holds Redis long.
const DUE_CHUNK: usize = 1000;

/// KEYS: stream, meta, ids. ARGV: through, limit. Raises the horizon, then drops up to
/// `limit` of the oldest entries at or below it, with their index members. Returns dropped and
/// length; the caller repeats while a call drops `limit`, so that no call holds Redis long.
const DROP_THROUGH_LUA: &str = "
local known = redis.call('HGET', KEYS[2], 'through')
if not known or tonumber(ARGV[1]) > tonumber(known) then
  redis.call('HSET', KEYS[2], 'through', ARGV[1])
end
local entries = redis.call('XRANGE', KEYS[1], '-', ARGV[1] .. '-0', 'COUNT', tonumber(ARGV[2]))
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for f = 1, #fields, 2 do
    if fields[f] == 'id' then
      redis.call('ZREM', KEYS[3], member(fields[f + 1], string.match(entry[1], '^%d+')))
      break
    end
  end
  redis.call('XDEL', KEYS[1], entry[1])
end
return {#entries, redis.call('XLEN', KEYS[1])}
";

/// KEYS: stream, meta. ARGV: from, to, count, max bytes. The entries of `XRANGE from to COUNT
/// count`, stopping before one whose `data` and `id` would take the total past max bytes (the
/// first is returned whatever its size), and the meta hash: so what is not returned never
/// leaves the server.
const READ_CAPPED_LUA: &str = "
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local budget = tonumber(ARGV[4])
local read = {}
for _, entry in ipairs(entries) do
  local size = 0
  local fields = entry[2]
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'data' or fields[i] == 'id' then
      size = size + #fields[i + 1]
    end
  end
  if #read > 0 and size > budget then
    break
  end
  read[#read + 1] = entry
  budget = budget - size
end
return {read, redis.call('HGETALL', KEYS[2])}
";

/// Entries one pruning script drops at most.
const DROP_CHUNK: u64 = 1000;

/// KEYS: live, meta. ARGV: cap, n, then per event: id, topics, data, private, type, retry.
/// Places the events after the current stored position. Returns nothing.
const SEND_LIVE_LUA: &str = "
local n = tonumber(ARGV[2])
local after = redis.call('HGET', KEYS[2], 'seq') or '0'
local last = redis.call('HINCRBY', KEYS[2], 'liveseq', n)
for i = 0, n - 1 do
  local a = 2 + i * 6
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], string.format('%d', last - n + 1 + i) .. '-0',
    'after', after, 'id', ARGV[a + 1], 'topics', ARGV[a + 2], 'data', ARGV[a + 3],
    'private', ARGV[a + 4], 'type', ARGV[a + 5], 'retry', ARGV[a + 6])
end
return 0
";

/// KEYS: nodes. ARGV: node (empty: none), ttl in ms. Marks the node alive until now + ttl by
/// Redis's clock (nodes' clocks may differ), forgets expired nodes, returns the alive ones.
const ALIVE_LUA: &str = "
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
";

/// KEYS: a node's topic counts (see [`SharedHistory::other_counts`]). ARGV: pairs (topic,
/// change). Applies the changes, removing a topic whose count reaches 0, so the set holds
/// only topics with subscribers.
const COUNTS_LUA: &str = "
for i = 1, #ARGV, 2 do
  local topic = ARGV[i]
  local count = tonumber(ARGV[i + 1])
  local found = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. topic .. '\\0', '(' .. topic .. '\\1', 'LIMIT', 0, 1)
  if #found > 0 then
    redis.call('ZREM', KEYS[1], found[1])
    count = count + tonumber(string.sub(found[1], #topic + 2))
  end
  if count > 0 then
    redis.call('ZADD', KEYS[1], 0, topic .. '\\0' .. string.format('%d', count))
  end
end
return 0
";

/// KEYS: stream. ARGV: excess. The position of the `excess`-th oldest entry, or 0: counted in
/// Redis so that the skipped entries never cross the network.
const COUNT_FLOOR_LUA: &str = "
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
if #entries == 0 then return 0 end
return tonumber(string.match(entries[#entries][1], '^%d+'))
";

/// One entry as `XRANGE` returns it.
type Entry = (String, Vec<String>);

/// What `XREAD` returns: per stream with news, its new entries (nothing: nil).
type ReadReply = Option<Vec<(String, Vec<Entry>)>>;

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
            append: Script::new(&format!("{MEMBER_LUA}{APPEND_LUA}")),
            drop_volatile: Script::new(&format!("{MEMBER_LUA}{DROP_VOLATILE_LUA}")),
            drop_through: Script::new(&format!("{MEMBER_LUA}{DROP_THROUGH_LUA}")),
            count_floor: Script::new(COUNT_FLOOR_LUA),
            read_capped: Script::new(READ_CAPPED_LUA),
            due: Script::new(DUE_LUA),
            send_live: Script::new(SEND_LIVE_LUA),
            alive: Script::new(ALIVE_LUA),
            counts: Script::new(COUNTS_LUA),
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

    fn entries(&self, command: &str, from: &str, to: &str, limit: usize) -> Result<Vec<Entry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.with(|con| {
            redis::cmd(command)
                .arg(&self.stream)
                .arg(from)
                .arg(to)
                .arg("COUNT")
                .arg(limit)
                .query(con)
        })
    }

    fn range(&self, from: &str, to: &str, limit: usize) -> Result<Vec<Stored>> {
        self.entries("XRANGE", from, to, limit)?
            .into_iter()
            .map(|entry| stored(&entry))
            .collect()
    }

    fn range_back(&self, from: &str, to: &str, limit: usize) -> Result<Vec<Stored>> {
        self.entries("XREVRANGE", from, to, limit)?
            .into_iter()
            .map(|entry| stored(&entry))
            .collect()
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

    fn node_key(&self, node: &str, what: &str) -> String {
        format!("{}node:{node}:{what}", self.prefix)
    }

    /// `read` (one command, added to a pipeline) of what each alive node other than `node`
    /// published under `what`.
    fn read_others<T: redis::FromRedisValue>(
        &self,
        node: &str,
        what: &str,
        read: impl Fn(&mut redis::Pipeline, String),
    ) -> Result<Vec<T>> {
        let mut others: Vec<String> =
            self.with(|con| self.alive.key(&self.nodes).arg("").arg(0).invoke(con))?;
        others.retain(|n| n != node);
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for other in &others {
            read(&mut pipe, self.node_key(other, what));
        }
        self.with(|con| pipe.query(con))
    }

    /// [`DUE_LUA`]: the last position looked at after `after`, whether it stopped at a young
    /// entry or the end, and (if `want`) the entries looked at that `prefix` starts.
    fn due(&self, after: u64, cutoff: i64, prefix: &str, want: bool) -> Result<Due> {
        let reply: Vec<String> = self.with(|con| {
            self.due
                .key(&self.stream)
                .arg(after)
                .arg(cutoff)
                .arg(prefix)
                .arg(DUE_CHUNK)
                .arg(if want { "1" } else { "0" })
                .invoke(con)
        })?;
        let bad = || HistoryError::new("unexpected reply from a Tidings script");
        let [last, done, matches @ ..] = &reply[..] else {
            return Err(bad());
        };
        let matches = matches
            .chunks_exact(2)
            .map(|pair| Ok((pair[0].parse().map_err(|_| bad())?, pair[1].clone())))
            .collect::<Result<_>>()?;
        Ok(Due {
            last: last.parse().map_err(|_| bad())?,
            done: done == "1",
            matches,
        })
    }

    fn server_ms(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = self.with(|con| redis::cmd("TIME").query(con))?;
        Ok(secs * 1000 + micros / 1000)
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

fn pair(values: Vec<u64>) -> Result<(u64, u64)> {
    match values[..] {
        [a, b] => Ok((a, b)),
        _ => Err(HistoryError::new("unexpected reply from a Tidings script")),
    }
}

impl History for RedisHistory {
    fn append(&self, batch: &[Arc<Update>]) -> Result<Vec<u64>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut script = self.append.prepare_invoke();
        script
            .key(&self.stream)
            .key(&self.meta)
            .key(&self.ids)
            .arg(batch.len());
        for update in batch {
            update_args(&mut script, update);
        }
        // `WAIT` counts the replicas that have this connection's writes: it must follow the
        // script on the same connection, with a read timeout that outlasts it.
        let (reply, acknowledged) = self.with(|con| {
            let reply: Vec<u64> = script.invoke(con)?;
            let Some((replicas, timeout)) = self.wait else {
                return Ok((reply, None));
            };
            con.set_read_timeout(Some(timeout + TIMEOUT))?;
            let acknowledged: redis::RedisResult<u32> = redis::cmd("WAIT")
                .arg(replicas)
                .arg(timeout.as_millis() as u64)
                .query(con);
            con.set_read_timeout(Some(TIMEOUT))?;
            Ok((reply, Some(acknowledged?)))
        })?;
        let (first, rows) = pair(reply)?;
        self.rows.store(rows, Ordering::Relaxed);
        if let (Some((replicas, timeout)), Some(acknowledged)) = (self.wait, acknowledged)
            && acknowledged < replicas
        {
            return Err(HistoryError::unavailable(format!(
                "Redis at {}: {acknowledged} of {replicas} replicas confirmed a write within {timeout:?}",
                self.address
            )));
        }
        Ok((first..first + batch.len() as u64).collect())
    }

    /// Reads the horizon in the same round trip, after the lookup: the caller checks it next,
    /// and another node may have pruned since this one last looked.
    fn position_of(&self, id: &str) -> Result<Option<u64>> {
        let (found, meta): (Vec<String>, Vec<(String, String)>) = self.with(|con| {
            redis::pipe()
                .cmd("ZRANGEBYLEX")
                .arg(&self.ids)
                .arg(format!("[{id}\0"))
                .arg(format!("({id}\x01"))
                .arg("LIMIT")
                .arg(0)
                .arg(1)
                .cmd("HGETALL")
                .arg(&self.meta)
                .query(con)
        })?;
        self.note_meta(meta);
        found
            .first()
            .map(|member| {
                member
                    .rsplit('\0')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| HistoryError::new(format!("bad id index member {member:?}")))
            })
            .transpose()
    }

    /// Reads the horizon in the same round trip, after the entries, for the replay's check.
    fn read(&self, after: u64, until: u64, limit: usize) -> Result<Vec<Stored>> {
        if after >= until || limit == 0 {
            return Ok(Vec::new());
        }
        let (entries, meta): (Vec<Entry>, Vec<(String, String)>) = self.with(|con| {
            redis::pipe()
                .cmd("XRANGE")
                .arg(&self.stream)
                .arg(after + 1)
                .arg(until)
                .arg("COUNT")
                .arg(limit)
                .cmd("HGETALL")
                .arg(&self.meta)
                .query(con)
        })?;
        self.note_meta(meta);
        entries.iter().map(stored).collect()
    }

    /// One script: the entries past the cap never leave the server. Reads the horizon in the
    /// same round trip, after the entries, like [`History::read`].
    fn read_capped(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Stored>> {
        if after >= until || limit == 0 {
            return Ok(Vec::new());
        }
        // Lua's numbers are exact to 2^53.
        let max_bytes = max_bytes.min(1 << 53);
        let (entries, meta): (Vec<Entry>, Vec<(String, String)>) = self.with(|con| {
            self.read_capped
                .key(&self.stream)
                .key(&self.meta)
                .arg(after + 1)
                .arg(until)
                .arg(limit)
                .arg(max_bytes)
                .invoke(con)
        })?;
        self.note_meta(meta);
        entries.iter().map(stored).collect()
    }

    fn read_back(&self, before: u64, limit: usize) -> Result<Vec<Stored>> {
        if before == 0 {
            return Ok(Vec::new());
        }
        self.range_back(&(before - 1).to_string(), "-", limit)
    }

    /// The newest public update is found by walking back from the end: this runs at start-up.
    fn heads(&self) -> Result<Heads> {
        let mut heads = Heads::default();
        let mut before = "+".to_owned();
        loop {
            let chunk = self.range_back(&before, "-", CHUNK)?;
            if heads.last.is_none() {
                heads.last = chunk.first().cloned();
            }
            if let Some(public) = chunk.iter().find(|s| !s.update.is_private()) {
                heads.last_public = Some(public.clone());
                return Ok(heads);
            }
            match chunk.last() {
                Some(oldest) if chunk.len() == CHUNK => before = format!("({}-0", oldest.position),
                _ => return Ok(heads),
            }
        }
    }

    fn len(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    fn horizon(&self) -> Horizon {
        self.horizon.read().clone()
    }

    /// Volatile rules first, so that what they drop never counts against `max_events`; then
    /// count and age, as in SQLite. Each step raises the cached horizon, then runs a script
    /// that raises the stored one and deletes, atomically.
    ///
    /// What each rule looks at costs Redis what became due since it last looked, never the
    /// whole history: `created_ms` never decreases along the stream, so the age rule looks
    /// from the horizon (everything at or below it is gone) to the first young entry, and each
    /// volatile rule from its own mark (`scanned:<prefix>` in the meta hash, stored by the
    /// script that drops what it found, so a node that takes over the pruning goes on from
    /// there) to the first entry younger than its cutoff. The looking is done inside Redis
    /// ([`DUE_LUA`]): only the positions and ids of what goes cross the network. (It used to
    /// read the history from its oldest entry every second: an idle node with a 16 MiB
    /// history made Redis send 16 MB/s.)
    fn prune(&self, retention: &Retention) -> Result<u64> {
        let now = self.server_ms()?;
        let cutoff = |age: &Duration| now - age.as_millis() as i64;
        let meta: Vec<(String, String)> =
            self.with(|con| redis::cmd("HGETALL").arg(&self.meta).query(con))?;
        let number = |name: &str| {
            meta.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let gone = self.horizon.read().through.max(number("through"));

        let mut dropped = 0;
        for (prefix, age) in &retention.volatile {
            let cutoff = cutoff(age);
            let mut after = gone.max(number(&format!("scanned:{prefix}")));
            loop {
                let Due {
                    last,
                    done,
                    matches,
                } = self.due(after, cutoff, prefix, true)?;
                if last == after {
                    break;
                }
                let floor = matches.last().map(|(position, _)| *position);
                if let Some(floor) = floor {
                    self.raise_horizon(0, &[(prefix.clone(), floor)]);
                }
                let mut script = self.drop_volatile.prepare_invoke();
                script
                    .key(&self.stream)
                    .key(&self.meta)
                    .key(&self.ids)
                    .arg(prefix)
                    .arg(floor.map(|f| f.to_string()).unwrap_or_default())
                    .arg(last);
                for (position, id) in &matches {
                    script.arg(position).arg(id);
                }
                let (count, rows) = pair(self.with(|con| script.invoke(con))?)?;
                dropped += count;
                self.rows.store(rows, Ordering::Relaxed);
                after = last;
                if done {
                    break;
                }
            }
        }

        let mut age_floor = 0;
        if let Some(age) = &retention.max_age {
            let cutoff = cutoff(age);
            let mut after = gone;
            loop {
                let Due { last, done, .. } = self.due(after, cutoff, "", false)?;
                age_floor = last;
                if done || last == after {
                    break;
                }
                after = last;
            }
        }
        let rows: u64 = self.with(|con| redis::cmd("XLEN").arg(&self.stream).query(con))?;
        self.rows.store(rows, Ordering::Relaxed);
        let before = self.horizon.read().through;
        let mut through = before.max(age_floor);
        let excess = rows.saturating_sub(retention.max_events);
        if excess > 0 {
            let floor: u64 =
                self.with(|con| self.count_floor.key(&self.stream).arg(excess).invoke(con))?;
            through = through.max(floor);
        }
        if through > before {
            self.raise_horizon(through, &[]);
            loop {
                let (count, rows) = pair(self.with(|con| {
                    self.drop_through
                        .key(&self.stream)
                        .key(&self.meta)
                        .key(&self.ids)
                        .arg(through)
                        .arg(DROP_CHUNK)
                        .invoke(con)
                })?)?;
                dropped += count;
                self.rows.store(rows, Ordering::Relaxed);
                if count < DROP_CHUNK {
                    break;
                }
            }
        }
        Ok(dropped)
    }

    fn live_id_key(&self) -> LiveIdKey {
        *self.live_key.lock()
    }

    fn probe(&self) -> Result<()> {
        self.with(|con| {
            redis::cmd("HSET")
                .arg(&self.meta)
                .arg("probe")
                .arg(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                )
                .query::<()>(con)
        })
    }

    fn shared(&self) -> Option<&dyn SharedHistory> {
        Some(self)
    }
}

impl SharedHistory for RedisHistory {
    fn cursor(&self) -> Result<Cursor> {
        let (last, live): (Option<u64>, Option<u64>) = self.with(|con| {
            redis::cmd("HMGET")
                .arg(&self.meta)
                .arg("seq")
                .arg("liveseq")
                .query(con)
        })?;
        Ok(Cursor {
            position: last.unwrap_or(0),
            live: live.unwrap_or(0),
        })
    }

    fn send_live(&self, batch: &[Arc<Update>]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut script = self.send_live.prepare_invoke();
        script
            .key(&self.live)
            .key(&self.meta)
            .arg(LIVE_MAX)
            .arg(batch.len());
        for update in batch {
            update_args(&mut script, update);
        }
        self.with(|con| script.invoke::<()>(con))
    }

    /// One `XREAD` of both streams, so the stored part is complete relative to the live part
    /// whenever it came back shorter than `limit`; then, in the same pipeline, the witness
    /// (see [`Witness`]): what was read is used only if Redis did not go back meanwhile. The
    /// connection is dropped after a failure (a timed-out reply could arrive later, out of
    /// step) and made again on the next call.
    fn follow(&self, cursor: Cursor, limit: usize, wait: Duration) -> Result<Followed> {
        let mut following = self.following.lock();
        let con = match following.as_mut() {
            Some(con) => con,
            None => following.insert(self.connect()?),
        };
        let mut witness = self.witness.lock();
        let next = witness.next();
        // Redis runs a pipelined command only once the blocked one before it has answered.
        let reply: redis::RedisResult<(ReadReply, Option<u64>)> = redis::pipe()
            .cmd("XREAD")
            .arg("COUNT")
            .arg(limit)
            .arg("BLOCK")
            .arg(wait.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(&self.live)
            .arg(format!("{}-0", cursor.position))
            .arg(format!("{}-0", cursor.live))
            .cmd("SET")
            .arg(&self.witness_key)
            .arg(next)
            .arg("PX")
            .arg(WITNESS_TTL.as_millis() as u64)
            .arg("GET")
            .query(con);
        let (reply, found) = match reply {
            Ok((reply, found)) => (reply.unwrap_or_default(), found),
            Err(e) => {
                *following = None;
                witness.attempted = Some(next);
                return Err(self.error(e));
            }
        };
        drop(following);
        let kept = witness.kept(found);
        let expected = witness.confirmed;
        *witness = Witness {
            confirmed: Some(next),
            attempted: None,
        };
        drop(witness);
        let mut followed = Followed {
            complete: true,
            read_to: cursor,
            ..Followed::default()
        };
        if !kept {
            tracing::error!(
                "Redis at {} went back to an older state: this node's witness reads \
                 {found:?}, its last write was {expected:?}",
                self.address,
            );
            followed.lost = true;
            return Ok(followed);
        }
        let mut stored_entries = Vec::new();
        let mut live_full = false;
        for (key, entries) in reply {
            if key == self.stream {
                followed.complete = entries.len() < limit;
                stored_entries = entries;
            } else if key == self.live {
                live_full = entries.len() >= limit;
                for entry in &entries {
                    // An entry this version cannot read (written by another one, say) is
                    // skipped, with a log line: it must not stop the fan-out on every node.
                    let Ok(seq) = position(&entry.0) else {
                        tracing::error!("skipping live entry {}: not a Tidings id", entry.0);
                        continue;
                    };
                    followed.read_to.live = seq;
                    let after = field(&entry.1, "after").and_then(|a| a.parse().ok());
                    match (after, update_of(entry)) {
                        (Some(after), Ok(update)) => {
                            followed.live.push(LiveEvent { seq, after, update })
                        }
                        (_, Err(error)) => tracing::error!("skipping live entry: {error}"),
                        (None, _) => tracing::error!("skipping live entry {}: no place", entry.0),
                    }
                }
            }
        }
        // `COUNT` applies to each stream: when the live events were cut short, those not read
        // may belong before stored updates that were. Those are read again next time.
        let cut = match followed.live.last() {
            Some(last) if live_full => {
                followed.complete = false;
                Some(last.after)
            }
            _ => None,
        };
        for entry in &stored_entries {
            let Ok(at) = position(&entry.0) else {
                tracing::error!("skipping stream entry {}: not a Tidings id", entry.0);
                continue;
            };
            if cut.is_some_and(|cut| at > cut) {
                break;
            }
            followed.read_to.position = at;
            match stored(entry) {
                Ok(stored) => followed.stored.push(stored),
                Err(error) => tracing::error!("skipping stream entry: {error}"),
            }
        }
        Ok(followed)
    }

    /// Also notices when Redis lost the history (its epoch changed or vanished, as when Redis
    /// restarted empty or evicted the meta hash): the cached horizon is then reloaded as it is,
    /// not only raised, and the caller is told to start over.
    fn refresh(&self) -> Result<Refreshed> {
        let (rows, meta): (u64, Vec<(String, String)>) = self.with(|con| {
            redis::pipe()
                .cmd("XLEN")
                .arg(&self.stream)
                .cmd("HGETALL")
                .arg(&self.meta)
                .query(con)
        })?;
        self.rows.store(rows, Ordering::Relaxed);
        let number = |name: &str| {
            meta.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        let store = Cursor {
            position: number("seq"),
            live: number("liveseq"),
        };
        let epoch = meta
            .iter()
            .find(|(k, _)| k == "epoch")
            .map(|(_, v)| v.clone());
        let reset = epoch.as_deref() != Some(self.epoch.lock().as_str());
        if reset {
            *self.horizon.write() = self.load_horizon()?;
            self.claim_epoch()?;
        } else {
            self.note_meta(meta);
        }
        Ok(Refreshed { store, reset })
    }

    /// One pipeline: the changes, the keys' expiry, then the liveness script.
    fn publish_node(&self, node: &str, state: &NodeState, ttl: Duration) -> Result<Vec<String>> {
        let subs = self.node_key(node, "subs");
        let topics = self.node_key(node, "counts");
        let ttl_ms = ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        // All at once: other nodes never read a half-replaced state.
        pipe.atomic();
        if state.full {
            pipe.cmd("DEL").arg(&subs).arg(&topics).ignore();
        }
        for chunk in state.added.chunks(512) {
            pipe.cmd("HSET").arg(&subs);
            for (id, documents) in chunk {
                pipe.arg(id).arg(documents);
            }
            pipe.ignore();
        }
        for chunk in state.removed.chunks(512) {
            pipe.cmd("HDEL").arg(&subs).arg(chunk).ignore();
        }
        if state.full {
            let members: Vec<String> = state
                .counts
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(topic, count)| format!("{topic}\0{count}"))
                .collect();
            for chunk in members.chunks(512) {
                pipe.cmd("ZADD").arg(&topics);
                for member in chunk {
                    pipe.arg(0).arg(member);
                }
                pipe.ignore();
            }
        }
        pipe.cmd("PEXPIRE").arg(&subs).arg(ttl_ms).ignore();
        pipe.cmd("PEXPIRE").arg(&topics).arg(ttl_ms).ignore();
        self.with(|con| pipe.query::<()>(con))?;
        if !state.full && !state.counts.is_empty() {
            let mut counts = self.counts.prepare_invoke();
            counts.key(&topics);
            for (topic, change) in &state.counts {
                counts.arg(topic).arg(change);
            }
            self.with(|con| counts.invoke::<()>(con))?;
        }
        // Not in the pipeline: `invoke` loads the script when Redis lost it (a restart).
        let mut alive: Vec<String> = self.with(|con| {
            self.alive
                .key(&self.nodes)
                .arg(node)
                .arg(ttl_ms)
                .invoke(con)
        })?;
        alive.sort();
        Ok(alive)
    }

    fn leave(&self, node: &str) -> Result<()> {
        self.with(|con| {
            redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg(&self.nodes)
                .arg(node)
                .ignore()
                .cmd("DEL")
                .arg(self.node_key(node, "subs"))
                .arg(self.node_key(node, "counts"))
                .ignore()
                .query(con)
        })
    }

    fn other_subscriptions(&self, node: &str) -> Result<Vec<String>> {
        let found: Vec<Vec<String>> = self.read_others(node, "subs", |pipe, key| {
            pipe.cmd("HVALS").arg(key);
        })?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One `ZRANGEBYLEX` per other node: the members from `prefix` up to (not including)
    /// `prefix` followed by the byte 0xff, which no UTF-8 text holds, are exactly the topics
    /// that `prefix` starts.
    fn other_counts(&self, node: &str, prefix: &str) -> Result<Vec<(String, usize)>> {
        let from = [b"[", prefix.as_bytes()].concat();
        let to = [b"(", prefix.as_bytes(), b"\xff"].concat();
        let found: Vec<Vec<String>> = self.read_others(node, "counts", |pipe, key| {
            pipe.cmd("ZRANGEBYLEX").arg(key).arg(&from).arg(&to);
        })?;
        Ok(found
            .into_iter()
            .flatten()
            .filter_map(|member| {
                let (topic, n) = member.rsplit_once('\0')?;
                Some((topic.to_owned(), n.parse().ok()?))
            })
            .filter(|(_, n)| *n > 0)
            .collect())
    }
}
