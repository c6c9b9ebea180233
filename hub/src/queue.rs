//! A subscriber's queue: the events fanned out to it and not yet written.
//!
//! One producer (the fan-out) and one consumer (the subscriber's stream). A general channel
//! costs every subscriber its first block of slots up front (tokio's: 32 slots, about 1.6 KiB)
//! whether it ever receives a burst or not; this one is a `VecDeque` that grows only when
//! events wait, behind a lock that the two sides take for a moment each.

use crate::{mark::Mark, update::Update};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
};

/// One event in a subscriber's queue.
pub(crate) struct Queued {
    pub mark: Mark,
    pub bytes: Bytes,
    /// For a routed subscriber, the update (its route is computed by the subscriber's stream).
    pub update: Option<Arc<Update>>,
}

/// Capacity kept after a burst drains; more is given back.
const KEEP: usize = 16;

struct Shared {
    items: Mutex<VecDeque<Queued>>,
    capacity: usize,
    /// The stream, waiting for an event.
    waker: AtomicWaker,
    /// The sender was dropped (the subscriber was removed): the stream ends once drained.
    sender_gone: AtomicBool,
    /// The stream was dropped: sending fails.
    receiver_gone: AtomicBool,
}

/// A queue holding at most `capacity` events.
pub(crate) fn bounded(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        waker: AtomicWaker::new(),
        sender_gone: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// The fan-out's end.
pub(crate) struct Sender(Arc<Shared>);

/// Why an event could not be queued: either way the subscriber is dropped.
pub(crate) struct Full;

impl Sender {
    /// Queues `item` unless the queue is full or its stream is gone.
    pub(crate) fn try_send(&self, item: Queued) -> Result<(), Full> {
        let shared = &self.0;
        if shared.receiver_gone.load(Ordering::Acquire) {
            return Err(Full);
        }
        {
            let mut items = shared.items.lock();
            if items.len() >= shared.capacity {
                return Err(Full);
            }
            items.push_back(item);
        }
        shared.waker.wake();
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.sender_gone.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

/// The stream's end.
pub(crate) struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next event; `None` once the sender is gone and everything queued was taken.
    pub(crate) async fn recv(&mut self) -> Option<Queued> {
        poll_fn(|cx| {
            if let Some(item) = self.try_recv() {
                return Poll::Ready(Some(item));
            }
            self.0.waker.register(cx.waker());
            // Read before looking again: if the sender is gone, whatever it queued before it
            // went is seen by the look that follows.
            let gone = self.0.sender_gone.load(Ordering::Acquire);
            // Again after registering: an event queued in between would otherwise wait.
            match self.try_recv() {
                Some(item) => Poll::Ready(Some(item)),
                None if gone => Poll::Ready(None),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The next event if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Queued> {
        self.try_recv_if(|_| true)
    }

    /// The next event if one is queued and `take` accepts it; else it stays first.
    pub(crate) fn try_recv_if(&mut self, take: impl FnOnce(&Queued) -> bool) -> Option<Queued> {
        let mut items = self.0.items.lock();
        let item = items.pop_front_if(|item| take(item));
        if items.is_empty() && items.capacity() > KEEP {
            items.shrink_to(KEEP);
        }
        item
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
    }
}
