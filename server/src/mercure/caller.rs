//! Who is calling: a request's token, found and verified, as axum extractors.
//!
//! The token is looked for in the `Authorization: Bearer` header, then the `authorization` query
//! parameter (for clients that cannot set headers, such as `EventSource`), then the
//! `mercureAuthorization` cookie. Handlers take `Option<Publisher>` or `Option<Subscriber>`,
//! which picks the key: `None` when the request has no token, a 401 when it has one that does
//! not verify. Extractors run before the handler, so no request input is parsed for a caller
//! whose token is bad.

use super::{
    auth::{TokenError, TokenSource, Verified},
    limits::TokenKey,
};
use crate::AppState;
use axum::{
    extract::OptionalFromRequestParts,
    http::{HeaderMap, header, request::Parts},
};

/// The cookie a browser can carry the token in.
pub const COOKIE_NAME: &str = "mercureAuthorization";

/// A caller whose token verifies with the publisher key.
pub struct Publisher(pub Verified);

/// A caller whose token verifies with the subscriber key, and which token it is (for the
/// per-token subscription limit).
pub struct Subscriber(pub Verified, pub TokenKey);

impl OptionalFromRequestParts<AppState> for Publisher {
    type Rejection = TokenError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, TokenError> {
        let verified = verify(parts, |token, source| {
            state.auth.verify_publisher(token, source)
        })?;
        Ok(verified.map(Publisher))
    }
}

impl OptionalFromRequestParts<AppState> for Subscriber {
    type Rejection = TokenError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, TokenError> {
        let mut key = None;
        let verified = verify(parts, |token, source| {
            key = Some(state.subscriber_limits.token_key(token));
            state.auth.verify_subscriber(token, source)
        })?;
        Ok(verified
            .zip(key)
            .map(|(verified, key)| Subscriber(verified, key)))
    }
}

/// The request's token, if any, verified by `verify`.
fn verify(
    parts: &Parts,
    verify: impl FnOnce(&str, TokenSource) -> Result<Verified, TokenError>,
) -> Result<Option<Verified>, TokenError> {
    let query_token = query_token(parts.uri.query());
    match find_token(&parts.headers, query_token.as_deref())? {
        Some((token, source)) => verify(token, source).map(Some),
        None => Ok(None),
    }
}

/// The `authorization` query parameter of a request's query string, if any.
fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.into_owned())
}

/// Finds the request's token: header, then query parameter, then cookie.
fn find_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Result<Option<(&'a str, TokenSource)>, TokenError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| TokenError::NotBearer)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(TokenError::NotBearer)?;
        return Ok(Some((token.trim(), TokenSource::Header)));
    }
    if let Some(token) = query_token {
        return Ok(Some((token, TokenSource::Query)));
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name == COOKIE_NAME
            {
                return Ok(Some((token.trim_matches('"'), TokenSource::Cookie)));
            }
        }
    }
    Ok(None)
}
