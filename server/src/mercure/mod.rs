//! The Mercure hub over HTTP, at `/.well-known/mercure`: the protocol's surface mapped onto
//! [`tidings_hub::Hub`], which does the work.
//!
//! - [`subscribe`]: `GET /.well-known/mercure?topic=…` (the event stream), or `QUERY` with the
//!   parameters in a form body (Mercure 1.0)
//! - [`publish`]: `POST /.well-known/mercure` (form-encoded updates)
//! - [`subscriptions`]: `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`, and
//!   Mercure 1.0's `…/subscriptions/{match_type}/{match}[/{subscriber}]`
//! - `GET /.well-known/oauth-protected-resource/.well-known/mercure`: the hub's protected
//!   resource metadata (RFC 9728), by which clients know it speaks Mercure 1.0
//!
//! Beneath them, from the bottom: [`challenge`] (the hub as an OAuth protected resource: its
//! metadata and Bearer challenges), [`jwks`] (an authorization server's keys), [`grants`] (what a
//! 1.0 token's authorization details allow), [`auth`] (keys, and verifying both forms of token),
//! [`caller`] (the extractors that find and verify a request's token).

pub mod auth;
pub mod caller;
pub mod challenge;
pub mod grants;
pub mod jwks;
pub mod limits;
pub mod publish;
pub mod subscribe;
pub mod subscriptions;

use crate::AppState;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// The hub's URL path.
pub const PATH: &str = "/.well-known/mercure";

/// The `Link` header that lets clients discover the hub from any page.
pub const DISCOVERY_LINK: &str = "</.well-known/mercure>; rel=\"mercure\"";

/// The hub's routes.
pub fn routes(state: &AppState) -> Router<AppState> {
    let router = Router::new()
        .route(
            PATH,
            get(subscribe::subscribe)
                .post(publish::publish)
                .fallback(subscribe::subscribe_with_body),
        )
        .route(
            "/.well-known/mercure/subscriptions",
            get(subscriptions::all),
        )
        .route(
            "/.well-known/mercure/subscriptions/{topic}",
            get(subscriptions::of_topic),
        )
        .route(
            "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
            get(subscriptions::one),
        )
        .route(
            "/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}",
            get(subscriptions::one_v1),
        )
        .route(challenge::METADATA_PATH, get(challenge::metadata))
        .layer(DefaultBodyLimit::max(state.config.max_publish_bytes));
    match state.cors.hub_layer() {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// What a client is told when the history fails.
pub const HISTORY_UNAVAILABLE: &str = "the history is unavailable";
/// The reason given when the history cannot be reached now (Redis down).
pub const HISTORY_UNREACHABLE: &str = "the history cannot be reached; try again shortly";

/// The answer to a failure of the history: the hub logs it in full; the client is told a fixed
/// line, since the error's text holds SQLite's messages and paths.
pub(crate) fn history_unavailable() -> Response {
    plain(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        HISTORY_UNAVAILABLE,
    )
}

/// The answer when the history cannot be reached now (Redis down): `503` with `Retry-After`, so
/// that publishers retry rather than give up; nothing was acknowledged.
pub(crate) fn history_unreachable() -> Response {
    let mut response = plain(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        HISTORY_UNREACHABLE,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A plain-text error response: the status and a one-line reason.
pub(crate) fn plain(status: axum::http::StatusCode, reason: impl std::fmt::Display) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("{reason}\n"),
    )
        .into_response()
}
