//! Server-rendered pages, and the server's own publishers behind the live pages (market,
//! monitor).

use crate::helpers::{TestServer, WAIT};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn pages_render_their_state_on_the_server_as_text() {
    let server = TestServer::start_default().await;
    server
        .post_chat("general", "mallory", "<script>alert(1)</script>")
        .await;
    let html = server.get("/chat/general").await.text().await.unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped in the page"
    );
    assert!(!html.contains("<script>alert(1)"));
    for (path, heading) in [
        ("/", "Real-time Updates"),
        ("/chat", "Chat"),
        ("/ticker", "Ticker"),
        ("/news", "News"),
        ("/monitor", "Monitor"),
        ("/console", "Hub console"),
    ] {
        let response = server.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains(&format!("<h1>{heading}")),
            "{path} has its heading"
        );
    }
}

#[tokio::test]
async fn the_market_publishes_every_symbol_on_its_topic() {
    let server = TestServer::start(|c| {
        c.market_interval_ms = 20;
        c.market_seed = Some(42);
    })
    .await;
    let mut quotes = server.subscribe(&[("topic", "/ticker/{symbol}")]).await;
    let mut symbols = std::collections::BTreeSet::new();
    while symbols.len() < tidings_server::market::SYMBOLS.len() {
        let quote: Value =
            serde_json::from_str(&quotes.next_within(WAIT).await.unwrap().data).unwrap();
        assert!(quote["price"].as_f64().unwrap() > 0.0);
        symbols.insert(quote["symbol"].as_str().unwrap().to_owned());
    }
}

#[tokio::test]
async fn the_monitor_publishes_health_samples() {
    let server = TestServer::start(|c| c.monitor_interval_ms = 50).await;
    let mut samples = server.subscribe(&[("topic", "/monitor")]).await;
    let sample: Value =
        serde_json::from_str(&samples.next_within(WAIT).await.unwrap().data).unwrap();
    assert_eq!(sample["subscribers"], 1, "the monitor's own subscriber");
    assert!(sample["memory_bytes"].as_u64().unwrap() > 0);
    for field in [
        "publishes_per_s",
        "deliveries_per_s",
        "evictions",
        "history",
        "cpu_percent",
        "uptime_s",
    ] {
        assert!(sample.get(field).is_some(), "{field}");
    }
}
