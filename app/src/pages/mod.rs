//! One module per page (the counter page lives in [`crate::counter`]).

pub mod charts;
pub mod chat;
pub mod console;
pub mod monitor;
pub mod news;
pub mod ticker;
