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
