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
//! everything up to the moment it subscribed, the leader's stream has everything after its own
//! last id, which is earlier. Resuming the shared stream from a tab's rendered id instead would
//! replay, to every tab, everything since that id (hours of ticker quotes for a quiet news page).
//!
//! **Taking over.** Every tab keeps the last stored id the leader posted (its cursor). A leader
//! that goes away releases the lock (on `pagehide`; the browser does it when a tab crashes) and
//! the next tab in the lock's queue leads: it resumes from its cursor and asks the others what
//! they want (`who`); repeats are dropped by id. A leader that is frozen or stuck keeps the lock,
//! so it posts a heartbeat every second: a visible tab that hears nothing for [`SILENCE_MS`]
//! takes the lock over (`steal`), and the old leader, told so by the lock, steps down.
//!
//! Messages are arrays of strings (structured clones), the first being the kind:
//! - `hello, tab, key, selectors…, "", named…, "", live_only…` · `bye, tab, key` · `who` · `beat`
//! - `status, word, seconds, selectors…` (the leader's stream, and what it covers when open)
//! - `event, type, id, data, stored ("1" or ""), matched selectors…` (none: for every tab)

use super::{
    LIVE_EVENT, LiveOptions, LiveStatus, ROUTE_EVENT,
    sink::Sink,
    source::{Source, Target},
};
use leptos::prelude::*;
use std::{
    cell::{Cell, RefCell},
    collections::BTreeSet,
    rc::{Rc, Weak},
};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};

/// The Web Lock whose holder leads.
const LOCK: &str = "tidings-live-leader";
/// The channel the tabs talk on.
const CHANNEL: &str = "tidings-live";
/// How long a visible tab waits without hearing the leader before taking over.
const SILENCE_MS: f64 = 4_000.0;
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
}

/// What one subscription (of any tab) wants from the leader.
#[derive(Clone)]
struct Member {
    tab: String,
    key: u32,
    selectors: Vec<String>,
    named: Vec<String>,
    live_only: Vec<String>,
}

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
    /// Whether a lock request of this tab waits in the queue.
    queued: Cell<bool>,
    /// When the leader was last heard.
    heard_ms: Cell<f64>,
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
        sink: sink.clone(),
        own: RefCell::default(),
        announced: Cell::new(false),
    });
    tabs.locals.borrow_mut().push(local.clone());
    let weak = Rc::downgrade(&tabs);
    let own = Source::open(
        local.target.clone(),
        options.last_event_id.clone(),
        move |event_type, id, data, _| match event_type {
            ROUTE_EVENT => {}
            LIVE_EVENT => {
                if let Some(tabs) = weak.upgrade() {
                    tabs.caught_up(key);
                }
            }
            _ => sink.event(event_type, id, data),
        },
        {
            let sink = local.sink.clone();
            move |status| sink.status(status)
        },
    );
    *local.own.borrow_mut() = Some(own);
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
                window_event_listener_untyped("pageshow", move |_| {
                    // Back from the back-forward cache, having let go of the lock: queue again.
                    if let Some(tabs) = weak.upgrade()
                        && tabs.leading().is_none()
                    {
                        tabs.request_lock(false);
                    }
                })
            };
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
                heard_ms: Cell::new(js_sys::Date::now()),
                status: Cell::new(LiveStatus::Connecting),
                _listeners: vec![pagehide, pageshow],
                _on_message: on_message,
                _watch: watch,
            }
        }))
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
        }
    }

    /// A subscription's own stream has everything up to now: ask the leader to cover it.
    fn caught_up(self: &Rc<Self>, key: u32) {
        let Some(local) = self.local(key) else { return };
        if local.announced.replace(true) {
            return;
        }
        self.announce(&local);
    }

    fn local(&self, key: u32) -> Option<Rc<Local>> {
        self.locals.borrow().iter().find(|l| l.key == key).cloned()
    }

    fn announce(self: &Rc<Self>, local: &Local) {
        let member = self.member(local);
        if let Some(leader) = self.leading() {
            leader.join(self, member);
            return;
        }
        let mut parts = vec!["hello".to_owned(), member.tab, member.key.to_string()];
        for list in [member.selectors, member.named] {
            parts.extend(list);
            parts.push(String::new());
        }
        parts.extend(member.live_only);
        self.post(&parts);
    }

    /// The leader's open stream covers `selectors`: subscriptions wanting no more close their
    /// own stream.
    fn cover(&self, selectors: &[String]) {
        for local in self.locals.borrow().clone() {
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
                    leader.join(self, member);
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
                for local in self.locals.borrow().clone() {
                    if local.announced.get() {
                        self.announce(&local);
                    }
                }
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
                    self.cover(parts.get(3..).unwrap_or_default());
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
        // A subscription still replaying on its own stream takes nothing from the leader's
        // yet: its own stream brings everything until the leader's covers it, and in order.
        for local in self.locals.borrow().clone() {
            if !local.announced.get() {
                continue;
            }
            let wanted =
                matched.is_empty() || matched.iter().any(|m| local.target.selectors.contains(m));
            let listened = event_type == "message"
                || event_type == super::HISTORY_GAP_EVENT
                || local.target.named.iter().any(|n| n == event_type);
            if wanted && listened {
                local.sink.event(event_type, id, data);
            }
        }
    }

    /// The leader's stream changed state: say so to the subscriptions that rely on it.
    fn set_status(&self, status: LiveStatus) {
        self.status.set(status);
        for local in self.locals.borrow().clone() {
            if local.own.borrow().is_none() {
                local.sink.status(status);
            }
        }
    }

    /// Every second: a visible follower that has not heard the leader for a while takes over.
    fn watch(self: &Rc<Self>) {
        if self.leading().is_some() || self.locals.borrow().is_empty() {
            return;
        }
        let visible = document().visibility_state() == web_sys::VisibilityState::Visible;
        if visible && js_sys::Date::now() - self.heard_ms.get() > SILENCE_MS {
            self.heard_ms.set(js_sys::Date::now());
            self.request_lock(true);
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
        }
        let weak = Rc::downgrade(self);
        let lost = Closure::<dyn FnMut(JsValue)>::once(move |_: JsValue| {
            // Taken over by a tab that stopped hearing this one.
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
            _beat: beat,
        });
        *self.leader.borrow_mut() = Some(leader.clone());
        mark_leader(true);
        leader.open(self, self.cursor.borrow().clone());
        self.post(&["who"]);
    }

    /// The lock was taken over: stop leading, tell the new leader what this tab wants, and
    /// queue for the lock again.
    fn lost(self: &Rc<Self>) {
        if let Some(leader) = self.leader.borrow_mut().take() {
            leader.close();
        }
        mark_leader(false);
        self.release.borrow_mut().take();
        self.heard_ms.set(js_sys::Date::now());
        for local in self.locals.borrow().clone() {
            if local.announced.get() {
                self.announce(&local);
            }
        }
        self.request_lock(false);
    }

    /// The page goes away: close the stream and release the lock for the next tab.
    fn step_down(&self) {
        if let Some(leader) = self.leader.borrow_mut().take() {
            leader.close();
        }
        mark_leader(false);
        if let Some(release) = self.release.borrow_mut().take() {
            let _ = release.call0(&JsValue::NULL);
        }
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
    let mut lists = parts.get(3..)?.split(String::is_empty);
    let selectors = lists.next()?.to_vec();
    let named = lists.next().unwrap_or_default().to_vec();
    let live_only = lists.next().unwrap_or_default().to_vec();
    Some(Member {
        tab,
        key,
        selectors,
        named,
        live_only,
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
            token: None,
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
            .map(|source| source.target().selectors)
            .unwrap_or_default()
    }

    fn on_event(&self, tabs: &Tabs, event_type: &str, id: &str, data: &str, stored: bool) {
        match event_type {
            ROUTE_EVENT => {
                let selectors = self
                    .source
                    .borrow()
                    .as_ref()
                    .map(|s| s.target().selectors)
                    .unwrap_or_default();
                let matched = data
                    .split(' ')
                    .filter_map(|index| selectors.get(index.parse::<usize>().ok()?).cloned())
                    .collect();
                *self.route.borrow_mut() = Some(matched);
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

    /// A subscription (of this tab or another) joins: the stream widens if it must (resuming
    /// from its last id), or says at once that it covers it.
    fn join(self: &Rc<Self>, tabs: &Rc<Tabs>, member: Member) {
        let before = self.target();
        {
            let mut members = self.members.borrow_mut();
            members.retain(|m| !(m.tab == member.tab && m.key == member.key));
            members.push(member);
        }
        if self.target() != before || self.source.borrow().is_none() {
            self.open(tabs, None);
        } else if self.source.borrow().as_ref().is_some_and(Source::is_open) {
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
