//! The subscriber registry: who is subscribed to what, indexed so that finding an update's
//! subscribers costs what they are worth, and where the live stream stands (the head).
//!
//! Exact selectors are found through a map from topic to subscribers. Templates (and `*`) are
//! kept once per distinct text, with the subscribers using them, and found through a
//! [`PrefixIndex`] on their literal prefix: a template whose prefix does not start the topic is
//! never tested. So one update costs a walk over its topics, the templates that could match, and
//! the subscribers that do.

use crate::{index::PrefixIndex, queue, roster::RosterLog, selector::Selector, update::Update};
use bytes::Bytes;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

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
    /// Whether each update is preceded by its route (see [`SubscriberInfo::route`]).
    pub(crate) routed: bool,
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

    /// The route event of `update` for a routed subscriber: the indices of the selectors it
    /// matches. Computed by the subscriber's own stream (outside the registry's lock), one test
    /// per selector: a routed subscription is one browser's, with its tabs' few selectors.
    pub(crate) fn route(&self, update: &Update) -> Bytes {
        let mut data = String::new();
        for (index, selector) in self.selectors.iter().enumerate() {
            if selector.matches_any(update.topics()) {
                if !data.is_empty() {
                    data.push(' ');
                }
                data.push_str(&index.to_string());
            }
        }
        crate::sse::Event {
            event: Some(crate::ROUTE_EVENT),
            data: &data,
            ..crate::sse::Event::default()
        }
        .encode()
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

/// An event's place in the one order every subscriber sees: a stored update's history
/// position (and `seq` 0), or for a live-only event the position of the stored update it
/// follows and its number among live events (from 1). Comparing marks says which came first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mark {
    pub position: u64,
    pub seq: u64,
}

impl Mark {
    pub(crate) fn stored(position: u64) -> Self {
        Mark { position, seq: 0 }
    }
}

/// One event in a subscriber's queue.
pub(crate) struct Queued {
    pub mark: Mark,
    pub bytes: Bytes,
    /// For a routed subscriber, the update (its route is computed by the subscriber's stream).
    pub update: Option<Arc<Update>>,
}

struct Subscriber {
    queue: queue::Sender,
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
    /// The head of a history with these newest updates, at `position` or the newest one's,
    /// whichever is later.
    pub(crate) fn new(heads: crate::history::Heads, position: u64) -> Self {
        let mut head = Head {
            position,
            last_public_id: heads.last_public.map(|s| s.update.id().to_owned()),
            ..Head::default()
        };
        if let Some(last) = heads.last {
            head.position = head.position.max(last.position);
            head.last = Some(last.update);
        }
        head
    }

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
    pub mark: Mark,
    pub update: &'a Arc<Update>,
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
    /// On a cluster: who came and went since the roster last told the other nodes. Kept here
    /// so that it changes exactly with the registry.
    pub roster: Option<RosterLog>,
}

/// One active subscription (a subscriber and one of its selectors), for the subscriptions API.
#[derive(Debug, Clone)]
pub struct ActiveSubscription {
    pub selector: String,
    /// The subscriber's id.
    pub subscriber: String,
    /// Its JSON-LD document, as the Mercure spec describes it.
    pub document: serde_json::Value,
}

impl ActiveSubscription {
    /// From a subscription's document (as another node published it); `None` if it lacks the
    /// fields every document has.
    pub(crate) fn from_document(document: serde_json::Value) -> Option<Self> {
        Some(ActiveSubscription {
            selector: document.get("topic")?.as_str()?.to_owned(),
            subscriber: document.get("subscriber")?.as_str()?.to_owned(),
            document,
        })
    }
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
            roster: None,
        }
    }

    pub(crate) fn insert(&mut self, queue: queue::Sender, info: Arc<SubscriberInfo>) -> Key {
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
        if let Some(roster) = &mut self.roster {
            roster.opened(&info);
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
        if let Some(roster) = &mut self.roster {
            roster.closed(&subscriber.info);
        }
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

    /// Every subscriber's information.
    pub(crate) fn infos(&self) -> impl Iterator<Item = &Arc<SubscriberInfo>> {
        self.subscribers.values().map(|s| &s.info)
    }

    /// Removes the subscribers `which` picks: their streams end, and their clients reconnect
    /// and resume.
    pub(crate) fn remove_where(&mut self, which: impl Fn(&SubscriberInfo) -> bool) -> usize {
        let keys: Vec<Key> = self
            .subscribers
            .iter()
            .filter(|(_, s)| which(&s.info))
            .map(|(key, _)| *key)
            .collect();
        keys.into_iter().filter(|&key| self.remove(key)).count()
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
                mark: event.mark,
                bytes: event.bytes.clone(),
                update: subscriber.info.routed.then(|| update.clone()),
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

    /// Every active subscription (one per subscriber and selector).
    pub(crate) fn active(&self) -> Vec<ActiveSubscription> {
        self.subscribers
            .values()
            .flat_map(|s| {
                s.info.selectors.iter().map(|selector| ActiveSubscription {
                    selector: selector.as_str().to_owned(),
                    subscriber: s.info.id.clone(),
                    document: crate::events::subscription_json(&s.info, selector.as_str(), true),
                })
            })
            .collect()
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
