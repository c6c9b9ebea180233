//! How many connections the server holds: per client address and in all.
//!
//! A connection costs a file descriptor whatever it asks for, so subscription limits alone do
//! not protect the server: one address holding a thousand idle keep-alive connections takes
//! every descriptor, and then nobody is served. Connections are counted as they are accepted,
//! before a byte is read, and refused at once past either cap. The total stays below the
//! process's descriptor limit, which the server raises to its hard limit at start
//! ([`raise_descriptor_limit`]), so the history, Redis and static files always have some left.
//!
//! The address is the peer's (IPv6: its /64): no header has been read yet, and a header would be
//! the client's word. A peer that is a trusted proxy carries many clients, so only the total
//! applies to it.

use crate::client_addr::limit_key;
use ipnet::IpNet;
use parking_lot::Mutex;
use std::{collections::HashMap, net::IpAddr, sync::Arc};
use tokio::sync::Notify;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    FromAddress(usize),
    InAll,
}

impl Refused {
    /// The whole answer, written before closing.
    pub fn response(self) -> Vec<u8> {
        let reason = match self {
            Refused::FromAddress(max) => {
                format!("too many connections from your address (at most {max})")
            }
            Refused::InAll => "the server has too many connections; try again later".into(),
        };
        super::closing_answer("429 Too Many Requests", "retry-after: 1\r\n", &reason)
    }
}

/// The connection counts and their caps.
pub struct ConnectionBudget {
    max_per_address: usize,
    max_total: usize,
    trusted_proxies: Vec<IpNet>,
    open: Arc<Open>,
}

#[derive(Default)]
struct Open {
    counts: Mutex<Counts>,
    /// Woken when the last connection closes (shutdown waits for it).
    none_left: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One open connection, counted until dropped.
pub struct Admitted {
    open: Arc<Open>,
    key: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.open.counts.lock();
        counts.total -= 1;
        if let Some(key) = self.key
            && let Some(count) = counts.by_address.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                counts.by_address.remove(&key);
            }
        }
        if counts.total == 0 {
            self.open.none_left.notify_waiters();
        }
    }
}

impl ConnectionBudget {
    pub fn new(max_per_address: usize, max_total: usize, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            max_per_address,
            max_total,
            trusted_proxies,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `peer`, or says which cap refuses it.
    pub fn admit(&self, peer: IpAddr) -> Result<Admitted, Refused> {
        let peer = peer.to_canonical();
        let key =
            (!self.trusted_proxies.iter().any(|net| net.contains(&peer))).then(|| limit_key(peer));
        let mut counts = self.open.counts.lock();
        if counts.total >= self.max_total {
            return Err(Refused::InAll);
        }
        if let Some(key) = key {
            let count = counts.by_address.entry(key).or_insert(0);
            if *count >= self.max_per_address {
                return Err(Refused::FromAddress(self.max_per_address));
            }
            *count += 1;
        }
        counts.total += 1;
        Ok(Admitted {
            open: self.open.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.counts.lock().total
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.open.none_left.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Descriptors kept for everything but connections: the history, Redis, static files being
/// served, the runtime, a margin: 1/16 of the limit, at least 64 and at most 512.
pub fn reserved_descriptors(limit: u64) -> u64 {
    (limit / 16).clamp(64, 512)
}

/// Raises the soft limit on open files to the hard limit; the limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            if now > before {
                tracing::info!("open-file limit raised from {before} to {now}");
            }
            now
        }
        Err(error) => {
            tracing::warn!("cannot raise the open-file limit ({error}); it stays {before}");
            before
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_per_address_and_in_all() {
        let budget = ConnectionBudget::new(2, 3, vec![]);
        let a1 = budget.admit(ip("10.0.0.1")).unwrap();
        let _a2 = budget.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            budget.admit(ip("10.0.0.1")).err(),
            Some(Refused::FromAddress(2))
        );
        let _b = budget.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(budget.admit(ip("10.0.0.3")).err(), Some(Refused::InAll));
        drop(a1);
        assert!(
            budget.admit(ip("10.0.0.1")).is_ok(),
            "a closed one frees its place"
        );
    }

    #[test]
    fn a_trusted_proxy_counts_only_in_all_and_ipv6_per_block() {
        let proxy: IpNet = "10.0.0.0/8".parse().unwrap();
        let budget = ConnectionBudget::new(1, 10, vec![proxy]);
        let _p: Vec<_> = (0..5)
            .map(|_| budget.admit(ip("10.1.2.3")).unwrap())
            .collect();
        let _v6 = budget.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(budget.admit(ip("2001:db8:1:2::9")).is_err(), "same /64");
        let _mapped = budget.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(budget.admit(ip("192.0.2.1")).is_err(), "mapped is the same");
    }

    #[test]
    fn refusals_are_whole_http_answers() {
        let answer = String::from_utf8(Refused::FromAddress(7).response()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("at most 7"));
    }
}
