//! CORS: which pages of other origins may read the streams and use the hub.
//!
//! `--cors-origin` takes exact origins or `*`, not both. Exact origins may send credentials
//! (cookies, `Authorization`), which the hub's cookie authentication needs. `*` lets any page read
//! without credentials: it is sent as a literal `*`, with which browsers never send cookies.
//! Mirroring every origin with credentials instead would let any site act with a visitor's
//! cookie.

use crate::config::CorsOrigin;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The CORS policy, checked once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No `--cors-origin`: same-origin pages only.
    Closed,
    /// `*`: any origin, without credentials.
    AnyOrigin,
    /// These origins, with credentials.
    Origins(Vec<HeaderValue>),
}

/// `*` given together with exact origins.
#[derive(Debug, thiserror::Error)]
#[error(
    "--cors-origin '*' (any origin, without credentials) cannot be combined with exact origins \
     ({0}): give either '*' or the origins"
)]
pub struct MixedOrigins(String);

impl Cors {
    pub fn new(origins: &[CorsOrigin]) -> Result<Self, MixedOrigins> {
        let exact: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| match o {
                CorsOrigin::Exact(value) => Some(value.clone()),
                CorsOrigin::Any => None,
            })
            .collect();
        let any = origins.contains(&CorsOrigin::Any);
        match (any, exact.is_empty()) {
            (false, true) => Ok(Cors::Closed),
            (true, true) => Ok(Cors::AnyOrigin),
            (false, false) => Ok(Cors::Origins(exact)),
            (true, false) => Err(MixedOrigins(
                exact
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Whether a page of `origin` (lowercase) may make credentialed requests: exact origins only.
    pub fn allows_credentials_from(&self, origin: &str) -> bool {
        match self {
            Cors::Origins(origins) => origins.iter().any(|o| o.as_bytes() == origin.as_bytes()),
            Cors::Closed | Cors::AnyOrigin => false,
        }
    }

    /// For the counter stream: `GET` with `Last-Event-ID`, never credentials.
    pub fn stream_layer(&self) -> Option<CorsLayer> {
        let origins = match self {
            Cors::Closed => return None,
            Cors::AnyOrigin => AllowOrigin::any(),
            Cors::Origins(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET])
                .allow_headers([HeaderName::from_static("last-event-id")]),
        )
    }

    /// For the hub: `GET` and `POST` with the headers EventSource polyfills send; credentials
    /// for exact origins only.
    pub fn hub_layer(&self) -> Option<CorsLayer> {
        let layer = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CACHE_CONTROL,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([HeaderName::from_static("last-event-id")]);
        match self {
            Cors::Closed => None,
            Cors::AnyOrigin => Some(layer.allow_origin(AllowOrigin::any())),
            Cors::Origins(origins) => Some(
                layer
                    .allow_origin(AllowOrigin::list(origins.iter().cloned()))
                    .allow_credentials(true),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Vec<CorsOrigin> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn any_and_exact_origins_do_not_mix() {
        assert_eq!(Cors::new(&[]).unwrap(), Cors::Closed);
        assert_eq!(Cors::new(&parse(&["*"])).unwrap(), Cors::AnyOrigin);
        let exact = Cors::new(&parse(&["https://a.example"])).unwrap();
        assert!(exact.allows_credentials_from("https://a.example"));
        assert!(!exact.allows_credentials_from("https://b.example"));
        assert!(!Cors::AnyOrigin.allows_credentials_from("https://a.example"));
        let mixed = Cors::new(&parse(&["https://a.example", "*"])).unwrap_err();
        assert!(mixed.to_string().contains("https://a.example"), "{mixed}");
    }
}
