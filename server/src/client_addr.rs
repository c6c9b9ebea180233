//! The address a request comes from, for per-client limits (the chat's rate limit, and any
//! later one such as connections per address).
//!
//! It is the TCP peer, unless the peer is a trusted proxy (`--trusted-proxy`). Then the
//! `X-Forwarded-For` chain is read from the right, each proxy having appended the address it got
//! the request from, and the first address that is not itself a trusted proxy is the client's;
//! entries left of it were written by the client and prove nothing. Without trusted proxies the
//! header is ignored, so no client can choose its own address.

use crate::AppState;
use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The caller's address, as an extractor (needs the server's connect info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = <ConnectInfo<SocketAddr> as FromRequestParts<AppState>>::Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await?;
        Ok(ClientIp(client_ip(
            peer.ip(),
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

impl ClientIp {
    /// The caller of a request already taken apart (as a server function's context holds it);
    /// `None` without the server's connect info.
    pub(crate) fn of(request: &Parts, state: &AppState) -> Option<IpAddr> {
        let ConnectInfo(peer) = request.extensions.get::<ConnectInfo<SocketAddr>>()?;
        Some(client_ip(
            peer.ip(),
            &request.headers,
            &state.config.trusted_proxies,
        ))
    }
}

/// The client's address for a request from `peer` with these headers.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    // Several headers form one list, in order (RFC 9110 §5.3). Split as bytes: what a client
    // wrote on the left, even bytes that are not text, must not hide what proxies appended.
    let hops: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .collect();
    for hop in hops.into_iter().rev() {
        // What a trusted proxy wrote does not parse: keep the last address known.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    let ip = hop
        .parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(ip.to_canonical())
}

/// Parses a `--trusted-proxy`: an address (`10.0.0.1`) or a network (`10.0.0.0/8`).
/// The key limits count a client under: its address, or for IPv6 its /64 (the block one host is
/// usually given, within which it could rotate addresses at will).
pub(crate) fn limit_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// A `Retry-After` value for a wait: whole seconds, rounded up, at least one.
pub(crate) fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// How often addresses whose allowance is full again are forgotten by the limiters.
const FORGET_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Every [`FORGET_EVERY`], forgets idle addresses in the per-address limiters (chat posts and
/// subscriptions), so their memory follows recent clients; ends on shutdown.
pub(crate) async fn forget_idle_addresses(state: AppState) {
    let mut ticks = tokio::time::interval(FORGET_EVERY);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {
                state.chat_limiter.forget_idle();
                state.subscriber_limits.forget_idle();
            }
        }
    }
}

pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{s}` is not an IP address or network (such as 10.0.0.1 or 10.0.0.0/8)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        client_of_bytes(
            peer,
            &forwarded.iter().map(|f| f.as_bytes()).collect::<Vec<_>>(),
            trusted,
        )
    }

    fn client_of_bytes(peer: &str, forwarded: &[&[u8]], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(
                "x-forwarded-for",
                axum::http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| parse_network(t).unwrap()).collect();
        client_ip(peer.parse().unwrap(), &headers, &trusted).to_string()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        assert_eq!(client("203.0.113.9", &["198.51.100.1"], &[]), "203.0.113.9");
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"]),
            "203.0.113.9"
        );
        assert_eq!(
            client("10.0.0.2", &["198.51.100.1"], &["10.0.0.0/8"]),
            "198.51.100.1"
        );
        assert_eq!(client("10.0.0.2", &[], &["10.0.0.0/8"]), "10.0.0.2");
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = ["10.0.0.0/8", "192.0.2.7"];
        // The client wrote the leftmost entry itself.
        assert_eq!(
            client("10.0.0.2", &["1.1.1.1, 198.51.100.1, 192.0.2.7"], &trusted),
            "198.51.100.1"
        );
        assert_eq!(
            client("10.0.0.2", &["1.1.1.1", "198.51.100.1, 10.9.9.9"], &trusted),
            "198.51.100.1"
        );
        // Only proxies: the farthest one.
        assert_eq!(
            client("10.0.0.2", &["10.1.1.1, 192.0.2.7"], &trusted),
            "10.1.1.1"
        );
        // Garbage from a trusted hop stops the walk at the last address known.
        assert_eq!(client("10.0.0.2", &["1.1.1.1, junk"], &trusted), "10.0.0.2");
        assert_eq!(
            client("10.0.0.2", &["[2001:db8::1]:443"], &trusted),
            "2001:db8::1"
        );
        assert_eq!(
            client("10.0.0.2", &["198.51.100.1:5000"], &trusted),
            "198.51.100.1"
        );
    }

    #[test]
    fn what_a_client_wrote_on_the_left_never_hides_the_proxys_entry() {
        let trusted = ["10.0.0.0/8"];
        for written in [&b"\xff\xfe"[..], b"caf\xe9", b"\x80, 1.2.3.4"] {
            let mut value = written.to_vec();
            value.extend_from_slice(b", 198.51.100.7");
            assert_eq!(
                client_of_bytes("10.0.0.2", &[&value], &trusted),
                "198.51.100.7"
            );
            assert_eq!(
                client_of_bytes("10.0.0.2", &[written, b"198.51.100.8"], &trusted),
                "198.51.100.8"
            );
        }
        // Bytes that are not text from a trusted hop stop the walk like any garbage.
        assert_eq!(
            client_of_bytes("10.0.0.2", &[b"198.51.100.9, \xff, 10.1.1.1"], &trusted),
            "10.1.1.1"
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert_eq!(
            client("::ffff:10.0.0.2", &["198.51.100.1"], &["10.0.0.0/8"]),
            "198.51.100.1"
        );
        assert_eq!(client("::ffff:203.0.113.9", &[], &[]), "203.0.113.9");
    }

    #[test]
    fn networks_parse_or_explain() {
        assert_eq!(
            parse_network("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(
            parse_network("localhost")
                .unwrap_err()
                .contains("localhost")
        );
        assert!(parse_network("10.0.0.0/33").is_err());
    }
}
