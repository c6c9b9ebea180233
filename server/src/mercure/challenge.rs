//! The hub as an OAuth 2.0 protected resource (Mercure 1.0): its resource identifier, the
//! RFC 9728 metadata document that describes it, and the RFC 6750 `WWW-Authenticate: Bearer`
//! challenges that point clients to that document.
//!
//! A hub that serves the metadata is taken by clients to speak Mercure 1.0; one without it, to
//! be older. Draft-07 clients ignore both.

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// The metadata's path for the hub at [`super::PATH`] (RFC 9728 §3.1: the well-known prefix,
/// then the resource's path).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// The cookie a browser carries a Mercure 1.0 access token in.
pub const ACCESS_COOKIE: &str = "__Secure-mercure_access_token";

/// The type of the authorization details Mercure defines (RFC 9396).
pub const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// What the hub says about itself as a protected resource.
pub struct Resource {
    /// The resource identifier: what a token's `aud` must name.
    pub audience: String,
    /// The metadata document, as served.
    document: String,
    /// `resource_metadata="…"`, the part every challenge ends with.
    metadata_param: String,
}

/// The RFC 6750 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// 400: the token's presentation is malformed.
    InvalidRequest,
    /// 401: the token does not verify (which check failed is not said).
    InvalidToken,
    /// 403: the token is valid but does not grant the operation.
    InsufficientScope,
}

impl BearerError {
    fn code(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A `WWW-Authenticate: Bearer` challenge, for an error response to carry.
#[derive(Debug, Clone)]
pub struct Challenge(HeaderValue);

impl Challenge {
    /// Adds the challenge to `response`.
    pub fn apply(&self, mut response: Response) -> Response {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.0.clone());
        response
    }
}

impl Resource {
    /// The resource at `public_url` (an origin), whose tokens name `audience`; `authorization_servers`
    /// are the issuers that are authorization servers (not self-issuing publishers).
    pub fn new(public_url: &str, audience: String, authorization_servers: &[String]) -> Self {
        let mut document = json!({
            "resource": audience,
            "bearer_methods_supported": ["header"],
            "mercure_cookie": ACCESS_COOKIE,
            "authorization_details_types_supported": [DETAIL_TYPE],
            // The active subscriptions feature: events and the API, always on.
            "mercure_subscriptions": true,
        });
        if !authorization_servers.is_empty() {
            document["authorization_servers"] = json!(authorization_servers);
        }
        Self {
            audience,
            document: document.to_string(),
            metadata_param: format!("resource_metadata=\"{public_url}{METADATA_PATH}\""),
        }
    }

    /// The challenge for a request without a token: no error code.
    pub fn no_token(&self) -> Challenge {
        self.challenge(format!("Bearer {}", self.metadata_param))
    }

    /// The challenge for a token refused with `error`.
    pub fn refused(&self, error: BearerError) -> Challenge {
        self.challenge(format!(
            "Bearer error=\"{}\", {}",
            error.code(),
            self.metadata_param
        ))
    }

    fn challenge(&self, value: String) -> Challenge {
        // The public URL is an origin checked at start-up and the rest is ours: always a valid
        // header value.
        Challenge(HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer")))
    }
}

/// `GET /.well-known/oauth-protected-resource/.well-known/mercure`: the metadata (RFC 9728).
pub async fn metadata(State(state): State<crate::AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.auth.resource().document.clone(),
    )
        .into_response()
}
