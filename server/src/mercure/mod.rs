//! The Mercure hub over HTTP, at `/.well-known/mercure`: the protocol's surface mapped onto
//! [`tidings_hub::Hub`], which does the work.
//!
//! - [`subscribe`]: `GET /.well-known/mercure?topic=…` (the event stream)
//! - [`publish`]: `POST /.well-known/mercure` (form-encoded updates)
//! - [`subscriptions`]: `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`
//! - [`auth`]: tokens and who may do what

pub mod auth;
pub mod publish;
pub mod subscribe;
pub mod subscriptions;

use crate::{
    AppState,
    config::{self, CorsOrigin},
};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::cors::CorsLayer;

/// The hub's URL path.
pub const PATH: &str = "/.well-known/mercure";

/// The `Link` header that lets clients discover the hub from any page.
pub const DISCOVERY_LINK: &str = "</.well-known/mercure>; rel=\"mercure\"";

/// The hub's routes.
pub fn routes(state: &AppState) -> Router<AppState> {
    let router = Router::new()
        .route(PATH, get(subscribe::subscribe).post(publish::publish))
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
        .layer(DefaultBodyLimit::max(state.config.max_publish_bytes));
    match cors_layer(&state.config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// CORS for the hub: the configured origins only, with credentials (cookies, Authorization), and
/// the headers EventSource polyfills send. `*` mirrors the request's origin, because browsers
/// refuse a literal `*` together with credentials.
fn cors_layer(origins: &[CorsOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(config::allow_origin(origins, true))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CACHE_CONTROL,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([HeaderName::from_static("last-event-id")]),
    )
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
