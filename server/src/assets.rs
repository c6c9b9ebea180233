//! The built site's files (`--site-root`): precompressed, and cached by what their names promise.
//!
//! The Makefile builds the site with `cargo leptos build --release --precompress` and
//! `hash-files` on, so beside every file lie a brotli (`.br`) and a gzip (`.gz`) copy made at
//! build time, and the JS, WASM and CSS under `/pkg` are named after their content
//! (`tidings.<22 characters of base64url MD5>.wasm`). So a file:
//!
//! - goes out as its `.br` or `.gz` copy when the request's `Accept-Encoding` takes one
//!   (tower-http's `ServeDir` chooses, brotli first), else as it is; and is compressed on the
//!   fly where no copy exists (a debug build); always with `Vary: accept-encoding`, so a cache
//!   between keeps the encodings apart;
//! - named after its content is cached for a year and never revalidated (`immutable`): a new
//!   build gives a changed file a new name, and pages name the files of the build that serves
//!   them;
//! - under `/pkg` without a content name (a debug build's, wasm-bindgen's snippets) is
//!   revalidated on every use (`no-cache`; `ServeDir` answers `If-Modified-Since` with `304`);
//! - elsewhere (`/favicon.svg`) is cached for an hour.
//!
//! What is no file is the app's 404 page. Pages are compressed on the fly too ([`compression`]);
//! event streams never are: they are routed beside, not under, these layers.

use axum::{
    body::Body,
    extract::Request,
    middleware::{self, Next},
    response::Response,
};
use http::{HeaderValue, StatusCode, header};
use std::{convert::Infallible, path::Path};
use tower::{Layer, Service, ServiceExt, util::BoxCloneSyncService};
use tower_http::{compression::CompressionLayer, services::ServeDir};

/// `Cache-Control` of a file named after its content.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a `/pkg` file whose name stays the same from build to build.
pub const REVALIDATE: &str = "no-cache";
/// `Cache-Control` of any other file.
pub const MODEST: &str = "public, max-age=3600";

/// On-the-fly compression for what is neither a precompressed file nor an event stream:
/// brotli (quality 4) or gzip, as the client prefers; bodies under 32 bytes, images and
/// `text/event-stream` are left alone, as is anything already encoded.
pub fn compression() -> CompressionLayer {
    CompressionLayer::new().br(true).gzip(true)
}

/// Serves the files under `site_root`; a request for anything else goes to `not_found`.
pub fn service<F>(
    site_root: &Path,
    not_found: F,
) -> BoxCloneSyncService<Request, Response, Infallible>
where
    F: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send + 'static,
{
    let files = ServeDir::new(site_root)
        .precompressed_br()
        .precompressed_gzip()
        // A folder is no page: the 404 page, not a redirect to a listing that does not exist.
        .append_index_html_on_directories(false)
        .call_fallback_on_method_not_allowed(true)
        .fallback(not_found);
    let files = compression()
        .layer(files)
        .map_response(|response| response.map(Body::new));
    BoxCloneSyncService::new(middleware::from_fn(cache_headers).layer(files))
}

/// Adds `Cache-Control` and `Vary` to a file's answer (not to the 404 page's).
async fn cache_headers(request: Request, next: Next) -> Response {
    let cache = cache_control(request.uri().path());
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    let varies = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))
    });
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// How long the file at `path` may be cached.
fn cache_control(path: &str) -> &'static str {
    match path.strip_prefix("/pkg/") {
        Some(file) if is_content_named(file) => IMMUTABLE,
        Some(_) => REVALIDATE,
        None => MODEST,
    }
}

/// Whether a file name carries cargo-leptos's content hash: `<stem>.<hash>.<extension>`, the
/// hash 22 characters of unpadded base64url (an MD5).
fn is_content_named(file: &str) -> bool {
    if file.contains('/') {
        return false;
    }
    let mut parts = file.rsplit('.');
    let (Some(_extension), Some(hash), Some(_stem)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    hash.len() == 22
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_named_pkg_files_are_immutable() {
        let hash = "Qx3kV9_a-Zq0c1LmNo2pRs";
        assert_eq!(
            cache_control(&format!("/pkg/tidings.{hash}.wasm")),
            IMMUTABLE
        );
        assert_eq!(
            cache_control(&format!("/pkg/tidings.{hash}.css")),
            IMMUTABLE
        );
        assert_eq!(cache_control("/pkg/tidings.wasm"), REVALIDATE);
        assert_eq!(cache_control("/pkg/tidings.short.js"), REVALIDATE);
        assert_eq!(
            cache_control(&format!("/pkg/snippets/x/{hash}.js")),
            REVALIDATE
        );
        assert_eq!(
            cache_control(&format!("/pkg/tidings.{hash}!.js")),
            REVALIDATE
        );
        assert_eq!(cache_control("/favicon.svg"), MODEST);
        assert_eq!(cache_control(&format!("/tidings.{hash}.wasm")), MODEST);
    }
}
