//! A subscription's stream: history first, then live, with no gap and no duplicate — or, when
//! history it needs is gone, the gap event before the hole, never a silent skip.
//!
//! A stream is built from what it needs, not from the hub: its subscriber's queue, a replay
//! plan, and the [`Streams`] every stream shares (the history, the shared encodings, the
//! heartbeat, the shutdown). What must happen when it ends (leaving the registry) is a guard it
//! holds and drops with itself.
//!
//! # The handoff from history to live
//!
//! The [fan-out](crate::fanout) delivers while holding the registry's lock and records the last
//! position it delivered (the head). A new subscriber registers under the same lock and reads
//! that position, `P`, at the same moment. Every update up to `P` was delivered before it existed (so
//! it must come from history), every update after `P` will be put in its queue. It replays
//! history up to `P`, then reads its queue, dropping stored events at or below `P`.
//!
//! # Holes
//!
//! Pruning may overtake a replay. The history publishes how far pruning reaches
//! ([`Horizon`](crate::Horizon)) *before* it deletes, and the stream checks it *after* each read:
//! if it has passed the position the read started from, rows the subscriber could want may be
//! missing, so the stream sends the gap event and continues live. A read that fails (a corrupt
//! or unreadable database) does the same, so the client learns it must reload its state.

use crate::{
    encodings::Encodings,
    history::History,
    mark::Mark,
    queue::{self, Queued},
    shutdown::Shutdown,
    sse,
    stats::Counters,
    subscriber::SubscriberInfo,
};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// The named event a subscriber receives when history it asked for is not there (an unknown or
/// pruned `Last-Event-ID`, pruning that overtook the replay, an unreadable history): the hub
/// cannot send what it missed, so the client should reload its state. Its data is the id the
/// stream continues after. Plain `onmessage` handlers ignore it; listen with
/// `addEventListener("tidings-history-gap", …)`.
pub const HISTORY_GAP_EVENT: &str = "tidings-history-gap";

/// The named event a routed subscription receives once, when its replay is done (at once if it
/// has none): everything up to the moment it subscribed has been sent, what follows is live.
/// No id; its data is the id a new subscription resumes from to get what follows (the head's
/// visible id at the handoff, as for the gap event). A client that stands in for another
/// connection until that one covers its selectors knows from it that it has nothing older left
/// to wait for; a client that subscribed live learns where it stands.
pub const LIVE_EVENT: &str = "tidings-live";

/// The reconnection delay a stream asks for when it ends at its maximum lifetime, in
/// milliseconds: short, since the client lost nothing and is welcome back at once, but not so
/// short that a client which keeps it (a browser keeps the last `retry:` for every later
/// reconnection) would hammer a hub that is down.
pub const LIFETIME_RETRY_MS: u64 = 1000;

/// Updates a replay reads at once, at most.
const REPLAY_ROWS: usize = 512;
/// What one frame (the bytes handed to the connection at once) holds at most, counting the
/// data and ids of the updates in it; one larger update is a frame of its own, in the encoded
/// bytes every subscriber holding it shares. A subscriber that does not read holds one frame
/// (the connection waits to write it) and its queue, whose events the fan-out shares.
pub(crate) const FRAME_BYTES: usize = 64 * 1024;
/// How long a replay waits before asking an unreachable history again.
const REPLAY_RETRY: Duration = Duration::from_secs(1);
/// Queued events written together at most, so one write stays a reasonable size (and within
/// [`FRAME_BYTES`]).
const MAX_COALESCE: usize = 64;

/// The events of one subscription, as chunks of SSE bytes ready to write.
pub struct SubscriptionStream {
    inner: Pin<Box<dyn Stream<Item = Bytes> + Send>>,
}

/// What every subscription stream reads: one of these per hub.
pub(crate) struct Streams {
    pub history: Arc<dyn History>,
    /// The encoded bytes of large stored updates, shared with the fan-out.
    pub encodings: Arc<Encodings>,
    pub counters: Arc<Counters>,
    pub heartbeat: Option<Duration>,
    /// How long a stream may live (see [`HubConfig`](crate::HubConfig)).
    pub max_lifetime: Option<Duration>,
    pub shutdown: Arc<Shutdown>,
}

impl Streams {
    /// When a stream opening now is to end: at its maximum lifetime less up to a tenth of it,
    /// drawn at random, so that streams opened together (after a restart, say) end spread out.
    pub(crate) fn ends_at(&self) -> Option<Instant> {
        self.max_lifetime.map(|lifetime| {
            let spread = lifetime.mul_f64(rand::random::<f64>() / 10.0);
            Instant::now() + (lifetime - spread)
        })
    }
}

pub(crate) struct StreamState<G> {
    pub streams: Arc<Streams>,
    pub info: Arc<SubscriberInfo>,
    /// Starts with the gap event.
    pub gap_first: bool,
    /// Sends [`LIVE_EVENT`] once the replay is done (routed subscriptions).
    pub live_marker: bool,
    /// An update's shared bytes, due right after the route event just returned.
    pub pending: Option<Bytes>,
    /// History still to replay: positions in `(after, until]`.
    pub replay: Option<(u64, u64)>,
    /// Events in the queue up to this mark the client has, or gets from history.
    pub seen: Mark,
    /// The visible id of the head at the handoff: what the gap event says the stream continues
    /// after.
    pub handoff_id: String,
    pub receiver: queue::Receiver,
    /// The token's `exp`: the stream ends there, with no more to say (the token is no good).
    pub expires_at: Option<Instant>,
    /// The stream's maximum lifetime: it ends there, after a `retry:` field, unless its token
    /// expires first.
    pub ends_at: Option<Instant>,
    /// The `retry:` field was sent: the stream is over.
    pub ended: bool,
    /// Held for its `Drop`: the subscriber leaves the registry with its stream.
    pub _guard: G,
}

pub(crate) fn gap_event(continues_after: &str) -> Bytes {
    sse::Event {
        event: Some(HISTORY_GAP_EVENT),
        data: continues_after,
        ..sse::Event::default()
    }
    .encode()
}

impl SubscriptionStream {
    pub(crate) fn new<G: Send + 'static>(state: StreamState<G>) -> Self {
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

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl<G> StreamState<G> {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if let Some(bytes) = self.pending.take() {
            return Some(bytes);
        }
        if std::mem::take(&mut self.gap_first) {
            return Some(self.gap());
        }
        while let Some((after, until)) = self.replay {
            // A replay does not wait where the live stream does: the token's expiry and the
            // stream's lifetime are looked at before each read (a reader can take its time).
            if let Some(last) = self.deadline_passed() {
                return last;
            }
            let history = self.streams.history.clone();
            let read = tokio::select! {
                () = self.streams.shutdown.streams_closed() => return None,
                read = tokio::task::spawn_blocking(move || {
                    let read = history.read_capped(after, until, REPLAY_ROWS, FRAME_BYTES);
                    (read, history.horizon())
                }) => read,
            };
            let stored = match read {
                Ok((Ok(stored), horizon)) if !horizon.hides_after(after, self.info.prefixes()) => {
                    stored
                }
                Ok((Ok(_), _)) => {
                    tracing::info!(subscriber = %self.info.id(), "pruning overtook a replay");
                    return Some(self.abandon_replay());
                }
                // The store is down for now (Redis restarting): nothing says the updates are
                // gone, so wait for it, keeping the connection alive, rather than declare a gap.
                Ok((Err(error), _)) if error.is_unavailable() => {
                    tracing::warn!("history replay waits: {error}");
                    tokio::select! {
                        () = self.streams.shutdown.streams_closed() => return None,
                        () = tokio::time::sleep(REPLAY_RETRY) => {}
                    }
                    return Some(sse::comment("waiting for the history"));
                }
                Ok((Err(error), _)) => {
                    tracing::error!("history replay failed: {error}");
                    return Some(self.abandon_replay());
                }
                Err(_) => return None,
            };
            // Read short (capped in bytes), or up to `until`: read on until it gives nothing.
            self.replay = match stored.last() {
                Some(last) if last.position < until => Some((last.position, until)),
                _ => None,
            };
            let wanted: Vec<_> = stored
                .iter()
                .filter(|s| self.info.wants(&s.update) && self.info.may_receive(&s.update))
                .collect();
            match wanted.as_slice() {
                [] => {}
                [one] => {
                    let bytes = self.streams.encodings.get(one.position, &one.update);
                    if !self.info.routed {
                        return Some(bytes);
                    }
                    self.pending = Some(bytes);
                    return Some(self.info.route(&one.update));
                }
                many => {
                    let mut chunk = BytesMut::new();
                    for item in many {
                        if self.info.routed {
                            chunk.extend_from_slice(&self.info.route(&item.update));
                        }
                        item.update.encode_into(&mut chunk);
                    }
                    return Some(chunk.freeze());
                }
            }
        }
        if std::mem::take(&mut self.live_marker) {
            return Some(
                sse::Event {
                    event: Some(LIVE_EVENT),
                    data: &self.handoff_id,
                    ..sse::Event::default()
                }
                .encode(),
            );
        }
        self.next_live().await
    }

    /// Whether the token has expired (`Some(None)`: the stream ends plainly) or the stream has
    /// lived its time (`Some(Some(retry))`: it ends after the `retry:` field, and the client
    /// resumes from its last id).
    fn deadline_passed(&mut self) -> Option<Option<Bytes>> {
        let now = Instant::now();
        if self.expires_at.is_some_and(|at| at <= now) {
            return Some(None);
        }
        if self.ends_at.is_some_and(|at| at <= now) {
            self.ended = true;
            return Some(Some(sse::retry(LIFETIME_RETRY_MS)));
        }
        None
    }

    /// The history cannot give the rest: say so, then continue live from the handoff.
    fn abandon_replay(&mut self) -> Bytes {
        self.replay = None;
        self.gap()
    }

    fn gap(&self) -> Bytes {
        self.streams.counters.gap();
        gap_event(&self.handoff_id)
    }

    async fn next_live(&mut self) -> Option<Bytes> {
        loop {
            let heartbeat = self.streams.heartbeat;
            let expiry = self.expires_at;
            let end = self.ends_at;
            let item = tokio::select! {
                biased;
                () = self.streams.shutdown.streams_closed() => return None,
                () = sleep_until(expiry) => return None,
                () = sleep_until(end) => {
                    // Whatever it was sent, the client resumes after: nothing is lost.
                    self.ended = true;
                    return Some(sse::retry(LIFETIME_RETRY_MS));
                }
                item = self.receiver.recv() => item,
                () = sleep_for(heartbeat) => return Some(sse::comment("heartbeat")),
            };
            // `None`: the hub dropped this subscriber (evicted as too slow).
            let first = item?;
            if let Some(update) = &first.update {
                // Routed: its route, then its shared bytes, one event at a time.
                if self.is_new(&first) {
                    self.pending = Some(first.bytes);
                    return Some(self.info.route(update));
                }
                continue;
            }
            let mut chunk: Option<BytesMut> = None;
            let mut single = self.is_new(&first).then_some(first.bytes);
            let mut size = single.as_ref().map_or(0, Bytes::len);
            for _ in 0..MAX_COALESCE {
                // Not past a frame's worth: a large event waits for a frame of its own.
                let Some(more) = self
                    .receiver
                    .try_recv_if(|next| size == 0 || size + next.bytes.len() <= FRAME_BYTES)
                else {
                    break;
                };
                if !self.is_new(&more) {
                    continue;
                }
                size += more.bytes.len();
                if size == more.bytes.len() {
                    single = Some(more.bytes);
                    continue;
                }
                let buf = chunk.get_or_insert_with(|| {
                    let mut buf = BytesMut::new();
                    if let Some(first) = single.take() {
                        buf.extend_from_slice(&first);
                    }
                    buf
                });
                buf.extend_from_slice(&more.bytes);
            }
            match (chunk, single) {
                (Some(buf), _) => return Some(buf.freeze()),
                (None, Some(one)) => return Some(one),
                (None, None) => continue,
            }
        }
    }

    /// Whether a queued event is one the client does not have yet.
    fn is_new(&self, queued: &Queued) -> bool {
        queued.mark > self.seen
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
