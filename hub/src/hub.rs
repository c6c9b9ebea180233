//! The hub's handle: what callers can do (publish, subscribe, read a snapshot, list the
//! subscriptions, read the figures, check health). It starts the layers below it and wires
//! them; the work is theirs (see the layer table in the crate docs).

use crate::{
    cluster::{Cluster, ask_other_nodes},
    config::HubConfig,
    error::{PublishError, SelectorRefused, SubscribeError, Unhealthy},
    events::{ActiveSubscription, Subscriptions},
    fanout::Fanout,
    health::Health,
    history::{self, History, HistoryError, Snapshot},
    node::Node,
    selector::{Interner, MatchKind, Selector},
    shutdown::Shutdown,
    stats::{Counters, Stats},
    stream::Streams,
    subscribe::{SubscribeRequest, Subscribers, Subscription},
    subscriber::Protocol,
    update::Update,
    writer::{Writer, WriterParts},
};
use parking_lot::Mutex;
use std::{collections::HashMap, sync::Arc, thread::JoinHandle};

/// A handle to the hub; clones share it.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: HubConfig,
    history: Arc<dyn History>,
    fanout: Arc<Fanout>,
    writer: Writer,
    subscribers: Arc<Subscribers>,
    health: Arc<Health>,
    node: Arc<Node>,
    counters: Arc<Counters>,
    shutdown: Arc<Shutdown>,
    /// One compiled copy of each template in use, shared by subscriptions and token claims.
    interner: Interner,
    /// What URL patterns are resolved against.
    hub_url: url::Url,
    /// The writer's thread and the cluster's, joined on shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Hub {
    /// Starts a hub on `history`, with its writer thread, and for a history other processes
    /// share ([`History::shared`]) the follower and roster threads.
    pub fn start(history: Arc<dyn History>, config: HubConfig) -> Result<Self, HistoryError> {
        // Live events from here on; stored updates from the newest one read next.
        let cursor = history.shared().map(|s| s.cursor()).transpose()?;
        let clustered = cursor.is_some();
        let counters = Arc::new(Counters::default());
        let encodings = Arc::new(Default::default());
        // Followed from the last position handed out, which is past the newest entry when the
        // newest ones were pruned: the next one read is then no hole.
        let fanout = Arc::new(Fanout::new(
            history.heads()?,
            cursor.map_or(0, |c| c.position),
            clustered,
            history.clone(),
            Arc::clone(&encodings),
            counters.clone(),
        ));
        let health = Arc::new(Health::default());
        let node = Arc::new(Node::new(clustered));
        let shutdown = Arc::new(Shutdown::default());
        let (writer, writer_thread) = Writer::start(WriterParts {
            config: config.clone(),
            history: history.clone(),
            fanout: fanout.clone(),
            health: health.clone(),
            node: node.clone(),
            counters: counters.clone(),
        })?;
        let mut threads = vec![writer_thread];
        if let Some(mut cursor) = cursor {
            cursor.position = fanout.head().0;
            let cluster = Cluster {
                history: history.clone(),
                fanout: fanout.clone(),
                health: health.clone(),
                node: node.clone(),
                shutdown: shutdown.clone(),
            };
            threads.extend(cluster.start(cursor)?);
        }
        let subscribers = Arc::new(Subscribers {
            history: history.clone(),
            fanout: fanout.clone(),
            writer: writer.clone(),
            streams: Arc::new(Streams {
                history: history.clone(),
                encodings,
                counters: counters.clone(),
                heartbeat: config.heartbeat,
                max_lifetime: config.max_stream_lifetime,
                shutdown: shutdown.clone(),
            }),
            buffer: config.subscriber_buffer,
            announce: config.subscription_events,
        });
        let hub_url = config.base_url();
        Ok(Hub {
            inner: Arc::new(Inner {
                config,
                history,
                fanout,
                writer,
                subscribers,
                health,
                node,
                counters,
                shutdown,
                interner: Interner::new(),
                hub_url,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// Parses a subscriber's selector. A template in use elsewhere is shared, not compiled
    /// again; a new one is refused once the hub holds `max_templates` distinct ones.
    pub fn parse_selector(&self, text: &str) -> Result<Selector, SelectorRefused> {
        self.cap(None, text)?;
        Ok(self.inner.interner.parse(text)?)
    }

    /// Parses a Mercure 1.0 matcher (a `match…` parameter, or a grant's): see
    /// [`Interner::parse_matcher`]; a new URL pattern counts against `max_templates`.
    pub fn parse_matcher(&self, kind: MatchKind, text: &str) -> Result<Selector, SelectorRefused> {
        self.cap(Some(kind), text)?;
        self.parse_grant(kind, text)
    }

    /// Refuses a selector that would add a template or URL pattern past `max_templates`.
    fn cap(&self, kind: Option<MatchKind>, text: &str) -> Result<(), SelectorRefused> {
        let Inner {
            interner, config, ..
        } = &*self.inner;
        match interner.would_exceed(kind, text, config.max_templates) {
            true => Err(SelectorRefused::TooManyTemplates),
            false => Ok(()),
        }
    }

    /// Parses a token claim's selectors through the same shared templates; ones that cannot
    /// be parsed grant nothing. Claims come from tokens the hub verified, so no cap applies.
    pub fn parse_claim(&self, claim: &[String]) -> Arc<[Selector]> {
        claim
            .iter()
            .filter_map(|s| self.inner.interner.parse(s).ok())
            .collect()
    }

    /// Parses a Mercure 1.0 token's grant (a `{match, match_type}` of its authorization
    /// details) through the same shared patterns, as [`Hub::parse_matcher`] does but without
    /// the cap: like claims, grants come from tokens the hub verified.
    pub fn parse_grant(&self, kind: MatchKind, text: &str) -> Result<Selector, SelectorRefused> {
        let inner = &self.inner;
        Ok(inner.interner.parse_matcher(kind, text, &inner.hub_url)?)
    }

    /// Publishes an update. Returns its history position once it is durable and (with a
    /// history of its own) has been handed to every matching subscriber. With a shared history
    /// it returns once the store has it; every node's follower, this one's included, delivers
    /// it a moment later.
    pub async fn publish(&self, update: Update) -> Result<u64, PublishError> {
        self.inner.writer.publish(Arc::new(update)).await
    }

    /// Sends an update to the subscribers connected now, in order with published ones, without
    /// storing it: for state that the next such update replaces (presence counts), which must
    /// never push a published update out of the history. Returns once it is queued. Its id is
    /// replaced by one the hub makes, which carries the event's place in the order, so a client
    /// whose last event it was resumes exactly.
    pub async fn publish_live(&self, update: Update) -> Result<(), PublishError> {
        self.inner.writer.publish_live(Arc::new(update)).await
    }

    /// Registers a subscriber and returns its stream: history first if asked, then live updates.
    pub async fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        let subscribers = &self.inner.subscribers;
        subscribers.subscribe(request, Protocol::Draft07).await
    }

    /// A Mercure 1.0 subscription: as [`Hub::subscribe`], but announced and listed in 1.0's
    /// form, each of `request.selectors` under the matcher type at the same place in
    /// `match_types` (the type it was given with: `*` is the wildcard whatever its type, so its
    /// selector cannot tell).
    pub async fn subscribe_matchers(
        &self,
        request: SubscribeRequest,
        match_types: Vec<MatchKind>,
    ) -> Result<Subscription, SubscribeError> {
        let subscribers = &self.inner.subscribers;
        subscribers
            .subscribe(request, Protocol::Mercure1 { match_types })
            .await
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
        let (head, head_id) = self.inner.fanout.head();
        let history = self.inner.history.clone();
        let (updates, newest) = tokio::task::spawn_blocking(move || {
            history::newest_matching(&*history, head, limit, max_scan, |u| {
                !u.is_private() && selectors.iter().any(|s| s.matches_any(u.topics()))
            })
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
        let last_event_id = self.inner.fanout.last_id();
        let mut active = self.inner.fanout.active();
        if self.inner.history.shared().is_some() {
            let node = self.inner.node.clone();
            let others = ask_other_nodes(&self.inner.history, move |store| {
                store.other_subscriptions(node.name())
            })
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
            .inner
            .fanout
            .exact_counts(|topic| topic.starts_with(prefix) && filter(topic))
            .into_iter()
            .collect();
        if self.inner.history.shared().is_some() {
            let node = self.inner.node.clone();
            let prefix = prefix.to_owned();
            let others = ask_other_nodes(&self.inner.history, move |store| {
                store.other_counts(node.name(), &prefix)
            })
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
        self.inner.node.leads()
    }

    /// The hub's figures now.
    pub fn stats(&self) -> Stats {
        let (subscribers, distinct_selectors) = self.inner.fanout.counts();
        Stats {
            subscribers: subscribers as u64,
            history_updates: self.inner.history.len(),
            distinct_selectors: distinct_selectors as u64,
            templates: self.inner.interner.len() as u64,
            templates_compiled: self.inner.interner.compiled_total(),
            ..self.inner.counters.stats()
        }
    }

    /// Whether the history can be written now: the last write's outcome if it is recent, else a
    /// probe (a small durable write) through the writer. A writer that does not answer within
    /// five seconds is unhealthy too.
    pub async fn health(&self) -> Result<(), Unhealthy> {
        self.inner.health.check(|| self.inner.writer.probe()).await
    }

    /// Ends every subscription stream; publishing still works until [`Hub::shutdown`].
    pub fn close_streams(&self) {
        self.inner.shutdown.close_streams();
    }

    /// Ends every subscription stream, commits what is queued, stops the threads, and leaves
    /// the cluster's roster.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutdown.close_streams();
        // Sent after every publish already queued, so those are committed first.
        inner.writer.stop().await;
        inner.shutdown.stop_threads();
        let threads = std::mem::take(&mut *inner.threads.lock());
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Leave the roster now rather than when it expires: presence and the subscriptions API
        // stop counting this node at once, and the next node leads at once.
        let (history, node) = (inner.history.clone(), inner.node.clone());
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(store) = history.shared()
                && let Err(error) = store.membership().leave(node.name())
            {
                tracing::warn!("leaving the cluster's roster failed: {error}");
            }
        })
        .await;
    }
}
