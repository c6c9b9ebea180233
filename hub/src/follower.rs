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
//! have pruned past that position meanwhile, the node's subscribers are disconnected so that
//! they resume, each learning exactly what it missed or that history is gone.

use crate::{
    history::{Cursor, LiveEvent, SharedHistory},
    hub::{Shared, Unhealthy},
    registry::Mark,
    writer::{deliver_live, deliver_stored},
};
use std::{
    collections::VecDeque,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// Entries read per round trip, at most.
const BATCH: usize = 512;
/// How long one read waits for something new: also how soon the follower notices shutdown.
const WAIT: Duration = Duration::from_millis(500);
/// How often the cached row count and horizon are reloaded (other nodes prune too).
const REFRESH: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) fn run(shared: &Shared, mut cursor: Cursor) {
    let Some(store) = shared.history.shared() else {
        return;
    };
    let mut waiting: VecDeque<LiveEvent> = VecDeque::new();
    let mut failures = 0u32;
    let mut down_since = Instant::now();
    let mut refreshed = Instant::now();
    while !shared.stopping.load(Ordering::Relaxed) {
        let followed = match store.follow(cursor, BATCH, WAIT) {
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
                *shared.following.lock() = Some(Unhealthy {
                    detail: format!("following the history failed: {error}"),
                    unreachable: error.is_unavailable(),
                });
                let backoff = Duration::from_millis(50 << failures.min(5)).min(MAX_BACKOFF);
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
        *shared.following.lock() = None;

        if followed
            .stored
            .first()
            .is_some_and(|first| first.position > cursor.position + 1)
        {
            check_for_hole(shared, store, cursor.position);
        }
        if let Some(last) = followed.live.last() {
            cursor.live = last.seq;
        }
        waiting.extend(followed.live);
        for stored in followed.stored {
            while let Some(live) = waiting.pop_front_if(|live| live.after < stored.position) {
                deliver_live(shared, mark_of(&live), &live.update);
            }
            deliver_stored(shared, stored.position, &stored.update);
            cursor.position = stored.position;
        }
        // Placed after an update already delivered, or (when the read held every stored update
        // there was) after one that is gone: its turn has come.
        while let Some(live) =
            waiting.pop_front_if(|live| live.after <= cursor.position || followed.complete)
        {
            deliver_live(shared, mark_of(&live), &live.update);
        }

        if refreshed.elapsed() >= REFRESH {
            refreshed = Instant::now();
            if let Err(error) = store.refresh() {
                tracing::warn!("reloading the history's figures failed: {error}");
            }
        }
    }
}

fn mark_of(live: &LiveEvent) -> Mark {
    Mark {
        position: live.after,
        seq: live.seq,
    }
}

/// Positions after `delivered` are missing from what was read: either retention dropped them
/// before this node read them (it lagged, or the store was away), or they never were stored
/// updates a subscriber could want (a volatile rule dropped them). The horizon tells which;
/// in the first case every local stream is ended, so its client resumes from its last event
/// and learns exactly what is gone.
fn check_for_hole(shared: &Shared, store: &dyn SharedHistory, delivered: u64) {
    if let Err(error) = store.refresh() {
        tracing::warn!("cannot check the history's horizon: {error}");
    }
    let horizon = shared.history.horizon();
    let hole =
        horizon.through > delivered || horizon.volatile.iter().any(|(_, floor)| *floor > delivered);
    if hole {
        let dropped = shared.registry.write().clear();
        tracing::warn!(
            "the history was pruned past position {delivered} before this node delivered it; \
             {dropped} subscribers disconnected to resume"
        );
    }
}
