//! Subscription events: the hub announces each subscription opening and closing as a private
//! update on `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, a JSON-LD document as
//! the Mercure spec describes.
//!
//! They are state, not history: they go to the subscribers connected now and are never stored,
//! so connections coming and going cannot push a published update out of the history.

use crate::{
    registry::SubscriberInfo,
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
