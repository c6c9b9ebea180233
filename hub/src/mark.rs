//! An event's place in the one order every subscriber sees, and the id that asks for all of it.

/// The `Last-Event-ID` value that asks for the whole retained history.
pub const EARLIEST: &str = "earliest";

/// An event's place in the one order every subscriber sees: a stored update's history
/// position (and `seq` 0), or for a live-only event the position of the stored update it
/// follows and its number among live events (from 1). Comparing marks says which came first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mark {
    pub position: u64,
    pub seq: u64,
}

impl Mark {
    pub(crate) fn stored(position: u64) -> Self {
        Mark { position, seq: 0 }
    }
}
