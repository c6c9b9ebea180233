//! The follower: for a history several nodes share, the thread that reads every update back
//! from the store and fans it out, this node's own publishes included.
//!
//! So the order subscribers see is the store's, the same on every node, and a publish on one
//! node reaches the subscribers of all. Live-only events come beside the stored updates, each
//! placed after the stored position current when it was sent; the follower delivers it right
//! after that update, so live events take the same place on every node too (and a client that
//! resumes from one on another node resumes exactly).
//!
//! When the store cannot be reached, the follower retries with a capped backoff and the hub
//! reports itself unhealthy; subscribers' streams stay open on heartbeats. When it is back, the
//! follower continues from the last position it delivered: nothing is missed. Should the store
//! have pruned past that position meanwhile, the subscribers that could have wanted what was
//! pruned are disconnected so that they resume, each learning exactly what it missed or that
//! history is gone. Should the store have lost its history (restarted empty), or gone back to
//! an older state (a rollback: restored from an older snapshot, written past its old positions
//! again or not), every local stream ends the same way and following starts afresh.
//!
//! A rollback must be noticed before anything read after it is delivered: a client that got
//! an update of the new timeline would resume after it, past the updates at the positions it
//! never had. So the store checks, with every read, that nothing it acknowledged to this node
//! is gone (see `Witness` in the Redis store) and says so ([`Followed::lost`]) instead of
//! returning what it read; the reload every second also compares the epoch and the positions.

use super::Cluster;
use crate::{
    error::Unhealthy,
    history::{Cursor, Followed, HistoryError, LiveEvent, SharedHistory},
    mark::Mark,
};
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Entries read per round trip, at most.
const BATCH: usize = 512;
/// How long one read waits for something new: also how soon the follower notices shutdown.
const WAIT: Duration = Duration::from_millis(500);
/// How often the cached row count and horizon are reloaded (other nodes prune too).
const REFRESH: Duration = Duration::from_secs(1);
/// Retries start at 50 ms and double up to this: reconnecting to a server that is down costs
/// little, and this bounds how long the node lags once Redis is back.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

pub(crate) fn run(cluster: &Cluster, mut cursor: Cursor) {
    let Some(store) = cluster.history.shared() else {
        return;
    };
    let mut waiting: VecDeque<LiveEvent> = VecDeque::new();
    let mut failures = 0u32;
    let mut down_since = Instant::now();
    let mut refreshed = Instant::now();
    // The store lost what this node delivered: nothing more is delivered until following
    // starts afresh.
    let mut lost = false;
    while !cluster.shutdown.stopping() {
        if lost {
            match start_over(cluster, store) {
                Ok(fresh) => {
                    cursor = fresh;
                    waiting.clear();
                    lost = false;
                }
                Err(error) => {
                    tracing::error!("cannot follow the history afresh: {error}");
                    std::thread::sleep(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let round = store.follow(cursor, BATCH, WAIT).and_then(|followed| {
            if followed.lost {
                return Ok(followed);
            }
            // Positions missing from what was read: pruned before this node got to them, or
            // never there. The horizon, read after this read, tells which.
            let mut expected = cursor.position + 1;
            let mut skipped = false;
            for stored in &followed.stored {
                skipped |= stored.position != expected;
                expected = stored.position + 1;
            }
            if skipped {
                store.refresh()?;
                end_streams_behind_the_horizon(cluster, cursor.position);
            }
            Ok(followed)
        });
        let followed = match round {
            Ok(followed) => followed,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    down_since = Instant::now();
                    tracing::error!("following the history failed: {error}");
                } else if failures.is_multiple_of(50) {
                    tracing::error!(
                        "following the history still fails after {:?}: {error}",
                        down_since.elapsed()
                    );
                }
                cluster.health.following(Some(Unhealthy::failed(
                    "following the history failed",
                    &error,
                )));
                let backoff = Duration::from_millis(25 << failures.min(4)).min(MAX_BACKOFF);
                std::thread::sleep(backoff);
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(
                "following the history again after {:?}; catching up from position {}",
                down_since.elapsed(),
                cursor.position
            );
            failures = 0;
        }
        cluster.health.following(None);
        if followed.lost {
            lost = true;
            continue;
        }
        let Followed {
            stored,
            live,
            read_to,
            complete,
            ..
        } = followed;

        waiting.extend(live);
        for stored in stored {
            while let Some(live) = waiting.pop_front_if(|live| live.after < stored.position) {
                deliver(cluster, &live);
            }
            cluster
                .fanout
                .deliver_stored(stored.position, &stored.update);
        }
        cursor = read_to;
        // Placed after an update already delivered, or (when the read held every stored update
        // there was) after one that is gone: its turn has come.
        while let Some(live) =
            waiting.pop_front_if(|live| live.after <= cursor.position || complete)
        {
            deliver(cluster, &live);
        }

        if refreshed.elapsed() >= REFRESH {
            refreshed = Instant::now();
            match store.refresh() {
                Ok(now)
                    if now.reset
                        || now.store.position < cursor.position
                        || now.store.live < cursor.live =>
                {
                    lost = true;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!("reloading the history's figures failed: {error}"),
            }
        }
    }
}

fn deliver(cluster: &Cluster, live: &LiveEvent) {
    let mark = Mark {
        position: live.after,
        seq: live.seq,
    };
    cluster.fanout.deliver_live(mark, &live.update);
}

/// Ends the local streams of subscribers that could want an update at or after `delivered`
/// that pruning dropped before this node delivered it (it lagged, or was cut off from the
/// store while others pruned). Each client resumes from its own last event and learns exactly
/// what is gone (the gap event), or gets what is still there.
fn end_streams_behind_the_horizon(cluster: &Cluster, delivered: u64) {
    let horizon = cluster.history.horizon();
    let ended = cluster
        .fanout
        .end_streams(|info| horizon.hides_after(delivered, info.prefixes()));
    if ended > 0 {
        tracing::warn!(
            "the history was pruned past position {delivered} before this node delivered it; \
             {ended} subscribers disconnected to resume"
        );
    }
}

/// The store lost its history (Redis restarted empty, or went back to an older state): what
/// this node delivered from it cannot be resumed from, and positions will be handed out again.
/// Every local stream ends (its client resumes, and gets the gap event for an id that is gone,
/// a live one included: the store made a new key for those), the head starts from the store as
/// it is, and so does following.
fn start_over(cluster: &Cluster, store: &dyn SharedHistory) -> Result<Cursor, HistoryError> {
    let fresh = store.cursor()?;
    let (position, ended) = cluster
        .fanout
        .reset(cluster.history.heads()?, fresh.position);
    tracing::error!(
        "the shared history lost updates (Redis restarted empty, or went back to an older \
         state); following it afresh \
         from position {position}, {ended} subscribers disconnected to resume"
    );
    Ok(Cursor {
        position,
        live: fresh.live,
    })
}
