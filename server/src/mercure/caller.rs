//! Who is calling: a request's token, found and verified, as axum extractors.
//!
//! Where the token may be, and which form it must have, depends first on the request:
//!
//! - A Mercure 1.0 request: a subscription with `match…` parameters (any name starting with
//!   `match`, in any case, as the subscribe handler reads them), a `QUERY`, or one of the 1.0
//!   endpoints of the subscriptions API (`…/subscriptions/{match_type}/{match}[/{subscriber}]`).
//!   The token is a Mercure 1.0 access token (`typ: at+jwt`, RFC 9068) from the
//!   `Authorization: Bearer` header, else the `__Secure-mercure_access_token` cookie (the header
//!   wins; cookies are ambient). The `mercureAuthorization` cookie is not looked at: with only
//!   that one the request is anonymous. A token in the `authorization` query parameter makes the
//!   request malformed (`400 invalid_request`), whatever its form and whatever else the request
//!   carries, as does an `Authorization` header that is not `Bearer`; a draft-07 token (no
//!   `typ: at+jwt`) is `401 invalid_token`, as is an access token that does not verify.
//! - Any other request (a `topic=` subscription, a publish, the list of all subscriptions,
//!   draft-07's subscriptions API): the token is looked for in the header, then the
//!   `authorization` query parameter (for clients that cannot set headers, such as
//!   `EventSource`), then the access cookie, then the `mercureAuthorization` cookie, and its form
//!   decides. A draft-07 token (anything without `typ: at+jwt`) is verified as before 1.0 and
//!   refused as before (a plain-text 401). An access token is verified as on a 1.0 request and
//!   refused with challenges; it is taken from the header or the access cookie only: in the URL
//!   or the draft-07 cookie it is `400 invalid_request`. The access cookie holds access tokens
//!   only.
//!
//! Challenges are RFC 6750 `WWW-Authenticate: Bearer` headers naming the RFC 9728 metadata; their
//! bodies do not say which check failed.
//!
//! Handlers take `Option<Publisher>` or `Option<Subscriber>`, which picks the key: `None` when
//! the request has no token, a refusal when it has one that does not verify. Extractors run
//! before the handler, so no request input is parsed for a caller whose token is bad. A handler
//! serving both versions tells them apart by [`Verified::is_access_token`].

use super::{
    auth::{Role, TokenError, TokenSource, Verified, is_access_token},
    challenge::{ACCESS_COOKIE, BearerError, Challenge},
    limits::TokenKey,
    plain, subscriptions,
};
use crate::AppState;
use axum::{
    extract::OptionalFromRequestParts,
    http::{HeaderMap, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};

/// The cookie a browser can carry a draft-07 token in.
pub const COOKIE_NAME: &str = "mercureAuthorization";

/// A caller whose token verifies with the publisher key.
pub struct Publisher(pub Verified);

/// A caller whose token verifies with the subscriber key, and which token it is (for the
/// per-token subscription limit).
pub struct Subscriber(pub Verified, pub TokenKey);

/// Why a request's token was refused.
#[derive(Debug)]
pub enum Refused {
    /// A draft-07 token, on a request that is not Mercure 1.0's: as before 1.0.
    Claim(TokenError),
    /// An access token, or any token of a Mercure 1.0 request: a challenge.
    Challenge(BearerError, Challenge),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Claim(error) => error.into_response(),
            Refused::Challenge(error, challenge) => {
                let (status, reason) = match error {
                    BearerError::InvalidRequest => (
                        StatusCode::BAD_REQUEST,
                        "a Mercure access token goes in the Authorization header (`Bearer <token>`) \
                         or the __Secure-mercure_access_token cookie, never in the URL",
                    ),
                    BearerError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid token"),
                    BearerError::InsufficientScope => {
                        (StatusCode::FORBIDDEN, "the token does not allow this")
                    }
                };
                challenge.apply(plain(status, reason))
            }
        }
    }
}

impl OptionalFromRequestParts<AppState> for Publisher {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Refused> {
        let verified = verify(parts, state, Role::Publisher).await?;
        Ok(verified.map(|(verified, _)| Publisher(verified)))
    }
}

impl OptionalFromRequestParts<AppState> for Subscriber {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Refused> {
        let verified = verify(parts, state, Role::Subscriber).await?;
        Ok(verified.map(|(verified, token)| {
            Subscriber(verified, state.subscriber_limits.token_key(&token))
        }))
    }
}

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Header,
    Query,
    /// `mercureAuthorization`.
    ClaimCookie,
    /// `__Secure-mercure_access_token`.
    AccessCookie,
}

impl Place {
    fn source(self) -> TokenSource {
        match self {
            Place::Header => TokenSource::Header,
            Place::Query => TokenSource::Query,
            Place::ClaimCookie | Place::AccessCookie => TokenSource::Cookie,
        }
    }
}

/// The request's token, if any, verified for `role`, and the token itself.
async fn verify(
    parts: &Parts,
    state: &AppState,
    role: Role,
) -> Result<Option<(Verified, String)>, Refused> {
    let auth = &state.auth;
    let challenge = |error| Refused::Challenge(error, auth.resource().refused(error));
    let query = parts.uri.query().unwrap_or_default();
    if is_mercure_1(parts, query) {
        return verify_mercure_1(parts, state, role, query).await;
    }
    let Some((token, place)) = find_token(&parts.headers, query).map_err(Refused::Claim)? else {
        return Ok(None);
    };
    // The access cookie holds access tokens only; elsewhere the token's own `typ` tells.
    if place != Place::AccessCookie && !is_access_token(&token) {
        let verified = auth.verify_claim(role, &token, place.source());
        return verified
            .map(|verified| Some((verified, token)))
            .map_err(Refused::Claim);
    }
    if matches!(place, Place::Query | Place::ClaimCookie) {
        return Err(challenge(BearerError::InvalidRequest));
    }
    verify_access_token(state, role, token, place).await
}

/// A Mercure 1.0 request's token: an access token from the header, else from the access cookie;
/// the `mercureAuthorization` cookie is not looked at (the request is anonymous without one of
/// those), and a token in the URL makes the request malformed, whatever its form and whatever
/// else the request carries (RFC 6750: one method only).
async fn verify_mercure_1(
    parts: &Parts,
    state: &AppState,
    role: Role,
    query: &str,
) -> Result<Option<(Verified, String)>, Refused> {
    let challenge = |error| Refused::Challenge(error, state.auth.resource().refused(error));
    if query_token(query).is_some() {
        return Err(challenge(BearerError::InvalidRequest));
    }
    let (token, place) = match bearer(&parts.headers) {
        Some(Ok(token)) => (token, Place::Header),
        Some(Err(_)) => return Err(challenge(BearerError::InvalidRequest)),
        None => match cookie(&parts.headers, ACCESS_COOKIE) {
            Some(token) => (token, Place::AccessCookie),
            None => return Ok(None),
        },
    };
    if !is_access_token(&token) {
        tracing::debug!("a token that is not an access token, on a Mercure 1.0 request");
        return Err(challenge(BearerError::InvalidToken));
    }
    verify_access_token(state, role, token, place).await
}

/// Verifies a Mercure 1.0 access token found at `place`; any failure is `invalid_token`.
async fn verify_access_token(
    state: &AppState,
    role: Role,
    token: String,
    place: Place,
) -> Result<Option<(Verified, String)>, Refused> {
    let auth = &state.auth;
    match auth
        .verify_access_token(role, &token, place.source(), &state.hub)
        .await
    {
        Ok(verified) => Ok(Some((verified, token))),
        Err(error) => {
            tracing::debug!("access token refused: {error}");
            let error = BearerError::InvalidToken;
            Err(Refused::Challenge(error, auth.resource().refused(error)))
        }
    }
}

/// Whether a request is a Mercure 1.0 one by its form, whatever its token: a subscription
/// (`GET`, `HEAD`) with `match…` parameters, a `QUERY` (whose parameters are in its body, which
/// extractors of the parts cannot read; the method is Mercure 1.0's own), or one of the 1.0
/// endpoints of the subscriptions API. Other requests (`topic=` subscriptions, publishing, even
/// with `match…` in its URL, the list of all subscriptions, draft-07's subscriptions API) are
/// either, as their token says.
fn is_mercure_1(parts: &Parts, query: &str) -> bool {
    let path = parts.uri.path();
    let subscribing = path == super::PATH && matches!(parts.method, Method::GET | Method::HEAD);
    parts.method.as_str() == "QUERY"
        || (subscribing && uses_matchers(query))
        || subscriptions::is_mercure_1_path(path)
}

/// Whether a query selects topics the Mercure 1.0 way: a parameter named `match…` (Mercure 1.0
/// reserves every such name, in any case; the subscribe handler refuses unknown ones).
fn uses_matchers(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(name, _)| {
        name.get(..5)
            .is_some_and(|m| m.eq_ignore_ascii_case("match"))
    })
}

/// The `Authorization: Bearer` token; the scheme is matched without regard to case.
fn bearer(headers: &HeaderMap) -> Option<Result<String, TokenError>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let token = value.to_str().ok().and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    Some(token.ok_or(TokenError::NotBearer))
}

/// The value of the first cookie named `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, token) = pair.trim().split_once('=')?;
            (key == name).then(|| token.trim_matches('"').to_owned())
        })
}

/// The request's token: the header, then the `authorization` query parameter, then the cookies
/// (the access cookie first). The header wins over any cookie (cookies are ambient, so both is
/// no error).
fn find_token(headers: &HeaderMap, query: &str) -> Result<Option<(String, Place)>, TokenError> {
    if let Some(token) = bearer(headers) {
        return Ok(Some((token?, Place::Header)));
    }
    if let Some(token) = query_token(query) {
        return Ok(Some((token, Place::Query)));
    }
    Ok(cookie(headers, ACCESS_COOKIE)
        .map(|token| (token, Place::AccessCookie))
        .or_else(|| cookie(headers, COOKIE_NAME).map(|token| (token, Place::ClaimCookie))))
}

/// The `authorization` query parameter (draft-07's place for clients that cannot set headers).
fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.into_owned())
}
