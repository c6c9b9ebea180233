//! One `EventSource` to the hub that comes back by itself.
//!
//! The browser reconnects a dropped stream by itself (sending `Last-Event-ID`), but gives up for
//! good on an answer other than 200. Then this opens the stream again, from the last stored id it
//! delivered, after a pause that doubles from 1 s to 30 s (between half and all of it, so the
//! pages of a deployment do not come back at once), and at once when the tab becomes visible or
//! the network comes back. The status counts the pause down. A stream that was open for a while
//! and ends (the hub's `--max-stream-lifetime`, a restart) is opened again at once and quietly
//! (within a quarter second, to spread the pages of a restart): only if that fails does the
//! status change.
//!
//! **Tokens that end.** The hub ends a stream when its token expires. With the app's page token
//! ([`Credential::Page`]) this fetches the token before opening, and a fresh one before it
//! ends (three quarters into its life, or a minute before the end if that is later), then moves
//! the stream over without a gap: the next connection opens, from the last stored id, with the
//! fresh token, and the old one closes only once the next is open. Anything both deliver has
//! the same id and is applied once ([`super::sink::Sink`]); the status stays `open`. A token
//! the visitor gave ([`Credential::Token`], the console's) cannot be renewed here: at its `exp`
//! the stream stops and says `token expired` rather than knocking with it again.

use super::{
    Credential, HISTORY_GAP_EVENT, LIVE_EVENT, LiveOptions, LiveStatus, ROUTE_EVENT, hub_url_of,
};
use crate::event_source::{EventStream, ReadyState};
use leptos::prelude::*;
use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

/// The first pause before reopening a stream the browser gave up on, and the longest.
const FIRST_RETRY_MS: f64 = 1_000.0;
const LAST_RETRY_MS: f64 = 30_000.0;
/// The longest wait a browser's timer takes.
const LONGEST_TIMER_MS: f64 = i32::MAX as f64;

/// What a stream subscribes to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub selectors: Vec<String>,
    /// Named event types listened to besides `message` (and the gap event).
    pub named: Vec<String>,
    /// Types whose ids are not stored by the hub: never where a new connection resumes from.
    pub live_only: Vec<String>,
    pub credential: Credential,
    /// A routed subscription: each update comes after a [`ROUTE_EVENT`].
    pub routed: bool,
}

impl Target {
    pub fn of(options: &LiveOptions, routed: bool) -> Self {
        Self {
            selectors: options.selectors.clone(),
            named: options.named.iter().map(|s| (*s).to_owned()).collect(),
            live_only: options.live_only.iter().map(|s| (*s).to_owned()).collect(),
            credential: options.credential(),
            routed,
        }
    }
}

/// An event's handler: `(type, id, data, stored)`, `stored` saying whether the id is where the
/// stream would resume from.
type OnEvent = Box<dyn Fn(&str, &str, &str, bool)>;
type OnStatus = Box<dyn Fn(LiveStatus)>;

/// A token in hand and, in the browser's clock (milliseconds), when it must be replaced and when
/// it ends.
struct Held {
    token: String,
    renew_ms: f64,
    ends_ms: f64,
}

struct Inner {
    target: RefCell<Target>,
    /// The page token in hand ([`Credential::Page`]).
    page_token: RefCell<Option<Held>>,
    /// While a page token is being fetched, what to do with it (an opening asked for meanwhile
    /// wins over a move).
    fetching: Cell<Option<Then>>,
    /// Moves to a fresh page token that failed in a row: the next try waits longer.
    move_attempts: Cell<u32>,
    /// When the token will be renewed (a page token) or the stream stopped (a given token).
    token_timer: RefCell<Option<TimeoutHandle>>,
    /// The connection that is current: only its events and errors count.
    current: Cell<u64>,
    /// Connections opened so far (each one's number).
    opened: Cell<u64>,
    /// The next connection, with a fresh token, until it is open: then it becomes `stream`.
    next: RefCell<Option<(u64, EventStream)>>,
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
    /// When the current connection opened (the browser's clock, milliseconds); `None` while it
    /// has not (a connection that never opened did not live a while).
    opened_ms: Cell<Option<f64>>,
    /// A quiet reopening after a stream that lived a while ended.
    quick: RefCell<Option<TimeoutHandle>>,
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
        drop(self.inner.next.borrow_mut().take());
        if let Some(timer) = self.inner.token_timer.borrow_mut().take() {
            timer.clear();
        }
        cancel_pending(&self.inner);
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
            page_token: RefCell::default(),
            fetching: Cell::new(None),
            move_attempts: Cell::new(0),
            token_timer: RefCell::default(),
            current: Cell::new(0),
            opened: Cell::new(0),
            next: RefCell::default(),
            stored_id: RefCell::new(from),
            last_was_live: Cell::new(false),
            stream: RefCell::default(),
            open: Cell::new(false),
            attempts: Cell::new(0),
            retry: RefCell::default(),
            opened_ms: Cell::new(None),
            quick: RefCell::default(),
            on_event: Box::new(on_event),
            on_status: Box::new(on_status),
        });
        open(&inner);
        // A page coming back into view, or the network coming back: reopen a given-up stream
        // at once rather than at the end of its pause.
        let listen = |name: &str| {
            let weak = Rc::downgrade(&inner);
            window_event_listener_untyped(name, move |_| {
                if let Some(inner) = weak.upgrade().filter(|_| visible()) {
                    wake(&inner);
                }
            })
        };
        let wake = vec![listen("online"), listen("visibilitychange")];
        Self { inner, wake }
    }

    /// Reopens a given-up stream at once rather than at the end of its pause (a follower tab
    /// came into view, or saw the network come back).
    pub fn wake(&self) {
        wake(&self.inner);
    }

    /// Reopens now, for `target`, after `from` (or where it stands, if `None`).
    pub fn reopen(&self, target: Target, from: Option<String>) {
        if target.credential != self.inner.target.borrow().credential
            && let Some(timer) = self.inner.token_timer.borrow_mut().take()
        {
            timer.clear();
        }
        *self.inner.target.borrow_mut() = target;
        if from.is_some() {
            *self.inner.stored_id.borrow_mut() = from;
            self.inner.last_was_live.set(false);
        }
        open(&self.inner);
    }

    /// Closes it, and releases it once the callback running now (perhaps its own) has returned.
    pub fn dispose(self) {
        if let Some(stream) = &*self.inner.stream.borrow() {
            stream.close();
        }
        if let Some((_, next)) = &*self.inner.next.borrow() {
            next.close();
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

/// How long a stream must have been open for its end to be followed by a quiet reopening.
const QUIET_AFTER_MS: f64 = 5_000.0;
/// The longest wait before a quiet reopening: the pages of a restarted server spread over it.
const QUIET_SPREAD_MS: f64 = 250.0;

/// Reopens from the last stored id within [`QUIET_SPREAD_MS`], the status left as it is; if
/// that fails, the usual pause and countdown follow.
fn reopen_quietly(inner: &Rc<Inner>) {
    inner.open.set(false);
    let due_ms = js_sys::Date::now() + js_sys::Math::random() * QUIET_SPREAD_MS;
    schedule(
        inner,
        |inner| &inner.quick,
        due_ms,
        |inner| {
            // Not if meanwhile the status counted down, or the stream was opened again.
            if inner.retry.borrow().is_none() {
                open(inner);
            }
        },
    );
}

/// Whether the page is in view.
pub(super) fn visible() -> bool {
    document().visibility_state() == web_sys::VisibilityState::Visible
}

/// Reopens a given-up stream now, ending its pause.
fn wake(inner: &Rc<Inner>) {
    // Taken in a statement of its own: `open` borrows the slot again.
    let pending = inner.retry.borrow_mut().take();
    if let Some((retry, countdown)) = pending {
        retry.clear();
        countdown.clear();
        (inner.on_status)(LiveStatus::Reconnecting);
        open(inner);
    }
}

/// The pause after `attempt` tries that failed in a row: 1 s, doubling to 30 s.
fn backoff_ms(attempt: u32) -> f64 {
    (FIRST_RETRY_MS * 2f64.powi(attempt.min(16) as i32)).min(LAST_RETRY_MS)
}

/// Closes the current connection, if any, and lets go of it.
fn end_stream(inner: &Inner) {
    let ended = inner.stream.borrow_mut().take();
    if let Some(stream) = ended {
        release(stream);
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
    let pause = backoff_ms(attempt) * (0.5 + js_sys::Math::random() / 2.0);
    let due = js_sys::Date::now() + pause;
    let seconds_left = move || ((due - js_sys::Date::now()) / 1000.0).ceil().max(1.0) as u32;
    (inner.on_status)(LiveStatus::RetryingIn(seconds_left()));
    let weak = Rc::downgrade(inner);
    let retry = set_timeout_with_handle(
        move || {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            // Taken in a statement of its own: `open` borrows the slot again.
            let pending = inner.retry.borrow_mut().take();
            if let Some((_, countdown)) = pending {
                countdown.clear();
                // The countdown is over: say so while the attempt is under way.
                (inner.on_status)(LiveStatus::Reconnecting);
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

/// Opens a connection that resumes after `stored_id`, replacing the current one, once the
/// token it needs is in hand.
fn open(inner: &Rc<Inner>) {
    inner.open.set(false);
    cancel_pending(inner);
    // The old connection stops now: were it to go on while a token is fetched, its routes
    // would be read against the new target's selectors. The new one resumes where it stood.
    end_stream(inner);
    if let Some((_, next)) = inner.next.borrow_mut().take() {
        release(next);
    }
    let credential = inner.target.borrow().credential.clone();
    let token = match credential {
        Credential::None => None,
        Credential::Token(token) => {
            let ends_ms = expiry_ms(&token);
            if ends_ms.is_some_and(|ends| ends <= js_sys::Date::now()) {
                expired(inner);
                return;
            }
            if let Some(ends) = ends_ms {
                arm_timer(inner, ends, expired);
            }
            Some(token)
        }
        Credential::Page => {
            let held = inner
                .page_token
                .borrow()
                .as_ref()
                .filter(|held| held.renew_ms > js_sys::Date::now())
                .map(|held| held.token.clone());
            match held {
                Some(token) => Some(token),
                None => {
                    // Opened again once it is here (or retried later if it cannot be had).
                    fetch_page_token(inner, Then::Open);
                    return;
                }
            }
        }
    };
    connect(inner, token.as_deref(), false);
}

/// What to do with a page token once fetched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Open the stream with it.
    Open,
    /// Move the open stream over to it.
    Move,
}

/// Fetches a page token from the server, then opens or moves the stream. Failing, an opening is
/// retried after the usual pause; a move after a pause of its own ([`renew_later`]).
fn fetch_page_token(inner: &Rc<Inner>, then: Then) {
    match inner.fetching.get() {
        None => inner.fetching.set(Some(then)),
        // One is on its way: it will open, if that is what is asked now.
        Some(_) => {
            if then == Then::Open {
                inner.fetching.set(Some(Then::Open));
            }
            return;
        }
    }
    let weak = Rc::downgrade(inner);
    leptos::task::spawn_local(async move {
        let fetched = crate::api::page_token().await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(then) = inner.fetching.take() else {
            return;
        };
        if inner.target.borrow().credential != Credential::Page {
            return;
        }
        match fetched {
            Ok(fresh) => {
                let now = js_sys::Date::now();
                let life = fresh.expires_in_ms as f64;
                let renew_ms = now + (life - 60_000.0).max(life * 0.75);
                let token = fresh.token.clone();
                *inner.page_token.borrow_mut() = Some(Held {
                    token: fresh.token,
                    renew_ms,
                    ends_ms: now + life,
                });
                arm_timer(&inner, renew_ms, renew);
                match then {
                    Then::Open => open(&inner),
                    // Unless the stream ended meanwhile: its reopening will use the token.
                    Then::Move if inner.stream.borrow().is_some() => {
                        connect(&inner, Some(&token), true)
                    }
                    Then::Move => {}
                }
            }
            Err(_) => match then {
                Then::Open => retry_later(&inner),
                Then::Move => renew_later(&inner),
            },
        }
    });
}

/// A move to a fresh page token failed: try again after a pause that doubles from 1 s to 30 s,
/// and always before the token in hand ends.
fn renew_later(inner: &Rc<Inner>) {
    let attempt = inner.move_attempts.get();
    inner.move_attempts.set(attempt.saturating_add(1));
    let now = js_sys::Date::now();
    let pause = backoff_ms(attempt);
    let ends = inner.page_token.borrow().as_ref().map(|held| held.ends_ms);
    let pause = ends.map_or(pause, |ends| pause.min((ends - now) / 2.0).max(250.0));
    arm_timer(inner, now + pause, renew);
}

/// Clears a pending quiet reopening and a pending retry with its countdown.
fn cancel_pending(inner: &Inner) {
    if let Some(quick) = inner.quick.borrow_mut().take() {
        quick.clear();
    }
    let pending = inner.retry.borrow_mut().take();
    if let Some((retry, countdown)) = pending {
        retry.clear();
        countdown.clear();
    }
}

/// The page token is due for renewal: fetch a fresh one and move the stream over to it (just
/// keep it for the next opening if the stream is not open).
fn renew(inner: &Rc<Inner>) {
    if inner.stream.borrow().is_some() && inner.retry.borrow().is_none() {
        fetch_page_token(inner, Then::Move);
    } else if let Some(held) = &mut *inner.page_token.borrow_mut() {
        // Fetched again when next opened.
        held.renew_ms = 0.0;
    }
}

/// The visitor's token has ended: stop, and say so.
fn expired(inner: &Rc<Inner>) {
    inner.open.set(false);
    end_stream(inner);
    cancel_pending(inner);
    (inner.on_status)(LiveStatus::Expired);
}

/// Calls `then` at `due_ms` (the browser's clock), replacing the token timer set before.
fn arm_timer(inner: &Rc<Inner>, due_ms: f64, then: fn(&Rc<Inner>)) {
    schedule(inner, |inner| &inner.token_timer, due_ms, then);
}

/// Calls `then` at `due_ms` (the browser's clock) with the timer kept in `slot`, replacing the
/// one set there before; the slot is empty again once it has fired.
fn schedule(
    inner: &Rc<Inner>,
    slot: fn(&Inner) -> &RefCell<Option<TimeoutHandle>>,
    due_ms: f64,
    then: fn(&Rc<Inner>),
) {
    let weak = Rc::downgrade(inner);
    let wait = (due_ms - js_sys::Date::now()).max(0.0);
    // A browser's timer waits at most 2^31 - 1 ms (about 24.8 days; Leptos throws beyond):
    // a later one (a pasted token's far `exp`) is set again when that wait is over.
    let early = wait > LONGEST_TIMER_MS;
    let timer = set_timeout_with_handle(
        move || {
            if let Some(inner) = weak.upgrade() {
                slot(&inner).borrow_mut().take();
                if early {
                    schedule(&inner, slot, due_ms, then);
                } else {
                    then(&inner);
                }
            }
        },
        std::time::Duration::from_millis(wait.min(LONGEST_TIMER_MS) as u64),
    )
    .ok();
    if let Some(old) = slot(inner).replace(timer) {
        old.clear();
    }
}

/// When a JWT's `exp` falls, in milliseconds since the epoch; `None` without one (or for what
/// does not read as a JWT: the hub will judge it).
fn expiry_ms(token: &str) -> Option<f64> {
    let payload = token.trim().split('.').nth(1)?;
    let mut base64: String = payload
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !base64.len().is_multiple_of(4) {
        base64.push('=');
    }
    // A binary string: one char per byte, enough to find a number in the JSON.
    let json = window().atob(&base64).ok()?;
    let claims: serde_json::Value = serde_json::from_str(&json).ok()?;
    Some(claims.get("exp")?.as_f64()? * 1000.0)
}

/// Opens a connection with `token` that resumes after `stored_id`. `moving`: it replaces the
/// current one only once it is open (the current one goes on delivering meanwhile); otherwise
/// at once.
fn connect(inner: &Rc<Inner>, token: Option<&str>, moving: bool) {
    let target = inner.target.borrow().clone();
    let url = hub_url_of(
        &target.selectors,
        inner.stored_id.borrow().as_deref(),
        token,
        target.routed,
    );
    let mut named: Vec<&str> = target.named.iter().map(String::as_str).collect();
    named.push(HISTORY_GAP_EVENT);
    if target.routed {
        named.push(ROUTE_EVENT);
        named.push(LIVE_EVENT);
    }
    let number = inner.opened.get() + 1;
    inner.opened.set(number);
    let handler = Rc::downgrade(inner);
    let opened = Rc::downgrade(inner);
    let failed = Rc::downgrade(inner);
    let stream = EventStream::open_named(
        &url,
        &named,
        move |event_type, id, data| {
            if let Some(inner) = handler.upgrade().filter(|i| i.current.get() == number) {
                on_event(&inner, event_type, id, data);
            }
        },
        move || {
            let Some(inner) = opened.upgrade() else {
                return;
            };
            if let Some(next) = inner.take_next(number) {
                // The next connection is open: it takes over, the old one closes.
                inner.current.set(number);
                inner.move_attempts.set(0);
                if let Some(old) = inner.stream.replace(Some(next)) {
                    release(old);
                }
            }
            if inner.current.get() == number {
                // Whatever was to reopen it is moot (a retry would close this good one).
                cancel_pending(&inner);
                inner.attempts.set(0);
                inner.opened_ms.set(Some(js_sys::Date::now()));
                // A routed stream has everything up to now once its replay is done.
                inner.open.set(!inner.target.borrow().routed);
                (inner.on_status)(LiveStatus::Open);
            }
        },
        move |ready| {
            let Some(inner) = failed.upgrade() else {
                return;
            };
            if let Some(next) = inner.take_next(number) {
                // The move failed: the current connection goes on; try again later.
                release(next);
                renew_later(&inner);
                return;
            }
            if inner.current.get() != number {
                return;
            }
            if ready == ReadyState::Open {
                (inner.on_status)(LiveStatus::Open);
                return;
            }
            // The connection is over. The browser would reconnect by itself (`Connecting`),
            // sending the last id it saw, which may be a live-only one or none (a stream opened
            // live): reopen from the last stored id instead. A stream that lived a while (ended
            // by the hub's maximum lifetime, or a restart) comes back at once and quietly; one
            // that keeps dropping, or was refused (`Closed`), after the usual pause.
            end_stream(&inner);
            // Taken: a reopening that fails never opened, so it did not live a while (else a
            // server that is down would be retried quietly, in a loop).
            let opened_ms = inner.opened_ms.take();
            let lived_a_while =
                opened_ms.is_some_and(|at| js_sys::Date::now() - at >= QUIET_AFTER_MS);
            if ready == ReadyState::Connecting && lived_a_while {
                reopen_quietly(&inner);
            } else {
                retry_later(&inner);
            }
        },
    );
    if moving {
        if let Some(stream) = stream
            && let Some((_, old)) = inner.next.replace(Some((number, stream)))
        {
            release(old);
        }
        return;
    }
    inner.current.set(number);
    inner.opened_ms.set(None);
    if stream.is_none() {
        (inner.on_status)(LiveStatus::Closed);
    }
    if let Some(old) = inner.stream.replace(stream) {
        release(old);
    }
}

/// Closes a connection now and drops it (its callbacks) once the callback running now, perhaps
/// one of its own, has returned.
fn release(stream: EventStream) {
    stream.close();
    leptos::task::spawn_local(async move { drop(stream) });
}

impl Inner {
    /// Takes the next connection out, if it is the one numbered `number`.
    fn take_next(&self, number: u64) -> Option<EventStream> {
        let mut next = self.next.borrow_mut();
        if next.as_ref().is_some_and(|(n, _)| *n == number) {
            next.take().map(|(_, stream)| stream)
        } else {
            None
        }
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
