//! Who is calling: a request's token, found and verified, as axum extractors.
//!
//! The token is looked for in the `Authorization: Bearer` header, then the `authorization` query
//! parameter (for clients that cannot set headers, such as `EventSource`), then the
//! `__Secure-mercure_access_token` cookie, then the `mercureAuthorization` cookie. Its form
//! decides how it is verified:
//!
//! - A Mercure 1.0 access token (`typ: at+jwt`), as RFC 9068 and Mercure 1.0 say. It is taken
//!   from the header or the access cookie only, never from the URL (nor the draft-07 cookie): a
//!   malformed request, `400 invalid_request`. The access cookie holds access tokens only.
//! - A draft-07 token, anything else: as before 1.0, whatever the request (so that clients move
//!   over one step at a time).
//!
//! Refusals are RFC 6750 challenges (`invalid_request` 400, `invalid_token` 401) for a 1.0
//! token, and for any token of a Mercure 1.0 request (one with `match…` parameters, or a
//! `QUERY`); a draft-07 request's draft-07 token is refused as before, a plain-text 401.
//!
//! Handlers take `Option<Publisher>` or `Option<Subscriber>`, which picks the key: `None` when
//! the request has no token, a refusal when it has one that does not verify. Extractors run
//! before the handler, so no request input is parsed for a caller whose token is bad.

use super::{
    auth::{Role, TokenError, TokenSource, Verified, is_access_token},
    challenge::{ACCESS_COOKIE, BearerError, Challenge},
    limits::TokenKey,
    plain,
};
use crate::AppState;
use axum::{
    extract::OptionalFromRequestParts,
    http::{HeaderMap, StatusCode, header, request::Parts},
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
    /// A draft-07 request's token: as before 1.0.
    Claim(TokenError),
    /// A Mercure 1.0 token, or a 1.0 request's: a challenge.
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
    // A QUERY request's parameters are in its body, which extractors of the parts cannot read;
    // the method is Mercure 1.0's own.
    let mercure_1 = parts.method.as_str() == "QUERY" || uses_matchers(query);
    let found = find_token(&parts.headers, query).map_err(|error| match mercure_1 {
        true => challenge(BearerError::InvalidRequest),
        false => Refused::Claim(error),
    })?;
    let Some((token, place)) = found else {
        return Ok(None);
    };
    // The access cookie holds access tokens only; elsewhere the token's own `typ` tells.
    if place != Place::AccessCookie && !is_access_token(&token) {
        let verified = auth.verify_claim(role, &token, place.source());
        return match verified {
            Ok(verified) => Ok(Some((verified, token))),
            Err(_) if mercure_1 => Err(challenge(BearerError::InvalidToken)),
            Err(error) => Err(Refused::Claim(error)),
        };
    }
    if matches!(place, Place::Query | Place::ClaimCookie) {
        return Err(challenge(BearerError::InvalidRequest));
    }
    match auth
        .verify_access_token(role, &token, place.source(), &state.hub)
        .await
    {
        Ok(verified) => Ok(Some((verified, token))),
        Err(error) => {
            tracing::debug!("access token refused: {error}");
            Err(challenge(BearerError::InvalidToken))
        }
    }
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
    let query_token = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.into_owned());
    if let Some(token) = query_token {
        return Ok(Some((token, Place::Query)));
    }
    Ok(cookie(headers, ACCESS_COOKIE)
        .map(|token| (token, Place::AccessCookie))
        .or_else(|| cookie(headers, COOKIE_NAME).map(|token| (token, Place::ClaimCookie))))
}
