//! Subscription events: the hub announces each subscription opening and closing as a private
//! update on `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, a JSON-LD document as
//! the Mercure spec describes. The same documents make the active-subscriptions API, and what a
//! node of a cluster tells the others about its subscribers.
//!
//! They are state, not history: they go to the subscribers connected now and are never stored,
//! so connections coming and going cannot push a published update out of the history.

use crate::{
    subscriber::SubscriberInfo,
    update::{NewUpdate, RESERVED_PATH, Update},
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

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

/// The JSON-LD document of one subscription, as in the Mercure spec.
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

/// The private update announcing one of `info`'s subscriptions.
pub(crate) fn subscription_update(
    info: &SubscriberInfo,
    selector: &str,
    activity: Activity,
) -> Update {
    let json = subscription_json(info, selector, activity == Activity::Opened);
    NewUpdate {
        private: true,
        ..NewUpdate::new(subscription_topic(selector, info.id()), json.to_string())
    }
    .parse_internal()
    .expect("a subscription topic is a valid topic")
}

/// A subscriber's documents, one per selector, as a JSON array: what a node of a cluster
/// publishes about it.
pub(crate) fn documents(info: &SubscriberInfo) -> String {
    let docs: Vec<serde_json::Value> = info
        .selectors
        .iter()
        .map(|s| subscription_json(info, s.as_str(), true))
        .collect();
    serde_json::Value::Array(docs).to_string()
}

/// One active subscription (a subscriber and one of its selectors), for the subscriptions API.
#[derive(Debug, Clone)]
pub struct ActiveSubscription {
    pub selector: String,
    /// The subscriber's id.
    pub subscriber: String,
    /// Its JSON-LD document, as the Mercure spec describes it.
    pub document: serde_json::Value,
}

impl ActiveSubscription {
    /// One per selector of `info`.
    pub(crate) fn of(info: &SubscriberInfo) -> impl Iterator<Item = Self> + '_ {
        info.selectors.iter().map(|selector| ActiveSubscription {
            selector: selector.as_str().to_owned(),
            subscriber: info.id.clone(),
            document: subscription_json(info, selector.as_str(), true),
        })
    }

    /// From a subscription's document (as another node published it); `None` if it lacks the
    /// fields every document has.
    pub(crate) fn from_document(document: serde_json::Value) -> Option<Self> {
        Some(ActiveSubscription {
            selector: document.get("topic")?.as_str()?.to_owned(),
            subscriber: document.get("subscriber")?.as_str()?.to_owned(),
            document,
        })
    }
}
