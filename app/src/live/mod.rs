//! Live data from the hub, written once for every page.
//!
//! [`use_live`] subscribes to topic selectors and exposes what arrives as signals: a bounded list
//! of events (deduplicated by id) and the connection status. A page renders its state on the
//! server together with the id of the last update that state includes, and passes that id here:
//! the browser then subscribes from exactly that point (`lastEventID`), so nothing published
//! between rendering and hydration is lost or shown twice. When the hub says it cannot resume
//! (the `tidings-history-gap` event), the page reloads, which renders fresh state.
//!
//! **One connection per browser.** Browsers allow six HTTP/1.1 connections per origin, so a
//! seventh tab holding its own stream would hang. The tabs of an origin therefore share one
//! stream ([`tabs`]): one tab leads (it holds a Web Lock) and subscribes, in a routed
//! subscription, to the union of every tab's selectors; it passes each event, with the selectors
//! it matched, to the others over a `BroadcastChannel`, and each tab keeps the events its own
//! selectors match. When the leader goes away another tab takes the lock and resumes from the
//! last id every tab has seen; tabs drop any id they already have. A subscription with a token of
//! its own (the console), or a browser without Web Locks, keeps a connection of its own.
//!
//! **Private updates.** A subscription that needs this app's page token ([`Credential::Page`]:
//! the chat's presence counts) gets it from the server (`api::page_token`) before its stream
//! opens, and a fresh one before it ends; the stream then moves to a new connection from its
//! last id, the old one closing once the new is open: no gap, no repeat, the status stays
//! `open` ([`source`]). The tabs share it: the leader's stream carries the page token when any
//! tab's subscription needs it.
//!
//! **Coming back by itself.** A stream the browser gives up on (a reconnect answered with
//! anything but 200: a proxy's 502 during a deploy, a 503 while Redis is away) is opened again
//! ([`source`]), from the last stored id it showed, after a pause that doubles from 1 s to 30 s
//! with jitter, and at once when the tab becomes visible or the network comes back. Meanwhile
//! the status says `reconnecting in N s`.
//!
//! On the server this does nothing: the signals stay empty and `connecting`.

use leptos::prelude::*;

#[cfg(feature = "hydrate")]
mod sink;
#[cfg(feature = "hydrate")]
mod source;
#[cfg(feature = "hydrate")]
mod tabs;

/// The hub's "cannot resume from your id" event.
pub const HISTORY_GAP_EVENT: &str = "tidings-history-gap";
/// The event before each update of a routed subscription: the indices of the selectors the
/// update matches (the hub's `ROUTE_EVENT`).
pub const ROUTE_EVENT: &str = "tidings-route";
/// The event a routed subscription gets once its replay is done (the hub's `LIVE_EVENT`).
pub const LIVE_EVENT: &str = "tidings-live";
/// The query parameter asking the hub for a routed subscription.
pub const ROUTE_PARAMETER: &str = "tidings-route";

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
    /// The browser is reconnecting by itself.
    Reconnecting,
    /// The stream was given up on; it is opened again in this many seconds.
    RetryingIn(u32),
    /// The server said the stream is complete (the counter's `204` after its last number).
    Finished,
    /// The token the visitor gave has ended: a new one is needed.
    Expired,
    Closed,
}

impl LiveStatus {
    /// The word for the `data-status` attribute (what the browser tests look at).
    pub fn as_str(self) -> &'static str {
        match self {
            LiveStatus::Connecting => "connecting",
            LiveStatus::Open => "open",
            LiveStatus::Reconnecting | LiveStatus::RetryingIn(_) => "reconnecting",
            LiveStatus::Finished => "finished",
            LiveStatus::Expired => "expired",
            LiveStatus::Closed => "closed",
        }
    }

    /// What the visitor reads.
    pub fn label(self) -> String {
        match self {
            LiveStatus::RetryingIn(seconds) => format!("reconnecting in {seconds} s"),
            LiveStatus::Expired => "token expired".to_owned(),
            other => other.as_str().to_owned(),
        }
    }
}

/// What a subscription shows the hub to receive private updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: public updates only.
    #[default]
    None,
    /// A subscriber token the visitor gave (the console's), sent as the `authorization` query
    /// parameter; used until its `exp`, then the stream stops ([`LiveStatus::Expired`]). Such a
    /// subscription has a connection of its own.
    Token(String),
    /// This app's page token, fetched from the server and renewed before it ends.
    Page,
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
    /// How it may receive private updates.
    pub credential: Credential,
    /// A connection of its own rather than the tabs' shared one (the console: any selectors,
    /// which could take the shared subscription past the hub's limits).
    pub alone: bool,
    /// Reload the page on a history gap (default); otherwise the gap is shown as an event.
    pub keep_on_gap: bool,
    /// Event types the hub sends live but never stores (such as presence counts): their ids
    /// are not where a new connection resumes from.
    pub live_only: Vec<&'static str>,
}

impl LiveOptions {
    /// The credential, a blank given token being none.
    #[cfg(feature = "hydrate")]
    fn credential(&self) -> Credential {
        match &self.credential {
            Credential::Token(token) if token.trim().is_empty() => Credential::None,
            Credential::Token(token) => Credential::Token(token.trim().to_owned()),
            other => other.clone(),
        }
    }
}

/// The signals of a live subscription; the connection closes when the owning component goes away.
#[derive(Clone, Copy)]
pub struct Live {
    pub events: RwSignal<Vec<LiveEvent>>,
    pub status: RwSignal<LiveStatus>,
}

/// Subscribes (in the browser) and returns the signals.
pub fn use_live(options: LiveOptions) -> Live {
    let live = Live {
        events: RwSignal::new(Vec::new()),
        status: RwSignal::new(LiveStatus::Connecting),
    };
    #[cfg(feature = "hydrate")]
    {
        let sink = std::rc::Rc::new(sink::Sink::new(&options, live));
        // Shared with the other tabs where the browser can, alone otherwise.
        let own_token = matches!(options.credential(), Credential::Token(_));
        let shared = if !own_token && !options.alone {
            tabs::subscribe(&options, sink.clone())
        } else {
            None
        };
        let connection = match shared {
            Some(handle) => Connection::Shared(handle),
            None => Connection::Alone(source::Source::open(
                source::Target::of(&options, false),
                options.last_event_id.clone(),
                {
                    let sink = sink.clone();
                    move |event_type, id, data, _| sink.event(event_type, id, data)
                },
                move |status| sink.status(status),
            )),
        };
        let connection = send_wrapper::SendWrapper::new(connection);
        on_cleanup(move || drop(connection));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = options;
    live
}

/// How a subscription gets its events; closed when dropped (held for that alone).
#[cfg(feature = "hydrate")]
#[allow(dead_code)]
enum Connection {
    Alone(source::Source),
    Shared(tabs::Handle),
}

/// A small badge showing a connection's status, announced politely.
#[component]
pub fn LiveBadge(status: RwSignal<LiveStatus>) -> impl IntoView {
    view! {
        <span class="live-badge js-only" role="status" aria-live="polite"
            data-status=move || status.get().as_str()>
            {move || status.get().label()}
        </span>
    }
}

/// The hub URL for these selectors, from this id, with this token; `routed`: the hub names the
/// selectors each update matches (see [`ROUTE_EVENT`]).
pub fn hub_url_of(
    selectors: &[String],
    last_event_id: Option<&str>,
    token: Option<&str>,
    routed: bool,
) -> String {
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
    for selector in selectors {
        add("topic", selector);
    }
    if let Some(id) = last_event_id {
        add("lastEventID", id);
    }
    if let Some(token) = token {
        add("authorization", token);
    }
    if routed {
        add(ROUTE_PARAMETER, "1");
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
        let url = hub_url_of(
            &["/chat/general".into(), "/ticker/{symbol}".into()],
            Some("urn:uuid:1"),
            Some("a.b"),
            false,
        );
        assert_eq!(
            url,
            "/.well-known/mercure?topic=%2Fchat%2Fgeneral&topic=%2Fticker%2F%7Bsymbol%7D\
             &lastEventID=urn%3Auuid%3A1&authorization=a.b"
        );
    }
}
