//! The hub's handle: what callers can do (publish, subscribe, read a snapshot, list the
//! subscriptions, read the figures, check health), and the state the writer, the registry and
//! the streams share.
//!
//! Each hop has its own module: [`writer`](crate::writer) commits and fans out,
//! [`registry`](crate::registry) finds an update's subscribers, [`stream`](crate::stream) turns a
//! subscription into SSE bytes, [`events`](crate::events) announces subscriptions.

use crate::{
    events::{Activity, subscription_update},
    follower,
    history::{History, HistoryError, Retention, SharedHistory},
    registry::{ActiveSubscription, EARLIEST, Head, Key, Mark, Registry, SubscriberInfo},
    roster,
    selector::{Interner, Selector, SelectorError},
    stats::{Counters, Stats, load},
    stream::{StreamState, SubscriptionStream},
    update::Update,
    writer::{self, Job},
};
use parking_lot::{Mutex, RwLock};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

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
    /// Distinct templates the hub holds at most, across every subscription: what bounds the
    /// template tests one update can cost, whatever the subscribers send.
    pub max_templates: usize,
}

impl HubConfig {
    pub(crate) fn prunes_by_age(&self) -> bool {
        self.history_max_age.is_some() || !self.volatile_topics.is_empty()
    }

    pub(crate) fn retention(&self) -> Retention {
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
            max_templates: 10_000,
        }
    }
}

/// Why a publish failed. None carries storage details: those are logged, not told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("the history cannot store updates")]
    Storage,
    /// The store cannot be reached now (Redis down, a timeout): retrying later may work. The
    /// update may or may not have been stored; it was not acknowledged.
    #[error("the history cannot be reached; try again shortly")]
    Unavailable,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl From<&HistoryError> for PublishError {
    fn from(error: &HistoryError) -> Self {
        if error.is_unavailable() {
            PublishError::Unavailable
        } else {
            PublishError::Storage
        }
    }
}

/// Why a subscription could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("the history is unavailable")]
    Storage,
    /// The history it must read from cannot be reached now; retrying later may work.
    #[error("the history cannot be reached; try again shortly")]
    Unavailable,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl From<&HistoryError> for SubscribeError {
    fn from(error: &HistoryError) -> Self {
        if error.is_unavailable() {
            SubscribeError::Unavailable
        } else {
            SubscribeError::Storage
        }
    }
}

/// Why a subscriber's selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorRefused {
    #[error(transparent)]
    Invalid(#[from] SelectorError),
    #[error("the hub holds too many distinct templates; try again later or use exact topics")]
    TooManyTemplates,
}

/// Why the hub is not healthy. The detail is for the operator's log; `unreachable` tells a
/// store that cannot be reached now (Redis down) from one that fails to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Unhealthy {
    pub detail: String,
    pub unreachable: bool,
}

impl Unhealthy {
    pub(crate) fn new(detail: impl Into<String>) -> Self {
        Unhealthy {
            detail: detail.into(),
            unreachable: false,
        }
    }
}

impl From<&HistoryError> for Unhealthy {
    fn from(error: &HistoryError) -> Self {
        Unhealthy {
            detail: error.to_string(),
            unreachable: error.is_unavailable(),
        }
    }
}

/// A handle to the hub; clones share it.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Job>,
}

/// What the writer, the streams and the handle share.
pub(crate) struct Shared {
    pub config: HubConfig,
    pub history: Arc<dyn History>,
    pub registry: RwLock<Registry>,
    pub counters: Counters,
    /// The encoded bytes of large stored updates, shared by the fan-out and the replays.
    pub encodings: crate::encodings::Encodings,
    /// One compiled copy of each template in use, shared by subscriptions and token claims.
    pub interner: Interner,
    /// The last write's outcome and when it was known.
    health: Mutex<(Instant, Result<(), Unhealthy>)>,
    /// Held while a probe is under way: concurrent health checks wait for its answer instead
    /// of queueing probes of their own (a flood of checks costs one write a second at most).
    probing: tokio::sync::Mutex<()>,
    /// Fires on shutdown: every subscription stream ends.
    pub closing: CancellationToken,
    /// Set by [`Hub::shutdown`]: the follower stops.
    pub stopping: AtomicBool,
    /// Fan-out rounds so far: a subscriber matched by several selectors is queued once a round.
    pub round: AtomicU64,
    /// Live-only events numbered so far, when this process is the history's only writer.
    pub live_seq: AtomicU64,
    /// The last live-only event the follower delivered, when the history is shared.
    pub delivered_live: AtomicU64,
    /// Why following a shared history fails now, if it does.
    pub following: Mutex<Option<Unhealthy>>,
    /// This process's name among the nodes of a cluster.
    pub node: String,
    /// The first alive node, as the roster last heard.
    pub leader: Mutex<Option<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// Starts one of the hub's threads; [`Hub::shutdown`] joins it.
    fn spawn(
        self: &Arc<Self>,
        name: &str,
        run: impl FnOnce(&Shared) + Send + 'static,
    ) -> Result<(), HistoryError> {
        let shared = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tidings-{name}"))
            .spawn(move || run(&shared))
            .map_err(|e| HistoryError::new(format!("cannot start the {name} thread: {e}")))?;
        self.threads.lock().push(thread);
        Ok(())
    }

    pub(crate) fn set_health(&self, result: Result<(), Unhealthy>) {
        *self.health.lock() = (Instant::now(), result);
    }
}

/// What a subscriber asks for.
pub struct SubscribeRequest {
    pub selectors: Vec<Selector>,
    /// The `mercure.subscribe` claim; `None` for an anonymous subscriber.
    pub scope: Option<Arc<[Selector]>>,
    pub payload: Option<serde_json::Value>,
    /// The last event the client has: an id, [`EARLIEST`], or `None` for live updates only.
    pub last_event_id: Option<String>,
    /// The stream ends at this instant (the token's `exp`).
    pub expires_at: Option<Instant>,
    /// Precede each update with a [`ROUTE_EVENT`](crate::ROUTE_EVENT) naming which of
    /// `selectors` it matches, so that one connection can feed several readers (a browser's
    /// tabs, each wanting some of the selectors).
    pub routed: bool,
}

/// A registered subscriber: its id, where its stream starts, and the stream.
pub struct Subscription {
    pub subscriber_id: String,
    /// For the `Last-Event-ID` response header: the id of the update just before the first one
    /// this stream sends, or `earliest`. Never the id of an update this subscriber may not see.
    pub last_event_id: String,
    /// History it asked for is not there; the stream starts with the gap event.
    pub history_gap: bool,
    pub stream: SubscriptionStream,
}

/// The recent state of some topics, for rendering a page before it goes live.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The newest matching public updates, oldest first.
    pub updates: Vec<Arc<Update>>,
    /// Subscribe with this as `lastEventID` to get exactly what comes after the snapshot.
    pub last_event_id: String,
}

/// The active subscriptions, and the id of the last update fanned out.
pub struct Subscriptions {
    pub active: Vec<ActiveSubscription>,
    pub last_event_id: String,
}

/// Where a new subscription starts.
enum Resume {
    Live,
    Earliest,
    /// After this event, which the client knows by this id.
    After(Mark, String),
    /// History it asked for is not there: live, announced by the gap event.
    Gap,
}

/// How long a health probe's answer is reused: health checks cannot turn into a stream of
/// fsyncs.
const HEALTH_TTL: Duration = Duration::from_secs(1);

impl Hub {
    /// Starts a hub on `history`, with its writer thread, and for a history other processes
    /// share ([`History::shared`]) the follower thread that fans out what it reads there.
    pub fn start(history: Arc<dyn History>, config: HubConfig) -> Result<Self, HistoryError> {
        // Live events from here on; stored updates from the newest one read next.
        let cursor = history.shared().map(|s| s.cursor()).transpose()?;
        // Followed from the last position handed out, which is past the newest entry when the
        // newest ones were pruned: the next one read is then no hole.
        let head = Head::new(history.heads()?, cursor.map_or(0, |c| c.position));
        let (writer, jobs) = mpsc::channel(config.publish_queue.max(1));
        let live_seq_start = history.live_seq_start();
        let shared = Arc::new(Shared {
            interner: Interner::new(),
            config,
            history,
            registry: RwLock::new(Registry::new(head)),
            counters: Counters::default(),
            encodings: Default::default(),
            health: Mutex::new((Instant::now() - HEALTH_TTL * 2, Ok(()))),
            probing: tokio::sync::Mutex::new(()),
            closing: CancellationToken::new(),
            stopping: AtomicBool::new(false),
            round: AtomicU64::new(0),
            live_seq: AtomicU64::new(live_seq_start),
            delivered_live: AtomicU64::new(0),
            following: Mutex::new(None),
            // Start time first: sorted by name, the nodes are in the order they started, and
            // the first (the leader) is the oldest, which a node joining does not displace.
            node: format!("{:013}-{}", now_ms(), crate::update::new_id()),
            leader: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
        });
        shared.spawn("writer", move |shared| writer::run(shared, jobs))?;
        if let Some(mut cursor) = cursor {
            cursor.position = shared.registry.read().head.position;
            shared.delivered_live.store(cursor.live, Ordering::Relaxed);
            shared.spawn("follower", move |shared| follower::run(shared, cursor))?;
            shared.registry.write().roster = Some(roster::RosterLog::new());
            shared.spawn("roster", |shared| {
                if let Some(store) = shared.history.shared() {
                    roster::run(shared, store);
                }
            })?;
        }
        // On a cluster the leading node prunes what every node publishes, so it looks every
        // second even when it publishes nothing itself.
        if shared.config.prunes_by_age() || shared.history.shared().is_some() {
            writer::spawn_prune_ticker(&writer)
                .map_err(|e| HistoryError::new(format!("cannot start the prune thread: {e}")))?;
        }
        Ok(Self { shared, writer })
    }

    /// Parses a subscriber's selector. A template in use elsewhere is shared, not compiled
    /// again; a new one is refused once the hub holds `max_templates` distinct ones.
    pub fn parse_selector(&self, text: &str) -> Result<Selector, SelectorRefused> {
        let interner = &self.shared.interner;
        if text.contains('{')
            && interner.len() >= self.shared.config.max_templates
            && !interner.contains(text)
        {
            return Err(SelectorRefused::TooManyTemplates);
        }
        Ok(interner.parse(text)?)
    }

    /// Parses a token claim's selectors through the same shared templates; ones that cannot
    /// be parsed grant nothing. Claims come from tokens the hub verified, so no cap applies.
    pub fn parse_claim(&self, claim: &[String]) -> Arc<[Selector]> {
        claim
            .iter()
            .filter_map(|s| self.shared.interner.parse(s).ok())
            .collect()
    }

    /// Publishes an update. Returns its history position once it is durable and (with a
    /// history of its own) has been handed to every matching subscriber. With a shared history
    /// it returns once the store has it; every node's follower, this one's included, delivers
    /// it a moment later.
    pub async fn publish(&self, update: Update) -> Result<u64, PublishError> {
        let (ack, answer) = oneshot::channel();
        self.writer
            .send(Job::Publish(Arc::new(update), ack))
            .await
            .map_err(|_| PublishError::ShuttingDown)?;
        answer.await.map_err(|_| PublishError::ShuttingDown)?
    }

    /// Sends an update to the subscribers connected now, in order with published ones, without
    /// storing it: for state that the next such update replaces (presence counts), which must
    /// never push a published update out of the history. Returns once it is queued. Its id is
    /// replaced by one the hub makes, which carries the event's place in the order, so a client
    /// whose last event it was resumes exactly.
    pub async fn publish_live(&self, update: Update) -> Result<(), PublishError> {
        self.writer
            .send(Job::Live(Arc::new(update)))
            .await
            .map_err(|_| PublishError::ShuttingDown)
    }

    /// Registers a subscriber and returns its stream: history first if asked, then live updates.
    pub async fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        let SubscribeRequest {
            selectors,
            scope,
            payload,
            last_event_id,
            expires_at,
            routed,
        } = request;
        let info = Arc::new(SubscriberInfo {
            id: crate::update::new_id(),
            selectors,
            scope,
            payload,
            routed,
        });
        // Where the client is, found before registering (the id was published earlier).
        let requested = match last_event_id {
            None => Resume::Live,
            Some(id) if id == EARLIEST => Resume::Earliest,
            // A live-only event's id says where it was delivered; checked, it needs no lookup.
            Some(id) => match crate::live_id::parse(&self.shared.history.live_id_key(), &id) {
                Some(mark) => {
                    if self
                        .shared
                        .history
                        .horizon()
                        .hides_after(mark.position, info.prefixes())
                    {
                        Resume::Gap
                    } else {
                        Resume::After(mark, id)
                    }
                }
                None => self.stored_resume(&info, id).await?,
            },
        };

        let (queue, receiver) = crate::queue::bounded(self.shared.config.subscriber_buffer);
        let (key, handoff, handoff_id) = {
            let mut registry = self.shared.registry.write();
            let key = registry.insert(queue, info.clone());
            let head = &registry.head;
            (key, head.position, head.visible_id(info.scope.as_deref()))
        };
        Counters::add(&self.shared.counters.subscribers_total, 1);
        let registration = Registration {
            hub: self.clone(),
            key,
            info: info.clone(),
        };
        self.announce(&info, Activity::Opened);

        let (from, header, gap) = match requested {
            Resume::Live => (None, handoff_id.clone(), false),
            Resume::Gap => (None, handoff_id.clone(), true),
            Resume::Earliest => (Some(Mark::default()), EARLIEST.to_owned(), false),
            Resume::After(mark, id) => (Some(mark), id, false),
        };
        // What the queue may hold that the client has: everything up to the handoff (sent from
        // history), or, when this node has not yet delivered as far as the client's last event
        // (it came from a node further ahead), everything up to that event.
        let handoff_mark = Mark::stored(handoff);
        let seen = from.map_or(handoff_mark, |from| from.max(handoff_mark));
        let stream = SubscriptionStream::new(StreamState {
            hub: self.shared.clone(),
            info: info.clone(),
            gap_first: gap,
            live_marker: info.routed,
            pending: None,
            replay: from
                .map(|from| from.position)
                .filter(|&after| after < handoff)
                .map(|after| (after, handoff)),
            seen,
            handoff_id,
            receiver,
            expires_at,
            _registration: registration,
        });
        Ok(Subscription {
            subscriber_id: info.id.clone(),
            last_event_id: header,
            history_gap: gap,
            stream,
        })
    }

    /// Up to `limit` of the newest public updates matching `selectors` (scanning at most
    /// `max_scan` updates back), and the id to resume after them. The head is read first and the
    /// history only up to it, so a subscription from `last_event_id` neither misses nor repeats
    /// anything, whatever is published meanwhile.
    ///
    /// The resume id is the newest matching update's when there is one: nothing after it up to
    /// the head matches, so resuming from it is as exact as from the head, and it stays in the
    /// history as long as the page's own topics do (the head is often an update of a volatile
    /// topic, gone in minutes, which would turn a quiet page's reconnection into a gap).
    pub async fn snapshot(
        &self,
        selectors: Vec<Selector>,
        limit: usize,
        max_scan: usize,
    ) -> Result<Snapshot, SubscribeError> {
        let (head, head_id) = {
            let registry = self.shared.registry.read();
            (registry.head.position, registry.head.visible_id(None))
        };
        let history = self.shared.history.clone();
        let (updates, newest) = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let mut before = head + 1;
            let mut scanned = 0;
            while found.len() < limit && scanned < max_scan {
                let chunk = history.read_back(before, 512)?;
                let Some(oldest) = chunk.last() else { break };
                before = oldest.position;
                scanned += chunk.len();
                found.extend(chunk.into_iter().map(|s| s.update).filter(|u| {
                    !u.is_private() && selectors.iter().any(|s| s.matches_any(u.topics()))
                }));
            }
            let newest = found.first().map(|u| u.id().to_owned());
            found.truncate(limit);
            found.reverse();
            Ok::<_, HistoryError>((found, newest))
        })
        .await
        .map_err(|_| SubscribeError::ShuttingDown)?
        .map_err(|error| {
            tracing::error!("reading a snapshot failed: {error}");
            SubscribeError::from(&error)
        })?;
        Ok(Snapshot {
            updates,
            last_event_id: newest.unwrap_or(head_id),
        })
    }

    /// Every active subscription (one per subscriber and selector), sorted by selector and
    /// subscriber, on every node of a cluster; and the id of the last update fanned out here.
    pub async fn subscriptions(&self) -> Result<Subscriptions, SubscribeError> {
        let (mut active, last_event_id) = {
            let registry = self.shared.registry.read();
            let last = registry
                .head
                .last
                .as_ref()
                .map_or_else(|| EARLIEST.to_owned(), |u| u.id().to_owned());
            (registry.active(), last)
        };
        if self.shared.history.shared().is_some() {
            let shared = self.shared.clone();
            let others = self
                .on_other_nodes(move |store| store.other_subscriptions(&shared.node))
                .await?;
            active.extend(
                others
                    .iter()
                    .filter_map(|docs| serde_json::from_str::<Vec<serde_json::Value>>(docs).ok())
                    .flatten()
                    .filter_map(ActiveSubscription::from_document),
            );
        }
        active.sort_by(|a, b| (&a.selector, &a.subscriber).cmp(&(&b.selector, &b.subscriber)));
        Ok(Subscriptions {
            active,
            last_event_id,
        })
    }

    /// Subscribers per exact-topic selector, for the topics that `prefix` starts and `filter`
    /// accepts, on every node of a cluster. Costs one pass over the distinct exact selectors,
    /// not over subscribers (and on a cluster one read of what the other nodes published about
    /// the topics under `prefix`, at most half a second old).
    pub async fn subscriber_counts(
        &self,
        prefix: &str,
        filter: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<Vec<(String, usize)>, SubscribeError> {
        let mut counts: HashMap<String, usize> = self
            .shared
            .registry
            .read()
            .exact_counts(|topic| topic.starts_with(prefix) && filter(topic))
            .into_iter()
            .collect();
        if self.shared.history.shared().is_some() {
            let shared = self.shared.clone();
            let prefix = prefix.to_owned();
            let others = self
                .on_other_nodes(move |store| store.other_counts(&shared.node, &prefix))
                .await?;
            for (topic, n) in others {
                if filter(&topic) {
                    *counts.entry(topic).or_default() += n;
                }
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// Whether this node publishes what is derived from the whole cluster (such as presence
    /// counts), so that it is published once: the first alive node in the shared roster, or
    /// the only node.
    pub fn leads(&self) -> bool {
        if self.shared.history.shared().is_none() {
            return true;
        }
        self.shared.leader.lock().as_deref() == Some(self.shared.node.as_str())
    }

    /// Where a client whose last event was the stored update `id` resumes.
    async fn stored_resume(
        &self,
        info: &SubscriberInfo,
        id: String,
    ) -> Result<Resume, SubscribeError> {
        let history = self.shared.history.clone();
        let lookup = id.clone();
        let found = tokio::task::spawn_blocking(move || {
            history.position_of(&lookup).map(|p| (p, history.horizon()))
        })
        .await
        .map_err(|_| SubscribeError::ShuttingDown)?;
        Ok(match found {
            Ok((Some(position), horizon)) => {
                if horizon.hides_after(position, info.prefixes()) {
                    Resume::Gap
                } else {
                    Resume::After(Mark::stored(position), id)
                }
            }
            Ok((None, _)) => Resume::Gap,
            Err(error) if error.is_unavailable() => {
                tracing::warn!("cannot look up a Last-Event-ID now: {error}");
                return Err(SubscribeError::Unavailable);
            }
            Err(error) => {
                tracing::error!("looking up a Last-Event-ID failed: {error}");
                Resume::Gap
            }
        })
    }

    /// Runs a read of what the other nodes published, off the executor.
    async fn on_other_nodes<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn SharedHistory) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, SubscribeError> {
        let history = self.shared.history.clone();
        tokio::task::spawn_blocking(move || match history.shared() {
            Some(store) => read(store),
            None => Err(HistoryError::new("not a shared history")),
        })
        .await
        .map_err(|_| SubscribeError::ShuttingDown)?
        .map_err(|error| {
            // Asked every 250 ms by presence: the follower's log says Redis is down.
            tracing::debug!("reading the other nodes' subscriptions failed: {error}");
            SubscribeError::from(&error)
        })
    }

    /// The hub's figures now.
    pub fn stats(&self) -> Stats {
        let (subscribers, distinct_selectors) = {
            let registry = self.shared.registry.read();
            (registry.len() as u64, registry.distinct_selectors() as u64)
        };
        let counters = &self.shared.counters;
        Stats {
            subscribers,
            subscribers_total: load(&counters.subscribers_total),
            updates_published: load(&counters.updates_published),
            events_delivered: load(&counters.events_delivered),
            subscribers_evicted: load(&counters.subscribers_evicted),
            history_updates: self.shared.history.len(),
            distinct_selectors,
            template_tests: load(&counters.template_tests),
            history_gaps: load(&counters.gaps),
            templates: self.shared.interner.len() as u64,
            templates_compiled: self.shared.interner.compiled_total(),
        }
    }

    /// Whether the history can be written now: the last write's outcome if it is recent, else a
    /// probe (a small durable write) through the writer. A writer that does not answer within
    /// five seconds is unhealthy too.
    pub async fn health(&self) -> Result<(), Unhealthy> {
        let recent = || {
            let (at, result) = &*self.shared.health.lock();
            (at.elapsed() < HEALTH_TTL).then(|| result.clone())
        };
        if let Some(reason) = self.shared.following.lock().clone() {
            return Err(reason);
        }
        if let Some(result) = recent() {
            return result;
        }
        let _probing = self.shared.probing.lock().await;
        if let Some(result) = recent() {
            return result;
        }
        let (answer, probe) = oneshot::channel();
        let asked = self.writer.try_send(Job::Probe(answer));
        if asked.is_err() {
            return Err(Unhealthy::new("the writer's queue is full or closed"));
        }
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Unhealthy::new("the writer has stopped")),
            Err(_) => Err(Unhealthy::new("the writer did not answer within 5 s")),
        }
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
        self.shared.stopping.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Leave the roster now rather than when it expires: presence and the subscriptions API
        // stop counting this node at once, and the next node leads at once.
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(store) = shared.history.shared()
                && let Err(error) = store.leave(&shared.node)
            {
                tracing::warn!("leaving the cluster's roster failed: {error}");
            }
        })
        .await;
    }

    /// Announces each of the subscriber's selectors opening or closing. Never waits: when the
    /// writer's queue is full the event is dropped with a warning.
    fn announce(&self, info: &SubscriberInfo, activity: Activity) {
        if !self.shared.config.subscription_events || self.shared.closing.is_cancelled() {
            return;
        }
        for selector in &info.selectors {
            let update = subscription_update(info, selector.as_str(), activity);
            if self.writer.try_send(Job::Live(Arc::new(update))).is_err() {
                tracing::warn!("publish queue full: subscription event dropped");
            }
        }
    }
}

/// Removes the subscriber when its stream is dropped (the client left, or it was evicted).
pub(crate) struct Registration {
    hub: Hub,
    key: Key,
    info: Arc<SubscriberInfo>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.shared.registry.write().remove(self.key);
        self.hub.announce(&self.info, Activity::Closed);
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
