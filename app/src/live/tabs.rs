//! One hub connection for all the tabs of an origin.
//!
//! Every tab requests the Web Lock [`LOCK`]; the one holding it leads. The leader opens one
//! routed subscription (see [`ROUTE_EVENT`]) to the union of every tab's selectors and posts each
//! event on the `BroadcastChannel` [`CHANNEL`] with the selectors it matched; each tab applies
//! the events its own selectors match ([`Sink`] drops ids it already has).
//!
//! **Joining without a gap.** A new subscription (a tab opening, a page navigated to) first
//! opens a stream of its own, from its server-rendered id, exactly as a lone tab would. When that
//! stream's replay is done (the hub's [`LIVE_EVENT`]) it tells the leader (`hello`); the leader
//! widens its stream if it must, resuming from its own last id, and says which selectors its
//! open stream covers (`status open`). The subscription then closes its own stream: it had
//! everything up to the moment it subscribed, and a widened leader's stream resumes from that
//! moment (from where it stands if it is down). The leader's events that come while a
//! subscription still replays on its own are held and applied after the replay. Resuming the
//! shared stream from a tab's rendered id instead would replay, to every tab, everything since
//! that id (hours of ticker quotes for a quiet news page).
//!
//! **Taking over.** Every tab keeps the last stored id the leader posted (its cursor). A leader
//! that goes away releases the lock (on `pagehide`; the browser does it when a tab crashes) and
//! the next tab in the lock's queue leads: it resumes from its cursor and asks the others what
//! they want (`who`); repeats are dropped by id. A leader that is frozen or stuck keeps the lock,
//! so it posts a heartbeat every second: a visible tab that hears nothing for [`SILENCE_MS`]
//! asks it (`ping`), and if nothing comes back for [`PROBE_MS`] more takes the lock over
//! (`steal`); the old leader, told so by the lock, steps down and catches up on its own streams
//! from its cursor, as below, before it joins the new leader's. The question keeps a tab that
//! was itself stalled (its overdue timer running before the heartbeats queued for it) from
//! taking over from a leader that is fine. A page
//! going into the back-forward cache says `bye` and leaves the lock's queue; back, each of its
//! subscriptions catches up on its own stream from the tab's cursor and joins again.
//!
//! Messages are arrays of strings (structured clones), the first being the kind:
//! - `hello, tab, key, from, selectors…, "", named…, "", live_only…, "", flags…` (`page`: it
//!   needs the page token, which the leader's stream then carries; see [`Credential::Page`]) ·
//!   `bye, tab, key` · `who` · `beat` · `ping` (answered with `beat`) · `wake` (a follower in view,
//!   or seeing the network come back: the leader reopens a given-up stream at once)
//! - `status, word, seconds` (the leader's stream), and when open `, stands, selectors…` (its
//!   last stored id and the selectors it covers)
//! - `event, type, id, data, stored ("1" or ""), matched selectors…` (none: for every tab)

use super::{
    Credential, LIVE_EVENT, LiveOptions, LiveStatus, ROUTE_EVENT,
    sink::Sink,
    source::{Source, Target},
};
use leptos::prelude::*;
use std::{
    cell::{Cell, RefCell},
    collections::{BTreeSet, VecDeque},
    rc::{Rc, Weak},
};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};

/// The Web Lock whose holder leads.
const LOCK: &str = "tidings-live-leader";
/// The channel the tabs talk on.
const CHANNEL: &str = "tidings-live";
/// How long a visible tab waits without hearing the leader before taking over.
const SILENCE_MS: f64 = 4_000.0;
/// How long a tab that asked a silent leader (`ping`) waits for any word before taking over.
const PROBE_MS: f64 = 1_500.0;
/// The leader's heartbeat.
const BEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// A subscription of this tab.
struct Local {
    key: u32,
    target: Target,
    sink: Rc<Sink>,
    /// Its own stream, until the leader's covers its selectors.
    own: RefCell<Option<Source>>,
    /// Whether its own stream finished its replay and the leader was told (`hello`).
    announced: Cell<bool>,
    /// The leader's events that came while its own stream was still replaying: applied (once)
    /// when the replay is done, after it.
    early: RefCell<VecDeque<(String, String, String)>>,
}

/// The leader's events a replaying subscription holds, at most.
const EARLY_MAX: usize = 1_000;

/// What one subscription (of any tab) wants from the leader.
#[derive(Clone)]
struct Member {
    tab: String,
    key: u32,
    selectors: Vec<String>,
    named: Vec<String>,
    live_only: Vec<String>,
    /// It needs the page token.
    page: bool,
}

/// The flag of a subscription that needs the page token, in `hello`.
const PAGE_FLAG: &str = "page";

/// This tab, as one of the origin's tabs.
struct Tabs {
    tab: String,
    channel: web_sys::BroadcastChannel,
    locals: RefCell<Vec<Rc<Local>>>,
    next_key: Cell<u32>,
    /// The last stored id the leader delivered: where a new leader resumes from.
    cursor: RefCell<Option<String>>,
    leader: RefCell<Option<Rc<Leader>>>,
    /// Resolves the held lock's promise, releasing it.
    release: RefCell<Option<js_sys::Function>>,
    /// Whether a lock request of this tab waits in the queue, and how to withdraw it.
    queued: Cell<bool>,
    withdraw: RefCell<Option<web_sys::AbortController>>,
    /// When the leader was last heard.
    heard_ms: Cell<f64>,
    /// When this tab asked a silent leader whether it is there (`ping`), if it did.
    asked_ms: Cell<Option<f64>>,
    /// The leader's stream, as last heard.
    status: Cell<LiveStatus>,
    _listeners: Vec<WindowListenerHandle>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _watch: Option<IntervalHandle>,
}

/// The leading tab's stream.
struct Leader {
    members: RefCell<Vec<Member>>,
    source: RefCell<Option<Source>>,
    /// The selectors the next update matched (from the route event before it).
    route: RefCell<Option<Vec<String>>>,
    /// Where the first stream starts (a new leader: the last id its tab saw the old one send).
    resume: RefCell<Option<String>>,
    _beat: Option<IntervalHandle>,
}

thread_local! {
    static TABS: RefCell<Option<Option<Rc<Tabs>>>> = const { RefCell::new(None) };
}

/// Closes a shared subscription when dropped.
pub struct Handle {
    key: u32,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(tabs) = tabs() {
            tabs.unsubscribe(self.key);
        }
    }
}

/// Subscribes through the tabs' shared stream; `None` where the browser has no Web Locks or
/// `BroadcastChannel` (then the caller opens a stream of its own).
pub fn subscribe(options: &LiveOptions, sink: Rc<Sink>) -> Option<Handle> {
    let tabs = tabs()?;
    let key = tabs.next_key.get();
    tabs.next_key.set(key + 1);
    let local = Rc::new(Local {
        key,
        target: Target::of(options, true),
        sink,
        own: RefCell::default(),
        announced: Cell::new(false),
        early: RefCell::default(),
    });
    tabs.locals.borrow_mut().push(local.clone());
    tabs.stream_alone(&local, options.last_event_id.clone());
    Some(Handle { key })
}

fn tabs() -> Option<Rc<Tabs>> {
    TABS.with(|cell| {
        if let Some(tabs) = &*cell.borrow() {
            return tabs.clone();
        }
        let tabs = Tabs::start();
        *cell.borrow_mut() = Some(tabs.clone());
        if let Some(tabs) = &tabs {
            tabs.request_lock(false);
        }
        tabs
    })
}

/// The browser's `navigator.locks`, if it has Web Locks.
fn locks() -> Option<JsValue> {
    let navigator = window().navigator();
    js_sys::Reflect::get(&navigator, &"locks".into())
        .ok()
        .filter(|locks| !locks.is_undefined() && !locks.is_null())
}

fn union(lists: impl IntoIterator<Item = Vec<String>>) -> Vec<String> {
    lists
        .into_iter()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Tabs {
    fn start() -> Option<Rc<Self>> {
        locks()?;
        let channel = web_sys::BroadcastChannel::new(CHANNEL).ok()?;
        let tab = format!("{:x}", (js_sys::Math::random() * 2f64.powi(52)) as u64);
        Some(Rc::new_cyclic(|weak: &Weak<Tabs>| {
            let on_message = {
                let weak = weak.clone();
                Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                    move |event: web_sys::MessageEvent| {
                        let parts: Vec<String> = js_sys::Array::from(&event.data())
                            .iter()
                            .map(|part| part.as_string().unwrap_or_default())
                            .collect();
                        if let Some(tabs) = weak.upgrade() {
                            tabs.on_message(&parts);
                        }
                    },
                )
            };
            channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            let pagehide = {
                let weak = weak.clone();
                window_event_listener_untyped("pagehide", move |_| {
                    if let Some(tabs) = weak.upgrade() {
                        tabs.step_down();
                    }
                })
            };
            let pageshow = {
                let weak = weak.clone();
                window_event_listener_untyped("pageshow", move |event| {
                    let persisted = js_sys::Reflect::get(&event, &"persisted".into())
                        .is_ok_and(|p| p.is_truthy());
                    if let Some(tabs) = weak.upgrade().filter(|_| persisted) {
                        tabs.come_back();
                    }
                })
            };
            // A follower in view, or seeing the network come back, wakes a leader that gave up
            // for a while (its own such events are seen only if it is in view).
            let wake = |name: &str| {
                let weak = weak.clone();
                window_event_listener_untyped(name, move |_| {
                    if let Some(tabs) = weak.upgrade().filter(|_| super::source::visible())
                        && tabs.leading().is_none()
                        && matches!(tabs.status.get(), LiveStatus::RetryingIn(_))
                    {
                        tabs.post(&["wake"]);
                    }
                })
            };
            let (online, shown) = (wake("online"), wake("visibilitychange"));
            let watch = {
                let weak = weak.clone();
                set_interval_with_handle(
                    move || {
                        if let Some(tabs) = weak.upgrade() {
                            tabs.watch();
                        }
                    },
                    BEAT,
                )
                .ok()
            };
            Tabs {
                tab,
                channel,
                locals: RefCell::default(),
                next_key: Cell::new(0),
                cursor: RefCell::default(),
                leader: RefCell::default(),
                release: RefCell::default(),
                queued: Cell::new(false),
                withdraw: RefCell::default(),
                heard_ms: Cell::new(js_sys::Date::now()),
                asked_ms: Cell::new(None),
                status: Cell::new(LiveStatus::Connecting),
                _listeners: vec![pagehide, pageshow, online, shown],
                _on_message: on_message,
                _watch: watch,
            }
        }))
    }

    /// Gives a subscription a stream of its own, after `from`, until the leader's covers it.
    fn stream_alone(self: &Rc<Self>, local: &Local, from: Option<String>) {
        local.announced.set(false);
        let (weak, key, sink) = (Rc::downgrade(self), local.key, local.sink.clone());
        let own = Source::open(
            local.target.clone(),
            from,
            move |event_type, id, data, _| match event_type {
                ROUTE_EVENT => {}
                LIVE_EVENT => {
                    if let Some(tabs) = weak.upgrade() {
                        tabs.caught_up(key, data);
                    }
                }
                _ => sink.event(event_type, id, data),
            },
            {
                let sink = local.sink.clone();
                move |status| sink.status(status)
            },
        );
        if let Some(old) = local.own.replace(Some(own)) {
            old.dispose();
        }
    }

    fn leading(&self) -> Option<Rc<Leader>> {
        self.leader.borrow().clone()
    }

    fn post<S: AsRef<str>>(&self, parts: &[S]) {
        let message: js_sys::Array = parts
            .iter()
            .map(|part| JsValue::from_str(part.as_ref()))
            .collect();
        let _ = self.channel.post_message(&message);
    }

    fn member(&self, local: &Local) -> Member {
        Member {
            tab: self.tab.clone(),
            key: local.key,
            selectors: local.target.selectors.clone(),
            named: local.target.named.clone(),
            live_only: local.target.live_only.clone(),
            page: local.target.credential == Credential::Page,
        }
    }

    /// A subscription's own stream has everything up to `handoff` (where it subscribed): apply
    /// what the leader sent meanwhile, and ask the leader to cover it from there.
    fn caught_up(self: &Rc<Self>, key: u32, handoff: &str) {
        let Some(local) = self.local(key) else { return };
        if local.announced.replace(true) {
            return;
        }
        let early = std::mem::take(&mut *local.early.borrow_mut());
        for (event_type, id, data) in early {
            local.sink.event(&event_type, &id, &data);
        }
        self.announce(&local, Some(handoff.to_owned()).filter(|h| !h.is_empty()));
    }

    fn local(&self, key: u32) -> Option<Rc<Local>> {
        self.locals.borrow().iter().find(|l| l.key == key).cloned()
    }

    /// Tells the leader what a subscription wants; `from`: where its own stream subscribed
    /// (a joining subscription), from which a widened stream resumes.
    fn announce(self: &Rc<Self>, local: &Local, from: Option<String>) {
        let member = self.member(local);
        if let Some(leader) = self.leading() {
            leader.join(self, member, from);
            return;
        }
        let mut parts = vec![
            "hello".to_owned(),
            member.tab,
            member.key.to_string(),
            from.unwrap_or_default(),
        ];
        for list in [member.selectors, member.named, member.live_only] {
            parts.extend(list);
            parts.push(String::new());
        }
        if member.page {
            parts.push(PAGE_FLAG.to_owned());
        }
        self.post(&parts);
    }

    /// The leader's open stream covers `selectors`: subscriptions wanting no more close their
    /// own stream.
    fn cover(&self, selectors: &[String]) {
        let locals = self.locals.borrow().clone();
        for local in locals {
            let covered = local.target.selectors.iter().all(|s| selectors.contains(s));
            if local.announced.get() && covered {
                let own = local.own.borrow_mut().take();
                if let Some(own) = own {
                    own.dispose();
                    local.sink.status(self.status.get());
                }
            }
        }
    }

    fn unsubscribe(self: &Rc<Self>, key: u32) {
        let gone = self.local(key);
        self.locals.borrow_mut().retain(|local| local.key != key);
        if let Some(own) = gone.and_then(|local| local.own.borrow_mut().take()) {
            own.dispose();
        }
        match self.leading() {
            Some(leader) => leader.leave(self, &self.tab, key),
            None => self.post(&["bye", &self.tab, &key.to_string()]),
        }
    }

    fn on_message(self: &Rc<Self>, parts: &[String]) {
        let Some(kind) = parts.first() else { return };
        let leader = self.leading();
        match (kind.as_str(), leader) {
            ("hello", Some(leader)) => {
                if let Some(member) = parse_hello(parts) {
                    let from = parts.get(3).filter(|from| !from.is_empty()).cloned();
                    leader.join(self, member, from);
                }
            }
            ("ping", Some(_)) => self.post(&["beat"]),
            ("wake", Some(leader)) => {
                if let Some(source) = &*leader.source.borrow() {
                    source.wake();
                }
            }
            ("bye", Some(leader)) => {
                if let (Some(tab), Some(Ok(key))) = (parts.get(1), parts.get(2).map(|k| k.parse()))
                {
                    leader.leave(self, tab, key);
                }
            }
            ("who", None) => {
                self.heard_ms.set(js_sys::Date::now());
                self.announce_all();
            }
            ("beat", None) => self.heard_ms.set(js_sys::Date::now()),
            ("status", None) => {
                self.heard_ms.set(js_sys::Date::now());
                let seconds = parts.get(2).and_then(|s| s.parse().ok());
                let status = match (parts.get(1).map(String::as_str), seconds) {
                    (Some("reconnecting"), Some(seconds)) => LiveStatus::RetryingIn(seconds),
                    (Some("reconnecting"), None) => LiveStatus::Reconnecting,
                    (Some("open"), _) => LiveStatus::Open,
                    (Some("closed"), _) => LiveStatus::Closed,
                    _ => LiveStatus::Connecting,
                };
                self.set_status(status);
                if status == LiveStatus::Open {
                    // Where the leader's stream stands, and what it covers.
                    if let Some(from) = parts.get(3).filter(|from| !from.is_empty()) {
                        *self.cursor.borrow_mut() = Some(from.clone());
                    }
                    self.cover(parts.get(4..).unwrap_or_default());
                }
            }
            ("event", None) => {
                self.heard_ms.set(js_sys::Date::now());
                let [_, event_type, id, data, stored, matched @ ..] = parts else {
                    return;
                };
                self.deliver(event_type, id, data, !stored.is_empty(), matched);
            }
            _ => {}
        }
    }

    /// Applies an event of the leader's stream to this tab's subscriptions whose selectors it
    /// matched.
    fn deliver(&self, event_type: &str, id: &str, data: &str, stored: bool, matched: &[String]) {
        if stored {
            *self.cursor.borrow_mut() = Some(id.to_owned());
        }
        let locals = self.locals.borrow().clone();
        for local in locals {
            let wanted =
                matched.is_empty() || matched.iter().any(|m| local.target.selectors.contains(m));
            let listened = event_type == "message"
                || event_type == super::HISTORY_GAP_EVENT
                || local.target.named.iter().any(|n| n == event_type);
            if !(wanted && listened) {
                continue;
            }
            if local.announced.get() {
                local.sink.event(event_type, id, data);
            } else {
                // Still replaying on its own stream: after that replay, in order.
                let mut early = local.early.borrow_mut();
                if early.len() == EARLY_MAX {
                    early.pop_front();
                }
                early.push_back((event_type.to_owned(), id.to_owned(), data.to_owned()));
            }
        }
    }

    /// The leader's stream changed state: say so to the subscriptions that rely on it.
    fn set_status(&self, status: LiveStatus) {
        self.status.set(status);
        let locals = self.locals.borrow().clone();
        for local in locals {
            if local.own.borrow().is_none() {
                local.sink.status(status);
            }
        }
    }

    /// Every second: a visible follower that has not heard the leader for a while asks it, and
    /// takes over if still nothing comes back.
    fn watch(self: &Rc<Self>) {
        if self.leading().is_some() || self.locals.borrow().is_empty() {
            return;
        }
        let visible = document().visibility_state() == web_sys::VisibilityState::Visible;
        let (now, heard) = (js_sys::Date::now(), self.heard_ms.get());
        if !visible || now - heard <= SILENCE_MS {
            self.asked_ms.set(None);
            return;
        }
        match self.asked_ms.get() {
            // Heard since the question, or asked only just now: not yet.
            Some(asked) if heard < asked && now - asked > PROBE_MS => {
                self.asked_ms.set(None);
                self.heard_ms.set(now);
                self.request_lock(true);
            }
            Some(asked) if heard < asked => {}
            _ => {
                self.asked_ms.set(Some(now));
                self.post(&["ping"]);
            }
        }
    }

    /// Asks for the lock: queued behind the holder, or taken from it (`steal`).
    fn request_lock(self: &Rc<Self>, steal: bool) {
        if !steal && self.queued.replace(true) {
            return;
        }
        let Some(locks) = locks() else { return };
        let request = js_sys::Reflect::get(&locks, &"request".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        let Some(request) = request else { return };
        let weak = Rc::downgrade(self);
        let granted = Closure::<dyn FnMut(JsValue) -> js_sys::Promise>::once_into_js(
            move |_lock: JsValue| {
                let mut resolve = None;
                let held = js_sys::Promise::new(&mut |yes, _no| resolve = Some(yes));
                if let Some(resolve) = resolve {
                    match weak.upgrade() {
                        Some(tabs) => tabs.granted(resolve, steal),
                        None => drop(resolve.call0(&JsValue::NULL)),
                    }
                }
                held
            },
        );
        let options = js_sys::Object::new();
        if steal {
            let _ = js_sys::Reflect::set(&options, &"steal".into(), &true.into());
        } else if let Ok(withdraw) = web_sys::AbortController::new() {
            let _ = js_sys::Reflect::set(&options, &"signal".into(), &withdraw.signal());
            *self.withdraw.borrow_mut() = Some(withdraw);
        }
        let weak = Rc::downgrade(self);
        let lost = Closure::<dyn FnMut(JsValue)>::once(move |_: JsValue| {
            // Taken over by a tab that stopped hearing this one (or a withdrawn request).
            if let Some(tabs) = weak.upgrade() {
                tabs.lost();
            }
        });
        if let Ok(promise) = request
            .call3(&locks, &LOCK.into(), &options, &granted)
            .and_then(|p| p.dyn_into::<js_sys::Promise>())
        {
            let _ = promise.catch(&lost);
        }
        // Called at most once, when the lock is taken over; a few bytes otherwise.
        lost.forget();
    }

    /// The lock is this tab's: lead, from the last id this tab saw the old leader deliver (the
    /// first leader: live; each subscription's own stream holds until it is covered).
    fn granted(self: &Rc<Self>, release: js_sys::Function, steal: bool) {
        if !steal {
            self.queued.set(false);
            self.withdraw.borrow_mut().take();
        }
        if self.leading().is_some() {
            // Already leading (a steal went first): this grant is not needed.
            let _ = release.call0(&JsValue::NULL);
            return;
        }
        if let Some(old) = self.release.replace(Some(release)) {
            let _ = old.call0(&JsValue::NULL);
        }
        let beat = {
            let weak = Rc::downgrade(self);
            set_interval_with_handle(
                move || {
                    if let Some(tabs) = weak.upgrade() {
                        tabs.post(&["beat"]);
                    }
                },
                BEAT,
            )
            .ok()
        };
        let members = self
            .locals
            .borrow()
            .iter()
            .filter(|local| local.announced.get())
            .map(|local| self.member(local))
            .collect();
        let leader = Rc::new(Leader {
            members: RefCell::new(members),
            source: RefCell::default(),
            route: RefCell::default(),
            resume: RefCell::new(self.cursor.borrow().clone()),
            _beat: beat,
        });
        *self.leader.borrow_mut() = Some(leader.clone());
        mark_leader(true);
        leader.open(self, None);
        self.post(&["who"]);
    }

    /// The lock was taken over (this tab was frozen or stuck): stop leading, catch up on its
    /// own streams from where it stood, then join the new leader's; queue for the lock again.
    /// Announcing at once would have the new leader cover this tab from where its own stream
    /// stands, past what this tab missed while frozen.
    fn lost(self: &Rc<Self>) {
        let Some(leader) = self.leader.borrow_mut().take() else {
            // A request this tab withdrew.
            return;
        };
        leader.close();
        mark_leader(false);
        self.release.borrow_mut().take();
        self.heard_ms.set(js_sys::Date::now());
        self.come_back();
    }

    /// Tells the leader (again) what every subscription that streams through it wants.
    fn announce_all(self: &Rc<Self>) {
        let locals = self.locals.borrow().clone();
        for local in locals.iter().filter(|local| local.announced.get()) {
            self.announce(local, None);
        }
    }

    /// The page goes away (closed, or into the back-forward cache): close the stream and
    /// release the lock for the next tab, or tell the leader this tab wants nothing more; and
    /// leave the lock's queue.
    fn step_down(&self) {
        if let Some(withdraw) = self.withdraw.borrow_mut().take() {
            self.queued.set(false);
            withdraw.abort();
        }
        if let Some(leader) = self.leader.borrow_mut().take() {
            leader.close();
            mark_leader(false);
            if let Some(release) = self.release.borrow_mut().take() {
                let _ = release.call0(&JsValue::NULL);
            }
            return;
        }
        let locals = self.locals.borrow().clone();
        for local in locals.iter().filter(|local| local.announced.get()) {
            self.post(&["bye", &self.tab, &local.key.to_string()]);
        }
    }

    /// Back from the back-forward cache: each subscription catches up on its own stream from
    /// the last id this tab saw, then joins the leader's again; queue for the lock.
    fn come_back(self: &Rc<Self>) {
        let from = self.cursor.borrow().clone();
        let locals = self.locals.borrow().clone();
        for local in &locals {
            self.stream_alone(local, from.clone());
        }
        self.request_lock(false);
    }
}

/// `<html data-live-leader="true">` while this tab leads: for the curious, and the tests.
fn mark_leader(leading: bool) {
    if let Some(root) = document().document_element() {
        let _ = root.set_attribute("data-live-leader", if leading { "true" } else { "false" });
    }
}

fn parse_hello(parts: &[String]) -> Option<Member> {
    let tab = parts.get(1)?.clone();
    let key = parts.get(2)?.parse().ok()?;
    let mut lists = parts.get(4..)?.split(String::is_empty);
    let selectors = lists.next()?.to_vec();
    let named = lists.next().unwrap_or_default().to_vec();
    let live_only = lists.next().unwrap_or_default().to_vec();
    let page = lists
        .next()
        .unwrap_or_default()
        .iter()
        .any(|f| f == PAGE_FLAG);
    Some(Member {
        tab,
        key,
        selectors,
        named,
        live_only,
        page,
    })
}

impl Leader {
    fn close(&self) {
        let source = self.source.borrow_mut().take();
        if let Some(source) = source {
            source.dispose();
        }
    }

    fn target(&self) -> Target {
        let members = self.members.borrow();
        Target {
            selectors: union(members.iter().map(|m| m.selectors.clone())),
            named: union(members.iter().map(|m| m.named.clone())),
            live_only: union(members.iter().map(|m| m.live_only.clone())),
            credential: if members.iter().any(|m| m.page) {
                Credential::Page
            } else {
                Credential::None
            },
            routed: true,
        }
    }

    /// Opens the stream for the members, or reopens it with what they want now, after `from`
    /// (`None`: where the stream stands).
    fn open(self: &Rc<Self>, tabs: &Rc<Tabs>, from: Option<String>) {
        let target = self.target();
        self.route.borrow_mut().take();
        if target.selectors.is_empty() {
            self.close();
            return;
        }
        if let Some(source) = &*self.source.borrow() {
            source.reopen(target, from);
            return;
        }
        let from = self.resume.borrow_mut().take().or(from);
        let (on_event, on_status) = (Rc::downgrade(tabs), Rc::downgrade(tabs));
        let (leader, covering) = (Rc::downgrade(self), Rc::downgrade(self));
        let source = Source::open(
            target,
            from,
            move |event_type, id, data, stored| {
                if let (Some(tabs), Some(leader)) = (on_event.upgrade(), leader.upgrade()) {
                    leader.on_event(&tabs, event_type, id, data, stored);
                }
            },
            move |status| {
                if let (Some(tabs), Some(leader)) = (on_status.upgrade(), covering.upgrade()) {
                    // A new connection: no route is pending on it.
                    leader.route.borrow_mut().take();
                    tabs.set_status(status);
                    leader.tell(&tabs, status);
                }
            },
        );
        *self.source.borrow_mut() = Some(source);
    }

    /// Posts the stream's status, and when it is open the selectors it covers.
    fn tell(&self, tabs: &Tabs, status: LiveStatus) {
        let mut parts = vec!["status".to_owned(), status.as_str().to_owned()];
        parts.push(match status {
            LiveStatus::RetryingIn(seconds) => seconds.to_string(),
            _ => String::new(),
        });
        if status == LiveStatus::Open {
            let stands = self.source.borrow().as_ref().and_then(Source::stored_id);
            if let Some(stands) = &stands {
                *tabs.cursor.borrow_mut() = Some(stands.clone());
            }
            parts.push(stands.unwrap_or_default());
            let selectors = self.covered();
            tabs.cover(&selectors);
            parts.extend(selectors);
        }
        tabs.post(&parts);
    }

    /// The selectors of the open stream.
    fn covered(&self) -> Vec<String> {
        self.source
            .borrow()
            .as_ref()
            .filter(|source| source.is_open())
            .map(|source| source.with_target(|target| target.selectors.clone()))
            .unwrap_or_default()
    }

    fn on_event(&self, tabs: &Tabs, event_type: &str, id: &str, data: &str, stored: bool) {
        match event_type {
            ROUTE_EVENT => {
                // The selectors at those indices, looked up in place: once per event.
                let matched = self.source.borrow().as_ref().map(|source| {
                    source.with_target(|target| {
                        data.split(' ')
                            .filter_map(|index| {
                                target.selectors.get(index.parse::<usize>().ok()?).cloned()
                            })
                            .collect()
                    })
                });
                *self.route.borrow_mut() = Some(matched.unwrap_or_default());
            }
            // The replay is done: the stream now covers its selectors.
            LIVE_EVENT => self.tell(tabs, LiveStatus::Open),
            _ => {
                // An event without a route before it (the gap event) is for every tab.
                let matched = self.route.borrow_mut().take().unwrap_or_default();
                let mut parts = vec!["event", event_type, id, data, if stored { "1" } else { "" }];
                parts.extend(matched.iter().map(String::as_str));
                tabs.post(&parts);
                tabs.deliver(event_type, id, data, stored, &matched);
            }
        }
    }

    /// A subscription (of this tab or another) joins, its own stream having subscribed at
    /// `from`: the stream widens if it must, or says at once that it covers it.
    ///
    /// A widened stream resumes from `from` when the stream has everything up to now (`from`
    /// is then behind where it stands: the others get a few repeats, which they drop), and
    /// from where it stands otherwise. Resuming from where it stands when that is long ago (a
    /// quiet stream) would replay, to every tab, everything since then of the new selectors.
    fn join(self: &Rc<Self>, tabs: &Rc<Tabs>, member: Member, from: Option<String>) {
        let before = self.target();
        {
            let mut members = self.members.borrow_mut();
            members.retain(|m| !(m.tab == member.tab && m.key == member.key));
            members.push(member);
        }
        let (exists, open) = match &*self.source.borrow() {
            Some(source) => (true, source.is_open()),
            None => (false, false),
        };
        if self.target() != before || !exists {
            self.open(tabs, from.filter(|_| open || !exists));
        } else if open {
            self.tell(tabs, LiveStatus::Open);
        }
    }

    fn leave(self: &Rc<Self>, tabs: &Rc<Tabs>, tab: &str, key: u32) {
        let before = self.target();
        self.members
            .borrow_mut()
            .retain(|m| !(m.tab == tab && m.key == key));
        if self.target() != before {
            self.open(tabs, None);
        }
    }
}
