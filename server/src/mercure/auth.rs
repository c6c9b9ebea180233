//! Who may publish and subscribe: the keys, and the two forms of token.
//!
//! - Draft-07 tokens: any JWS with the `mercure` claim, verified with the one configured
//!   algorithm and the role's key (so a token cannot pick a weaker algorithm, and `alg: none`
//!   never verifies).
//! - Mercure 1.0 access tokens (`typ: at+jwt`, RFC 9068): a trusted `iss` whose own keys verify
//!   them (the static keys for self-issuers, a [`Jwks`] for an authorization server), this hub
//!   in `aud`, `exp` required, grants in `authorization_details` ([`Grants`]).
//!
//! Where a request's token is found, and which form it must be, is [`super::caller`]'s business.

use super::{
    challenge::Resource,
    grants::{Grants, GrantsError},
    jwks::{Jwks, JwksConfig, is_ed25519_key},
};
use crate::config::{Config, JwtAlg};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tidings_hub::{Hub, Selector};

/// Verifies tokens.
pub struct Auth {
    /// Draft-07 tokens' checks.
    validation: Validation,
    /// The algorithm of the static keys.
    alg: Algorithm,
    publisher: DecodingKey,
    subscriber: DecodingKey,
    /// A token that may publish and subscribe to everything, when the key was generated here.
    pub generated_token: Option<String>,
    /// Signs the app's own pages' subscriber tokens: the subscriber key, when it is an HS256
    /// secret (an RS256/ES256/EdDSA key given is a public key, which cannot sign).
    page_signer: Option<EncodingKey>,
    access: AccessPolicy,
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
    #[error("the JWT key is not an Ed25519 public key")]
    NotEd25519,
    #[error(
        "--jwks-url needs --jwks-issuer (the issuer its keys belong to) unless exactly one --jwt-issuer is given; with several, one --jwks-issuer each, in the same order, all different"
    )]
    JwksIssuer,
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

/// Why a draft-07 token was refused; said to the client as a one-line 401 reason.
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

/// Why a Mercure 1.0 access token was refused. For the log only: the client is told
/// `invalid_token` whatever the reason (Mercure 1.0 §Error Responses), so that a forger learns
/// nothing.
#[derive(Debug, thiserror::Error)]
pub enum AccessTokenError {
    #[error("malformed token")]
    Malformed,
    #[error("the header carries key material ({0})")]
    EmbeddedKey(&'static str),
    #[error("the header has `crit`")]
    Critical,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no string `iss`")]
    NoIssuer,
    #[error("untrusted issuer")]
    UntrustedIssuer,
    #[error("no key of the issuer for this algorithm and kid")]
    NoKey,
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error(transparent)]
    Grants(#[from] GrantsError),
}

/// Which endpoint a token is presented to: the static keys are per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Subscriber,
}

/// What a verified token allows.
enum Allowed {
    /// A draft-07 token's `mercure` claim, parsed when asked.
    Claim(MercureClaim),
    /// A Mercure 1.0 token's authorization details, parsed and checked when it was verified.
    Details(Grants),
}

/// A verified token.
pub struct Verified {
    allowed: Allowed,
    exp: Option<u64>,
    pub source: TokenSource,
}

impl Verified {
    /// Whether this is a Mercure 1.0 access token (whose refusals are Bearer challenges).
    pub fn is_access_token(&self) -> bool {
        matches!(self.allowed, Allowed::Details(_))
    }

    /// The topics it may publish to: a 1.0 token's `publish` grants, or the `mercure.publish`
    /// claim's selectors through the hub's shared templates (unparseable ones, empty or with
    /// control characters, grant nothing; `None` without the claim).
    pub fn publish_selectors(&self, hub: &Hub) -> Option<Arc<[Selector]>> {
        match &self.allowed {
            Allowed::Claim(claim) => claim.publish.as_deref().map(|c| hub.parse_claim(c)),
            Allowed::Details(grants) => Some(grants.publish.iter().cloned().collect()),
        }
    }

    /// The topics whose private updates it may receive, likewise.
    pub fn subscribe_selectors(&self, hub: &Hub) -> Option<Arc<[Selector]>> {
        match &self.allowed {
            Allowed::Claim(claim) => claim.subscribe.as_deref().map(|c| hub.parse_claim(c)),
            Allowed::Details(grants) => Some(grants.subscribe.iter().cloned().collect()),
        }
    }

    /// The payload of a subscription with these matchers: a draft-07 token's one payload, or
    /// the payload of a 1.0 token's first `subscribe` detail matching one of them.
    pub fn payload_for<'a>(
        &self,
        matchers: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Option<serde_json::Value> {
        match &self.allowed {
            Allowed::Claim(claim) => claim.payload.clone(),
            Allowed::Details(grants) => grants.payload_for(matchers),
        }
    }

    /// When the token expires, as an instant of this process; `None` without `exp`, and for an
    /// `exp` too far off for an `Instant` (it does not expire while this process runs).
    pub fn expires_at(&self) -> Option<Instant> {
        let exp = self.exp?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Instant::now().checked_add(Duration::from_secs(exp.saturating_sub(now)))
    }
}

/// Who may present Mercure 1.0 tokens, and how they verify.
struct AccessPolicy {
    /// Issuers whose tokens verify with the static keys.
    self_issuers: Vec<String>,
    /// The authorization servers' issuers and their key sets.
    jwks: Vec<(String, Jwks)>,
    max_matchers: usize,
    resource: Resource,
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
        validation.leeway = LEEWAY_SECS;
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
        let jwks_issuers: Vec<String> = match (
            &config.jwks_url[..],
            &config.jwks_issuer[..],
            &config.jwt_issuers[..],
        ) {
            ([_], [], [only]) => vec![only.clone()],
            (urls, issuers, _) if urls.len() == issuers.len() => issuers.to_vec(),
            _ => return Err(KeyError::JwksIssuer),
        };
        if jwks_issuers.iter().any(String::is_empty)
            || (1..jwks_issuers.len()).any(|i| jwks_issuers[..i].contains(&jwks_issuers[i]))
        {
            return Err(KeyError::JwksIssuer);
        }
        let self_issuers = config
            .jwt_issuers
            .iter()
            .filter(|i| !i.is_empty() && !jwks_issuers.contains(i))
            .cloned()
            .collect();
        let jwks = config
            .jwks_url
            .iter()
            .zip(jwks_issuers)
            .map(|(url, issuer)| {
                let jwks = Jwks::new(JwksConfig {
                    url: url.clone(),
                    cache: config.jwks_cache,
                    min_interval: config.jwks_min_interval,
                    timeout: config.jwks_timeout,
                    max_bytes: config.jwks_max_bytes,
                });
                (issuer, jwks)
            })
            .collect();
        let page_signer =
            (alg == JwtAlg::Hs256).then(|| EncodingKey::from_secret(subscriber_text.as_bytes()));
        Ok(Self {
            validation,
            alg: algorithm(alg),
            publisher,
            subscriber,
            generated_token,
            page_signer,
            access: AccessPolicy {
                self_issuers,
                jwks,
                max_matchers: config.max_token_matchers as usize,
                resource: Resource::new("", String::new(), &[]),
            },
        })
    }

    /// Names the hub: its public URL (an origin) decides the default issuer (with no
    /// `--jwt-issuer` and no `--jwks-url`), the default audience, and where the metadata is.
    pub fn serving_at(mut self, public_url: &str, config: &Config) -> Self {
        let access = &mut self.access;
        if config.jwt_issuers.iter().all(String::is_empty) && access.jwks.is_empty() {
            access.self_issuers = vec![public_url.to_owned()];
        }
        let audience = config
            .jwt_audience
            .clone()
            .unwrap_or_else(|| format!("{public_url}{}", super::PATH));
        let servers: Vec<String> = access.jwks.iter().map(|(i, _)| i.clone()).collect();
        access.resource = Resource::new(public_url, audience, &servers);
        self
    }

    /// A draft-07 subscriber token for one of the app's own pages: it may subscribe to
    /// `subscribe` and ends in `lifetime` (whole seconds, at least one). Each one is distinct
    /// (a random `jti`), so the per-token subscription limit counts one browser's. `None` when
    /// this server holds no secret to sign with (`--jwt-alg` other than HS256). With the token,
    /// its `exp` (seconds since the epoch).
    pub fn page_token(&self, subscribe: &[&str], lifetime: Duration) -> Option<(String, u64)> {
        #[derive(Serialize)]
        struct PageClaims<'a> {
            mercure: MercureClaim,
            exp: u64,
            jti: &'a str,
        }
        let key = self.page_signer.as_ref()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let jti = format!("{:032x}", rand::random::<u128>());
        let claims = PageClaims {
            mercure: MercureClaim {
                subscribe: Some(subscribe.iter().map(|s| (*s).to_owned()).collect()),
                ..MercureClaim::default()
            },
            exp: now + lifetime.as_secs().max(1),
            jti: &jti,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()?;
        Some((token, claims.exp))
    }

    /// Whether [`Auth::page_token`] can sign.
    pub fn signs_page_tokens(&self) -> bool {
        self.page_signer.is_some()
    }

    /// The hub as a protected resource: its identifier, metadata and challenges.
    pub fn resource(&self) -> &Resource {
        &self.access.resource
    }

    /// Verifies a draft-07 token: the configured algorithm and key, the `mercure` claim.
    pub fn verify_claim(
        &self,
        role: Role,
        token: &str,
        source: TokenSource,
    ) -> Result<Verified, TokenError> {
        let key = match role {
            Role::Publisher => &self.publisher,
            Role::Subscriber => &self.subscriber,
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(Verified {
            exp: data.claims.exp,
            allowed: Allowed::Claim(data.claims.mercure),
            source,
        })
    }

    /// Verifies a Mercure 1.0 access token (RFC 9068 as Mercure profiles it): `typ: at+jwt`, no
    /// key material or `crit` in the header, an algorithm of the allow-list that the key is
    /// for, a trusted `iss` whose own keys verify the signature, `exp` (required) and `nbf`,
    /// this hub in `aud`; then its authorization details, checked whole.
    pub async fn verify_access_token(
        &self,
        role: Role,
        token: &str,
        source: TokenSource,
        hub: &Hub,
    ) -> Result<Verified, AccessTokenError> {
        let header = token_part(token, 0).ok_or(AccessTokenError::Malformed)?;
        if !header
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(is_at_jwt)
        {
            return Err(AccessTokenError::Malformed);
        }
        for name in ["jwk", "jku", "x5u", "x5c"] {
            if header.contains_key(name) {
                return Err(AccessTokenError::EmbeddedKey(name));
            }
        }
        if header.contains_key("crit") {
            return Err(AccessTokenError::Critical);
        }
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("HS256") => Algorithm::HS256,
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            other => return Err(AccessTokenError::Algorithm(format!("{other:?}"))),
        };
        let kid = header.get("kid").and_then(Value::as_str);
        // The issuer picks the keys, so it is read before the signature is checked; the
        // signature is then checked with that issuer's keys only, and `iss` again with it.
        let claims = token_part(token, 1).ok_or(AccessTokenError::Malformed)?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(AccessTokenError::NoIssuer)?;
        let access = &self.access;
        let keys = match access.jwks.iter().find(|(i, _)| i == issuer) {
            Some((_, jwks)) => jwks.keys_for(kid, alg).await,
            _ if access.self_issuers.iter().any(|i| i == issuer) => {
                if alg != self.alg {
                    return Err(AccessTokenError::Algorithm(format!("{alg:?}")));
                }
                vec![match role {
                    Role::Publisher => self.publisher.clone(),
                    Role::Subscriber => self.subscriber.clone(),
                }]
            }
            _ => return Err(AccessTokenError::UntrustedIssuer),
        };
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&access.resource.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let mut last = AccessTokenError::NoKey;
        for key in &keys {
            match jsonwebtoken::decode::<AccessClaims>(token, key, &validation) {
                Ok(data) => {
                    let grants = Grants::parse(
                        data.claims.authorization_details.as_ref(),
                        hub,
                        access.max_matchers,
                    )?;
                    return Ok(Verified {
                        exp: numeric_date(data.claims.exp.as_ref()),
                        allowed: Allowed::Details(grants),
                        source,
                    });
                }
                Err(error) => last = error.into(),
            }
        }
        Err(last)
    }
}

/// Seconds of clock skew allowed around `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// The claims of a Mercure 1.0 token that the hub reads beyond jsonwebtoken's checks.
#[derive(Deserialize)]
struct AccessClaims {
    exp: Option<Value>,
    authorization_details: Option<Value>,
}

/// A NumericDate (seconds, possibly with a fraction) as whole seconds.
fn numeric_date(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    value.as_u64().or_else(|| {
        let f = value.as_f64()?;
        (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
    })
}

/// Whether a `typ` says "JWT access token" (RFC 9068 §4: `at+jwt`, or with the `application/`
/// prefix, compared without regard to case).
fn is_at_jwt(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ.strip_prefix("application/").unwrap_or(&typ) == "at+jwt"
}

/// Whether a token says it is a Mercure 1.0 access token (`typ: at+jwt`); nothing is verified.
pub fn is_access_token(token: &str) -> bool {
    token_part(token, 0)
        .and_then(|header| header.get("typ")?.as_str().map(is_at_jwt))
        .unwrap_or(false)
}

/// The JSON object of a compact JWS's header (`index` 0) or payload (1), if it decodes.
fn token_part(token: &str, index: usize) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine;
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn algorithm(alg: JwtAlg) -> Algorithm {
    match alg {
        JwtAlg::Hs256 => Algorithm::HS256,
        JwtAlg::Rs256 => Algorithm::RS256,
        JwtAlg::Es256 => Algorithm::ES256,
        JwtAlg::EdDsa => Algorithm::EdDSA,
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
        JwtAlg::EdDsa => {
            let key = DecodingKey::from_ed_pem(&pem(text)?).map_err(invalid)?;
            if is_ed25519_key(&key) {
                Ok(key)
            } else {
                Err(KeyError::NotEd25519)
            }
        }
    }
}

fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
