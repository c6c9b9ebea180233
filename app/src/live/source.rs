//! One `EventSource` to the hub that comes back by itself.
//!
//! The browser reconnects a dropped stream by itself (sending `Last-Event-ID`), but gives up for
//! good on an answer other than 200. Then this opens the stream again, from the last stored id it
//! delivered, after a pause that doubles from 1 s to 30 s (between half and all of it, so the
//! pages of a deployment do not come back at once), and at once when the tab becomes visible or
//! the network comes back. The status counts the pause down.

use super::{HISTORY_GAP_EVENT, LIVE_EVENT, LiveOptions, LiveStatus, ROUTE_EVENT, hub_url_of};
use crate::event_source::{EventStream, ReadyState};
use leptos::prelude::*;
use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

/// The first pause before reopening a stream the browser gave up on, and the longest.
const FIRST_RETRY_MS: f64 = 1_000.0;
const LAST_RETRY_MS: f64 = 30_000.0;

/// What a stream subscribes to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub selectors: Vec<String>,
    /// Named event types listened to besides `message` (and the gap event).
    pub named: Vec<String>,
    /// Types whose ids are not stored by the hub: never where a new connection resumes from.
    pub live_only: Vec<String>,
    pub token: Option<String>,
    /// A routed subscription: each update comes after a [`ROUTE_EVENT`].
    pub routed: bool,
}

impl Target {
    pub fn of(options: &LiveOptions, routed: bool) -> Self {
        Self {
            selectors: options.selectors.clone(),
            named: options.named.iter().map(|s| (*s).to_owned()).collect(),
            live_only: options.live_only.iter().map(|s| (*s).to_owned()).collect(),
            token: options.token().map(str::to_owned),
            routed,
        }
    }
}

/// An event's handler: `(type, id, data, stored)`, `stored` saying whether the id is where the
/// stream would resume from.
type OnEvent = Box<dyn Fn(&str, &str, &str, bool)>;
type OnStatus = Box<dyn Fn(LiveStatus)>;

struct Inner {
    target: RefCell<Target>,
    /// The newest id the hub stores that this stream delivered (at first the one it started
    /// after): where it resumes from.
    stored_id: RefCell<Option<String>>,
    /// Whether the newest event with an id was a live-only one.
    last_was_live: Cell<bool>,
    stream: RefCell<Option<EventStream>>,
    open: Cell<bool>,
    /// Reopenings tried since the stream was last open.
    attempts: Cell<u32>,
    /// The pending reopening and its countdown, if the stream was given up on.
    retry: RefCell<Option<(TimeoutHandle, IntervalHandle)>>,
    on_event: OnEvent,
    on_status: OnStatus,
}

/// A stream to the hub; closed when dropped.
pub struct Source {
    inner: Rc<Inner>,
    wake: Vec<WindowListenerHandle>,
}

impl Drop for Source {
    fn drop(&mut self) {
        // The stream's callbacks hold the state: taking it out breaks that cycle.
        drop(self.inner.stream.borrow_mut().take());
        if let Some((retry, countdown)) = self.inner.retry.borrow_mut().take() {
            retry.clear();
            countdown.clear();
        }
        for handle in self.wake.drain(..) {
            handle.remove();
        }
    }
}

impl Source {
    /// Opens a stream of `target` after `from` (live only if `None`).
    pub fn open(
        target: Target,
        from: Option<String>,
        on_event: impl Fn(&str, &str, &str, bool) + 'static,
        on_status: impl Fn(LiveStatus) + 'static,
    ) -> Self {
        let inner = Rc::new(Inner {
            target: RefCell::new(target),
            stored_id: RefCell::new(from),
            last_was_live: Cell::new(false),
            stream: RefCell::default(),
            open: Cell::new(false),
            attempts: Cell::new(0),
            retry: RefCell::default(),
            on_event: Box::new(on_event),
            on_status: Box::new(on_status),
        });
        open(&inner);
        // A page coming back into view, or the network coming back: reopen a given-up stream
        // at once rather than at the end of its pause.
        let wake = |name: &str| {
            let weak = Rc::downgrade(&inner);
            window_event_listener_untyped(name, move |_| {
                let visible = document().visibility_state() == web_sys::VisibilityState::Visible;
                if let Some(inner) = weak.upgrade().filter(|_| visible)
                    && let Some((retry, countdown)) = inner.retry.borrow_mut().take()
                {
                    retry.clear();
                    countdown.clear();
                    open(&inner);
                }
            })
        };
        let wake = vec![wake("online"), wake("visibilitychange")];
        Self { inner, wake }
    }

    /// Reopens now, for `target`, after `from` (or where it stands, if `None`).
    pub fn reopen(&self, target: Target, from: Option<String>) {
        *self.inner.target.borrow_mut() = target;
        if from.is_some() {
            *self.inner.stored_id.borrow_mut() = from;
            self.inner.last_was_live.set(false);
        }
        if let Some((retry, countdown)) = self.inner.retry.borrow_mut().take() {
            retry.clear();
            countdown.clear();
        }
        open(&self.inner);
    }

    /// Closes it, and releases it once the callback running now (perhaps its own) has returned.
    pub fn dispose(self) {
        if let Some(stream) = &*self.inner.stream.borrow() {
            stream.close();
        }
        leptos::task::spawn_local(async move { drop(self) });
    }

    /// Reads what the stream subscribes to, without copying it.
    pub fn with_target<R>(&self, read: impl FnOnce(&Target) -> R) -> R {
        read(&self.inner.target.borrow())
    }

    /// Where the stream would resume from.
    pub fn stored_id(&self) -> Option<String> {
        self.inner.stored_id.borrow().clone()
    }

    /// Whether the stream is open and has everything published until now (for a routed one:
    /// its replay is done).
    pub fn is_open(&self) -> bool {
        self.inner.open.get()
    }
}

/// The browser gave up on the stream: reopen it after a pause, counted down in the status.
fn retry_later(inner: &Rc<Inner>) {
    inner.open.set(false);
    if inner.retry.borrow().is_some() {
        return;
    }
    let attempt = inner.attempts.get();
    inner.attempts.set(attempt.saturating_add(1));
    let pause = (FIRST_RETRY_MS * 2f64.powi(attempt.min(16) as i32)).min(LAST_RETRY_MS);
    let pause = pause * (0.5 + js_sys::Math::random() / 2.0);
    let due = js_sys::Date::now() + pause;
    let seconds_left = move || ((due - js_sys::Date::now()) / 1000.0).ceil().max(1.0) as u32;
    (inner.on_status)(LiveStatus::RetryingIn(seconds_left()));
    let weak = Rc::downgrade(inner);
    let retry = set_timeout_with_handle(
        move || {
            if let Some(inner) = weak.upgrade()
                && let Some((_, countdown)) = inner.retry.borrow_mut().take()
            {
                countdown.clear();
                open(&inner);
            }
        },
        std::time::Duration::from_millis(pause as u64),
    );
    let weak = Rc::downgrade(inner);
    let countdown = set_interval_with_handle(
        move || {
            if let Some(inner) = weak.upgrade() {
                (inner.on_status)(LiveStatus::RetryingIn(seconds_left()));
            }
        },
        std::time::Duration::from_secs(1),
    );
    if let (Ok(retry), Ok(countdown)) = (retry, countdown) {
        *inner.retry.borrow_mut() = Some((retry, countdown));
    }
}

/// Opens a connection that resumes after `stored_id`, replacing the current one.
fn open(inner: &Rc<Inner>) {
    inner.open.set(false);
    let target = inner.target.borrow().clone();
    let url = hub_url_of(
        &target.selectors,
        inner.stored_id.borrow().as_deref(),
        target.token.as_deref(),
        target.routed,
    );
    let mut named: Vec<&str> = target.named.iter().map(String::as_str).collect();
    named.push(HISTORY_GAP_EVENT);
    if target.routed {
        named.push(ROUTE_EVENT);
        named.push(LIVE_EVENT);
    }
    let handler = inner.clone();
    let opened = Rc::downgrade(inner);
    let failed = Rc::downgrade(inner);
    let stream = EventStream::open_named(
        &url,
        &named,
        move |event_type, id, data| on_event(&handler, event_type, id, data),
        move || {
            if let Some(inner) = opened.upgrade() {
                inner.attempts.set(0);
                // A routed stream has everything up to now once its replay is done.
                inner.open.set(!inner.target.borrow().routed);
                (inner.on_status)(LiveStatus::Open);
            }
        },
        move |ready| {
            let Some(inner) = failed.upgrade() else {
                return;
            };
            match ready {
                // The browser would reconnect by itself, sending the last id it saw, which may
                // be a live-only one or none (a stream opened live): reopen from the last stored
                // id instead, after the same pause.
                ReadyState::Connecting => {
                    if let Some(stream) = &*inner.stream.borrow() {
                        stream.close();
                    }
                    retry_later(&inner);
                }
                ReadyState::Open => (inner.on_status)(LiveStatus::Open),
                ReadyState::Closed => retry_later(&inner),
            }
        },
    );
    if stream.is_none() {
        (inner.on_status)(LiveStatus::Closed);
    }
    if let Some(old) = inner.stream.replace(stream) {
        // Perhaps called from one of the old stream's callbacks: close it now, release its
        // callbacks once that one has returned.
        old.close();
        leptos::task::spawn_local(async move { drop(old) });
    }
}

fn on_event(inner: &Rc<Inner>, event_type: &str, id: &str, data: &str) {
    if event_type == HISTORY_GAP_EVENT {
        // The browser reconnects with the id of the last event it got. When that was a
        // live-only event (a presence count) the hub cannot place (its history lost the key
        // such ids are checked with), it answers with the gap although every stored update can
        // still be replayed. So resume once more from the last stored id before passing the
        // gap on.
        if inner.last_was_live.replace(false) && inner.stored_id.borrow().is_some() {
            open(inner);
            return;
        }
        (inner.on_event)(event_type, id, data, false);
        return;
    }
    if event_type == LIVE_EVENT {
        inner.open.set(true);
        if inner.stored_id.borrow().is_none() && !data.is_empty() {
            // Subscribed live: resume from where the stream stood.
            *inner.stored_id.borrow_mut() = Some(data.to_owned());
        }
    }
    let mut stored = false;
    // The hub's own events of a routed subscription carry no id (the browser reports the
    // previous one).
    if !id.is_empty() && event_type != ROUTE_EVENT && event_type != LIVE_EVENT {
        let live_only = inner
            .target
            .borrow()
            .live_only
            .iter()
            .any(|t| t == event_type);
        inner.last_was_live.set(live_only);
        if !live_only {
            stored = true;
            *inner.stored_id.borrow_mut() = Some(id.to_owned());
        }
    }
    (inner.on_event)(event_type, id, data, stored);
}
