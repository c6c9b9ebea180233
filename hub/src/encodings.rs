//! The encoded bytes of stored updates, shared by every subscriber that holds them.
//!
//! A replay reads its updates from the history, so each replaying subscriber would otherwise
//! encode, and hold, a private copy of every large update it has not yet written: a few
//! hundred subscribers replaying a history of large updates and never reading would hold
//! hundreds of copies. Here an update's encoding is looked up by position while anyone holds
//! it (the fan-out's included), and made once otherwise. The map keeps only weak references:
//! what it costs when nobody holds an encoding is an entry, swept away as the map grows.

use crate::update::Update;
use bytes::Bytes;
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

/// Updates with less data are encoded afresh each time (they are copied into a
/// frame with others anyway).
pub(crate) const SHARE_MIN: usize = 4 * 1024;

struct Encoded {
    id: Box<str>,
    bytes: Vec<u8>,
}

/// A [`Bytes`] that keeps its [`Encoded`] alive, and with it the map's weak reference.
struct Owner(Arc<Encoded>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.0.bytes
    }
}

#[derive(Default)]
pub(crate) struct Encodings {
    inner: Mutex<Map>,
}

#[derive(Default)]
struct Map {
    by_position: HashMap<u64, Weak<Encoded>>,
    /// The map is swept of dead entries when it reaches this size.
    sweep_at: usize,
}

impl Encodings {
    /// The encoded bytes of the update stored at `position`: the ones already held, if any.
    pub(crate) fn get(&self, position: u64, update: &Update) -> Bytes {
        if update.data().len() < SHARE_MIN {
            return update.encode();
        }
        if let Some(held) = self.held(position, update) {
            return held;
        }
        let made = Arc::new(Encoded {
            id: update.id().into(),
            bytes: Vec::from(update.encode()),
        });
        let mut map = self.inner.lock();
        // Another subscriber may have made it meanwhile: use theirs, drop this one.
        if let Some(held) = map
            .by_position
            .get(&position)
            .and_then(Weak::upgrade)
            .filter(|held| *held.id == *update.id())
        {
            return Bytes::from_owner(Owner(held));
        }
        map.by_position.insert(position, Arc::downgrade(&made));
        if map.by_position.len() >= map.sweep_at {
            map.by_position.retain(|_, held| held.strong_count() > 0);
            map.sweep_at = (map.by_position.len() * 2).max(256);
        }
        Bytes::from_owner(Owner(made))
    }

    fn held(&self, position: u64, update: &Update) -> Option<Bytes> {
        let held = self
            .inner
            .lock()
            .by_position
            .get(&position)
            .and_then(Weak::upgrade)?;
        // Positions are never handed out twice, except by a shared history that lost its
        // updates: then the id tells the old update from the new.
        (*held.id == *update.id()).then(|| Bytes::from_owner(Owner(held)))
    }
}
