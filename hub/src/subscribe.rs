//! Subscribing: where a new subscriber's stream starts (the resume lookup), its registration
//! with the fan-out, and the guard, held by its stream, whose drop deregisters it and announces
//! that it left.

use crate::{
    error::SubscribeError,
    events::{Activity, subscription_update},
    fanout::Fanout,
    history::History,
    live_id,
    mark::{EARLIEST, Mark},
    queue,
    registry::Key,
    selector::Selector,
    stream::{StreamState, Streams, SubscriptionStream},
    subscriber::{Protocol, SubscriberInfo},
    update::new_id,
    writer::Writer,
};
use std::{sync::Arc, time::Instant};

/// What a subscriber asks for.
pub struct SubscribeRequest {
    pub selectors: Vec<Selector>,
    /// The `mercure.subscribe` claim; `None` for an anonymous subscriber.
    pub scope: Option<Arc<[Selector]>>,
    pub payload: Option<serde_json::Value>,
    /// The last event the client has: an id, [`EARLIEST`], or `None` for live updates only.
    pub last_event_id: Option<String>,
    /// The stream ends at this instant (the token's `exp`), or at the hub's maximum stream
    /// lifetime if that comes first.
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

/// Where a new subscription starts.
enum Resume {
    Live,
    Earliest,
    /// After this event, which the client knows by this id.
    After(Mark, String),
    /// History it asked for is not there: live, announced by the gap event.
    Gap,
}

/// What subscribing works with: one per hub.
pub(crate) struct Subscribers {
    pub history: Arc<dyn History>,
    pub fanout: Arc<Fanout>,
    /// Where subscription events are published.
    pub writer: Writer,
    pub streams: Arc<Streams>,
    /// Events a subscriber's queue holds.
    pub buffer: usize,
    /// Whether subscriptions opening and closing are announced.
    pub announce: bool,
}

impl Subscribers {
    /// Registers a subscriber and returns its stream: history first if asked, then live updates.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        request: SubscribeRequest,
        protocol: Protocol,
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
            id: new_id(),
            selectors,
            scope,
            payload,
            routed,
            protocol,
        });
        // Where the client is, found before registering (the id was published earlier).
        let requested = match last_event_id {
            None => Resume::Live,
            Some(id) if id == EARLIEST => Resume::Earliest,
            // A live-only event's id says where it was delivered; checked, it needs no lookup.
            Some(id) => match live_id::parse(&self.history.live_id_key(), &id) {
                Some(mark) => {
                    if self
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

        let (queue, receiver) = queue::bounded(self.buffer);
        let handoff = self.fanout.register(queue, info.clone());
        self.streams.counters.subscribed();
        let guard = Guard {
            subscribers: self.clone(),
            key: handoff.key,
            info: info.clone(),
        };
        self.announce(&info, Activity::Opened);

        let handoff_id = handoff.visible_id;
        let (from, header, gap) = match requested {
            Resume::Live => (None, handoff_id.clone(), false),
            Resume::Gap => (None, handoff_id.clone(), true),
            Resume::Earliest => (Some(Mark::default()), EARLIEST.to_owned(), false),
            Resume::After(mark, id) => (Some(mark), id, false),
        };
        // What the queue may hold that the client has: everything up to the handoff (sent from
        // history), or, when this node has not yet delivered as far as the client's last event
        // (it came from a node further ahead), everything up to that event.
        let handoff_mark = Mark::stored(handoff.position);
        let seen = from.map_or(handoff_mark, |from| from.max(handoff_mark));
        let stream = SubscriptionStream::new(StreamState {
            streams: self.streams.clone(),
            info: info.clone(),
            gap_first: gap,
            live_marker: info.routed,
            pending: None,
            replay: from
                .map(|from| from.position)
                .filter(|&after| after < handoff.position)
                .map(|after| (after, handoff.position)),
            seen,
            handoff_id,
            receiver,
            expires_at,
            ends_at: self.streams.ends_at(),
            ended: false,
            _guard: guard,
        });
        Ok(Subscription {
            subscriber_id: info.id.clone(),
            last_event_id: header,
            history_gap: gap,
            stream,
        })
    }

    /// Where a client whose last event was the stored update `id` resumes.
    async fn stored_resume(
        &self,
        info: &SubscriberInfo,
        id: String,
    ) -> Result<Resume, SubscribeError> {
        let history = self.history.clone();
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

    /// Announces each of the subscriber's selectors opening or closing. Never waits: when the
    /// writer's queue is full the event is dropped with a warning.
    fn announce(&self, info: &SubscriberInfo, activity: Activity) {
        if !self.announce || self.streams.shutdown.streams_closing() {
            return;
        }
        for (selector, kind) in info.matchers() {
            let update = subscription_update(info, selector, kind, activity);
            if !self.writer.try_publish_live(Arc::new(update)) {
                tracing::warn!("publish queue full: subscription event dropped");
            }
        }
    }
}

/// Removes the subscriber when its stream is dropped (the client left, or it was evicted).
struct Guard {
    subscribers: Arc<Subscribers>,
    key: Key,
    info: Arc<SubscriberInfo>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.subscribers.fanout.deregister(self.key);
        self.subscribers.announce(&self.info, Activity::Closed);
    }
}
