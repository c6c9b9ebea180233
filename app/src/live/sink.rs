//! Where one subscription's events land: its signals, each id once.

use super::{HISTORY_GAP_EVENT, Live, LiveEvent, LiveOptions, LiveStatus};
use leptos::prelude::*;
use std::{
    cell::RefCell,
    collections::{HashSet, VecDeque},
};

/// One `use_live` call's end of the connection, whichever connection feeds it.
pub struct Sink {
    live: Live,
    capacity: usize,
    keep_on_gap: bool,
    /// Recently applied ids, bounded like the list: an event is applied once, whichever
    /// connection (its own, a leader tab's, a replay after a takeover) brought it.
    seen: RefCell<(HashSet<String>, VecDeque<String>)>,
}

impl Sink {
    pub fn new(options: &LiveOptions, live: Live) -> Self {
        Self {
            live,
            capacity: options.capacity.max(1),
            keep_on_gap: options.keep_on_gap,
            seen: RefCell::default(),
        }
    }

    pub fn status(&self, status: LiveStatus) {
        if self.live.status.get_untracked() != status {
            self.live.status.set(status);
        }
    }

    /// Applies an event: a gap reloads the page (unless the options keep it, then it is shown);
    /// an id already applied is dropped.
    pub fn event(&self, event_type: &str, id: &str, data: &str) {
        if event_type == HISTORY_GAP_EVENT && !self.keep_on_gap {
            super::gap::reload_once();
            return;
        }
        if !id.is_empty() && event_type != HISTORY_GAP_EVENT {
            let mut seen = self.seen.borrow_mut();
            if !seen.0.insert(id.to_owned()) {
                return;
            }
            seen.1.push_back(id.to_owned());
            if seen.1.len() > self.capacity * 2
                && let Some(old) = seen.1.pop_front()
            {
                seen.0.remove(&old);
            }
        }
        let event = LiveEvent {
            id: id.to_owned(),
            event_type: event_type.to_owned(),
            data: data.to_owned(),
            received_ms: js_sys::Date::now(),
        };
        let capacity = self.capacity;
        self.live.events.update(|list| {
            list.push(event);
            if list.len() > capacity {
                let excess = list.len() - capacity;
                list.drain(..excess);
            }
        });
    }
}
