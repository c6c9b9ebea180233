//! The writer: the one thread that commits and fans out, in order.
//!
//! It takes whatever jobs are waiting (a batch), appends the batch's updates to the
//! [`History`](crate::History) in one durable commit (group commit: one fsync for many
//! publishes), then fans the batch out in arrival order, then answers the publishers. So an
//! acknowledged update is always durable, and every subscriber sees one total order. Live-only
//! events (subscription events, presence) take their place in that order without being stored.
//!
//! Between batches it prunes the history, and answers health probes with a real write.

use crate::{
    history::SharedHistory,
    hub::{PublishError, Shared, Unhealthy},
    registry::{Delivery, Mark, Registry},
    stats::Counters,
    update::Update,
};
use bytes::Bytes;
use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};

pub(crate) type Ack = oneshot::Sender<Result<u64, PublishError>>;

pub(crate) enum Job {
    /// Store, fan out, then answer.
    Publish(Arc<Update>, Ack),
    /// Fan out only: never stored.
    Live(Arc<Update>),
    /// Apply the age limits now (sent every second when there are any, so old updates go even
    /// when nothing is published).
    Prune,
    /// A small durable write, to learn whether the history can still be written.
    Probe(oneshot::Sender<Result<(), Unhealthy>>),
    Stop,
}

const MAX_BATCH: usize = 1024;

pub(crate) fn run(shared: &Shared, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_age_prune = Instant::now();
    let mut prune_failures = 0u32;
    loop {
        let Some(first) = jobs.blocking_recv() else {
            return;
        };
        let mut stop = false;
        let mut prune_now = false;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Publish(..) | Job::Live(_) => batch.push(job),
                Job::Prune => prune_now = true,
                Job::Probe(answer) => {
                    let result = shared.history.probe().map_err(|e| Unhealthy::from(&e));
                    shared.set_health(result.clone());
                    let _ = answer.send(result);
                }
                Job::Stop => {
                    stop = true;
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_and_fan_out(shared, &mut batch);
        }
        if stop {
            return;
        }
        let config = &shared.config;
        // A shared history is pruned by one node, the leading one: the others would only
        // repeat its work.
        if shared.history.shared().is_some()
            && shared.leader.lock().as_deref() != Some(shared.node.as_str())
        {
            continue;
        }
        let slack = (config.history_max_events / 100).max(1);
        let over = shared.history.len() >= config.history_max_events.saturating_add(slack);
        let aged = config.prunes_by_age() && last_age_prune.elapsed() >= Duration::from_secs(1);
        if over || prune_now || aged {
            match shared.history.prune(&config.retention()) {
                Ok(_) => prune_failures = 0,
                Err(error) => {
                    prune_failures += 1;
                    // Every second while the store is down: the first failure and every 30th.
                    if prune_failures % 30 == 1 {
                        tracing::error!("pruning the history failed: {error}");
                    }
                }
            }
            last_age_prune = Instant::now();
        }
    }
}

fn commit_and_fan_out(shared: &Shared, batch: &mut Vec<Job>) {
    if let Some(store) = shared.history.shared() {
        return store_shared(shared, store, batch);
    }
    let stored: Vec<Arc<Update>> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Publish(update, _) => Some(update.clone()),
            _ => None,
        })
        .collect();
    let positions = append(shared, &stored);
    let failure = positions.as_ref().err().cloned();
    let mut positions = positions.unwrap_or_default().into_iter();
    let mut acks = Vec::new();
    for job in batch.drain(..) {
        match job {
            Job::Publish(update, ack) => {
                let Some(position) = positions.next() else {
                    let _ = ack.send(Err(failure.clone().unwrap_or(PublishError::Storage)));
                    continue;
                };
                deliver_stored(shared, position, &update);
                acks.push((ack, position));
            }
            Job::Live(update) => {
                let seq = shared.live_seq.fetch_add(1, Ordering::Relaxed) + 1;
                let position = shared.registry.read().head.position;
                deliver_live(shared, Mark { position, seq }, &update);
            }
            _ => {}
        }
    }
    Counters::add(&shared.counters.updates_published, acks.len() as u64);
    for (ack, position) in acks {
        let _ = ack.send(Ok(position));
    }
}

/// Appends `stored` (if any), noting the outcome for health checks.
fn append(shared: &Shared, stored: &[Arc<Update>]) -> Result<Vec<u64>, PublishError> {
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    match shared.history.append(stored) {
        Ok(positions) => {
            shared.set_health(Ok(()));
            Ok(positions)
        }
        Err(error) => {
            tracing::error!("{error}");
            shared.set_health(Err(Unhealthy::from(&error)));
            Err(PublishError::from(&error))
        }
    }
}

/// A shared history: every node, this one included, fans out what it reads back from the
/// store, in the store's order; here the batch is only stored, and its live events sent. Each
/// run of publishes is one append and each run of live events one send, in the batch's order,
/// so a live event keeps its place among the publishes around it.
fn store_shared(shared: &Shared, store: &dyn SharedHistory, batch: &mut Vec<Job>) {
    let mut jobs = batch.drain(..).peekable();
    while let Some(job) = jobs.next() {
        match job {
            Job::Live(update) => {
                let mut live = vec![update];
                while let Some(Job::Live(_)) = jobs.peek() {
                    if let Some(Job::Live(update)) = jobs.next() {
                        live.push(update);
                    }
                }
                if let Err(error) = store.send_live(&live) {
                    tracing::warn!("{} live events not sent: {error}", live.len());
                }
            }
            Job::Publish(update, ack) => {
                let mut run = vec![(update, ack)];
                while let Some(Job::Publish(..)) = jobs.peek() {
                    if let Some(Job::Publish(update, ack)) = jobs.next() {
                        run.push((update, ack));
                    }
                }
                let updates: Vec<Arc<Update>> = run.iter().map(|(u, _)| u.clone()).collect();
                match append(shared, &updates) {
                    Ok(positions) => {
                        Counters::add(&shared.counters.updates_published, run.len() as u64);
                        for ((_, ack), position) in run.into_iter().zip(positions) {
                            let _ = ack.send(Ok(position));
                        }
                    }
                    Err(failure) => {
                        for (_, ack) in run {
                            let _ = ack.send(Err(failure.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Fans a stored update out, moving the head under the same hold of the registry lock: all
/// the history-to-live handoff needs. The lock is taken per update, not per batch: a
/// subscriber waits for one fan-out at most, never for a thousand.
pub(crate) fn deliver_stored(shared: &Shared, position: u64, update: &Arc<Update>) {
    let bytes = shared.encodings.get(position, update);
    let mut registry = shared.registry.write();
    registry.head.advance(position, update);
    let registry = parking_lot::RwLockWriteGuard::downgrade_to_upgradable(registry);
    fan_out(shared, registry, Mark::stored(position), update, &bytes);
}

/// Fans a live-only event out at `mark`, under an id that says so (see [`crate::live_id`]):
/// a client resuming from it resumes exactly there.
pub(crate) fn deliver_live(shared: &Shared, mark: Mark, update: &Arc<Update>) {
    let id = crate::live_id::make(&shared.history.live_id_key(), mark);
    let bytes = update.encode_with_id(&id);
    let registry = shared.registry.upgradable_read();
    fan_out(shared, registry, mark, update, &bytes);
}

fn fan_out(
    shared: &Shared,
    registry: parking_lot::RwLockUpgradableReadGuard<'_, Registry>,
    mark: Mark,
    update: &Arc<Update>,
    bytes: &Bytes,
) {
    let round = shared.round.fetch_add(1, Ordering::Relaxed) + 1;
    let out = registry.fan_out(&Delivery {
        round,
        mark,
        update,
        bytes,
    });
    Counters::add(&shared.counters.events_delivered, out.delivered);
    Counters::add(&shared.counters.template_tests, out.template_tests);
    if !out.evict.is_empty() {
        let mut registry = parking_lot::RwLockUpgradableReadGuard::upgrade(registry);
        for key in out.evict {
            if registry.remove(key) {
                Counters::add(&shared.counters.subscribers_evicted, 1);
            }
        }
    }
}

/// Sends [`Job::Prune`] every second while the writer lives (a weak sender never keeps it
/// alive on its own).
pub(crate) fn spawn_prune_ticker(writer: &mpsc::Sender<Job>) -> std::io::Result<()> {
    let ticker = writer.downgrade();
    std::thread::Builder::new()
        .name("tidings-prune".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(writer) = ticker.upgrade() else {
                    return;
                };
                if writer.try_send(Job::Prune).is_err() && writer.is_closed() {
                    return;
                }
            }
        })
        .map(drop)
}
