//! An authorization server's JWK Set (RFC 7517), fetched from `--jwks-url` and cached.
//!
//! A token names its key with `kid`; a `kid` not in the cache makes the hub fetch the set again,
//! since the server may have rotated its keys. Anyone can send such a token, so fetches are at
//! least `--jwks-min-interval` apart whatever the tokens say; between them an unknown `kid` is
//! simply refused. A fetch is bounded in time (`--jwks-timeout`) and size (`--jwks-max-bytes`),
//! follows no redirect, and runs once for all the requests waiting on it. A failed fetch keeps
//! the keys held before it.
//!
//! Only signature keys of the allow-list are kept (EdDSA on Ed25519, ES256 on P-256, RS256), each
//! bound to one algorithm: its `alg`, or the one its type implies. Symmetric keys are never taken
//! from the network.

use futures_util::StreamExt;
use jsonwebtoken::{
    Algorithm, DecodingKey, DecodingKeyKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use parking_lot::RwLock;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// The most keys kept from one set: a token without `kid` is tried against each key of its
/// algorithm, so this bounds the work one token can cause.
pub const MAX_KEYS: usize = 32;

/// How the set is fetched.
pub struct JwksConfig {
    pub url: String,
    pub cache: Duration,
    pub min_interval: Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// The cached key set of one issuer.
pub struct Jwks {
    config: JwksConfig,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the last fetch started; held during a fetch, so one runs at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    /// When these keys were fetched; `None` before the first success.
    fetched: Option<Instant>,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Why a fetch failed: for the log.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    #[error("larger than {0} bytes (--jwks-max-bytes)")]
    TooLarge(usize),
    #[error("not a JWK Set: {0}")]
    NotASet(#[from] serde_json::Error),
}

impl Jwks {
    pub fn new(config: JwksConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            config,
            client,
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The keys that may have signed a token with this `kid` and `alg`: the one with that `kid`,
    /// or without a `kid`, every key of the algorithm. Fetches the set first if it was never
    /// fetched, is older than `--jwks-cache`, or lacks the `kid`, unless a fetch is too recent.
    pub async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
        let set = self.keys.read().clone();
        let found = set.matching(kid, alg);
        let fresh = set
            .fetched
            .is_some_and(|at| at.elapsed() < self.config.cache);
        if fresh && !found.is_empty() {
            return found;
        }
        self.refresh().await;
        let set = self.keys.read().clone();
        set.matching(kid, alg)
    }

    /// Fetches the set again unless the last fetch started less than `--jwks-min-interval` ago.
    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.config.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(
                    "fetched {} usable keys from the JWK Set at {}",
                    keys.len(),
                    self.config.url
                );
                *self.keys.write() = Arc::new(KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                });
            }
            Err(error) => tracing::warn!(
                "cannot fetch the JWK Set at {}: {error}; keeping the keys held",
                self.config.url
            ),
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, FetchError> {
        let response = self.client.get(&self.config.url).send().await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let max = self.config.max_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(parse_set(&body)?)
    }
}

impl KeySet {
    fn matching(&self, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .map(|k| k.key.clone())
            .collect()
    }
}

/// The usable keys of a JWK Set document; keys that do not parse or are not on the allow-list
/// are skipped, not fatal.
fn parse_set(body: &[u8]) -> Result<Vec<Key>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body)?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|value| usable_key(serde_json::from_value(value).ok()?))
        .take(MAX_KEYS)
        .collect())
}

/// A key of the allow-list, bound to its algorithm.
fn usable_key(jwk: Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => implied,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(_) => return None,
    };
    if alg != implied {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    if alg == Algorithm::EdDSA && !is_ed25519_key(&key) {
        return None;
    }
    Some(Key {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

/// Whether an EdDSA key holds the 32 bytes of an Ed25519 public key (jsonwebtoken would panic
/// verifying with a shorter one).
pub fn is_ed25519_key(key: &DecodingKey) -> bool {
    matches!(key.kind(), DecodingKeyKind::SecretOrDer(bytes) if bytes.len() == 32)
}
