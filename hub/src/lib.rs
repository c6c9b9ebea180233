//! The publish/subscribe core of Tidings.
//!
//! This crate knows nothing of HTTP frameworks or of the UI: the server maps requests onto it, and
//! so could any other front end. It is organised one concept per module:
//!
//! - [`sse`]: encoding an event into the bytes of the `text/event-stream` format. Encoding happens
//!   once per event; the resulting [`bytes::Bytes`] is cheap to clone and is what every subscriber
//!   of that event is handed.

pub mod history;
pub mod selector;
pub mod sse;
pub mod update;

pub use sse::Event;
