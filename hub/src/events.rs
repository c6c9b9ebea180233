//! Subscription events: the hub announces each subscription opening and closing as a private
//! update on `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, a JSON-LD document as
//! the Mercure spec describes. The same documents make the active-subscriptions API, and what a
//! node of a cluster tells the others about its subscribers.
//!
//! They are state, not history: they go to the subscribers connected now and are never stored,
//! so connections coming and going cannot push a published update out of the history.

use crate::{
    selector::{MatchKind, Selector},
    subscriber::SubscriberInfo,
    update::{NewUpdate, RESERVED_PATH, Update},
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What RFC 6570's simple expansion encodes: everything but the unreserved characters
/// (Mercure 1.0's topics and ids of subscription events encode each variable so, exactly once).
const EXPANDED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The SSE `event:` of Mercure 1.0 subscription events, which publishers may not use.
pub const SUBSCRIPTION_EVENT_TYPE: &str = "mercure";

/// Whether a subscription event says the subscription opened or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    Opened,
    Closed,
}

/// The topic of a subscription event.
pub fn subscription_topic(selector: &str, subscriber: &str) -> String {
    format!(
        "{RESERVED_PATH}/subscriptions/{}/{}",
        utf8_percent_encode(selector, NON_ALPHANUMERIC),
        utf8_percent_encode(subscriber, NON_ALPHANUMERIC)
    )
}

/// The topic of a Mercure 1.0 subscription event: `…/subscriptions/{match_type}/{match}` and,
/// given one, `/{subscriber}`.
pub fn subscription_topic_v1(kind: MatchKind, matcher: &str, subscriber: Option<&str>) -> String {
    let mut topic = format!(
        "{RESERVED_PATH}/subscriptions/{}/{}",
        kind.name(),
        utf8_percent_encode(matcher, EXPANDED)
    );
    if let Some(subscriber) = subscriber {
        topic.push('/');
        topic.extend(utf8_percent_encode(subscriber, EXPANDED));
    }
    topic
}

/// One subscription's document, in the form of the protocol it was made in: `kind` is the
/// matcher type a Mercure 1.0 subscription gave `selector` with, `None` for draft-07.
pub(crate) fn document(
    info: &SubscriberInfo,
    selector: &Selector,
    kind: Option<MatchKind>,
    active: bool,
) -> serde_json::Value {
    let Some(kind) = kind else {
        return subscription_json(info, selector.as_str(), active);
    };
    let mut doc = serde_json::json!({
        "id": subscription_topic_v1(kind, selector.as_str(), Some(info.id())),
        "type": "subscription",
        "match_type": kind.name(),
        "match": selector.as_str(),
        "subscriber": info.id(),
        "active": active,
    });
    if let Some(payload) = info.payload() {
        doc["payload"] = payload.clone();
    }
    doc
}

/// The JSON-LD document of one subscription, as in the Mercure spec (draft-07).
pub fn subscription_json(info: &SubscriberInfo, selector: &str, active: bool) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "@context": "https://mercure.rocks/",
        "id": subscription_topic(selector, info.id()),
        "type": "Subscription",
        "topic": selector,
        "subscriber": info.id(),
        "active": active,
    });
    if let Some(payload) = info.payload() {
        doc["payload"] = payload.clone();
    }
    doc
}

/// The private update announcing one of `info`'s subscriptions, in its protocol's form (`kind`
/// as for [`document`]).
pub(crate) fn subscription_update(
    info: &SubscriberInfo,
    selector: &Selector,
    kind: Option<MatchKind>,
    activity: Activity,
) -> Update {
    let json = document(info, selector, kind, activity == Activity::Opened);
    let (topic, event_type) = match kind {
        None => (subscription_topic(selector.as_str(), info.id()), None),
        Some(kind) => (
            subscription_topic_v1(kind, selector.as_str(), Some(info.id())),
            Some(SUBSCRIPTION_EVENT_TYPE.to_owned()),
        ),
    };
    NewUpdate {
        private: true,
        event_type,
        ..NewUpdate::new(topic, json.to_string())
    }
    .parse_internal()
    .expect("a subscription topic is a valid topic")
}

/// A subscriber's documents, one per selector, as a JSON array: what a node of a cluster
/// publishes about it.
pub(crate) fn documents(info: &SubscriberInfo) -> String {
    let docs: Vec<serde_json::Value> = info
        .matchers()
        .map(|(selector, kind)| document(info, selector, kind, true))
        .collect();
    serde_json::Value::Array(docs).to_string()
}

/// One active subscription (a subscriber and one of its selectors), for the subscriptions API.
#[derive(Debug, Clone)]
pub struct ActiveSubscription {
    pub selector: String,
    /// For a Mercure 1.0 subscription, its matcher type; `None` for draft-07.
    pub match_type: Option<MatchKind>,
    /// The subscriber's id.
    pub subscriber: String,
    /// Its JSON-LD document, as the Mercure spec describes it.
    pub document: serde_json::Value,
}

impl ActiveSubscription {
    /// One per selector of `info`.
    pub(crate) fn of(info: &SubscriberInfo) -> impl Iterator<Item = Self> + '_ {
        info.matchers().map(|(selector, kind)| ActiveSubscription {
            selector: selector.as_str().to_owned(),
            match_type: kind,
            subscriber: info.id.clone(),
            document: document(info, selector, kind, true),
        })
    }

    /// From a subscription's document (as another node published it); `None` if it lacks the
    /// fields every document has.
    pub(crate) fn from_document(document: serde_json::Value) -> Option<Self> {
        let text = |field: &str| Some(document.get(field)?.as_str()?.to_owned());
        let (selector, match_type) = match text("match_type") {
            Some(kind) => (text("match")?, Some(MatchKind::from_name(&kind)?)),
            None => (text("topic")?, None),
        };
        Some(ActiveSubscription {
            selector,
            match_type,
            subscriber: text("subscriber")?,
            document,
        })
    }
}

/// The active subscriptions, and the id of the last update fanned out.
pub struct Subscriptions {
    pub active: Vec<ActiveSubscription>,
    pub last_event_id: String,
}
