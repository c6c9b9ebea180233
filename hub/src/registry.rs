//! The subscriber registry: who is subscribed to what, indexed so that finding an update's
//! subscribers costs what they are worth, and where the live stream stands (the head).
//!
//! Exact selectors are found through a map from topic to subscribers. Templates (and `*`) are
//! kept once per distinct text, with the subscribers using them, and found through a
//! [`PrefixIndex`] on their literal prefix: a template whose prefix does not start the topic is
//! never tested. So one update costs a walk over its topics, the templates that could match, and
//! the subscribers that do.

use crate::{index::PrefixIndex, selector::Selector, update::Update};
use bytes::Bytes;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::mpsc;

pub(crate) type Key = u64;

/// The `Last-Event-ID` value that asks for the whole retained history.
pub const EARLIEST: &str = "earliest";

/// Who a subscriber is, for authorization and the active-subscriptions API.
#[derive(Debug)]
pub struct SubscriberInfo {
    /// `urn:uuid:…`, unique per connection.
    pub(crate) id: String,
    pub(crate) selectors: Vec<Selector>,
    /// The `mercure.subscribe` claim: which private updates it may receive. `None`: anonymous.
    pub(crate) scope: Option<Arc<[Selector]>>,
    /// The `mercure.payload` claim, published with its subscription events.
    pub(crate) payload: Option<serde_json::Value>,
}

impl SubscriberInfo {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn payload(&self) -> Option<&serde_json::Value> {
        self.payload.as_ref()
    }

    pub(crate) fn may_receive(&self, update: &Update) -> bool {
        may_receive(self.scope.as_deref(), update)
    }

    pub(crate) fn wants(&self, update: &Update) -> bool {
        self.selectors
            .iter()
            .any(|selector| selector.matches_any(update.topics()))
    }

    /// The literal prefixes of its selectors: what it could ever select starts with one.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &str> + Clone {
        self.selectors.iter().map(Selector::literal_prefix)
    }
}

/// Whether a subscriber with this `mercure.subscribe` claim may receive `update`.
pub(crate) fn may_receive(scope: Option<&[Selector]>, update: &Update) -> bool {
    !update.is_private()
        || scope.is_some_and(|scope| scope.iter().any(|s| s.matches_any(update.topics())))
}

/// One event in a subscriber's queue.
pub(crate) struct Queued {
    /// The history position of the update, or for a live-only event the position of the last
    /// stored update before it.
    pub position: u64,
    /// Live-only events are never in the history, so a replay never sent them.
    pub live: bool,
    pub bytes: Bytes,
}

struct Subscriber {
    queue: mpsc::Sender<Queued>,
    info: Arc<SubscriberInfo>,
    /// The last fan-out round that queued to it: an update matching several selectors is
    /// queued once.
    last_round: AtomicU64,
}

struct Pattern {
    selector: Selector,
    keys: HashSet<Key>,
}

/// Where the live stream stands: every update up to `position` has been fanned out.
#[derive(Default)]
pub(crate) struct Head {
    pub position: u64,
    pub last: Option<Arc<Update>>,
    /// The newest public update's id: what a subscriber that may not see `last` is told.
    pub last_public_id: Option<String>,
}

impl Head {
    /// The id to tell a subscriber with this claim as "where the stream stands": the newest
    /// update if it may see it, else the newest public one, so that no private id leaks. A
    /// resume from it replays only what this subscriber may see, so it misses nothing either.
    pub(crate) fn visible_id(&self, scope: Option<&[Selector]>) -> String {
        match &self.last {
            Some(last) if may_receive(scope, last) => last.id().to_owned(),
            _ => self
                .last_public_id
                .clone()
                .unwrap_or_else(|| EARLIEST.to_owned()),
        }
    }

    pub(crate) fn advance(&mut self, position: u64, update: &Arc<Update>) {
        self.position = position;
        if !update.is_private() {
            self.last_public_id = Some(update.id().to_owned());
        }
        self.last = Some(update.clone());
    }
}

/// An event being fanned out.
pub(crate) struct Delivery<'a> {
    pub round: u64,
    pub position: u64,
    pub live: bool,
    pub update: &'a Update,
    pub bytes: &'a Bytes,
}

/// What one fan-out did.
#[derive(Default)]
pub(crate) struct FanOut {
    pub delivered: u64,
    pub template_tests: u64,
    /// Subscribers whose queue was full or closed.
    pub evict: Vec<Key>,
}

pub(crate) struct Registry {
    next_key: Key,
    subscribers: HashMap<Key, Subscriber>,
    exact: HashMap<Arc<str>, HashSet<Key>>,
    patterns: HashMap<Arc<str>, Pattern>,
    prefixes: PrefixIndex<Arc<str>>,
    pub head: Head,
}

/// One active subscription (a subscriber and one of its selectors), for the subscriptions API.
#[derive(Debug, Clone)]
pub struct ActiveSubscription {
    pub subscriber: Arc<SubscriberInfo>,
    pub selector: String,
}

impl Registry {
    pub(crate) fn new(head: Head) -> Self {
        Self {
            next_key: 0,
            subscribers: HashMap::new(),
            exact: HashMap::new(),
            patterns: HashMap::new(),
            prefixes: PrefixIndex::new(),
            head,
        }
    }

    pub(crate) fn insert(&mut self, queue: mpsc::Sender<Queued>, info: Arc<SubscriberInfo>) -> Key {
        let key = self.next_key;
        self.next_key += 1;
        for selector in &info.selectors {
            match selector {
                Selector::Exact(topic) => {
                    self.exact.entry(topic.clone()).or_default().insert(key);
                }
                Selector::Any | Selector::Template(_) => {
                    let name: Arc<str> = selector.as_str().into();
                    let pattern = self.patterns.entry(name.clone()).or_insert_with(|| {
                        self.prefixes.insert(selector.literal_prefix(), name);
                        Pattern {
                            selector: selector.clone(),
                            keys: HashSet::new(),
                        }
                    });
                    pattern.keys.insert(key);
                }
            }
        }
        self.subscribers.insert(
            key,
            Subscriber {
                queue,
                info,
                last_round: AtomicU64::new(0),
            },
        );
        key
    }

    pub(crate) fn remove(&mut self, key: Key) -> bool {
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
                    if let Some(pattern) = self.patterns.get_mut(name)
                        && pattern.keys.remove(&key)
                        && pattern.keys.is_empty()
                        && let Some((name, _)) = self.patterns.remove_entry(name)
                    {
                        self.prefixes.remove(selector.literal_prefix(), &name);
                    }
                }
            }
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Distinct selectors in the index: what one update's matching costs, at most.
    pub(crate) fn distinct_selectors(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }

    /// Queues the event for every subscriber that selected it and may see it.
    pub(crate) fn fan_out(&self, event: &Delivery<'_>) -> FanOut {
        let update = event.update;
        let mut out = FanOut::default();
        // Private updates: whether a claim allows it is decided once per distinct claim.
        let mut allowed: HashMap<*const [Selector], bool> = HashMap::new();
        let mut deliver = |key: &Key, out: &mut FanOut| {
            let Some(subscriber) = self.subscribers.get(key) else {
                return;
            };
            if subscriber.last_round.swap(event.round, Ordering::Relaxed) == event.round {
                return;
            }
            if update.is_private() {
                let Some(scope) = &subscriber.info.scope else {
                    return;
                };
                let ok = *allowed
                    .entry(Arc::as_ptr(scope))
                    .or_insert_with(|| may_receive(Some(scope), update));
                if !ok {
                    return;
                }
            }
            let queued = Queued {
                position: event.position,
                live: event.live,
                bytes: event.bytes.clone(),
            };
            match subscriber.queue.try_send(queued) {
                Ok(()) => out.delivered += 1,
                Err(_) => out.evict.push(*key),
            }
        };
        for topic in update.topics() {
            if let Some(keys) = self.exact.get(topic) {
                keys.iter().for_each(|key| deliver(key, &mut out));
            }
            let mut tests = 0;
            self.prefixes.candidates(topic, |name| {
                let Some(pattern) = self.patterns.get(name) else {
                    return;
                };
                tests += 1;
                if pattern.selector.matches(topic) {
                    pattern.keys.iter().for_each(|key| deliver(key, &mut out));
                }
            });
            out.template_tests += tests;
        }
        out
    }

    /// Every active subscription (one per subscriber and selector), sorted.
    pub(crate) fn active(&self) -> Vec<ActiveSubscription> {
        let mut list: Vec<ActiveSubscription> = self
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
        list
    }

    /// Subscribers per exact-topic selector, for the topics `filter` accepts. Costs one pass over
    /// the distinct exact selectors, not over subscribers.
    pub(crate) fn exact_counts(&self, filter: impl Fn(&str) -> bool) -> Vec<(String, usize)> {
        self.exact
            .iter()
            .filter(|(topic, _)| filter(topic))
            .map(|(topic, keys)| (topic.to_string(), keys.len()))
            .collect()
    }
}
