//! History in a Redis stream, so that several nodes can share one.
//!
//! Three keys under a configurable prefix (`tidings:` by default):
//!
//! - `<prefix>stream`: the updates, one entry each, with the explicit id `<position>-0`, so a
//!   position is a plain increasing `u64`, as in SQLite, and a stream range is a position range.
//! - `<prefix>meta`: a hash: `seq` (the last position handed out: positions are never reused,
//!   even when pruning empties the stream), `clock` (the newest `created_ms`, which keeps it
//!   non-decreasing along the stream), the horizon (`through`, `volatile:<prefix>`) and `probe`.
//! - `<prefix>ids`: a sorted set with every member at score 0, `<id>\0<position, 20 digits>`:
//!   the lexicographic order puts an id's earliest position first, so [`History::position_of`]
//!   is one `ZRANGEBYLEX`, and pruning removes exactly the members of what it drops. (`\0`
//!   cannot occur in an id.)
//!
//! Every write is one Lua script, so a batch gets consecutive positions and lands whole or not
//! at all, and the id index never disagrees with the stream. Timestamps come from the Redis
//! server's clock, not the node's, so that nodes with skewed clocks age updates alike.
//!
//! Durability is the server's: `appendonly yes` with `appendfsync always` makes a reply mean
//! the write is on disk. Opening warns when the server says it keeps no append-only file.

use super::{Heads, History, HistoryError, Horizon, Result, Retention};
use crate::update::{Stored, Update};
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

/// Entries fetched per round trip when scanning.
const CHUNK: usize = 512;

/// History in a Redis stream (see the module documentation for the layout).
///
/// The row count and the horizon are cached in memory like [`super::SqliteHistory`]'s, since
/// the trait reads them without a fallible call; each write refreshes the count from `XLEN`.
pub struct RedisHistory {
    client: Client,
    /// Where the server is, without credentials: for error messages.
    address: String,
    idle: Mutex<Vec<Connection>>,
    stream: String,
    meta: String,
    ids: String,
    rows: AtomicU64,
    horizon: RwLock<Horizon>,
    append: Script,
    drop_volatile: Script,
    drop_through: Script,
    count_floor: Script,
}

/// Shared by the scripts: the index member of an id at a position (the position as Lua's
/// decimal string, padded to 20 digits like Rust's `{:020}`).
const MEMBER_LUA: &str = "
local function member(id, pos)
  return id .. '\\0' .. string.rep('0', 20 - #pos) .. pos
end
";

/// KEYS: stream, meta, ids. ARGV: n, then per update: id, topics, data, private, type, retry.
/// Returns the first position and the stream's length.
const APPEND_LUA: &str = "
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local clock = tonumber(redis.call('HGET', KEYS[2], 'clock') or '0')
if now < clock then now = clock end
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

/// KEYS: stream, meta, ids. ARGV: k, k pairs (volatile prefix, floor), then pairs (position,
/// id). Raises each prefix's horizon, then drops the entries. Returns dropped and length.
const DROP_VOLATILE_LUA: &str = "
local k = tonumber(ARGV[1])
for i = 0, k - 1 do
  local field = 'volatile:' .. ARGV[2 + 2 * i]
  local floor = ARGV[3 + 2 * i]
  local known = redis.call('HGET', KEYS[2], field)
  if not known or tonumber(floor) > tonumber(known) then
    redis.call('HSET', KEYS[2], field, floor)
  end
end
local dropped = 0
for j = 2 + 2 * k, #ARGV, 2 do
  dropped = dropped + redis.call('XDEL', KEYS[1], ARGV[j] .. '-0')
  redis.call('ZREM', KEYS[3], member(ARGV[j + 1], ARGV[j]))
end
return {dropped, redis.call('XLEN', KEYS[1])}
";

/// KEYS: stream, meta, ids. ARGV: through, through + 1. Raises the horizon, then drops every
/// entry at or below it, index members first. Returns dropped and length.
const DROP_THROUGH_LUA: &str = "
local known = redis.call('HGET', KEYS[2], 'through')
if not known or tonumber(ARGV[1]) > tonumber(known) then
  redis.call('HSET', KEYS[2], 'through', ARGV[1])
end
local before = redis.call('XLEN', KEYS[1])
local start = '-'
while true do
  local entries = redis.call('XRANGE', KEYS[1], start, ARGV[1] .. '-0', 'COUNT', 1000)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'id' then
        redis.call('ZREM', KEYS[3], member(fields[f + 1], string.match(entry[1], '^%d+')))
        break
      end
    end
  end
  start = '(' .. entries[#entries][1]
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2] .. '-0')
local after = redis.call('XLEN', KEYS[1])
return {before - after, after}
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
            stream: format!("{prefix}stream"),
            meta: format!("{prefix}meta"),
            ids: format!("{prefix}ids"),
            rows: AtomicU64::new(0),
            horizon: RwLock::new(Horizon::default()),
            append: Script::new(&format!("{MEMBER_LUA}{APPEND_LUA}")),
            drop_volatile: Script::new(&format!("{MEMBER_LUA}{DROP_VOLATILE_LUA}")),
            drop_through: Script::new(&format!("{MEMBER_LUA}{DROP_THROUGH_LUA}")),
            count_floor: Script::new(COUNT_FLOOR_LUA),
        };
        history.with(|con| redis::cmd("PING").query::<String>(con))?;
        history.warn_unless_durable();
        let rows: u64 = history.with(|con| redis::cmd("XLEN").arg(&history.stream).query(con))?;
        history.rows.store(rows, Ordering::Relaxed);
        *history.horizon.write() = history.load_horizon()?;
        Ok(history)
    }

    /// Runs `f` on a pooled connection. A connection that failed is dropped, not pooled: after
    /// a timeout its replies may be out of step.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        let pooled = self.idle.lock().pop();
        let mut con = match pooled {
            Some(con) => con,
            None => self.connect()?,
        };
        let result = f(&mut con).map_err(|e| self.error(e))?;
        let mut idle = self.idle.lock();
        if idle.len() < 8 {
            idle.push(con);
        }
        Ok(result)
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

    fn error(&self, e: RedisError) -> HistoryError {
        if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() {
            HistoryError::new(format!("Redis at {} unreachable: {e}", self.address))
        } else {
            HistoryError::new(format!("Redis at {}: {e}", self.address))
        }
    }

    /// Warns when the server keeps no append-only file: then an acknowledged update can be lost
    /// in a crash. Servers that refuse `CONFIG` (managed ones) are trusted.
    fn warn_unless_durable(&self) {
        let config: Result<Vec<String>> =
            self.with(|con| redis::cmd("CONFIG").arg("GET").arg("appendonly").query(con));
        if let Ok(config) = config
            && config.get(1).is_some_and(|v| v == "no")
        {
            tracing::warn!(
                address = %self.address,
                "Redis keeps no append-only file: updates may be lost in a crash \
                 (set appendonly yes, appendfsync always)"
            );
        }
    }

    /// The horizon as the last prune left it; for a history without one yet, everything below
    /// the oldest entry (or every position handed out, if none is left), as SQLite does.
    fn load_horizon(&self) -> Result<Horizon> {
        let meta: Vec<(String, String)> =
            self.with(|con| redis::cmd("HGETALL").arg(&self.meta).query(con))?;
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

    fn server_ms(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = self.with(|con| redis::cmd("TIME").query(con))?;
        Ok(secs * 1000 + micros / 1000)
    }
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

fn created_ms(entry: &Entry) -> i64 {
    field(&entry.1, "created_ms").map_or(0, |v| v.parse().unwrap_or(0))
}

fn stored((id, fields): &Entry) -> Result<Stored> {
    let get = |name| {
        field(fields, name)
            .ok_or_else(|| HistoryError::new(format!("stream entry {id} lacks the field {name}")))
    };
    let retry = get("retry")?;
    Ok(Stored {
        position: position(id)?,
        update: Arc::new(Update::restore(
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
        )),
    })
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
            let topics: Vec<&str> = update.topics().collect();
            script
                .arg(update.id())
                .arg(topics.join("\n"))
                .arg(update.data())
                .arg(if update.is_private() { "1" } else { "0" })
                .arg(update.event_type().unwrap_or(""))
                .arg(update.retry().map(|r| r.to_string()).unwrap_or_default());
        }
        let (first, rows) = pair(self.with(|con| script.invoke(con))?)?;
        self.rows.store(rows, Ordering::Relaxed);
        Ok((first..first + batch.len() as u64).collect())
    }

    fn position_of(&self, id: &str) -> Result<Option<u64>> {
        let found: Vec<String> = self.with(|con| {
            redis::cmd("ZRANGEBYLEX")
                .arg(&self.ids)
                .arg(format!("[{id}\0"))
                .arg(format!("({id}\x01"))
                .arg("LIMIT")
                .arg(0)
                .arg(1)
                .query(con)
        })?;
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

    fn read(&self, after: u64, until: u64, limit: usize) -> Result<Vec<Stored>> {
        if after >= until {
            return Ok(Vec::new());
        }
        self.range(&(after + 1).to_string(), &until.to_string(), limit)
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
    /// count and age, as in SQLite. The old entries are found by one scan from the oldest, which
    /// stops at the first entry younger than every cutoff (`created_ms` never decreases along
    /// the stream). Each step raises the cached horizon, then runs a script that raises the
    /// stored one and deletes, atomically.
    fn prune(&self, retention: &Retention) -> Result<u64> {
        let now = self.server_ms()?;
        let cutoff = |age: &Duration| now - age.as_millis() as i64;
        let age_cutoff = retention.max_age.as_ref().map(cutoff);
        let volatile_cutoffs: Vec<(&str, i64)> = retention
            .volatile
            .iter()
            .map(|(prefix, age)| (prefix.as_str(), cutoff(age)))
            .collect();
        let oldest_kept = volatile_cutoffs
            .iter()
            .map(|(_, c)| *c)
            .chain(age_cutoff)
            .max();

        // Each volatile rule's floor (the newest old entry it matches, as SQLite computes it),
        // what they drop, and the newest old entry no rule drops.
        let mut floors: Vec<Option<u64>> = vec![None; volatile_cutoffs.len()];
        let mut doomed: Vec<(u64, String)> = Vec::new();
        let mut age_floor = 0;
        if let Some(oldest_kept) = oldest_kept {
            let mut from = "-".to_owned();
            'scan: loop {
                let chunk = self.entries("XRANGE", &from, "+", CHUNK)?;
                for entry in &chunk {
                    let created = created_ms(entry);
                    if created >= oldest_kept {
                        break 'scan;
                    }
                    let at = position(&entry.0)?;
                    let topics = field(&entry.1, "topics").unwrap_or("");
                    let mut volatile = false;
                    for ((prefix, c), floor) in volatile_cutoffs.iter().zip(&mut floors) {
                        if created < *c && topics.starts_with(prefix) {
                            *floor = Some(at);
                            volatile = true;
                        }
                    }
                    if volatile {
                        doomed.push((at, field(&entry.1, "id").unwrap_or("").to_owned()));
                    } else if age_cutoff.is_some_and(|c| created < c) {
                        age_floor = at;
                    }
                }
                match chunk.last() {
                    Some(last) if chunk.len() == CHUNK => from = format!("({}", last.0),
                    _ => break,
                }
            }
        }

        let mut dropped = 0;
        let floors: Vec<(String, u64)> = volatile_cutoffs
            .iter()
            .zip(floors)
            .filter_map(|((prefix, _), floor)| floor.map(|f| ((*prefix).to_owned(), f)))
            .collect();
        if !floors.is_empty() {
            self.raise_horizon(0, &floors);
            // The first call stores the floors; later ones (big prunes) only delete.
            for (i, part) in doomed.chunks(1000).enumerate() {
                let mut script = self.drop_volatile.prepare_invoke();
                script.key(&self.stream).key(&self.meta).key(&self.ids);
                if i == 0 {
                    script.arg(floors.len());
                    for (prefix, floor) in &floors {
                        script.arg(prefix).arg(floor);
                    }
                } else {
                    script.arg(0);
                }
                for (position, id) in part {
                    script.arg(position).arg(id);
                }
                let (count, rows) = pair(self.with(|con| script.invoke(con))?)?;
                dropped += count;
                self.rows.store(rows, Ordering::Relaxed);
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
            let (count, rows) = pair(self.with(|con| {
                self.drop_through
                    .key(&self.stream)
                    .key(&self.meta)
                    .key(&self.ids)
                    .arg(through)
                    .arg(through + 1)
                    .invoke(con)
            })?)?;
            dropped += count;
            self.rows.store(rows, Ordering::Relaxed);
        }
        Ok(dropped)
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
}
