//! The publish/subscribe core of Tidings.
//!
//! This crate knows nothing of HTTP frameworks or of the UI: the server maps requests onto it, and
//! so could any other front end. It is organised one concept per module:
//!
//! - [`sse`]: encoding an event into the bytes of the `text/event-stream` format. Encoding happens
//!   once per event; the resulting [`bytes::Bytes`] is cheap to clone and is what every subscriber
//!   of that event is handed.
//! - [`selector`]: which topics a subscription or a token claim covers (exact, `*`, URI templates).
//! - [`update`]: an update and the protocol's rules for a valid one.
//! - [`history`]: the storage boundary, and its SQLite implementation.
//! - [`hub`]: publishing, the subscriber registry, fan-out, and resuming from history.

pub mod history;
pub mod hub;
pub mod selector;
pub mod sse;
pub mod update;

pub use history::{History, HistoryError, Retention, SqliteHistory};
pub use hub::{Hub, HubConfig, PublishError, Snapshot, SubscribeRequest, Subscription};
pub use selector::Selector;
pub use sse::Event;
pub use update::{Update, UpdateError};
