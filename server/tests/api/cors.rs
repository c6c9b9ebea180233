//! CORS: which pages of other origins may read the streams and use the hub.

use crate::helpers::{HUB, TestServer};
use reqwest::header;

#[tokio::test]
async fn the_counter_stream_allows_only_configured_origins() {
    let get = |server: &TestServer, origin: &'static str| {
        server
            .client()
            .get(server.url("/web/StreamChat"))
            .header("Last-Event-ID", "100")
            .header(header::ORIGIN, origin)
            .send()
    };
    let closed = TestServer::start_default().await;
    let response = get(&closed, "https://example.com").await.unwrap();
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );

    let open = TestServer::start(|c| {
        c.cors_origins = vec!["https://example.com".parse().unwrap()];
    })
    .await;
    let allowed = get(&open, "https://example.com").await.unwrap();
    assert_eq!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://example.com"
    );
    let other = get(&open, "https://evil.example").await.unwrap();
    assert!(
        other
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );

    let any = TestServer::start(|c| c.cors_origins = vec!["*".parse().unwrap()]).await;
    let response = get(&any, "https://anywhere.example").await.unwrap();
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn the_hub_allows_configured_origins_with_credentials() {
    let server =
        TestServer::start(|c| c.cors_origins = vec!["https://app.example".parse().unwrap()]).await;
    let preflight = server
        .client()
        .request(reqwest::Method::OPTIONS, server.url(HUB))
        .header(header::ORIGIN, "https://app.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, last-event-id, cache-control",
        )
        .send()
        .await
        .unwrap();
    let h = preflight.headers();
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["authorization", "last-event-id", "cache-control"] {
        assert!(allowed.contains(name), "{name} allowed: {allowed}");
    }
    let other = server
        .subscribe_request(&[("topic", "/t")])
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        other
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

#[tokio::test]
async fn any_origin_means_any_page_without_credentials() {
    let server = TestServer::start(|c| c.cors_origins = vec!["*".parse().unwrap()]).await;
    let preflight = server
        .client()
        .request(reqwest::Method::OPTIONS, server.url(HUB))
        .header(header::ORIGIN, "https://anywhere.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, last-event-id",
        )
        .send()
        .await
        .unwrap();
    let subscribe = server
        .subscribe_request(&[("topic", "/t")])
        .header(header::ORIGIN, "https://anywhere.example")
        .send()
        .await
        .unwrap();
    for response in [&preflight, &subscribe] {
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{h:?}");
        assert!(
            h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none(),
            "no credentials with *: {h:?}"
        );
    }
    let allowed = preflight.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["authorization", "last-event-id"] {
        assert!(allowed.contains(name), "{name} allowed: {allowed}");
    }
}

#[tokio::test]
async fn any_origin_does_not_let_other_sites_publish_with_a_cookie() {
    let server = TestServer::start(|c| c.cors_origins = vec!["*".parse().unwrap()]).await;
    let cookie = format!(
        "mercureAuthorization={}",
        crate::helpers::publisher_token(&["*"])
    );
    let send = |origin: &str| {
        server
            .client()
            .post(server.url(HUB))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, origin)
            .form(&[("topic", "/t")])
            .send()
    };
    let other = send("https://evil.example").await.unwrap();
    assert_eq!(other.status(), reqwest::StatusCode::FORBIDDEN);
    let same = send(&server.base).await.unwrap();
    assert_eq!(same.status(), reqwest::StatusCode::OK, "same origin");
}
