//! Following: how a node learns of every update and live-only event, its own included
//! ([`SharedHistory`] for [`RedisHistory`]), and the witness that tells it whether Redis went
//! back to an older state. Kept apart from the log: only a shared history follows, on the
//! hub's follower thread, while appends come from its writer. The trait's node methods hand
//! over to [`super::membership`].

use super::{Entry, LIVE_MAX, RedisHistory, field, position, stored, update_args, update_of};
use crate::{
    history::{Cursor, Followed, LiveEvent, Membership, Refreshed, Result, SharedHistory},
    update::Update,
};
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

/// How long a node's witness outlives its last renewal (every follow round, twice a second at
/// least): a node cut off from Redis for longer follows it afresh when it is back.
const WITNESS_TTL: Duration = Duration::from_secs(24 * 3600);

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
pub(super) struct Witness {
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

/// KEYS: live, meta. ARGV: cap, n, then per event: id, topics, data, private, type, retry.
/// Places the events after the current stored position. Returns nothing.
pub(super) const SEND_LIVE_LUA: &str = include_str!("send_live.lua");

/// What `XREAD` returns: per stream with news, its new entries (nothing: nil).
type ReadReply = Option<Vec<(String, Vec<Entry>)>>;

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

    fn membership(&self) -> &dyn Membership {
        self
    }
}
