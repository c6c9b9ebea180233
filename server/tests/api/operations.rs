//! What operators use: `/metrics`, `/healthz`, and the hub's discovery link.

use crate::helpers::TestServer;
use reqwest::{StatusCode, header};

#[tokio::test]
async fn metrics_healthz_and_the_discovery_link() {
    let server = TestServer::start_default().await;
    let _subscriber = server.subscribe(&[("topic", "/t")]).await;
    server.publish(&[("topic", "/t")]).await;
    let metrics = server.get("/metrics").await.text().await.unwrap();
    for line in [
        "tidings_subscribers 1",
        // The subscription event is sent live, never stored: only the update counts.
        "tidings_updates_published_total 1",
        "tidings_history_updates 1",
        "tidings_publish_seconds_count 1",
        "tidings_subscribers_evicted_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} in:\n{metrics}"
        );
    }
    assert!(metrics.contains("tidings_events_delivered_total"));
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let page = server.get("/").await;
    assert_eq!(
        page.headers()[header::LINK],
        "</.well-known/mercure>; rel=\"mercure\""
    );
}

/// The reference Mercure hub's probes, beside `/healthz`: readiness is the history's health,
/// liveness that the process answers; both as that hub answers them, in JSON.
#[tokio::test]
async fn the_mercure_health_probes_answer_ready_and_live() {
    let server = TestServer::start_default().await;
    for path in ["/mercure/health/ready", "/mercure/health/live"] {
        let response = server.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body, serde_json::json!({ "status": "ok" }), "{path}");
    }
    assert_eq!(
        server.get("/mercure/health/other").await.status(),
        StatusCode::NOT_FOUND
    );
}
