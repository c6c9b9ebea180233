//! The hub: publishing, the subscriber registry, fan-out, and subscriptions that resume from
//! history without a gap or a duplicate.
//!
//! # One writer, in order
//!
//! Every publish goes through one writer thread. It takes whatever publishes are waiting (a
//! batch), appends them to the [`History`] in one durable commit (group commit: one fsync for many
//! publishes), then fans them out in position order, then answers the publishers. So an
//! acknowledged update is always durable, and every subscriber sees updates in one total order.
//!
//! # The handoff from history to live
//!
//! The writer fans out while holding the registry's read lock and records the last position it
//! delivered. A new subscriber registers under the write lock and reads that position, `P`, at
//! the same moment. Every update up to `P` was delivered before it existed (so it must come from
//! history), every update after `P` will be put in its queue. It replays history up to `P`, then
//! reads its queue: no gap, no duplicate, whatever publishes race with it.
//!
//! # Fan-out cost
//!
//! Each update is encoded once; subscribers share the bytes. Subscribers are indexed by selector:
//! exact topics through a map, templates and `*` once per distinct selector, so the matching work
//! per update grows with the number of distinct selectors, not of subscribers. Each subscriber
//! has a bounded queue; one that is full is disconnected, not waited for. Its client reconnects
//! with its last id and the history fills the gap.

use crate::{
    history::{History, HistoryError, Retention},
    selector::Selector,
    sse,
    update::{Stored, Update, UpdateError},
};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use parking_lot::{Mutex, RwLock};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The named event a subscriber receives when its `Last-Event-ID` is unknown (never published,
/// or pruned from the history): the hub cannot know what it missed, so the client should reload
/// its state. Plain `onmessage` handlers ignore it; listen with
/// `addEventListener("tidings-history-gap", …)`.
pub const HISTORY_GAP_EVENT: &str = "tidings-history-gap";

/// The `Last-Event-ID` value that asks for the whole retained history.
pub const EARLIEST: &str = "earliest";

/// Tuning of a hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events a subscriber's queue holds before the subscriber is disconnected as too slow.
    pub subscriber_buffer: usize,
    /// A comment is sent after this long without an event, to keep proxies from closing idle
    /// streams and to notice dead connections.
    pub heartbeat: Option<Duration>,
    pub history_max_events: u64,
    pub history_max_age: Option<Duration>,
    /// Canonical-topic prefixes whose updates are kept only this long (see [`Retention`]).
    pub volatile_topics: Vec<(String, Duration)>,
    /// Publishes waiting for the writer; a publisher waits when it is full.
    pub publish_queue: usize,
    /// Publish subscription events on `/.well-known/mercure/subscriptions/{topic}/{subscriber}`.
    pub subscription_events: bool,
}

impl HubConfig {
    fn prunes_by_age(&self) -> bool {
        self.history_max_age.is_some() || !self.volatile_topics.is_empty()
    }

    fn retention(&self) -> Retention {
        Retention {
            max_events: self.history_max_events,
            max_age: self.history_max_age,
            volatile: self.volatile_topics.clone(),
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            subscriber_buffer: 1024,
            heartbeat: Some(Duration::from_secs(15)),
            history_max_events: 100_000,
            history_max_age: None,
            volatile_topics: Vec::new(),
            publish_queue: 16_384,
            subscription_events: true,
        }
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Invalid(#[from] UpdateError),
    #[error(transparent)]
    Storage(#[from] HistoryError),
    #[error("the hub is shutting down")]
    ShuttingDown,
}

/// Counters the hub keeps about itself.
#[derive(Debug, Default)]
pub struct HubMetrics {
    pub updates_published: AtomicU64,
    /// Events put in subscribers' queues (history replays excluded).
    pub events_delivered: AtomicU64,
    pub subscribers_evicted: AtomicU64,
    pub subscribers_total: AtomicU64,
    /// Updates in the history: counted at start, then kept by the writer as it appends and
    /// prunes, so reading it costs no query.
    pub history_len: AtomicU64,
}

/// A handle to the hub; clones share it.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Job>,
}

struct Shared {
    config: HubConfig,
    history: Arc<dyn History>,
    registry: RwLock<Registry>,
    metrics: HubMetrics,
    /// Fires on shutdown: every subscription stream ends.
    closing: CancellationToken,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
}

enum Job {
    Publish(
        Arc<Update>,
        Option<oneshot::Sender<Result<u64, PublishError>>>,
    ),
    /// Apply the age limit now (sent every second when there is one, so old updates go even
    /// when nothing is published).
    Prune,
    Stop,
}

type SubscriberKey = u64;

#[derive(Default)]
struct Registry {
    next_key: SubscriberKey,
    subscribers: HashMap<SubscriberKey, Subscriber>,
    exact: HashMap<Arc<str>, HashSet<SubscriberKey>>,
    /// Templates and `*`, one entry per distinct selector.
    patterns: HashMap<Arc<str>, (Selector, HashSet<SubscriberKey>)>,
    /// The last position fanned out, and its id.
    last_position: u64,
    last_id: Option<String>,
}

struct Subscriber {
    queue: mpsc::Sender<(u64, Bytes)>,
    info: Arc<SubscriberInfo>,
    /// The last position queued: an update matching several selectors is queued once.
    last_queued: AtomicU64,
}

/// Who a subscriber is, for authorization and the active-subscriptions API.
#[derive(Debug)]
pub struct SubscriberInfo {
    /// `urn:uuid:…`, unique per connection.
    pub id: String,
    pub selectors: Vec<Selector>,
    /// The `mercure.subscribe` claim: which private updates it may receive. `None`: anonymous.
    pub scope: Option<Arc<[Selector]>>,
    /// The `mercure.payload` claim, published with its subscription events.
    pub payload: Option<serde_json::Value>,
}

impl SubscriberInfo {
    fn may_receive(&self, update: &Update) -> bool {
        !update.private
            || self.scope.as_ref().is_some_and(|scope| {
                scope
                    .iter()
                    .any(|selector| selector.matches_any(update.topics()))
            })
    }

    fn wants(&self, update: &Update) -> bool {
        self.selectors
            .iter()
            .any(|selector| selector.matches_any(update.topics()))
    }
}

/// What a subscriber asks for.
pub struct SubscribeRequest {
    pub selectors: Vec<Selector>,
    pub scope: Option<Arc<[Selector]>>,
    pub payload: Option<serde_json::Value>,
    /// The last event the client has: an id, [`EARLIEST`], or `None` for live updates only.
    pub last_event_id: Option<String>,
    /// The stream ends at this instant (the token's `exp`).
    pub expires_at: Option<Instant>,
}

/// A registered subscriber: its id, where its stream starts, and the stream.
pub struct Subscription {
    pub subscriber_id: String,
    /// For the `Last-Event-ID` response header: the id of the update just before the first one
    /// this stream sends, or `earliest`.
    pub last_event_id: String,
    /// The requested id was unknown or pruned; the stream starts with a [`HISTORY_GAP_EVENT`].
    pub history_gap: bool,
    pub stream: SubscriptionStream,
}

/// The recent state of some topics, for rendering a page before it goes live.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The newest matching updates, oldest first.
    pub updates: Vec<Arc<Update>>,
    /// Subscribe with this as `lastEventID` to get exactly what comes after the snapshot.
    pub last_event_id: String,
}

/// One active subscription (a subscriber and one of its selectors), for the subscriptions API.
#[derive(Debug, Clone)]
pub struct ActiveSubscription {
    pub subscriber: Arc<SubscriberInfo>,
    pub selector: String,
}

impl Hub {
    /// Starts a hub on `history`, with its writer thread.
    pub fn start(history: Arc<dyn History>, config: HubConfig) -> Result<Self, HistoryError> {
        let mut registry = Registry::default();
        if let Some((position, id)) = history.last()? {
            registry.last_position = position;
            registry.last_id = Some(id);
        }
        let metrics = HubMetrics::default();
        metrics.history_len.store(history.len()?, Ordering::Relaxed);
        let (writer, jobs) = mpsc::channel(config.publish_queue.max(1));
        let shared = Arc::new(Shared {
            config,
            history,
            registry: RwLock::new(registry),
            metrics,
            closing: CancellationToken::new(),
            writer_thread: Mutex::new(None),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tidings-writer".into())
            .spawn(move || writer_loop(&thread_shared, jobs))
            .map_err(|e| HistoryError::new(format!("cannot start the writer thread: {e}")))?;
        *shared.writer_thread.lock() = Some(thread);
        if shared.config.prunes_by_age() {
            // A weak sender: the ticker never keeps the writer alive on its own.
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
                .map_err(|e| HistoryError::new(format!("cannot start the prune thread: {e}")))?;
        }
        Ok(Self { shared, writer })
    }

    /// Publishes an update from a publisher (reserved topics refused). Returns once the update is
    /// durable and has been handed to every matching subscriber.
    pub async fn publish(&self, update: Update) -> Result<u64, PublishError> {
        update.check()?;
        self.publish_checked(update).await
    }

    /// Publishes an update of the hub's own, which may use the reserved namespace.
    pub async fn publish_internal(&self, update: Update) -> Result<u64, PublishError> {
        update.check_internal()?;
        self.publish_checked(update).await
    }

    async fn publish_checked(&self, update: Update) -> Result<u64, PublishError> {
        let (done, result) = oneshot::channel();
        self.writer
            .send(Job::Publish(Arc::new(update), Some(done)))
            .await
            .map_err(|_| PublishError::ShuttingDown)?;
        result.await.map_err(|_| PublishError::ShuttingDown)?
    }

    /// Registers a subscriber and returns its stream: history first if asked, then live updates.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, HistoryError> {
        let SubscribeRequest {
            selectors,
            scope,
            payload,
            last_event_id,
            expires_at,
        } = request;
        // Where the client is, found before registering (the id was published earlier).
        let requested = match last_event_id {
            None => Resume::Live,
            Some(id) if id == EARLIEST => Resume::Earliest,
            Some(id) => {
                let history = self.shared.history.clone();
                let lookup = id.clone();
                let found = tokio::task::spawn_blocking(move || history.position_of(&lookup))
                    .await
                    .map_err(|e| HistoryError::new(format!("history lookup failed: {e}")))??;
                match found {
                    Some(position) => Resume::After(position, id),
                    None => Resume::Gap,
                }
            }
        };

        let info = Arc::new(SubscriberInfo {
            id: crate::update::new_id(),
            selectors,
            scope,
            payload,
        });
        let (queue, receiver) = mpsc::channel(self.shared.config.subscriber_buffer.max(1));
        let (key, handoff, handoff_id) = {
            let mut registry = self.shared.registry.write();
            let key = registry.insert(queue, info.clone());
            (key, registry.last_position, registry.last_id.clone())
        };
        self.shared
            .metrics
            .subscribers_total
            .fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            hub: self.clone(),
            key,
            info: info.clone(),
        };
        self.announce(&info, true);

        let head = || handoff_id.unwrap_or_else(|| EARLIEST.to_owned());
        let (after, header, gap) = match requested {
            Resume::Live => (handoff, head(), false),
            Resume::Gap => (handoff, head(), true),
            Resume::Earliest => (0, EARLIEST.to_owned(), false),
            Resume::After(position, id) => (position, id, false),
        };
        let first = gap.then(|| {
            sse::Event {
                event: Some(HISTORY_GAP_EVENT),
                data: &header,
                ..sse::Event::default()
            }
            .encode()
        });
        Ok(Subscription {
            subscriber_id: info.id.clone(),
            last_event_id: header,
            history_gap: gap,
            stream: SubscriptionStream::new(StreamState {
                hub: self.shared.clone(),
                info,
                first,
                replay: (after < handoff).then_some((after, handoff)),
                skip_until: after.max(handoff),
                receiver,
                expires_at,
                _registration: registration,
            }),
        })
    }

    /// Up to `limit` of the newest public updates matching `selectors` (scanning at most
    /// `max_scan` updates back), and the id to resume after them. The head is read first and the
    /// history only up to it, so a subscription from `last_event_id` neither misses nor repeats
    /// anything, whatever is published meanwhile.
    pub async fn snapshot(
        &self,
        selectors: Vec<Selector>,
        limit: usize,
        max_scan: usize,
    ) -> Result<Snapshot, HistoryError> {
        let (head, head_id) = {
            let registry = self.shared.registry.read();
            (registry.last_position, registry.last_id.clone())
        };
        let history = self.shared.history.clone();
        let updates =
            tokio::task::spawn_blocking(move || {
                let mut found = Vec::new();
                let mut before = head + 1;
                let mut scanned = 0;
                while found.len() < limit && scanned < max_scan {
                    let chunk = history.read_back(before, REPLAY_CHUNK)?;
                    let Some(oldest) = chunk.last() else { break };
                    before = oldest.position;
                    scanned += chunk.len();
                    found.extend(chunk.into_iter().map(|s| s.update).filter(|u| {
                        !u.private && selectors.iter().any(|s| s.matches_any(u.topics()))
                    }));
                }
                found.truncate(limit);
                found.reverse();
                Ok::<_, HistoryError>(found)
            })
            .await
            .map_err(|e| HistoryError::new(format!("snapshot failed: {e}")))??;
        Ok(Snapshot {
            updates,
            last_event_id: head_id.unwrap_or_else(|| EARLIEST.to_owned()),
        })
    }

    /// Every active subscription (one per subscriber and selector), sorted, and the id of the
    /// last update fanned out (`earliest` if none).
    pub fn active_subscriptions(&self) -> (Vec<ActiveSubscription>, String) {
        let registry = self.shared.registry.read();
        let mut list: Vec<ActiveSubscription> = registry
            .subscribers
            .values()
            .flat_map(|s| {
                s.info.selectors.iter().map(|selector| ActiveSubscription {
                    subscriber: s.info.clone(),
                    selector: selector.as_str().to_owned(),
                })
            })
            .collect();
        list.sort_by(|a, b| (&a.selector, &a.subscriber.id).cmp(&(&b.selector, &b.subscriber.id)));
        (
            list,
            registry
                .last_id
                .clone()
                .unwrap_or_else(|| EARLIEST.to_owned()),
        )
    }

    pub fn subscriber_count(&self) -> usize {
        self.shared.registry.read().subscribers.len()
    }

    /// Subscribers per exact-topic selector, for the topics `filter` accepts. Costs one pass over
    /// the distinct exact selectors, not over subscribers.
    pub fn exact_counts(&self, filter: impl Fn(&str) -> bool) -> Vec<(String, usize)> {
        let registry = self.shared.registry.read();
        registry
            .exact
            .iter()
            .filter(|(topic, _)| filter(topic))
            .map(|(topic, keys)| (topic.to_string(), keys.len()))
            .collect()
    }

    /// Distinct selectors in the index: what one update's matching costs, at most.
    pub fn distinct_selectors(&self) -> usize {
        let registry = self.shared.registry.read();
        registry.exact.len() + registry.patterns.len()
    }

    pub fn metrics(&self) -> &HubMetrics {
        &self.shared.metrics
    }

    pub fn history(&self) -> &Arc<dyn History> {
        &self.shared.history
    }

    /// Ends every subscription stream; publishing still works until [`Hub::shutdown`].
    pub fn close_streams(&self) {
        self.shared.closing.cancel();
    }

    /// Ends every subscription stream, commits what is queued, and stops the writer.
    pub async fn shutdown(&self) {
        self.shared.closing.cancel();
        // Sent after every publish already queued, so those are committed first.
        let _ = self.writer.send(Job::Stop).await;
        let thread = self.shared.writer_thread.lock().take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Publishes a subscription event (`active` or not) for each of the subscriber's selectors.
    /// Never waits: when the writer's queue is full the event is dropped with a warning.
    fn announce(&self, info: &SubscriberInfo, active: bool) {
        if !self.shared.config.subscription_events || self.shared.closing.is_cancelled() {
            return;
        }
        for selector in &info.selectors {
            let update = subscription_update(info, selector.as_str(), active);
            if self
                .writer
                .try_send(Job::Publish(Arc::new(update), None))
                .is_err()
            {
                tracing::warn!("publish queue full: subscription event dropped");
            }
        }
    }
}

/// Where a new subscription starts.
enum Resume {
    /// Live updates only.
    Live,
    /// The whole retained history.
    Earliest,
    /// After this position, which the client knows by this id.
    After(u64, String),
    /// After an id the history does not have: live, announced by the gap event.
    Gap,
}

/// The topic of a subscription event.
pub fn subscription_topic(selector: &str, subscriber: &str) -> String {
    format!(
        "{}/subscriptions/{}/{}",
        crate::update::RESERVED_PATH,
        utf8_percent_encode(selector, NON_ALPHANUMERIC),
        utf8_percent_encode(subscriber, NON_ALPHANUMERIC)
    )
}

/// The JSON-LD document of one subscription, as in the Mercure spec.
pub fn subscription_json(info: &SubscriberInfo, selector: &str, active: bool) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "@context": "https://mercure.rocks/",
        "id": subscription_topic(selector, &info.id),
        "type": "Subscription",
        "topic": selector,
        "subscriber": info.id,
        "active": active,
    });
    if let Some(payload) = &info.payload {
        doc["payload"] = payload.clone();
    }
    doc
}

fn subscription_update(info: &SubscriberInfo, selector: &str, active: bool) -> Update {
    Update {
        id: crate::update::new_id(),
        topics: vec![subscription_topic(selector, &info.id)],
        data: subscription_json(info, selector, active).to_string(),
        private: true,
        event_type: None,
        retry: None,
    }
}

impl Registry {
    fn insert(&mut self, queue: mpsc::Sender<(u64, Bytes)>, info: Arc<SubscriberInfo>) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        for selector in &info.selectors {
            match selector {
                Selector::Exact(topic) => {
                    self.exact.entry(topic.clone()).or_default().insert(key);
                }
                Selector::Any | Selector::Template(_) => {
                    self.patterns
                        .entry(selector.as_str().into())
                        .or_insert_with(|| (selector.clone(), HashSet::new()))
                        .1
                        .insert(key);
                }
            }
        }
        self.subscribers.insert(
            key,
            Subscriber {
                queue,
                info,
                last_queued: AtomicU64::new(0),
            },
        );
        key
    }

    fn remove(&mut self, key: SubscriberKey) -> bool {
        let Some(subscriber) = self.subscribers.remove(&key) else {
            return false;
        };
        for selector in &subscriber.info.selectors {
            match selector {
                Selector::Exact(topic) => {
                    if let Some(keys) = self.exact.get_mut(&**topic)
                        && keys.remove(&key)
                        && keys.is_empty()
                    {
                        self.exact.remove(&**topic);
                    }
                }
                Selector::Any | Selector::Template(_) => {
                    let name = selector.as_str();
                    if let Some((_, keys)) = self.patterns.get_mut(name)
                        && keys.remove(&key)
                        && keys.is_empty()
                    {
                        self.patterns.remove(name);
                    }
                }
            }
        }
        true
    }

    /// Queues `stored` for every subscriber that selected it and may see it. Returns the keys of
    /// subscribers whose queue was full or closed.
    fn fan_out(&self, stored: &Stored, bytes: &Bytes, metrics: &HubMetrics) -> Vec<SubscriberKey> {
        let update = &*stored.update;
        let position = stored.position;
        let mut evict = Vec::new();
        let mut delivered = 0u64;
        // Private updates: whether a claim allows it is decided once per distinct claim.
        let mut allowed: HashMap<*const [Selector], bool> = HashMap::new();
        let mut deliver = |key: &SubscriberKey| {
            let Some(subscriber) = self.subscribers.get(key) else {
                return;
            };
            if subscriber.last_queued.swap(position, Ordering::Relaxed) == position {
                return;
            }
            if update.private {
                let Some(scope) = &subscriber.info.scope else {
                    return;
                };
                let ok = *allowed
                    .entry(Arc::as_ptr(scope))
                    .or_insert_with(|| scope.iter().any(|s| s.matches_any(update.topics())));
                if !ok {
                    return;
                }
            }
            match subscriber.queue.try_send((position, bytes.clone())) {
                Ok(()) => delivered += 1,
                Err(_) => evict.push(*key),
            }
        };
        for topic in update.topics() {
            if let Some(keys) = self.exact.get(topic) {
                keys.iter().for_each(&mut deliver);
            }
        }
        for (selector, keys) in self.patterns.values() {
            if selector.matches_any(update.topics()) {
                keys.iter().for_each(&mut deliver);
            }
        }
        metrics
            .events_delivered
            .fetch_add(delivered, Ordering::Relaxed);
        evict
    }
}

/// Removes the subscriber when its stream is dropped (the client left, or it was evicted).
struct Registration {
    hub: Hub,
    key: SubscriberKey,
    info: Arc<SubscriberInfo>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.shared.registry.write().remove(self.key);
        self.hub.announce(&self.info, false);
    }
}

const MAX_BATCH: usize = 1024;

fn writer_loop(shared: &Shared, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut since_prune = 0u64;
    let mut last_prune = Instant::now();
    loop {
        let Some(first) = jobs.blocking_recv() else {
            return;
        };
        let mut stop = false;
        let mut prune_now = false;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Publish(update, done) => batch.push((update, done)),
                Job::Prune => prune_now = true,
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
            since_prune += batch.len() as u64;
            commit_and_fan_out(shared, &mut batch);
        }
        if stop {
            return;
        }
        let config = &shared.config;
        let over = since_prune >= (config.history_max_events / 100).max(1);
        let aged = config.prunes_by_age() && last_prune.elapsed() >= Duration::from_secs(1);
        if over || prune_now || aged {
            match shared.history.prune(&config.retention()) {
                Ok(dropped) => {
                    shared
                        .metrics
                        .history_len
                        .fetch_sub(dropped, Ordering::Relaxed);
                }
                Err(error) => tracing::error!("pruning the history failed: {error}"),
            }
            since_prune = 0;
            last_prune = Instant::now();
        }
    }
}

type Pending = (
    Arc<Update>,
    Option<oneshot::Sender<Result<u64, PublishError>>>,
);

fn commit_and_fan_out(shared: &Shared, batch: &mut Vec<Pending>) {
    let updates: Vec<Arc<Update>> = batch.iter().map(|(u, _)| u.clone()).collect();
    match shared.history.append(&updates) {
        Err(error) => {
            tracing::error!("{error}");
            for (_, done) in batch.drain(..) {
                if let Some(done) = done {
                    let _ = done.send(Err(PublishError::Storage(HistoryError::new(
                        error.to_string(),
                    ))));
                }
            }
        }
        Ok(positions) => {
            let mut evicted = Vec::new();
            {
                let mut registry = shared.registry.upgradable_read();
                for ((update, _), &position) in batch.iter().zip(&positions) {
                    let stored = Stored {
                        position,
                        update: update.clone(),
                    };
                    let bytes = update.encode();
                    evicted.extend(registry.fan_out(&stored, &bytes, &shared.metrics));
                    registry.with_upgraded(|r| {
                        r.last_position = position;
                        r.last_id = Some(update.id.clone());
                    });
                }
                if !evicted.is_empty() {
                    registry.with_upgraded(|r| {
                        for key in &evicted {
                            if r.remove(*key) {
                                shared
                                    .metrics
                                    .subscribers_evicted
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
            let appended = batch.len() as u64;
            shared
                .metrics
                .updates_published
                .fetch_add(appended, Ordering::Relaxed);
            shared
                .metrics
                .history_len
                .fetch_add(appended, Ordering::Relaxed);
            for ((_, done), position) in batch.drain(..).zip(positions) {
                if let Some(done) = done {
                    let _ = done.send(Ok(position));
                }
            }
        }
    }
}

/// The events of one subscription, as chunks of SSE bytes ready to write.
pub struct SubscriptionStream {
    inner: std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send>>,
}

struct StreamState {
    hub: Arc<Shared>,
    info: Arc<SubscriberInfo>,
    first: Option<Bytes>,
    /// History still to replay: positions in `(after, until]`.
    replay: Option<(u64, u64)>,
    /// Queued updates up to this position were already sent from history.
    skip_until: u64,
    receiver: mpsc::Receiver<(u64, Bytes)>,
    expires_at: Option<Instant>,
    _registration: Registration,
}

const REPLAY_CHUNK: usize = 512;
/// Queued events written together at most, so one write stays a reasonable size.
const MAX_COALESCE: usize = 64;

impl SubscriptionStream {
    fn new(state: StreamState) -> Self {
        let stream = futures_util::stream::unfold(state, |mut state| async move {
            let chunk = state.next_chunk().await?;
            Some((chunk, state))
        });
        Self {
            inner: Box::pin(stream),
        }
    }
}

impl Stream for SubscriptionStream {
    type Item = Bytes;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl StreamState {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        while let Some((after, until)) = self.replay {
            let history = self.hub.history.clone();
            let read = tokio::select! {
                () = self.hub.closing.cancelled() => return None,
                read = tokio::task::spawn_blocking(move || history.read(after, until, REPLAY_CHUNK)) => read,
            };
            let stored = match read {
                Ok(Ok(stored)) => stored,
                Ok(Err(error)) => {
                    tracing::error!("history replay failed: {error}");
                    return None;
                }
                Err(_) => return None,
            };
            self.replay = match stored.last() {
                Some(last) if stored.len() == REPLAY_CHUNK && last.position < until => {
                    Some((last.position, until))
                }
                _ => None,
            };
            let mut chunk = BytesMut::new();
            for item in stored {
                if self.info.wants(&item.update) && self.info.may_receive(&item.update) {
                    chunk.extend_from_slice(&item.update.encode());
                }
            }
            if !chunk.is_empty() {
                return Some(chunk.freeze());
            }
        }
        loop {
            let heartbeat = self.hub.config.heartbeat;
            let expiry = self.expires_at;
            let item = tokio::select! {
                biased;
                () = self.hub.closing.cancelled() => return None,
                () = sleep_until(expiry) => return None,
                item = self.receiver.recv() => item,
                () = sleep_for(heartbeat) => return Some(sse::comment("heartbeat")),
            };
            // `None`: the hub dropped this subscriber (evicted as too slow).
            let (position, first) = item?;
            let mut chunk: Option<BytesMut> = None;
            let mut single = (position > self.skip_until).then_some(first);
            for _ in 0..MAX_COALESCE {
                let Ok((position, more)) = self.receiver.try_recv() else {
                    break;
                };
                if position <= self.skip_until {
                    continue;
                }
                let buf = chunk.get_or_insert_with(|| {
                    let mut buf = BytesMut::new();
                    if let Some(first) = single.take() {
                        buf.extend_from_slice(&first);
                    }
                    buf
                });
                buf.extend_from_slice(&more);
            }
            match (chunk, single) {
                (Some(buf), _) => return Some(buf.freeze()),
                (None, Some(one)) => return Some(one),
                (None, None) => continue,
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
