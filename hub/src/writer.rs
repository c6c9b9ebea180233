//! The writer: the one thread that commits and fans out, in order, and the handle that sends it
//! work.
//!
//! It takes whatever jobs are waiting (a batch), appends the batch's updates to the
//! [`History`] in one durable commit (group commit: one fsync for many publishes), then fans
//! the batch out in arrival order, then answers the publishers. So an acknowledged update is
//! always durable, and every subscriber sees one total order. Live-only events (subscription
//! events, presence) take their place in that order without being stored. With a history other
//! nodes share, it only stores (and sends the live events): the
//! [follower](crate::cluster) fans out what the store holds, in the store's order.
//!
//! Between batches it prunes the history (on a cluster, only the leading node does), and
//! answers health probes with a real write.

use crate::{
    config::HubConfig,
    error::{PublishError, Unhealthy},
    fanout::Fanout,
    health::Health,
    history::{History, HistoryError, Retention, SharedHistory},
    node::Node,
    stats::Counters,
    update::Update,
};
use std::{
    future::Future,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};

type Ack = oneshot::Sender<Result<u64, PublishError>>;

enum Job {
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

/// What the writer's thread works with.
pub(crate) struct WriterParts {
    pub config: HubConfig,
    pub history: Arc<dyn History>,
    pub fanout: Arc<Fanout>,
    pub health: Arc<Health>,
    pub node: Arc<Node>,
    pub counters: Arc<Counters>,
}

/// The handle: clones send to the same thread.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer's thread (and, when the history is pruned by age or shared, a thread
    /// that asks it to prune every second).
    pub(crate) fn start(parts: WriterParts) -> Result<(Writer, JoinHandle<()>), HistoryError> {
        let (writer, jobs) = mpsc::channel(parts.config.publish_queue.max(1));
        // On a cluster the leading node prunes what every node publishes, so it looks every
        // second even when it publishes nothing itself.
        let ticks = parts.config.prunes_by_age() || parts.history.shared().is_some();
        let thread = std::thread::Builder::new()
            .name("tidings-writer".into())
            .spawn(move || run(&parts, jobs))
            .map_err(|e| HistoryError::new(format!("cannot start the writer thread: {e}")))?;
        let writer = Writer { jobs: writer };
        if ticks {
            writer
                .spawn_prune_ticker()
                .map_err(|e| HistoryError::new(format!("cannot start the prune thread: {e}")))?;
        }
        Ok((writer, thread))
    }

    /// Stores `update` and fans it out; its position once done (see
    /// [`Hub::publish`](crate::Hub::publish)).
    pub(crate) async fn publish(&self, update: Arc<Update>) -> Result<u64, PublishError> {
        let (ack, answer) = oneshot::channel();
        self.jobs
            .send(Job::Publish(update, ack))
            .await
            .map_err(|_| PublishError::ShuttingDown)?;
        answer.await.map_err(|_| PublishError::ShuttingDown)?
    }

    /// Fans a live-only event out in order with the publishes; returns once it is queued.
    pub(crate) async fn publish_live(&self, update: Arc<Update>) -> Result<(), PublishError> {
        self.jobs
            .send(Job::Live(update))
            .await
            .map_err(|_| PublishError::ShuttingDown)
    }

    /// As [`Writer::publish_live`], without waiting: `false` when the queue is full.
    pub(crate) fn try_publish_live(&self, update: Arc<Update>) -> bool {
        self.jobs.try_send(Job::Live(update)).is_ok()
    }

    /// Asks for a probe: its answer (`None`: the writer stopped first), or `None` when the
    /// queue is full or closed.
    pub(crate) fn probe(
        &self,
    ) -> Option<impl Future<Output = Option<Result<(), Unhealthy>>> + use<>> {
        let (answer, probe) = oneshot::channel();
        self.jobs.try_send(Job::Probe(answer)).ok()?;
        Some(async move { probe.await.ok() })
    }

    /// Stops the thread after every publish already queued is committed.
    pub(crate) async fn stop(&self) {
        let _ = self.jobs.send(Job::Stop).await;
    }

    /// Sends [`Job::Prune`] every second while the writer lives (a weak sender never keeps it
    /// alive on its own).
    fn spawn_prune_ticker(&self) -> std::io::Result<()> {
        let ticker = self.jobs.downgrade();
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
}

fn run(parts: &WriterParts, mut jobs: mpsc::Receiver<Job>) {
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
                    let result = parts.history.probe().map_err(|e| Unhealthy::from(&e));
                    parts.health.written(result.clone());
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
            commit_and_fan_out(parts, &mut batch);
        }
        if stop {
            return;
        }
        let config = &parts.config;
        // A shared history is pruned by one node, the leading one: the others would only
        // repeat its work.
        if !parts.node.leads() {
            continue;
        }
        let slack = (config.history_max_events / 100).max(1);
        let over = parts.history.len() >= config.history_max_events.saturating_add(slack);
        let aged = config.prunes_by_age() && last_age_prune.elapsed() >= Duration::from_secs(1);
        if over || prune_now || aged {
            match parts.history.prune(&retention(config)) {
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

fn retention(config: &HubConfig) -> Retention {
    Retention {
        max_events: config.history_max_events,
        max_age: config.history_max_age,
        volatile: config.volatile_topics.clone(),
    }
}

fn commit_and_fan_out(parts: &WriterParts, batch: &mut Vec<Job>) {
    if let Some(store) = parts.history.shared() {
        return store_shared(parts, store, batch);
    }
    let stored: Vec<Arc<Update>> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Publish(update, _) => Some(update.clone()),
            _ => None,
        })
        .collect();
    let positions = append(parts, &stored);
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
                parts.fanout.deliver_stored(position, &update);
                acks.push((ack, position));
            }
            Job::Live(update) => parts.fanout.deliver_live_next(&update),
            _ => {}
        }
    }
    parts.counters.published(acks.len() as u64);
    for (ack, position) in acks {
        let _ = ack.send(Ok(position));
    }
}

/// Appends `stored` (if any), noting the outcome for health checks.
fn append(parts: &WriterParts, stored: &[Arc<Update>]) -> Result<Vec<u64>, PublishError> {
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    match parts.history.append(stored) {
        Ok(positions) => {
            parts.health.written(Ok(()));
            Ok(positions)
        }
        Err(error) => {
            tracing::error!("{error}");
            parts.health.written(Err(Unhealthy::from(&error)));
            Err(PublishError::from(&error))
        }
    }
}

/// A shared history: every node, this one included, fans out what it reads back from the
/// store, in the store's order; here the batch is only stored, and its live events sent. Each
/// run of publishes is one append and each run of live events one send, in the batch's order,
/// so a live event keeps its place among the publishes around it.
fn store_shared(parts: &WriterParts, store: &dyn SharedHistory, batch: &mut Vec<Job>) {
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
                match append(parts, &updates) {
                    Ok(positions) => {
                        parts.counters.published(run.len() as u64);
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
