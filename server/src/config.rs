//! Command-line flags and `TIDINGS_*` environment variables, parsed and validated once at start-up.
//!
//! Every flag has a variable; a flag given on the command line wins over its variable. The
//! README's configuration table mirrors this file.

use clap::Parser;
use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

/// The server's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tidings",
    version,
    about = "Tidings: Server-Sent Events done right."
)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (the log says which).
    #[arg(long, env = "TIDINGS_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// PEM file with the certificate chain (the server's own certificate first) to serve HTTPS
    /// with, HTTP/2 and HTTP/1.1 on the same port; needs `--tls-key`. Read again on SIGHUP.
    /// Without it the server speaks plain HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    #[arg(long, env = "TIDINGS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1). Read again on
    /// SIGHUP.
    #[arg(long, env = "TIDINGS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Most requests one HTTP/2 connection may have in progress at once (its concurrent
    /// streams, an open event stream among them); a client queues the rest.
    #[arg(long, env = "TIDINGS_MAX_STREAMS_PER_CONNECTION", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,

    /// Folder holding the built site (JS, WASM, CSS and assets), as written by cargo-leptos.
    #[arg(long, env = "TIDINGS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// An origin whose pages may use the streams and the hub (CORS) with credentials, such as
    /// `https://example.com`. Repeat the flag (or separate with commas) for several. `*` alone
    /// allows any origin, without credentials; it cannot be combined with origins. By default
    /// no cross-origin page may use them.
    #[arg(
        long = "cors-origin",
        env = "TIDINGS_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<CorsOrigin>,

    /// A reverse proxy whose `X-Forwarded-For` header is believed: an address or a network,
    /// such as `10.0.0.1` or `10.0.0.0/8`. Repeat the flag (or separate with commas) for
    /// several. For a request from a trusted proxy, the client is the rightmost address of the
    /// header that is not itself a trusted proxy; for any other, the peer address. None by
    /// default: the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "TIDINGS_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = crate::client_addr::parse_network
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Milliseconds between two numbers of the counter stream (`/web/StreamChat`).
    #[arg(
        long,
        env = "TIDINGS_STREAM_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    pub stream_interval_ms: u64,

    /// Seconds to wait, after SIGINT or SIGTERM, for open connections to finish before exiting.
    #[arg(long, env = "TIDINGS_SHUTDOWN_GRACE_SECS", default_value_t = 3)]
    pub shutdown_grace_secs: u64,

    /// Folder for durable state: the hub's history (`history.sqlite3`).
    #[arg(long, env = "TIDINGS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Run as one node of several sharing this Redis (or Valkey): the history and the fan-out
    /// go through it (`redis://[user:password@]host:port[/db]`). Without it the history is the
    /// SQLite file in `--data-dir`. See docs/cluster.md.
    #[arg(long, env = "TIDINGS_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key, so that several deployments can share one Redis.
    #[arg(long, env = "TIDINGS_REDIS_PREFIX", default_value = "tidings:")]
    pub redis_prefix: String,

    /// Acknowledge a publish only once this many Redis replicas have it too (Redis `WAIT`).
    #[arg(long, env = "TIDINGS_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// How long a publish waits for `--redis-wait-replicas`; past it the publish gets 503.
    #[arg(long, env = "TIDINGS_REDIS_WAIT_TIMEOUT", default_value = "1s",
        value_parser = humantime::parse_duration)]
    pub redis_wait_timeout: Duration,

    /// Updates the history keeps; older ones are pruned.
    #[arg(long, env = "TIDINGS_HISTORY_MAX_EVENTS", default_value_t = 100_000)]
    pub history_max_events: u64,

    /// Age after which updates are pruned from the history, such as `90s`, `12h` or `7d`.
    /// No age limit by default.
    #[arg(long, env = "TIDINGS_HISTORY_MAX_AGE", value_parser = humantime::parse_duration)]
    pub history_max_age: Option<Duration>,

    /// Seconds without an event after which a subscriber gets a heartbeat comment; 0 disables.
    #[arg(long, env = "TIDINGS_HEARTBEAT_SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,

    /// Events queued for one subscriber before it is disconnected as too slow (it reconnects
    /// with its last id and catches up from the history).
    #[arg(
        long,
        env = "TIDINGS_SUBSCRIBER_BUFFER",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub subscriber_buffer: u32,

    /// The largest publish request body, in bytes; larger ones get 413.
    #[arg(long, env = "TIDINGS_MAX_PUBLISH_BYTES", default_value_t = 1 << 20)]
    pub max_publish_bytes: usize,

    /// Key that verifies publishers' JWTs: the secret for HS256 (at least 32 bytes, RFC 7518
    /// §3.2), a PEM public key (or the path of a PEM file) for RS256/ES256. If unset, a random
    /// HS256 key is made at start-up and a ready-to-use token is logged.
    #[arg(long, env = "TIDINGS_PUBLISHER_JWT_KEY", hide_env_values = true)]
    pub publisher_jwt_key: Option<String>,

    /// Key that verifies subscribers' JWTs, in the same form; defaults to the publisher key.
    #[arg(long, env = "TIDINGS_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    pub subscriber_jwt_key: Option<String>,

    /// The one JWT algorithm accepted; tokens signed otherwise (or with `none`) are refused.
    #[arg(long, env = "TIDINGS_JWT_ALG", default_value = "HS256")]
    pub jwt_alg: JwtAlg,

    /// The origin clients reach this server at, such as `https://example.com`: the hub's public
    /// URL is it followed by `/.well-known/mercure`. It names the hub in Mercure 1.0 tokens
    /// (their `aud`) and in its protected resource metadata, and Mercure 1.0 URL patterns and
    /// relative topics are resolved against it. By default `http://` (`https://` with
    /// `--tls-cert`) and the address listened on (`localhost` for an unspecified one), with the
    /// port bound.
    #[arg(long, env = "TIDINGS_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// An issuer whose Mercure 1.0 access tokens (`typ: at+jwt`) are accepted: a token's `iss`
    /// must equal one exactly. Repeat the flag (or separate with commas) for several. Their
    /// tokens verify with --publisher-jwt-key / --subscriber-jwt-key, except the tokens of the
    /// --jwks-issuer, which verify with its JWK Set only. By default the public URL, unless
    /// --jwks-url is given.
    #[arg(
        long = "jwt-issuer",
        env = "TIDINGS_JWT_ISSUERS",
        value_delimiter = ','
    )]
    pub jwt_issuers: Vec<String>,

    /// The hub's resource identifier, which a Mercure 1.0 token's `aud` must name. By default
    /// the public URL followed by `/.well-known/mercure`.
    #[arg(long, env = "TIDINGS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// An authorization server's JWK Set (`https://…`), whose keys verify the Mercure 1.0
    /// tokens of its --jwks-issuer (EdDSA, ES256 and RS256 keys; at most 32 are kept). Repeat
    /// the flag (or comma-separate the variable) for several authorization servers.
    #[arg(long, env = "TIDINGS_JWKS_URL", value_parser = parse_jwks_url, value_delimiter = ',')]
    pub jwks_url: Vec<String>,

    /// The issuer each --jwks-url's keys belong to, in the same order; one --jwks-url may go
    /// without when exactly one --jwt-issuer is given (it is that one).
    #[arg(long, env = "TIDINGS_JWKS_ISSUER", value_delimiter = ',')]
    pub jwks_issuer: Vec<String>,

    /// How long fetched JWKS keys are used before they are fetched again, such as `10m`.
    #[arg(long, env = "TIDINGS_JWKS_CACHE", default_value = "10m",
          value_parser = parse_positive_duration)]
    pub jwks_cache: Duration,

    /// The least time between two fetches of the JWK Set, such as `30s`. A token naming an
    /// unknown `kid` fetches the set again, but no sooner: until then such tokens get 401.
    #[arg(long, env = "TIDINGS_JWKS_MIN_INTERVAL", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub jwks_min_interval: Duration,

    /// How long one fetch of the JWK Set may take, such as `5s`.
    #[arg(long, env = "TIDINGS_JWKS_TIMEOUT", default_value = "5s",
          value_parser = parse_positive_duration)]
    pub jwks_timeout: Duration,

    /// The largest JWK Set accepted, in bytes; a larger answer is discarded.
    #[arg(long, env = "TIDINGS_JWKS_MAX_BYTES", default_value_t = 262_144)]
    pub jwks_max_bytes: usize,

    /// Most topic matchers (and most authorization details) one Mercure 1.0 token may carry;
    /// a token with more gets 401 `invalid_token`.
    #[arg(long, env = "TIDINGS_MAX_TOKEN_MATCHERS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_token_matchers: u32,

    /// Refuse subscribers without a valid token (by default anonymous subscribers get public
    /// updates).
    #[arg(long, env = "TIDINGS_NO_ANONYMOUS")]
    pub no_anonymous: bool,

    /// Longest query string a subscription request may have, in bytes; longer gets 414.
    #[arg(long, env = "TIDINGS_MAX_QUERY_BYTES", default_value_t = 8192)]
    pub max_query_bytes: usize,

    /// Most selectors (`topic` parameters) one subscription may have; more gets 400.
    #[arg(long, env = "TIDINGS_MAX_SELECTORS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_selectors: u32,

    /// Most URI templates among one subscription's selectors; more gets 400.
    #[arg(
        long,
        env = "TIDINGS_MAX_TEMPLATES_PER_SUBSCRIPTION",
        default_value_t = 10
    )]
    pub max_templates_per_subscription: u32,

    /// Most distinct URI templates the hub holds for all its subscribers together (what bounds
    /// the template tests one update costs); a subscription bringing a new one past it gets 429.
    #[arg(long, env = "TIDINGS_MAX_TEMPLATES", default_value_t = 10_000)]
    pub max_templates: usize,

    /// Most open subscriptions from one client address (IPv6: one /64); more gets 429.
    #[arg(long, env = "TIDINGS_MAX_SUBSCRIBERS_PER_ADDRESS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscribers_per_address: u32,

    /// Most open subscriptions in all; more gets 429.
    #[arg(long, env = "TIDINGS_MAX_SUBSCRIBERS", default_value_t = 10_000)]
    pub max_subscribers: usize,

    /// Most open subscriptions made with one token (the same token string, whichever address
    /// uses it), on this node; more gets 429. Anonymous subscriptions count per address only.
    #[arg(long, env = "TIDINGS_MAX_SUBSCRIBERS_PER_TOKEN", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscribers_per_token: u32,

    /// Longest life of a subscription's stream, such as `1h`: then it ends, after a `retry:`
    /// field asking the client back at once, and the client resumes from its last id (nothing
    /// is lost). Each stream ends at a random moment in the last tenth of it, so streams opened
    /// together do not end together. A token's `exp` ends a stream sooner. `0s` turns it off.
    #[arg(long, env = "TIDINGS_MAX_STREAM_LIFETIME", default_value = "1h",
          value_parser = humantime::parse_duration)]
    pub max_stream_lifetime: Duration,

    /// Lifetime of the subscriber tokens the app gives its own pages, such as `15m` (the chat's
    /// presence counts are private updates, which a page subscribes to with such a token). A
    /// page fetches a fresh token before its token ends and moves its stream over without a gap;
    /// the hub ends a stream when its token does. At least `2s`.
    #[arg(long, env = "TIDINGS_PAGE_TOKEN_LIFETIME", default_value = "15m",
          value_parser = parse_page_token_lifetime)]
    pub page_token_lifetime: Duration,

    /// New subscriptions one client address may open per second, on average; more gets 429.
    #[arg(long, env = "TIDINGS_SUBSCRIBE_RATE", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribe_rate: u32,

    /// How many new subscriptions one address may open at once before the rate applies.
    #[arg(long, env = "TIDINGS_SUBSCRIBE_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribe_burst: u32,

    /// Chat messages one client address may send at once (the chat form or
    /// `POST /api/chat/{room}`); past them one more every `--chat-refill`, else 429.
    #[arg(long, env = "TIDINGS_CHAT_BURST", default_value_t = crate::chat::BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub chat_burst: u32,

    /// Time for one more chat message to be allowed to an address past its burst, such as `2s`.
    #[arg(long, env = "TIDINGS_CHAT_REFILL", default_value = "2s",
          value_parser = parse_chat_refill)]
    pub chat_refill: Duration,

    /// Time a client may take to send a whole request head, counted from its first byte, such
    /// as `10s`; past it the answer is 408 and the connection is closed.
    #[arg(long, env = "TIDINGS_HEAD_TIMEOUT", default_value = "10s",
          value_parser = parse_positive_duration)]
    pub head_timeout: Duration,

    /// Time a connection may stay open with no request in progress (before its first request,
    /// or between two on a kept-alive connection), such as `20s`; then it is closed. An open
    /// event stream is a request in progress.
    #[arg(long, env = "TIDINGS_IDLE_TIMEOUT", default_value = "20s",
          value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Time a write to a client may make no progress (a client that stops reading), such as
    /// `30s`; then the connection is closed.
    #[arg(long, env = "TIDINGS_WRITE_TIMEOUT", default_value = "30s",
          value_parser = parse_positive_duration)]
    pub write_timeout: Duration,

    /// The longest request head (request line and headers), in bytes; longer gets 431.
    #[arg(long, env = "TIDINGS_MAX_HEAD_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_head_bytes: u32,

    /// Most open connections from one client address (IPv6: one /64), whatever they carry;
    /// more are answered 429 and closed. A `--trusted-proxy` peer counts only in the total.
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,

    /// Most open connections in all; more are answered 429 and closed. By default, and at most,
    /// the process's open-file limit (raised to its hard limit at start) less a reserve of
    /// 1/16 of it (at least 64, at most 512) for everything else.
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,

    /// How long the simulated market's (`/ticker/…`) and the monitor's (`/monitor`) updates are
    /// kept, such as `10m`: these every-second publishers must not push chat and news out of
    /// the history.
    #[arg(long, env = "TIDINGS_VOLATILE_MAX_AGE", default_value = "10m",
          value_parser = humantime::parse_duration)]
    pub volatile_max_age: Duration,

    /// Milliseconds between two ticks of the simulated market (the ticker page); 0 turns it off.
    #[arg(long, env = "TIDINGS_MARKET_INTERVAL_MS", default_value_t = 1000)]
    pub market_interval_ms: u64,

    /// Seed of the simulated market, to replay the same prices; random by default.
    #[arg(long, env = "TIDINGS_MARKET_SEED")]
    pub market_seed: Option<u64>,

    /// Milliseconds between two health samples on the monitor topic; 0 turns them off.
    #[arg(long, env = "TIDINGS_MONITOR_INTERVAL_MS", default_value_t = 1000)]
    pub monitor_interval_ms: u64,
}

/// A duration above zero, such as `10s` or `500ms`.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The JWT algorithms a hub can be configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum JwtAlg {
    Hs256,
    Rs256,
    Es256,
    /// Ed25519 signatures (RFC 8037).
    #[value(name = "EdDSA")]
    EdDsa,
}

/// An origin, `scheme://host[:port]` with nothing after it, lower-cased; the error says how to
/// write one.
fn parse_origin(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not an origin: write it as scheme://host[:port]");
    let uri: http::Uri = s.parse().map_err(|_| bad())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(bad());
    };
    // An origin is compared byte for byte (with a browser's `Origin` header, or as the start of
    // a token's `aud`), and never has a path or credentials: reject what could never match
    // rather than ignore it silently.
    if !matches!(scheme, "http" | "https")
        || authority.as_str().contains('@')
        || !s.trim_end_matches('/').ends_with(authority.as_str())
    {
        return Err(bad());
    }
    Ok(format!(
        "{scheme}://{}",
        authority.as_str().to_ascii_lowercase()
    ))
}

/// `--public-url`: an origin.
fn parse_page_token_lifetime(s: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if lifetime < Duration::from_secs(2) {
        return Err(
            "a page token lives at least 2s (its pages fetch the next one before it ends)".into(),
        );
    }
    Ok(lifetime)
}

fn parse_chat_refill(s: &str) -> Result<Duration, String> {
    let refill = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if refill.is_zero() {
        return Err("the chat's refill takes some time (such as 2s)".into());
    }
    Ok(refill)
}

fn parse_public_url(s: &str) -> Result<String, String> {
    parse_origin(s)
}

/// `--jwks-url`: an absolute `http` or `https` URL.
fn parse_jwks_url(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not an http:// or https:// URL");
    let uri: http::Uri = s.parse().map_err(|_| bad())?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(authority)) if !authority.as_str().contains('@') => {
            Ok(s.to_owned())
        }
        _ => Err(bad()),
    }
}

impl Config {
    /// The configuration with every default, listening on `addr`; for tests and embedding.
    pub fn with_addr(addr: SocketAddr) -> Self {
        let mut config = Self::parse_from(["tidings"]);
        config.addr = addr;
        config
    }

    pub(crate) fn stream_interval(&self) -> Duration {
        Duration::from_millis(self.stream_interval_ms)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub(crate) fn max_stream_lifetime(&self) -> Option<Duration> {
        (!self.max_stream_lifetime.is_zero()).then_some(self.max_stream_lifetime)
    }

    pub(crate) fn heartbeat(&self) -> Option<Duration> {
        (self.heartbeat_secs > 0).then(|| Duration::from_secs(self.heartbeat_secs))
    }
}

/// An origin allowed by CORS: `*`, or `scheme://host[:port]` with nothing after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigin {
    Any,
    Exact(http::HeaderValue),
}

impl FromStr for CorsOrigin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(CorsOrigin::Any);
        }
        let origin = parse_origin(s).map_err(|e| format!("{e}, or `*`"))?;
        Ok(CorsOrigin::Exact(
            http::HeaderValue::from_str(&origin).map_err(|e| e.to_string())?,
        ))
    }
}

impl fmt::Display for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigin::Any => f.write_str("*"),
            CorsOrigin::Exact(v) => f.write_str(v.to_str().unwrap_or("?")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_parse_or_explain() {
        assert_eq!("*".parse::<CorsOrigin>(), Ok(CorsOrigin::Any));
        let ok = |s: &str| "x".to_string() + &s.parse::<CorsOrigin>().unwrap().to_string();
        assert_eq!(ok("https://Example.com"), "xhttps://example.com");
        assert_eq!(ok("http://localhost:8080/"), "xhttp://localhost:8080");
        for bad in [
            "example.com",
            "ftp://x.org",
            "https://x.org/path",
            "https://u@x.org",
            "",
        ] {
            assert!(
                bad.parse::<CorsOrigin>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn defaults_are_sane() {
        let c = Config::with_addr("127.0.0.1:0".parse().unwrap());
        assert_eq!(c.stream_interval(), Duration::from_secs(1));
        assert!(c.cors_origins.is_empty());
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let c = Config::try_parse_from([
            "tidings",
            "--trusted-proxy",
            "10.0.0.1,192.168.0.0/16",
            "--trusted-proxy",
            "::1",
        ])
        .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.1/32", "192.168.0.0/16", "::1/128"]);
        assert!(Config::try_parse_from(["tidings", "--trusted-proxy", "proxy.local"]).is_err());
    }

    #[test]
    fn zero_interval_is_rejected() {
        assert!(Config::try_parse_from(["tidings", "--stream-interval-ms", "0"]).is_err());
    }

    #[test]
    fn the_stream_lifetime_is_a_duration_and_zero_turns_it_off() {
        let lifetime = |args: &[&str]| {
            Config::try_parse_from([&["tidings"], args].concat())
                .unwrap()
                .max_stream_lifetime()
        };
        assert_eq!(lifetime(&[]), Some(Duration::from_secs(3600)));
        assert_eq!(
            lifetime(&["--max-stream-lifetime", "90s"]),
            Some(Duration::from_secs(90))
        );
        assert_eq!(lifetime(&["--max-stream-lifetime", "0s"]), None);
        assert!(Config::try_parse_from(["tidings", "--max-stream-lifetime", "soon"]).is_err());
    }

    #[test]
    fn a_page_token_lives_at_least_two_seconds() {
        let lifetime = |args: &[&str]| {
            Config::try_parse_from([&["tidings"], args].concat()).map(|c| c.page_token_lifetime)
        };
        assert_eq!(lifetime(&[]).unwrap(), Duration::from_secs(900));
        assert_eq!(
            lifetime(&["--page-token-lifetime", "4s"]).unwrap(),
            Duration::from_secs(4)
        );
        assert!(lifetime(&["--page-token-lifetime", "1s"]).is_err());
        assert!(lifetime(&["--page-token-lifetime", "soon"]).is_err());
    }

    #[test]
    fn tls_files_go_together() {
        assert!(Config::try_parse_from(["tidings", "--tls-cert", "c.pem"]).is_err());
        assert!(Config::try_parse_from(["tidings", "--tls-key", "k.pem"]).is_err());
        let c = Config::try_parse_from(["tidings", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .unwrap();
        assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
    }
}
