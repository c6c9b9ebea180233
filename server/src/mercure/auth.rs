//! Who may publish and subscribe: the keys, and JWTs with the `mercure` claim.
//!
//! Exactly one algorithm is accepted, the configured one, so a token cannot pick a weaker one
//! (and `alg: none` never verifies). Where a request's token is found is [`super::caller`]'s
//! business.

use crate::config::{Config, JwtAlg};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tidings_hub::{Hub, Selector};

/// Verifies tokens.
pub struct Auth {
    validation: Validation,
    publisher: DecodingKey,
    subscriber: DecodingKey,
    /// A token that may publish and subscribe to everything, when the key was generated here.
    pub generated_token: Option<String>,
}

/// The shortest HS256 key accepted, in bytes: the hash's size (RFC 7518 §3.2). A shorter secret
/// can be guessed offline from any one token it signed.
pub const MIN_HS256_KEY_BYTES: usize = 32;

/// Why the keys could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("--jwt-alg {0:?} needs --publisher-jwt-key (a PEM public key)")]
    MissingKey(JwtAlg),
    #[error(
        "--{flag} is {len} bytes long; an HS256 key must be at least {MIN_HS256_KEY_BYTES} bytes \
         (RFC 7518 §3.2), for example the output of `openssl rand -base64 32`"
    )]
    TooShort { flag: &'static str, len: usize },
    #[error("cannot read the JWT key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the JWT key is not a valid {alg:?} key: {source}")]
    Invalid {
        alg: JwtAlg,
        source: jsonwebtoken::errors::Error,
    },
}

/// The claims Tidings reads.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Claims {
    #[serde(default)]
    pub mercure: MercureClaim,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct MercureClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// Where a request's token came from; cookies need a CSRF check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Query,
    Cookie,
}

/// Why a token was refused; said to the client as a one-line 401 reason.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl axum::response::IntoResponse for TokenError {
    fn into_response(self) -> axum::response::Response {
        super::plain(axum::http::StatusCode::UNAUTHORIZED, self)
    }
}

/// A verified token.
pub struct Verified {
    pub claims: Claims,
    pub source: TokenSource,
}

impl Verified {
    /// The `mercure.publish` claim's selectors, through the hub's shared templates;
    /// unparseable ones (empty, control characters) grant nothing.
    pub fn publish_selectors(&self, hub: &Hub) -> Option<Arc<[Selector]>> {
        self.claims
            .mercure
            .publish
            .as_deref()
            .map(|c| hub.parse_claim(c))
    }

    /// The `mercure.subscribe` claim's selectors, likewise.
    pub fn subscribe_selectors(&self, hub: &Hub) -> Option<Arc<[Selector]>> {
        self.claims
            .mercure
            .subscribe
            .as_deref()
            .map(|c| hub.parse_claim(c))
    }

    /// When the token expires, as an instant of this process; `None` without `exp`, and for an
    /// `exp` too far off for an `Instant` (it does not expire while this process runs).
    pub fn expires_at(&self) -> Option<Instant> {
        let exp = self.claims.exp?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Instant::now().checked_add(Duration::from_secs(exp.saturating_sub(now)))
    }
}

impl Auth {
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        let alg = config.jwt_alg;
        let (publisher_text, generated) = match (&config.publisher_jwt_key, alg) {
            (Some(key), _) => (key.clone(), false),
            (None, JwtAlg::Hs256) => (random_secret(), true),
            (None, _) => return Err(KeyError::MissingKey(alg)),
        };
        let subscriber_text = config
            .subscriber_jwt_key
            .clone()
            .unwrap_or_else(|| publisher_text.clone());
        let publisher = decoding_key(alg, &publisher_text, "publisher-jwt-key")?;
        let subscriber_flag = if config.subscriber_jwt_key.is_some() {
            "subscriber-jwt-key"
        } else {
            "publisher-jwt-key"
        };
        let subscriber = decoding_key(alg, &subscriber_text, subscriber_flag)?;
        let mut validation = Validation::new(algorithm(alg));
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        // Off by default in jsonwebtoken; a token must not be usable before its `nbf`.
        validation.validate_nbf = true;
        validation.leeway = 5;
        let generated_token = generated.then(|| {
            let claims = Claims {
                mercure: MercureClaim {
                    publish: Some(vec!["*".into()]),
                    subscribe: Some(vec!["*".into()]),
                    payload: None,
                },
                exp: None,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(publisher_text.as_bytes()),
            )
            .expect("HS256 signing cannot fail")
        });
        Ok(Self {
            validation,
            publisher,
            subscriber,
            generated_token,
        })
    }

    pub fn verify_publisher(
        &self,
        token: &str,
        source: TokenSource,
    ) -> Result<Verified, TokenError> {
        self.verify(&self.publisher, token, source)
    }

    pub fn verify_subscriber(
        &self,
        token: &str,
        source: TokenSource,
    ) -> Result<Verified, TokenError> {
        self.verify(&self.subscriber, token, source)
    }

    fn verify(
        &self,
        key: &DecodingKey,
        token: &str,
        source: TokenSource,
    ) -> Result<Verified, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(Verified {
            claims: data.claims,
            source,
        })
    }
}

fn algorithm(alg: JwtAlg) -> Algorithm {
    match alg {
        JwtAlg::Hs256 => Algorithm::HS256,
        JwtAlg::Rs256 => Algorithm::RS256,
        JwtAlg::Es256 => Algorithm::ES256,
    }
}

/// The key `text` (given as `--{flag}`) for `alg`.
fn decoding_key(alg: JwtAlg, text: &str, flag: &'static str) -> Result<DecodingKey, KeyError> {
    let pem = |text: &str| -> Result<Vec<u8>, KeyError> {
        if text.trim_start().starts_with("-----BEGIN") {
            Ok(text.as_bytes().to_vec())
        } else {
            std::fs::read(text).map_err(|source| KeyError::Read {
                path: text.into(),
                source,
            })
        }
    };
    let invalid = |source| KeyError::Invalid { alg, source };
    match alg {
        JwtAlg::Hs256 if text.len() < MIN_HS256_KEY_BYTES => Err(KeyError::TooShort {
            flag,
            len: text.len(),
        }),
        JwtAlg::Hs256 => Ok(DecodingKey::from_secret(text.as_bytes())),
        JwtAlg::Rs256 => DecodingKey::from_rsa_pem(&pem(text)?).map_err(invalid),
        JwtAlg::Es256 => DecodingKey::from_ec_pem(&pem(text)?).map_err(invalid),
    }
}

fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
