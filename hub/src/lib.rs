//! The publish/subscribe core of Tidings.
//!
//! This crate knows nothing of HTTP frameworks or of the UI: the server maps requests onto it, and
//! so could any other front end. One concept per module, all private; what callers need is
//! re-exported here:
//!
//! - `sse`: encoding an event into the bytes of the `text/event-stream` format, once per event;
//!   the resulting [`bytes::Bytes`] is cheap to clone and is what every subscriber is handed.
//! - `selector`: which topics a subscription or a token claim covers (exact, `*`, URI templates).
//! - `update`: an update, parsed once at the edge from a [`NewUpdate`].
//! - `history`: the storage boundary ([`History`]), and its SQLite and Redis implementations.
//! - `encodings`: the encoded bytes of large stored updates, shared by whoever holds them.
//! - `queue`: a subscriber's queue of events not yet written.
//! - `index` and `registry`: the subscribers, indexed by selector, and the head of the stream.
//! - `writer`: the one thread that commits and fans out, in order.
//! - `follower`: for a history several nodes share, the thread that fans out what the store
//!   holds, in its order.
//! - `live_id`: the ids of live-only events, which carry their own place.
//! - `stream`: a subscription's stream, from history to live.
//! - `events`: subscription events.
//! - `roster`: on a cluster, what each node tells the others about its subscribers.
//! - `hub`: the [`Hub`] handle that ties them together.

mod encodings;
mod events;
mod follower;
mod history;
mod hub;
mod index;
mod live_id;
mod queue;
mod registry;
mod roster;
mod selector;
mod sse;
mod stats;
mod stream;
mod update;
mod writer;

pub use events::{subscription_json, subscription_topic};
pub use history::{
    Cursor, Followed, Heads, History, HistoryError, Horizon, LiveEvent, NodeState, RedisHistory,
    Refreshed, Retention, SharedHistory, SqliteHistory,
};
pub use hub::{
    Hub, HubConfig, PublishError, SelectorRefused, Snapshot, SubscribeError, SubscribeRequest,
    Subscription, Subscriptions, Unhealthy,
};
pub use live_id::LiveIdKey;
pub use registry::{ActiveSubscription, EARLIEST, SubscriberInfo};
pub use selector::{Interner, MAX_SELECTOR_LEN, Selector, SelectorError};
pub use sse::{Event, comment};
pub use stats::Stats;
pub use stream::{HISTORY_GAP_EVENT, LIVE_EVENT, ROUTE_EVENT, SubscriptionStream};
pub use update::{MAX_TOPICS, NewUpdate, RESERVED_PATH, Stored, Update, UpdateError, new_id};
