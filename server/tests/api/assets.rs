//! The site's files and pages travel compressed, event streams never: `/pkg` files as the
//! brotli or gzip copies made at build time, cached for a year when named after their content;
//! pages compressed on the fly; streams as they are, one event at a time, whatever the client
//! accepts.

use crate::helpers::{SseReader, TestServer};
use reqwest::{Response, StatusCode, header};
use std::io::Read;

/// What cargo-leptos's `hash-files` names a file: its stem, 22 characters of base64url, its
/// extension.
const WASM: &str = "/pkg/tidings.Qx3kV9_a-Zq0c1LmNo2pRs.wasm";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A built site as `cargo leptos build --release --precompress` leaves it, each copy with
/// content of its own so a test can tell which one came back.
struct Site {
    root: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("pkg")).unwrap();
        let site = Self { root };
        for file in [WASM, "/pkg/tidings.wasm", "/favicon.svg"] {
            site.write(file, file.as_bytes());
            site.write(
                &format!("{file}.br"),
                format!("brotli of {file}").as_bytes(),
            );
            site.write(&format!("{file}.gz"), format!("gzip of {file}").as_bytes());
        }
        site
    }

    fn write(&self, file: &str, content: &[u8]) {
        std::fs::write(self.root.path().join(&file[1..]), content).unwrap();
    }

    async fn server(&self) -> TestServer {
        let root = self.root.path().to_owned();
        TestServer::start(|c| {
            c.site_root = root;
            c.stream_interval_ms = 3_600_000;
        })
        .await
    }
}

async fn get(server: &TestServer, path: &str, accept_encoding: Option<&str>) -> Response {
    let request = server.client().get(server.url(path));
    let request = match accept_encoding {
        Some(value) => request.header(header::ACCEPT_ENCODING, value),
        None => request,
    };
    request.send().await.unwrap()
}

fn header_of(response: &Response, name: header::HeaderName) -> Option<&str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn varies_by_encoding(response: &Response) -> bool {
    response.headers().get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .unwrap()
            .to_lowercase()
            .contains("accept-encoding")
    })
}

#[tokio::test]
async fn a_content_named_file_comes_precompressed_as_accepted_and_cached_for_good() {
    let site = Site::new();
    let server = site.server().await;
    for (accepts, encoding, body) in [
        (
            Some("gzip, deflate, br"),
            Some("br"),
            format!("brotli of {WASM}"),
        ),
        (Some("gzip"), Some("gzip"), format!("gzip of {WASM}")),
        (Some("identity"), None, WASM.to_owned()),
        (None, None, WASM.to_owned()),
    ] {
        let response = get(&server, WASM, accepts).await;
        assert_eq!(response.status(), StatusCode::OK, "{accepts:?}");
        assert_eq!(header_of(&response, header::CONTENT_ENCODING), encoding);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            Some("application/wasm")
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), Some(IMMUTABLE));
        assert!(varies_by_encoding(&response), "{accepts:?}");
        assert_eq!(response.text().await.unwrap(), body, "{accepts:?}");
    }
}

#[tokio::test]
async fn other_files_are_revalidated_or_cached_briefly_and_missing_ones_not_at_all() {
    let site = Site::new();
    let server = site.server().await;

    // A /pkg name that stays the same from build to build (a debug build's).
    let response = get(&server, "/pkg/tidings.wasm", Some("br")).await;
    assert_eq!(header_of(&response, header::CONTENT_ENCODING), Some("br"));
    assert_eq!(
        header_of(&response, header::CACHE_CONTROL),
        Some("no-cache")
    );
    assert!(varies_by_encoding(&response));

    let response = get(&server, "/favicon.svg", Some("gzip")).await;
    assert_eq!(header_of(&response, header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(
        header_of(&response, header::CACHE_CONTROL),
        Some("public, max-age=3600")
    );
    assert!(varies_by_encoding(&response));

    // No file: the app's 404 page, which no cache may keep for a year.
    let response = get(&server, "/pkg/tidings.AAAAAAAAAAAAAAAAAAAAAA.wasm", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(header_of(&response, header::CACHE_CONTROL), None);
    assert!(response.text().await.unwrap().contains("Page not found"));
}

#[tokio::test]
async fn pages_are_compressed_when_the_client_accepts_it() {
    let site = Site::new();
    let server = site.server().await;
    for path in ["/", "/chat/general"] {
        let response = get(&server, path, Some("br")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header_of(&response, header::CONTENT_ENCODING), Some("br"));
        assert!(varies_by_encoding(&response));
        let body = response.bytes().await.unwrap();
        let mut html = String::new();
        brotli::Decompressor::new(&body[..], 4096)
            .read_to_string(&mut html)
            .unwrap();
        assert!(html.contains("<h1>"), "{path}: {html}");

        let response = get(&server, path, Some("gzip")).await;
        assert_eq!(header_of(&response, header::CONTENT_ENCODING), Some("gzip"));
        let body = response.bytes().await.unwrap();
        let mut html = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut html)
            .unwrap();
        assert!(html.contains("<h1>"), "{path}: {html}");

        let response = get(&server, path, None).await;
        assert_eq!(header_of(&response, header::CONTENT_ENCODING), None);
        assert!(response.text().await.unwrap().contains("<h1>"));
    }
}

/// Opens an event stream accepting every compression there is, on a fresh connection (which
/// the edge serves lean, past hyper) or on one kept alive after another request (hyper's).
async fn open_stream(server: &TestServer, url: String, kept_alive: bool) -> Response {
    // A client of its own: its first request opens a connection of its own.
    let client = reqwest::Client::new();
    if kept_alive {
        let healthz = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(healthz.text().await.unwrap().trim(), "ok");
    }
    let response = client
        .get(url)
        .header(header::ACCEPT_ENCODING, "br, gzip, deflate, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, header::CONTENT_TYPE),
        Some("text/event-stream")
    );
    assert_eq!(header_of(&response, header::CONTENT_ENCODING), None);
    response
}

/// Both streams, on both paths: no encoding, and each event arrives alone, before the next
/// exists (a compressor would hold it back, waiting for more).
#[tokio::test]
async fn event_streams_are_never_compressed_and_arrive_one_event_at_a_time() {
    let site = Site::new();
    let server = site.server().await;
    for kept_alive in [false, true] {
        // The counter's first number, and no second for an hour.
        let response = open_stream(&server, server.url("/web/StreamChat"), kept_alive).await;
        let mut counter = SseReader::new(response);
        assert_eq!(
            counter.expect_next().await.data,
            "1",
            "kept alive: {kept_alive}"
        );

        let topic = format!("/plain/{kept_alive}");
        let url = server.subscribe_url(&[("topic", &topic)]);
        let mut events = SseReader::new(open_stream(&server, url, kept_alive).await);
        for n in 0..3 {
            let data = format!("event {n}");
            server.publish(&[("topic", &topic), ("data", &data)]).await;
            assert_eq!(
                events.expect_next().await.data,
                data,
                "kept alive: {kept_alive}"
            );
        }
    }
}
