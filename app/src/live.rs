//! Live data from the hub, written once for every page.
//!
//! [`use_live`] subscribes to topic selectors and exposes what arrives as signals: a bounded list
//! of events (deduplicated by id) and the connection status. A page renders its state on the
//! server together with the id of the last update that state includes, and passes that id here:
//! the browser then subscribes from exactly that point (`lastEventID`), so nothing published
//! between rendering and hydration is lost or shown twice. When the hub says it cannot resume
//! (the `tidings-history-gap` event), the page reloads, which renders fresh state.
//!
//! A stream the browser gives up on (a reconnect answered with anything but 200: a proxy's 502
//! during a deploy, a 503 while Redis is away) is opened again here, from the last stored id it
//! showed, after a pause that doubles from 1 s to 30 s with jitter, and at once when the tab
//! becomes visible or the network comes back. Meanwhile the status says `reconnecting`.
//!
//! On the server this does nothing: the signals stay empty and `connecting`.

use leptos::prelude::*;

/// The hub's "cannot resume from your id" event.
pub const HISTORY_GAP_EVENT: &str = "tidings-history-gap";

/// One update as the browser received it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub id: String,
    /// `message` for unnamed events.
    pub event_type: String,
    pub data: String,
    /// When it arrived, in milliseconds since the epoch.
    pub received_ms: f64,
}

/// The connection, as shown to the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStatus {
    Connecting,
    Open,
    Reconnecting,
    /// The server said the stream is complete (the counter's `204` after its last number).
    Finished,
    Closed,
}

impl LiveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveStatus::Connecting => "connecting",
            LiveStatus::Open => "open",
            LiveStatus::Reconnecting => "reconnecting",
            LiveStatus::Finished => "finished",
            LiveStatus::Closed => "closed",
        }
    }
}

/// What to subscribe to.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    pub selectors: Vec<String>,
    /// Resume after this id (from the server-rendered snapshot).
    pub last_event_id: Option<String>,
    /// Named event types to receive besides `message`.
    pub named: Vec<&'static str>,
    /// How many events the list keeps (the oldest go first).
    pub capacity: usize,
    /// A subscriber token, sent as the `authorization` query parameter.
    pub token: Option<String>,
    /// Reload the page on a history gap (default); otherwise the gap is shown as an event.
    pub keep_on_gap: bool,
    /// Event types the hub sends live but never stores (such as presence counts): their ids
    /// are not where a new connection resumes from (see `browser::on_event`).
    pub live_only: Vec<&'static str>,
}

/// The signals of a live subscription; the connection closes when the owning component goes away.
#[derive(Clone, Copy)]
pub struct Live {
    pub events: RwSignal<Vec<LiveEvent>>,
    pub status: RwSignal<LiveStatus>,
}

/// The hub URL for these options.
pub fn hub_url(options: &LiveOptions) -> String {
    let mut url = String::from("/.well-known/mercure?");
    let mut first = true;
    let mut add = |name: &str, value: &str| {
        if !first {
            url.push('&');
        }
        first = false;
        url.push_str(name);
        url.push('=');
        url.push_str(&encode(value));
    };
    for selector in &options.selectors {
        add("topic", selector);
    }
    if let Some(id) = &options.last_event_id {
        add("lastEventID", id);
    }
    if let Some(token) = options.token.as_deref().filter(|t| !t.is_empty()) {
        add("authorization", token);
    }
    url
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Subscribes (in the browser) and returns the signals.
pub fn use_live(options: LiveOptions) -> Live {
    let live = Live {
        events: RwSignal::new(Vec::new()),
        status: RwSignal::new(LiveStatus::Connecting),
    };
    #[cfg(feature = "hydrate")]
    {
        let connection = browser::connect(options, live);
        on_cleanup(move || drop(connection));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = options;
    live
}

/// A small badge showing a connection's status, announced politely.
#[component]
pub fn LiveBadge(status: RwSignal<LiveStatus>) -> impl IntoView {
    view! {
        <span class="live-badge js-only" role="status" aria-live="polite"
            data-status=move || status.get().as_str()>
            {move || status.get().as_str()}
        </span>
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::{HISTORY_GAP_EVENT, Live, LiveEvent, LiveOptions, LiveStatus, hub_url};
    use crate::event_source::{EventStream, ReadyState};
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use std::{
        cell::{Cell, RefCell},
        collections::{HashSet, VecDeque},
        rc::Rc,
    };

    /// One subscription, across the connections it may need.
    struct State {
        options: LiveOptions,
        live: Live,
        /// Recently seen ids, bounded like the list.
        seen: RefCell<(HashSet<String>, VecDeque<String>)>,
        /// The newest id the hub stores that this subscription has (at first the snapshot's):
        /// where a new connection resumes from.
        stored_id: RefCell<Option<String>>,
        /// Whether the newest event with an id was one of `options.live_only`.
        last_was_live: Cell<bool>,
        stream: RefCell<Option<EventStream>>,
        /// Reopenings tried since the stream was last open.
        attempts: Cell<u32>,
        /// The pending reopening, if the stream was given up on.
        retry: RefCell<Option<TimeoutHandle>>,
    }

    /// The first pause before reopening a stream the browser gave up on, and the longest.
    const FIRST_RETRY_MS: f64 = 1_000.0;
    const LAST_RETRY_MS: f64 = 30_000.0;

    /// Closes the connection when dropped.
    pub struct Connection {
        state: Rc<State>,
        wake: Vec<WindowListenerHandle>,
    }

    impl Drop for Connection {
        fn drop(&mut self) {
            // The stream's callbacks hold the state: taking it out breaks that cycle.
            drop(self.state.stream.borrow_mut().take());
            if let Some(retry) = self.state.retry.borrow_mut().take() {
                retry.clear();
            }
            for handle in self.wake.drain(..) {
                handle.remove();
            }
        }
    }

    pub fn connect(options: LiveOptions, live: Live) -> SendWrapper<Connection> {
        let state = Rc::new(State {
            stored_id: RefCell::new(options.last_event_id.clone()),
            options,
            live,
            seen: RefCell::default(),
            last_was_live: Cell::new(false),
            stream: RefCell::default(),
            attempts: Cell::new(0),
            retry: RefCell::default(),
        });
        open(&state);
        // A page coming back into view, or the network coming back: reopen a given-up stream
        // at once rather than at the end of its pause.
        let wake = |name: &str| {
            let weak = Rc::downgrade(&state);
            window_event_listener_untyped(name, move |_| {
                if let Some(state) = weak.upgrade() {
                    reopen_now(&state);
                }
            })
        };
        let wake = vec![wake("online"), wake("visibilitychange")];
        SendWrapper::new(Connection { state, wake })
    }

    /// The browser gave up on the stream: reopen it after a pause.
    fn retry_later(state: &Rc<State>) {
        if state.retry.borrow().is_some() {
            return;
        }
        let attempt = state.attempts.get();
        state.attempts.set(attempt.saturating_add(1));
        let pause = (FIRST_RETRY_MS * 2f64.powi(attempt.min(16) as i32)).min(LAST_RETRY_MS);
        // Between half and all of it, so that the pages of a deployment do not come back at
        // the same instant.
        let pause = pause * (0.5 + js_sys::Math::random() / 2.0);
        state.live.status.set(LiveStatus::Reconnecting);
        let weak = Rc::downgrade(state);
        let handle = set_timeout_with_handle(
            move || {
                if let Some(state) = weak.upgrade() {
                    state.retry.borrow_mut().take();
                    open(&state);
                }
            },
            std::time::Duration::from_millis(pause as u64),
        );
        *state.retry.borrow_mut() = handle.ok();
    }

    /// Reopens a given-up stream now, if one waits.
    fn reopen_now(state: &Rc<State>) {
        let visible = document().visibility_state() == web_sys::VisibilityState::Visible;
        if !visible {
            return;
        }
        let Some(retry) = state.retry.borrow_mut().take() else {
            return;
        };
        retry.clear();
        open(state);
    }

    /// Opens a connection that resumes after `stored_id`, replacing the current one.
    fn open(state: &Rc<State>) {
        let options = LiveOptions {
            last_event_id: state.stored_id.borrow().clone(),
            ..state.options.clone()
        };
        let mut named = options.named.clone();
        named.push(HISTORY_GAP_EVENT);
        let live = state.live;
        let handler = state.clone();
        let opened = Rc::downgrade(state);
        let failed = Rc::downgrade(state);
        let stream = EventStream::open_named(
            &hub_url(&options),
            &named,
            move |event_type, id, data| on_event(&handler, event_type, id, data),
            move || {
                if let Some(state) = opened.upgrade() {
                    state.attempts.set(0);
                }
                live.status.set(LiveStatus::Open)
            },
            move |ready| match ready {
                ReadyState::Connecting => live.status.set(LiveStatus::Reconnecting),
                ReadyState::Open => live.status.set(LiveStatus::Open),
                ReadyState::Closed => {
                    if let Some(state) = failed.upgrade() {
                        retry_later(&state);
                    }
                }
            },
        );
        if stream.is_none() {
            live.status.set(LiveStatus::Closed);
        }
        if let Some(old) = state.stream.replace(stream) {
            // Called from one of the old stream's callbacks: close it now, release its
            // callbacks once that one has returned.
            old.close();
            leptos::task::spawn_local(async move { drop(old) });
        }
    }

    fn on_event(state: &Rc<State>, event_type: &str, id: &str, data: &str) {
        if event_type == HISTORY_GAP_EVENT && !state.options.keep_on_gap {
            // The browser reconnects with the id of the last event it got. When that was a
            // live-only event (a presence count) the hub cannot place (its history lost the
            // key such ids are checked with), it answers with the gap although every stored
            // update can still be replayed. So resume once more from the last stored id before
            // concluding that the rendered state is out of reach and reloading.
            if state.last_was_live.replace(false) && state.stored_id.borrow().is_some() {
                open(state);
            } else {
                super::gap::reload_once();
            }
            return;
        }
        if !id.is_empty() {
            if event_type != HISTORY_GAP_EVENT {
                let live_only = state.options.live_only.contains(&event_type);
                state.last_was_live.set(live_only);
                if !live_only {
                    *state.stored_id.borrow_mut() = Some(id.to_owned());
                }
            }
            let capacity = state.options.capacity.max(1);
            let mut seen = state.seen.borrow_mut();
            if !seen.0.insert(id.to_owned()) {
                return;
            }
            seen.1.push_back(id.to_owned());
            if seen.1.len() > capacity * 2
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
        let capacity = state.options.capacity.max(1);
        state.live.events.update(|list| {
            list.push(event);
            if list.len() > capacity {
                let excess = list.len() - capacity;
                list.drain(..excess);
            }
        });
    }
}

#[cfg(feature = "hydrate")]
mod gap {
    /// Reloads the page, at most once per [`PAUSE_MS`]: if the state it renders is pruned again
    /// before it can subscribe (a tiny history, or heavy traffic), reloading again would loop.
    /// Within the pause the page stays live from where the hub continues.
    pub fn reload_once() {
        const KEY: &str = "tidings.gap-reload";
        const PAUSE_MS: f64 = 30_000.0;
        let Some(window) = web_sys::window() else {
            return;
        };
        let now = js_sys::Date::now();
        let storage = window.session_storage().ok().flatten();
        let last = storage
            .as_ref()
            .and_then(|s| s.get_item(KEY).ok().flatten())
            .and_then(|v| v.parse::<f64>().ok());
        if last.is_some_and(|last| now - last < PAUSE_MS) {
            return;
        }
        if let Some(storage) = storage {
            let _ = storage.set_item(KEY, &now.to_string());
        }
        let _ = window.location().reload();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_encode_every_part() {
        let url = hub_url(&LiveOptions {
            selectors: vec!["/chat/general".into(), "/ticker/{symbol}".into()],
            last_event_id: Some("urn:uuid:1".into()),
            token: Some("a.b".into()),
            ..LiveOptions::default()
        });
        assert_eq!(
            url,
            "/.well-known/mercure?topic=%2Fchat%2Fgeneral&topic=%2Fticker%2F%7Bsymbol%7D\
             &lastEventID=urn%3Auuid%3A1&authorization=a.b"
        );
    }
}
