//! What the live pages need from the server: the chat endpoint, presence counts, the simulated
//! market, the monitor samples, and server-rendered pages.

mod support;

use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};
use std::time::Duration;
use support::{SseReader, TestServer};

const WAIT: Duration = Duration::from_secs(10);

async fn post_chat(
    server: &TestServer,
    room: &str,
    client: &str,
    name: &str,
    text: &str,
) -> reqwest::Response {
    Client::new()
        .post(server.url(&format!("/api/chat/{room}")))
        .header("X-Tidings-Client", client)
        .json(&json!({ "name": name, "text": text }))
        .send()
        .await
        .unwrap()
}

async fn subscribe(server: &TestServer, topic: &str) -> SseReader {
    let url = format!(
        "{}?topic={}",
        server.url("/.well-known/mercure"),
        urlencode(topic)
    );
    SseReader::new(reqwest::get(url).await.unwrap())
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn chat_posts_are_trimmed_and_published_on_the_room_topic() {
    let server = TestServer::start(|_| {}).await;
    let mut room = subscribe(&server, "/chat/general").await;
    let response = post_chat(&server, "general", "c1", "  ann ", "  hello <b>world</b>  ").await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.text().await.unwrap();
    let event = room.next_within(WAIT).await.unwrap();
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    let message: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(message["name"], "ann");
    assert_eq!(message["text"], "hello <b>world</b>");
    assert!(message["at_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bad_chat_posts_get_400_with_a_reason() {
    let server = TestServer::start(|_| {}).await;
    let long_name = "n".repeat(33);
    let long_text = "t".repeat(2001);
    let cases = [
        ("Bad-Room", "ann", "hi", "room"),
        ("general", "", "hi", "name"),
        ("general", "   ", "hi", "name"),
        ("general", &long_name, "hi", "name"),
        ("general", "ann", "  \n ", "message"),
        ("general", "ann", &long_text, "message"),
    ];
    for (i, (room, name, text, words)) in cases.into_iter().enumerate() {
        let response = post_chat(&server, room, &format!("client{i}"), name, text).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{room} {name:?}"
        );
        let reason = response.text().await.unwrap();
        assert!(reason.contains(words), "{reason:?} mentions {words}");
    }
    // Exactly at the limits is fine.
    let ok = post_chat(
        &server,
        "general",
        "edge",
        &"n".repeat(32),
        &"é".repeat(2000),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_burst_of_chat_posts_is_rate_limited_per_client() {
    let server = TestServer::start(|_| {}).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(post_chat(&server, "general", "burst", "ann", &format!("m{i}")).await);
    }
    let ok = statuses
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    assert_eq!(ok, tidings_server::chat::BURST as usize);
    let limited = statuses
        .into_iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .unwrap();
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    assert!(limited.text().await.unwrap().contains("too many"));
    let other = post_chat(&server, "general", "someone-else", "bob", "hi").await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another client is not limited"
    );
}

#[tokio::test]
async fn presence_counts_follow_a_rooms_subscribers() {
    let server = TestServer::start(|_| {}).await;
    let mut presence = subscribe(&server, "/chat/lobby/presence").await;
    let member = subscribe(&server, "/chat/lobby").await;
    let event = presence.next_within(WAIT).await.unwrap();
    assert_eq!(event.event.as_deref(), Some("presence"));
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["present"],
        1
    );
    drop(member);
    let event = presence.next_within(WAIT).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["present"],
        0
    );
}

#[tokio::test]
async fn pages_render_their_state_on_the_server_as_text() {
    let server = TestServer::start(|_| {}).await;
    post_chat(
        &server,
        "general",
        "c",
        "mallory",
        "<script>alert(1)</script>",
    )
    .await;
    let html = reqwest::get(server.url("/chat/general"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
        let response = reqwest::get(server.url(path)).await.unwrap();
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
    let mut quotes = subscribe(&server, "/ticker/{symbol}").await;
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
    let mut samples = subscribe(&server, "/monitor").await;
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
