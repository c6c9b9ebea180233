//! The publish/subscribe core of Tidings.
//!
//! This crate knows nothing of HTTP frameworks or of the UI: the server maps requests onto it, and
//! so could any other front end. One concept per module, all private; what callers need is
//! re-exported here.
//!
//! # Layers
//!
//! The modules stand on each other, bottom up: a module imports only from layers below its own,
//! and modules of one layer do not import each other (`make check` holds the code to this
//! table: `hub/tests/layers.rs`). So the registry's lock has one owner, the fan-out; the
//! writer, the streams and the cluster are given what they need, never the hub; and the cluster
//! sits beside local delivery, never calling the writer.
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | 0 | `sse`, `index`, `mark`, `stats`, `selector`, `config`, `node`, `shutdown` | leaves: the SSE encoding (once per event, shared as [`bytes::Bytes`]); the prefix index; an event's place in the order (`Mark`, [`EARLIEST`]); the counters; selectors (exact, `*`, RFC 6570 templates, Mercure 1.0 URL patterns, the interner); [`HubConfig`]; this node's name and leadership; the two-step shutdown |
//! | 1 | `update`, `live_id` | an [`Update`], parsed once at the edge from a [`NewUpdate`]; the ids of live-only events, which carry their own place |
//! | 2 | `history`, `subscriber`, `encodings`, `queue` | the storage boundary ([`History`], SQLite and Redis); who a subscriber is and what it may receive; the shared encodings of large stored updates; a subscriber's bounded queue and its item |
//! | 3 | `registry`, `events`, `error` | who wants what (the index), the head, and the record of who came and went, with no lock of its own; subscription events and documents; the errors callers see, with one classification of a history error |
//! | 4 | `fanout`, `health` | the only owner of the registry's lock: delivers stored and live events, registers and ends subscribers; the health record and its probe |
//! | 5 | `writer`, `stream`, `cluster` | the thread that commits then fans out, and its handle; a subscription's stream, from history to live; on a shared history, the follower and the roster, beside local delivery |
//! | 6 | `subscribe` | where a new subscriber resumes, its registration, and the guard that deregisters it |
//! | 7 | `hub` | the [`Hub`] handle that starts and wires the layers |
//!
//! One publish, embedded: [`Hub::publish`] → `writer` (batched, appended to the `history` in
//! one commit) → `fanout` (under the registry's lock: head moved, `registry` asked who wants
//! it, the shared bytes pushed to each `queue`) → each subscriber's `stream` → the publisher's
//! acknowledgement. On a cluster the writer only appends; each node's `cluster` follower reads
//! the update back and hands it to its `fanout`.

mod cluster;
mod config;
mod encodings;
mod error;
mod events;
mod fanout;
mod health;
mod history;
mod hub;
mod index;
mod live_id;
mod mark;
mod node;
mod queue;
mod registry;
mod selector;
mod shutdown;
mod sse;
mod stats;
mod stream;
mod subscribe;
mod subscriber;
mod update;
mod writer;

pub use config::HubConfig;
pub use error::{PublishError, SelectorRefused, SubscribeError, Unhealthy};
pub use events::{
    ActiveSubscription, SUBSCRIPTION_EVENT_TYPE, Subscriptions, subscription_json,
    subscription_topic, subscription_topic_v1,
};
pub use history::{
    Cursor, Followed, Heads, History, HistoryError, Horizon, LiveEvent, Membership, NodeState,
    RedisHistory, Refreshed, Retention, SharedHistory, Snapshot, SqliteHistory,
};
pub use hub::Hub;
pub use live_id::LiveIdKey;
pub use mark::EARLIEST;
pub use selector::{
    Interner, MAX_SELECTOR_LEN, MatchKind, MatcherError, Selector, SelectorError, UrlPatternMatcher,
};
pub use sse::{Event, comment};
pub use stats::Stats;
pub use stream::{HISTORY_GAP_EVENT, LIFETIME_RETRY_MS, LIVE_EVENT, SubscriptionStream};
pub use subscribe::{SubscribeRequest, Subscription};
pub use subscriber::{ROUTE_EVENT, SubscriberInfo};
pub use update::{MAX_TOPICS, NewUpdate, RESERVED_PATH, Stored, Update, UpdateError, new_id};
