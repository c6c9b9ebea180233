//! The fan-out: the one owner of the subscriber registry's lock. Everything that reads or
//! changes who is subscribed, or where the live stream stands, goes through a method here, so
//! the lock never leaves this file (as mini-redis keeps its `Db`'s lock in `db.rs`).
//!
//! It delivers an event to every subscriber that selected it and may see it: a stored update
//! moves the head and is fanned out under one hold of the lock (all the history-to-live handoff
//! needs, see [`stream`](crate::stream)); a live-only event gets its [mark](Mark), recorded
//! before it is fanned out, and an id that carries it ([`live_id`](crate::live_id)). Each
//! delivery is a round: a subscriber matched by several selectors is queued once a round. A
//! subscriber whose queue is full is evicted in the same hold.
//!
//! The lock is taken per event, not per batch: a subscriber registering waits for one fan-out
//! at most, never for a thousand.

use crate::{
    encodings::Encodings,
    events::ActiveSubscription,
    history::{Heads, History},
    live_id,
    mark::{EARLIEST, Mark},
    queue,
    registry::{Delivery, Head, Key, Registry, RosterLog},
    stats::Counters,
    subscriber::SubscriberInfo,
    update::Update,
};
use bytes::Bytes;
use parking_lot::{RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

pub(crate) struct Fanout {
    registry: RwLock<Registry>,
    /// Fan-out rounds so far.
    round: AtomicU64,
    /// Live-only events numbered so far, when this process is the history's only writer.
    live_seq: AtomicU64,
    /// For the ids of live-only events (its key).
    history: Arc<dyn History>,
    /// The encoded bytes of large stored updates, shared with the replays.
    encodings: Arc<Encodings>,
    counters: Arc<Counters>,
}

/// Where a new subscriber's stream is handed from history to live.
pub(crate) struct Handoff {
    pub key: Key,
    /// Every stored update up to here was delivered before the subscriber registered.
    pub position: u64,
    /// The head's id as this subscriber may see it (see [`Head::visible_id`]).
    pub visible_id: String,
}

/// What the roster takes from the registry to tell the other nodes.
pub(crate) enum RosterTake {
    /// Everyone subscribed now, and the subscribers per exact topic.
    Everything(Vec<Arc<SubscriberInfo>>, Vec<(String, usize)>),
    /// Who came and went since the last take.
    Changes(RosterLog),
}

impl Fanout {
    /// A fan-out whose head stands at `position` or at the newest of `heads`, whichever is
    /// later; with a roster log for a cluster.
    pub(crate) fn new(
        heads: Heads,
        position: u64,
        clustered: bool,
        history: Arc<dyn History>,
        encodings: Arc<Encodings>,
        counters: Arc<Counters>,
    ) -> Self {
        let mut registry = Registry::new(Head::new(heads, position));
        if clustered {
            registry.roster = Some(RosterLog::everything());
        }
        Fanout {
            registry: RwLock::new(registry),
            round: AtomicU64::new(0),
            live_seq: AtomicU64::new(history.live_seq_start()),
            history,
            encodings,
            counters,
        }
    }

    /// Fans a stored update out, moving the head under the same hold of the lock.
    pub(crate) fn deliver_stored(&self, position: u64, update: &Arc<Update>) {
        let bytes = self.encodings.get(position, update);
        let mut registry = self.registry.write();
        registry.head.advance(position, update);
        let registry = RwLockWriteGuard::downgrade_to_upgradable(registry);
        self.fan_out(registry, Mark::stored(position), update, &bytes);
    }

    /// Fans a live-only event out right after the head (this process being the history's only
    /// writer): numbered first, then delivered.
    pub(crate) fn deliver_live_next(&self, update: &Arc<Update>) {
        let seq = self.live_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let registry = self.registry.upgradable_read();
        let mark = Mark {
            position: registry.head.position,
            seq,
        };
        self.fan_out_live(registry, mark, update);
    }

    /// Fans a live-only event out at `mark` (as a shared history placed it).
    pub(crate) fn deliver_live(&self, mark: Mark, update: &Arc<Update>) {
        self.fan_out_live(self.registry.upgradable_read(), mark, update);
    }

    /// Under an id that says where it was delivered: a client resuming from it resumes exactly
    /// there.
    fn fan_out_live(
        &self,
        registry: RwLockUpgradableReadGuard<'_, Registry>,
        mark: Mark,
        update: &Arc<Update>,
    ) {
        let id = live_id::make(&self.history.live_id_key(), mark);
        let bytes = update.encode_with_id(&id);
        self.fan_out(registry, mark, update, &bytes);
    }

    fn fan_out(
        &self,
        registry: RwLockUpgradableReadGuard<'_, Registry>,
        mark: Mark,
        update: &Arc<Update>,
        bytes: &Bytes,
    ) {
        let round = self.round.fetch_add(1, Ordering::Relaxed) + 1;
        let out = registry.fan_out(&Delivery {
            round,
            mark,
            update,
            bytes,
        });
        self.counters.fanned_out(out.delivered, out.template_tests);
        if !out.evict.is_empty() {
            let mut registry = RwLockUpgradableReadGuard::upgrade(registry);
            for key in out.evict {
                if registry.remove(key) {
                    self.counters.evicted();
                }
            }
        }
    }

    /// Registers a subscriber: its key, and where its stream is handed from history to live,
    /// read in the same critical section.
    pub(crate) fn register(&self, queue: queue::Sender, info: Arc<SubscriberInfo>) -> Handoff {
        let mut registry = self.registry.write();
        let visible_id = registry.head.visible_id(info.scope.as_deref());
        let key = registry.insert(queue, info);
        Handoff {
            key,
            position: registry.head.position,
            visible_id,
        }
    }

    pub(crate) fn deregister(&self, key: Key) {
        self.registry.write().remove(key);
    }

    /// Ends the streams of the subscribers `which` picks (their clients reconnect and resume);
    /// how many.
    pub(crate) fn end_streams(&self, which: impl Fn(&SubscriberInfo) -> bool) -> usize {
        self.registry.write().remove_where(which)
    }

    /// Moves the head to `position` or the newest of `heads` (a shared history that lost
    /// updates, followed afresh) and ends every stream; the new head's position, and how many
    /// streams ended.
    pub(crate) fn reset(&self, heads: Heads, position: u64) -> (u64, usize) {
        let head = Head::new(heads, position);
        let position = head.position;
        let mut registry = self.registry.write();
        registry.head = head;
        (position, registry.remove_where(|_| true))
    }

    /// The head's position and its id as an anonymous subscriber may see it.
    pub(crate) fn head(&self) -> (u64, String) {
        let registry = self.registry.read();
        (registry.head.position, registry.head.visible_id(None))
    }

    /// The id of the last update fanned out, public or not, or [`EARLIEST`].
    pub(crate) fn last_id(&self) -> String {
        let registry = self.registry.read();
        let last = registry.head.last.as_ref();
        last.map_or_else(|| EARLIEST.to_owned(), |u| u.id().to_owned())
    }

    /// Subscribers now, and distinct selectors in the index.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let registry = self.registry.read();
        (registry.len(), registry.distinct_selectors())
    }

    /// Every active subscription (one per subscriber and selector); the documents are written
    /// outside the lock.
    pub(crate) fn active(&self) -> Vec<ActiveSubscription> {
        let infos: Vec<Arc<SubscriberInfo>> = self.registry.read().infos().cloned().collect();
        infos
            .iter()
            .flat_map(|info| ActiveSubscription::of(info))
            .collect()
    }

    /// Subscribers per exact-topic selector, for the topics `filter` accepts.
    pub(crate) fn exact_counts(&self, filter: impl Fn(&str) -> bool) -> Vec<(String, usize)> {
        self.registry.read().exact_counts(filter)
    }

    /// For the roster: everything when `everything` (or when the log asks for it), else the
    /// changes since the last take. Under the lock, so the log restarts exactly where the take
    /// ends. `None` without a roster.
    pub(crate) fn take_roster(&self, everything: bool) -> Option<RosterTake> {
        let mut registry = self.registry.write();
        let log = registry.roster.as_mut()?;
        Some(if log.full || everything {
            *log = RosterLog::default();
            RosterTake::Everything(
                registry.infos().cloned().collect(),
                registry.exact_counts(|_| true),
            )
        } else {
            RosterTake::Changes(std::mem::take(log))
        })
    }

    /// What the roster published may be gone: send everything next time.
    pub(crate) fn resend_roster(&self) {
        if let Some(log) = self.registry.write().roster.as_mut() {
            *log = RosterLog::everything();
        }
    }
}
