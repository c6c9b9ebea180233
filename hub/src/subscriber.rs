//! Who a subscriber is, and what it may and wants to receive: checked by the fan-out, the
//! replays and the subscriptions API alike.

use crate::{
    selector::{MatchKind, Selector},
    sse,
    update::Update,
};
use bytes::Bytes;
use std::sync::Arc;

/// The named event a routed subscription ([`SubscribeRequest::routed`](crate::SubscribeRequest))
/// receives just before each update: its data is the indices (from 0, in the order of the
/// request's selectors, separated by spaces) of the selectors the update matches. It has no id,
/// so a client's last event id stays the update's.
pub const ROUTE_EVENT: &str = "tidings-route";

/// The Mercure version a subscription was made in: what its subscription events and documents
/// look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `topic=` selectors: JSON-LD documents on `…/subscriptions/{topic}/{subscriber}`.
    #[default]
    Draft07,
    /// `match…=` matchers: JSON documents on `…/subscriptions/{match_type}/{match}/{subscriber}`,
    /// sent as `event: mercure`. `match_types` holds the matcher type each selector was given
    /// with, in the same order: what its documents name (`*` is the wildcard whatever its type,
    /// so its selector cannot tell).
    Mercure1 { match_types: Vec<MatchKind> },
}

/// Who a subscriber is, for authorization and the active-subscriptions API.
#[derive(Debug)]
pub struct SubscriberInfo {
    /// `urn:uuid:…`, unique per connection.
    pub(crate) id: String,
    pub(crate) selectors: Vec<Selector>,
    /// The `mercure.subscribe` claim: which private updates it may receive. `None`: anonymous.
    pub(crate) scope: Option<Arc<[Selector]>>,
    /// The `mercure.payload` claim, published with its subscription events.
    pub(crate) payload: Option<serde_json::Value>,
    /// Whether each update is preceded by its route (see [`SubscriberInfo::route`]).
    pub(crate) routed: bool,
    pub(crate) protocol: Protocol,
}

impl SubscriberInfo {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn payload(&self) -> Option<&serde_json::Value> {
        self.payload.as_ref()
    }

    /// Each selector, with the Mercure 1.0 matcher type it was given with; `None` for draft-07's.
    pub(crate) fn matchers(&self) -> impl Iterator<Item = (&Selector, Option<MatchKind>)> {
        self.selectors.iter().enumerate().map(|(index, selector)| {
            let kind = match &self.protocol {
                Protocol::Draft07 => None,
                Protocol::Mercure1 { match_types } => Some(
                    match_types
                        .get(index)
                        .copied()
                        .or_else(|| selector.kind())
                        .unwrap_or(MatchKind::Exact),
                ),
            };
            (selector, kind)
        })
    }

    pub(crate) fn may_receive(&self, update: &Update) -> bool {
        may_receive(self.scope.as_deref(), update)
    }

    pub(crate) fn wants(&self, update: &Update) -> bool {
        self.selectors
            .iter()
            .any(|selector| selector.matches_any(update.topics()))
    }

    /// The route event of `update` for a routed subscriber: the indices of the selectors it
    /// matches. Computed by the subscriber's own stream (outside the registry's lock), one test
    /// per selector: a routed subscription is one browser's, with its tabs' few selectors.
    pub(crate) fn route(&self, update: &Update) -> Bytes {
        let mut data = String::new();
        for (index, selector) in self.selectors.iter().enumerate() {
            if selector.matches_any(update.topics()) {
                if !data.is_empty() {
                    data.push(' ');
                }
                data.push_str(&index.to_string());
            }
        }
        sse::Event {
            event: Some(ROUTE_EVENT),
            data: &data,
            ..sse::Event::default()
        }
        .encode()
    }

    /// The literal prefixes of its selectors: what it could ever select starts with one.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &str> + Clone {
        self.selectors.iter().map(Selector::literal_prefix)
    }

    /// Its exact-topic selectors' topics.
    pub(crate) fn exact_topics(&self) -> impl Iterator<Item = &str> {
        self.selectors.iter().filter_map(|s| match s {
            Selector::Exact(topic) => Some(&**topic),
            _ => None,
        })
    }
}

/// Whether a subscriber with this `mercure.subscribe` claim may receive `update`.
pub(crate) fn may_receive(scope: Option<&[Selector]>, update: &Update) -> bool {
    !update.is_private()
        || scope.is_some_and(|scope| scope.iter().any(|s| s.matches_any(update.topics())))
}
