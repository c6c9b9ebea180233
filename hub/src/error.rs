//! Why a call to the hub failed, as its callers see it. None carries storage details: those
//! are logged, not told. What a history error means to a caller is decided once, by
//! [`Fault::of`].

use crate::{
    history::HistoryError,
    selector::{MatcherError, SelectorError},
};

/// What a history error means to a caller: try again shortly (the store cannot be reached now,
/// nothing says it lost anything), or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Unavailable,
    Storage,
}

impl Fault {
    fn of(error: &HistoryError) -> Self {
        if error.is_unavailable() {
            Fault::Unavailable
        } else {
            Fault::Storage
        }
    }
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("the history cannot store updates")]
    Storage,
    /// The store cannot be reached now (Redis down, a timeout): retrying later may work. The
    /// update may or may not have been stored; it was not acknowledged.
    #[error("the history cannot be reached; try again shortly")]
    Unavailable,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl From<&HistoryError> for PublishError {
    fn from(error: &HistoryError) -> Self {
        match Fault::of(error) {
            Fault::Unavailable => PublishError::Unavailable,
            Fault::Storage => PublishError::Storage,
        }
    }
}

/// Why a subscription could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("the history is unavailable")]
    Storage,
    /// The history it must read from cannot be reached now; retrying later may work.
    #[error("the history cannot be reached; try again shortly")]
    Unavailable,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl From<&HistoryError> for SubscribeError {
    fn from(error: &HistoryError) -> Self {
        match Fault::of(error) {
            Fault::Unavailable => SubscribeError::Unavailable,
            Fault::Storage => SubscribeError::Storage,
        }
    }
}

/// Why a subscriber's selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorRefused {
    #[error(transparent)]
    Invalid(#[from] SelectorError),
    #[error(transparent)]
    BadMatcher(#[from] MatcherError),
    #[error("the hub holds too many distinct templates; try again later or use exact topics")]
    TooManyTemplates,
}

/// Why the hub is not healthy. The detail is for the operator's log; `unreachable` tells a
/// store that cannot be reached now (Redis down) from one that fails to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Unhealthy {
    pub detail: String,
    pub unreachable: bool,
}

impl Unhealthy {
    pub(crate) fn new(detail: impl Into<String>) -> Self {
        Unhealthy {
            detail: detail.into(),
            unreachable: false,
        }
    }

    /// `context` failed with `error`.
    pub(crate) fn failed(context: &str, error: &HistoryError) -> Self {
        Unhealthy {
            detail: format!("{context}: {error}"),
            unreachable: Fault::of(error) == Fault::Unavailable,
        }
    }
}

impl From<&HistoryError> for Unhealthy {
    fn from(error: &HistoryError) -> Self {
        Unhealthy {
            detail: error.to_string(),
            unreachable: Fault::of(error) == Fault::Unavailable,
        }
    }
}
