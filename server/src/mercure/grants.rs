//! What a Mercure 1.0 token grants: its `authorization_details` (RFC 9396) of the Mercure type,
//! parsed into the hub's selectors.
//!
//! The claim comes from a token whose signature has verified, but it is still checked whole
//! before anything is granted: a detail or matcher that does not parse, a `match_type` this hub
//! does not know, or more matchers than `--max-token-matchers` invalidate the whole token, since
//! acting on the remaining entries would silently change what it grants. Unknown actions grant
//! nothing and are ignored, as are details of other types (meant for other APIs).

use super::challenge::DETAIL_TYPE;
use serde_json::Value;
use tidings_hub::{Hub, MatchKind, Selector};

/// The grants of one token.
#[derive(Debug, Default)]
pub struct Grants {
    /// The topics it may publish to.
    pub publish: Vec<Selector>,
    /// The topics whose private updates it may receive.
    pub subscribe: Vec<Selector>,
    /// Each `subscribe` detail in the token's order: its matchers and its payload.
    payloads: Vec<(Vec<Selector>, Option<Value>)>,
}

/// Why a token's authorization details are refused. For the log only: the client is told
/// `invalid_token`.
#[derive(Debug, thiserror::Error)]
pub enum GrantsError {
    #[error("authorization_details must be an array of objects")]
    NotAnArray,
    #[error("an authorization detail has no string `type`")]
    NoType,
    #[error("`actions` must be a non-empty array of strings")]
    BadActions,
    #[error("`topics` must be a non-empty array of objects with a string `match`")]
    BadTopics,
    #[error("`payload` must be an object")]
    BadPayload,
    #[error("unknown match_type {0:?}")]
    UnknownMatchType(String),
    #[error("topic matcher {0:?} is not valid")]
    BadMatcher(String),
    #[error("more than {0} topic matchers or authorization details")]
    TooMany(usize),
}

impl Grants {
    /// The grants of the `authorization_details` claim (absent: none), with at most
    /// `max_matchers` matchers and details.
    pub fn parse(
        details: Option<&Value>,
        hub: &Hub,
        max_matchers: usize,
    ) -> Result<Self, GrantsError> {
        let mut grants = Grants::default();
        let Some(details) = details else {
            return Ok(grants);
        };
        let details = details.as_array().ok_or(GrantsError::NotAnArray)?;
        if details.len() > max_matchers {
            return Err(GrantsError::TooMany(max_matchers));
        }
        let mut matchers = 0usize;
        for detail in details {
            let detail = detail.as_object().ok_or(GrantsError::NotAnArray)?;
            let kind = detail
                .get("type")
                .and_then(Value::as_str)
                .ok_or(GrantsError::NoType)?;
            if kind != DETAIL_TYPE {
                continue;
            }
            let actions = non_empty_array(detail.get("actions")).ok_or(GrantsError::BadActions)?;
            let actions = actions
                .iter()
                .map(|a| a.as_str().ok_or(GrantsError::BadActions))
                .collect::<Result<Vec<_>, _>>()?;
            let topics = non_empty_array(detail.get("topics")).ok_or(GrantsError::BadTopics)?;
            matchers += topics.len();
            if matchers > max_matchers {
                return Err(GrantsError::TooMany(max_matchers));
            }
            let selectors = topics
                .iter()
                .map(|t| parse_matcher(t, hub))
                .collect::<Result<Vec<_>, _>>()?;
            let payload = match detail.get("payload") {
                None => None,
                Some(payload @ Value::Object(_)) => Some(payload.clone()),
                Some(_) => return Err(GrantsError::BadPayload),
            };
            if actions.contains(&"publish") {
                grants.publish.extend(selectors.iter().cloned());
            }
            if actions.contains(&"subscribe") {
                grants.subscribe.extend(selectors.iter().cloned());
                grants.payloads.push((selectors, payload));
            }
        }
        Ok(grants)
    }

    /// The payload of the first `subscribe` detail with a matcher that matches one of a
    /// subscription's own matchers (each taken as if it were a topic); `None` if that detail
    /// has no payload, or if none matches.
    pub fn payload_for<'a>(
        &self,
        matchers: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Option<Value> {
        self.payloads
            .iter()
            .find(|(selectors, _)| selectors.iter().any(|s| s.matches_any(matchers.clone())))
            .and_then(|(_, payload)| payload.clone())
    }
}

fn non_empty_array(value: Option<&Value>) -> Option<&Vec<Value>> {
    value?.as_array().filter(|a| !a.is_empty())
}

/// One `{match, match_type}` object: `match_type` absent means `exact`; `*` matches every topic
/// whatever the type (the hub's parsing says so).
fn parse_matcher(topic: &Value, hub: &Hub) -> Result<Selector, GrantsError> {
    let topic = topic.as_object().ok_or(GrantsError::BadTopics)?;
    let text = topic
        .get("match")
        .and_then(Value::as_str)
        .ok_or(GrantsError::BadTopics)?;
    let kind = match topic.get("match_type") {
        None => MatchKind::Exact,
        Some(Value::String(name)) => {
            MatchKind::from_name(name).ok_or_else(|| GrantsError::UnknownMatchType(name.clone()))?
        }
        Some(_) => return Err(GrantsError::BadTopics),
    };
    hub.parse_grant(kind, text)
        .map_err(|_| GrantsError::BadMatcher(text.chars().take(100).collect()))
}
