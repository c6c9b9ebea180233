//! What one client may cost the hub: how often it may open subscriptions and how many it may
//! hold open (per address, and per token as Mercure 1.0 suggests), and how many the hub holds in
//! all. Each limit is a flag (see the configuration table in the README) and each refusal a
//! `429` with a one-line reason.
//!
//! The rate is governor's GCRA, keyed by client address; the open counts are one entry per
//! address and per token, updated in O(1) when a stream opens or closes (never a scan). IPv6
//! clients are keyed by their /64, the block one host is usually given, so that rotating
//! addresses within it does not multiply a client's allowance. A token is keyed by a hash of
//! its text under this process's random keys: the counts hold no token, and nobody can make
//! two tokens share a count.

use crate::client_addr::limit_key;
use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

/// Why a subscription was refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("too many subscriptions from your address: wait a moment")]
    TooFast(Duration),
    #[error("too many open subscriptions from your address (at most {0})")]
    FromAddress(u32),
    #[error("too many open subscriptions with this token (at most {0})")]
    WithToken(u32),
    #[error("the hub has too many open subscriptions; try again later")]
    InAll,
}

/// The subscription limits and the counts they watch.
pub struct SubscriberLimits {
    rate: DefaultKeyedRateLimiter<IpAddr>,
    max_per_address: u32,
    max_per_token: u32,
    max_total: usize,
    /// Keys the hash of a token's text.
    tokens: RandomState,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, u32>,
    by_token: HashMap<TokenKey, u32>,
}

/// Which token a subscription was made with, for the per-token count: see
/// [`SubscriberLimits::token_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey(u64);

/// One open subscription, counted until dropped (with its stream).
pub struct Slot {
    open: Arc<Mutex<Open>>,
    key: IpAddr,
    token: Option<TokenKey>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        open.total -= 1;
        if let Some(count) = open.by_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.key);
            }
        }
        if let Some(token) = self.token
            && let Some(count) = open.by_token.get_mut(&token)
        {
            *count -= 1;
            if *count == 0 {
                open.by_token.remove(&token);
            }
        }
    }
}

impl SubscriberLimits {
    /// `per_second` new subscriptions per address with bursts of `burst`; at most
    /// `max_per_address` open per address and `max_total` in all.
    pub fn new(per_second: u32, burst: u32, max_per_address: u32, max_total: usize) -> Self {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Self {
            rate: governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            max_per_address,
            max_per_token: u32::MAX,
            max_total,
            tokens: RandomState::new(),
            open: Arc::default(),
        }
    }

    /// At most `max` open subscriptions per token (none: no limit).
    pub fn per_token(self, max: u32) -> Self {
        Self {
            max_per_token: max,
            ..self
        }
    }

    /// The key the per-token count knows `token` (its compact JWT text) by.
    pub fn token_key(&self, token: &str) -> TokenKey {
        TokenKey(self.tokens.hash_one(token))
    }

    /// Counts a new anonymous subscription from `client`, or says which limit refuses it.
    pub fn admit(&self, client: IpAddr) -> Result<Slot, LimitError> {
        self.admit_with_token(client, None)
    }

    /// Counts a new subscription from `client`, made with `token` if any, or says which limit
    /// refuses it.
    pub fn admit_with_token(
        &self,
        client: IpAddr,
        token: Option<TokenKey>,
    ) -> Result<Slot, LimitError> {
        let key = limit_key(client);
        self.rate.check_key(&key).map_err(|not_until| {
            LimitError::TooFast(not_until.wait_time_from(DefaultClock::default().now()))
        })?;
        let mut open = self.open.lock();
        if open.total >= self.max_total {
            return Err(LimitError::InAll);
        }
        if open.by_address.get(&key).copied().unwrap_or(0) >= self.max_per_address {
            return Err(LimitError::FromAddress(self.max_per_address));
        }
        if let Some(token) = token
            && open.by_token.get(&token).copied().unwrap_or(0) >= self.max_per_token
        {
            return Err(LimitError::WithToken(self.max_per_token));
        }
        *open.by_address.entry(key).or_insert(0) += 1;
        if let Some(token) = token {
            *open.by_token.entry(token).or_insert(0) += 1;
        }
        open.total += 1;
        Ok(Slot {
            open: self.open.clone(),
            key,
            token,
        })
    }

    /// Forgets addresses whose rate allowance is full again, so memory follows recent clients.
    pub fn forget_idle(&self) {
        self.rate.retain_recent();
        self.rate.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_open_subscriptions_per_address_and_in_all() {
        let limits = SubscriberLimits::new(1000, 1000, 2, 3);
        let a1 = limits.admit(ip("10.0.0.1")).unwrap();
        let _a2 = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.1")).err(),
            Some(LimitError::FromAddress(2))
        );
        let _b = limits.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(limits.admit(ip("10.0.0.3")).err(), Some(LimitError::InAll));
        drop(a1);
        let _a3 = limits
            .admit(ip("10.0.0.1"))
            .expect("a closed one frees its slot");
    }

    #[test]
    fn an_ipv6_block_counts_as_one_client() {
        let limits = SubscriberLimits::new(1000, 1000, 1, 10);
        let _first = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            limits.admit(ip("2001:db8:1:2:ffff::9")).is_err(),
            "same /64"
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }

    #[test]
    fn the_rate_limits_bursts() {
        let limits = SubscriberLimits::new(1, 3, 100, 100);
        let slots: Vec<_> = (0..3)
            .map(|_| limits.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert!(matches!(
            limits.admit(ip("10.0.0.1")),
            Err(LimitError::TooFast(_))
        ));
        assert!(
            limits.admit(ip("10.0.0.2")).is_ok(),
            "others are not affected"
        );
        drop(slots);
    }

    #[test]
    fn counts_open_subscriptions_per_token_whatever_the_address() {
        let limits = SubscriberLimits::new(1000, 1000, 100, 100).per_token(2);
        let (ann, bob) = (limits.token_key("ann.token"), limits.token_key("bob.token"));
        assert_ne!(ann, bob);
        let first = limits.admit_with_token(ip("10.0.0.1"), Some(ann)).unwrap();
        let _second = limits.admit_with_token(ip("10.0.0.2"), Some(ann)).unwrap();
        assert_eq!(
            limits.admit_with_token(ip("10.0.0.3"), Some(ann)).err(),
            Some(LimitError::WithToken(2))
        );
        let _other_token = limits.admit_with_token(ip("10.0.0.1"), Some(bob)).unwrap();
        let _anonymous = limits.admit(ip("10.0.0.1")).unwrap();
        drop(first);
        let _again = limits
            .admit_with_token(ip("10.0.0.3"), Some(ann))
            .expect("a closed one frees its slot");
        assert_eq!(limits.open.lock().by_token.len(), 2);
    }
}
