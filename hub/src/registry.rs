//! The subscriber registry: who is subscribed to what, indexed so that finding an update's
//! subscribers costs what they are worth; where the live stream stands (the head); and on a
//! cluster, who came and went since the roster last told the other nodes. All of it changes
//! together, under the one lock the [fan-out](crate::fanout) holds; this module takes no lock.
//!
//! Exact selectors are found through a map from topic to subscribers. Templates (and `*`) are
//! kept once per distinct text, with the subscribers using them, and found through a
//! [`PrefixIndex`] on their literal prefix: a template whose prefix does not start the topic is
//! never tested. So one update costs a walk over its topics, the templates that could match, and
//! the subscribers that do.

use crate::{
    history::Heads,
    index::PrefixIndex,
    mark::{EARLIEST, Mark},
    queue::{self, Queued},
    selector::Selector,
    subscriber::{SubscriberInfo, may_receive},
    update::Update,
};
use bytes::Bytes;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

pub(crate) type Key = u64;

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
    pub(crate) fn new(heads: Heads, position: u64) -> Self {
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
                Selector::Any | Selector::Template(_) | Selector::UrlPattern(_) => {
                    let name: Arc<str> = selector.index_key().into();
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
                Selector::Any | Selector::Template(_) | Selector::UrlPattern(_) => {
                    let name = selector.index_key();
                    if let Some(pattern) = self.patterns.get_mut(&*name)
                        && pattern.keys.remove(&key)
                        && pattern.keys.is_empty()
                        && let Some((name, _)) = self.patterns.remove_entry(&*name)
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

/// Changes the log holds at most; past it the next publish sends everything instead.
const MAX_LOG: usize = 100_000;

/// On a cluster: subscribers opened and closed since the roster last published.
#[derive(Default)]
pub(crate) struct RosterLog {
    pub opened: Vec<Arc<SubscriberInfo>>,
    pub closed: Vec<Arc<SubscriberInfo>>,
    /// Send everything next time.
    pub full: bool,
}

impl RosterLog {
    /// A log that asks for everything to be sent next time.
    pub(crate) fn everything() -> Self {
        RosterLog {
            full: true,
            ..RosterLog::default()
        }
    }

    fn opened(&mut self, info: &Arc<SubscriberInfo>) {
        if !self.full {
            self.opened.push(info.clone());
            self.overflow_check();
        }
    }

    fn closed(&mut self, info: &Arc<SubscriberInfo>) {
        if !self.full {
            self.closed.push(info.clone());
            self.overflow_check();
        }
    }

    fn overflow_check(&mut self) {
        if self.opened.len() + self.closed.len() > MAX_LOG {
            *self = RosterLog::everything();
        }
    }
}
