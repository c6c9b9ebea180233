//! The log: [`History`] for [`RedisHistory`] (appending, looking up ids, reading and
//! replaying, pruning by the retention rules) over the stream and its id index, with the
//! scripts that do it inside Redis. Kept apart from the connection and from following, which
//! only a shared history does, so that what every store must do reads on its own.

use super::{Entry, RedisHistory, TIMEOUT, stored, update_args};
use crate::{
    history::{Heads, History, HistoryError, Horizon, Result, Retention, SharedHistory},
    live_id::LiveIdKey,
    update::{Stored, Update},
};
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

/// Entries fetched per round trip when scanning.
const CHUNK: usize = 512;

/// KEYS: stream, meta, ids. ARGV: n, then per update: id, topics, data, private, type, retry.
/// Returns the first position and the stream's length. (Should `seq` have fallen behind the
/// stream, as after Redis lost the meta hash, positions continue after the newest entry.)
pub(super) const APPEND_LUA: &str = include_str!("append.lua");

/// KEYS: stream, meta, ids. ARGV: a volatile prefix, its floor (empty: none), how far its
/// rule has looked, then pairs (position, id). Raises the prefix's horizon to the floor and
/// its `scanned:` mark, then drops the entries. Returns dropped and length.
pub(super) const DROP_VOLATILE_LUA: &str = include_str!("drop_volatile.lua");

/// KEYS: stream. ARGV: after (a position), cutoff (ms), prefix, limit, want (`1`: list the
/// matches). Looks at up to `limit` entries after `after`, in order, stopping at the first one
/// created at or after `cutoff` (`created_ms` never decreases along the stream). Returns the
/// last position looked at (`after` if none), `1` if it stopped at a young entry or the end
/// (else `0`: call again from there), then, if wanted, the position and id of each entry
/// looked at whose topics start with `prefix`. Inside Redis, so that only what is due crosses
/// the network, and a young history is not read at all.
pub(super) const DUE_LUA: &str = include_str!("due.lua");

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
pub(super) const DROP_THROUGH_LUA: &str = include_str!("drop_through.lua");

/// KEYS: stream, meta. ARGV: from, to, count, max bytes. The entries of `XRANGE from to COUNT
/// count`, stopping before one whose `data` and `id` would take the total past max bytes (the
/// first is returned whatever its size), and the meta hash: so what is not returned never
/// leaves the server.
pub(super) const READ_CAPPED_LUA: &str = include_str!("read_capped.lua");

/// Entries one pruning script drops at most.
const DROP_CHUNK: u64 = 1000;

/// KEYS: stream. ARGV: excess. The position of the `excess`-th oldest entry, or 0: counted in
/// Redis so that the skipped entries never cross the network.
pub(super) const COUNT_FLOOR_LUA: &str = include_str!("count_floor.lua");

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

impl RedisHistory {
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

    pub(super) fn range(&self, from: &str, to: &str, limit: usize) -> Result<Vec<Stored>> {
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

fn pair(values: Vec<u64>) -> Result<(u64, u64)> {
    match values[..] {
        [a, b] => Ok((a, b)),
        _ => Err(HistoryError::new("unexpected reply from a Tidings script")),
    }
}
