//! Who is calling: a request's token, found and verified, as axum extractors.
//!
//! Two protocols share the hub, told apart per request:
//!
//! - **Mercure 1.0**: a request that selects topics with `match…` parameters, a `QUERY` request,
//!   or one whose token says `typ: at+jwt`. The token comes from the `Authorization: Bearer`
//!   header, else the `__Secure-mercure_access_token` cookie, never from the URL; refusals are
//!   RFC 6750 challenges (`invalid_request` 400, `invalid_token` 401). The cookie holds access
//!   tokens only; the header may still hold a draft-07 token (for clients moving to 1.0).
//! - **Draft-07**, anything else, as before 1.0: the header, then the `authorization` query
//!   parameter (for clients that cannot set headers, such as `EventSource`), then the cookies;
//!   refusals are a plain-text 401.
//!
//! Handlers take `Option<Publisher>` or `Option<Subscriber>`, which picks the key: `None` when
//! the request has no token, a refusal when it has one that does not verify. Extractors run
//! before the handler, so no request input is parsed for a caller whose token is bad.

use super::{
    auth::{Role, TokenError, TokenSource, Verified, is_access_token},
    challenge::{ACCESS_COOKIE, BearerError, Challenge},
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

/// A caller whose token verifies with the subscriber key.
pub struct Subscriber(pub Verified);

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
        Ok(verify(parts, state, Role::Publisher).await?.map(Publisher))
    }
}

impl OptionalFromRequestParts<AppState> for Subscriber {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Refused> {
        Ok(verify(parts, state, Role::Subscriber)
            .await?
            .map(Subscriber))
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

/// The request's token, if any, verified for `role`.
async fn verify(parts: &Parts, state: &AppState, role: Role) -> Result<Option<Verified>, Refused> {
    let auth = &state.auth;
    let challenge = |error| Refused::Challenge(error, auth.resource().refused(error));
    let query = parts.uri.query().unwrap_or_default();
    // A QUERY request's parameters are in its body, which extractors of the parts cannot read;
    // the method is Mercure 1.0's own.
    let uses_matchers = parts.method.as_str() == "QUERY" || uses_matchers(query);
    let found = if uses_matchers {
        find_access_token(&parts.headers).map_err(|_| challenge(BearerError::InvalidRequest))?
    } else {
        find_token(&parts.headers, query).map_err(Refused::Claim)?
    };
    let Some((token, place)) = found else {
        return Ok(None);
    };
    // The access cookie holds access tokens only; elsewhere the token's own `typ` tells. A
    // draft-07 token still serves a Mercure 1.0 request from its header, refused in 1.0 form.
    if place != Place::AccessCookie && !is_access_token(&token) {
        let verified = auth.verify_claim(role, &token, place.source());
        return match verified {
            Ok(verified) => Ok(Some(verified)),
            Err(_) if uses_matchers => Err(challenge(BearerError::InvalidToken)),
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
        Ok(verified) => Ok(Some(verified)),
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

/// A Mercure 1.0 request's token: the header, else the access cookie. The header wins over any
/// cookie (cookies are ambient, so both is no error).
fn find_access_token(headers: &HeaderMap) -> Result<Option<(String, Place)>, TokenError> {
    if let Some(token) = bearer(headers) {
        return Ok(Some((token?, Place::Header)));
    }
    Ok(cookie(headers, ACCESS_COOKIE).map(|token| (token, Place::AccessCookie)))
}

/// A draft-07 request's token: the header, then the `authorization` query parameter, then the
/// cookies (the access cookie first).
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
