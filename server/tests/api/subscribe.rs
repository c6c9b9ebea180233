//! `GET /.well-known/mercure`: selectors, the event format, resuming, heartbeats.

use crate::helpers::{SseReader, TestServer, WAIT};
use reqwest::{StatusCode, header};
use std::time::Duration;

#[tokio::test]
async fn subscribing_without_a_topic_is_a_400_with_a_reason() {
    let server = TestServer::start_default().await;
    let response = server.get(crate::helpers::HUB).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("missing topic"));
}

#[tokio::test]
async fn subscription_headers_are_sent_at_once() {
    let server = TestServer::start_default().await;
    // No event is published: the response head must still arrive (flushed at once).
    let response = tokio::time::timeout(WAIT, server.subscribe_request(&[("topic", "/t")]).send())
        .await
        .expect("headers before any event")
        .unwrap();
    let h = response.headers();
    assert_eq!(h[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(
        h[header::CACHE_CONTROL],
        "private, no-cache, no-store, must-revalidate, max-age=0"
    );
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["last-event-id"], "earliest");
    // Registered before the headers went out: a publish right now reaches it.
    server.publish(&[("topic", "/t"), ("data", "now")]).await;
    assert_eq!(SseReader::new(response).expect_next().await.data, "now");
}

#[tokio::test]
async fn events_carry_id_type_retry_and_every_line_of_data() {
    let server = TestServer::start_default().await;
    let mut reader = server.subscribe(&[("topic", "/t")]).await;
    let data = "first\nsecond\r\nthird\rfourth\n\n  indented";
    let id = server
        .publish(&[
            ("topic", "/t"),
            ("data", data),
            ("type", "kind"),
            ("retry", "2500"),
        ])
        .await;
    let event = reader.expect_next().await;
    assert_eq!(event.id, id);
    assert!(id.starts_with("urn:uuid:"), "generated ids are URNs: {id}");
    assert_eq!(event.event, "kind");
    assert_eq!(event.retry, Some(Duration::from_millis(2500)));
    assert_eq!(event.data, "first\nsecond\nthird\nfourth\n\n  indented");
}

#[tokio::test]
async fn alternate_topics_reach_their_subscribers() {
    let server = TestServer::start_default().await;
    let mut alt = server
        .subscribe(&[("topic", "https://example.com/alt")])
        .await;
    server
        .publish(&[
            ("topic", "https://example.com/canonical"),
            ("topic", "https://example.com/alt"),
            ("data", "x"),
            ("id", "u1"),
        ])
        .await;
    assert_eq!(alt.expect_next().await.id, "u1");
}

#[tokio::test]
async fn selectors_match_exactly_by_template_or_all() {
    let server = TestServer::start_default().await;
    let mut template = server
        .subscribe(&[("topic", "https://example.com/books/{id}")])
        .await;
    let mut all = server.subscribe(&[("topic", "*")]).await;
    let mut exact = server
        .subscribe(&[("topic", "https://example.com/books/2"), ("topic", "/x")])
        .await;
    server
        .publish(&[
            ("topic", "https://example.com/books/1/reviews"),
            ("id", "deep"),
        ])
        .await;
    server
        .publish(&[("topic", "https://example.com/books/1"), ("id", "b1")])
        .await;
    server
        .publish(&[("topic", "https://example.com/books/2"), ("id", "b2")])
        .await;
    assert_eq!(template.expect_next().await.id, "b1");
    assert_eq!(template.expect_next().await.id, "b2");
    for id in ["deep", "b1", "b2"] {
        assert_eq!(all.expect_next().await.id, id);
    }
    assert_eq!(exact.expect_next().await.id, "b2");
}

#[tokio::test]
async fn resumes_after_last_event_id_header_or_query_and_header_wins() {
    let server = TestServer::start_default().await;
    for i in 1..=4 {
        server
            .publish(&[("topic", "/t"), ("id", &format!("e{i}"))])
            .await;
    }
    let response = server
        .subscribe_request(&[("topic", "/t"), ("lastEventID", "e1")])
        .header("Last-Event-ID", "e2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["last-event-id"], "e2");
    let mut reader = SseReader::new(response);
    assert_eq!(reader.expect_next().await.id, "e3");
    assert_eq!(reader.expect_next().await.id, "e4");

    let mut reader = server
        .subscribe(&[("topic", "/t"), ("lastEventID", "e3")])
        .await;
    assert_eq!(reader.expect_next().await.id, "e4");

    let mut reader = server
        .subscribe(&[("topic", "/t"), ("lastEventID", "earliest")])
        .await;
    assert_eq!(reader.headers()["last-event-id"], "earliest");
    assert_eq!(reader.expect_next().await.id, "e1");

    // Without a Last-Event-ID, the header names the last update in the hub before this stream
    // (subscription events included): resuming from it later misses nothing.
    let reader = server.subscribe(&[("topic", "/t")]).await;
    let head = reader.headers()["last-event-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(head, "earliest");
    drop(reader);
    server.publish(&[("topic", "/t"), ("id", "e5")]).await;
    let mut reader = server
        .subscribe(&[("topic", "/t"), ("lastEventID", &head)])
        .await;
    assert_eq!(reader.expect_next().await.id, "e5");
}

#[tokio::test]
async fn an_unknown_last_event_id_gets_the_gap_event() {
    let server = TestServer::start_default().await;
    server.publish(&[("topic", "/t"), ("id", "known")]).await;
    let response = server
        .subscribe_request(&[("topic", "/t")])
        .header("Last-Event-ID", "pruned-or-never-seen")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["last-event-id"], "known");
    let mut reader = SseReader::new(response);
    let gap = reader.expect_next().await;
    assert_eq!(gap.event, "tidings-history-gap");
    server.publish(&[("topic", "/t"), ("id", "after")]).await;
    assert_eq!(reader.expect_next().await.id, "after");
}

#[tokio::test]
async fn duplicate_ids_resume_from_the_earliest() {
    let server = TestServer::start_default().await;
    for (id, data) in [("dup", "1"), ("x", "2"), ("dup", "3"), ("y", "4")] {
        server
            .publish(&[("topic", "/t"), ("id", id), ("data", data)])
            .await;
    }
    let mut reader = server
        .subscribe(&[("topic", "/t"), ("lastEventID", "dup")])
        .await;
    for data in ["2", "3", "4"] {
        assert_eq!(reader.expect_next().await.data, data);
    }
}

#[tokio::test]
async fn idle_streams_get_heartbeat_comments() {
    use futures_util::StreamExt;
    let server = TestServer::start(|c| c.heartbeat_secs = 1).await;
    // Comments are not events: read the raw bytes.
    let response = server
        .subscribe_request(&[("topic", "/quiet")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let chunk = tokio::time::timeout(WAIT, body.next())
        .await
        .expect("a heartbeat")
        .unwrap()
        .unwrap();
    assert!(chunk.starts_with(b":"), "a comment line: {chunk:?}");
}

#[tokio::test]
async fn every_accepted_id_comes_back_as_a_browser_sends_it() {
    let server = TestServer::start_default().await;
    let token = crate::helpers::publisher_token(&["*"]);
    // Ids a browser's EventSource keeps and sends back intact: non-ASCII (as UTF-8 bytes) and
    // a tab inside.
    for (i, id) in ["é-ünïcode-✓", "tab\tinside", "a space"]
        .into_iter()
        .enumerate()
    {
        server.publish(&[("topic", "/ids"), ("id", id)]).await;
        let next = format!("after-{i}");
        server.publish(&[("topic", "/ids"), ("id", &next)]).await;
        let response = server
            .subscribe_request(&[("topic", "/ids")])
            .header(
                "last-event-id",
                header::HeaderValue::from_bytes(id.as_bytes()).unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{id:?}");
        assert_eq!(
            response.headers()["last-event-id"].as_bytes(),
            id.as_bytes()
        );
        let first = SseReader::new(response).expect_next().await;
        assert_eq!(
            (first.id.as_str(), first.event.as_str()),
            (next.as_str(), "message")
        );
    }
    // Ids that could not come back are refused at publish, with a reason.
    for id in [
        "trailing ",
        " leading",
        "\tleading-tab",
        "bell\u{7}",
        "del\u{7f}",
    ] {
        let response = server
            .post_form(Some(&token), &[("topic", "/ids"), ("id", id)])
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id:?}");
        assert!(response.text().await.unwrap().contains("id must not"));
    }
}

/// `tidings-route=1`: the hub names, before each update, the selectors (by index) it matches,
/// and marks the end of the replay; a browser's tabs share one connection with it.
#[tokio::test]
async fn a_routed_subscription_says_which_selectors_each_update_matches() {
    let server = TestServer::start_default().await;
    let old = server.publish(&[("topic", "/r/a"), ("data", "old")]).await;
    let mut reader = server
        .subscribe(&[
            ("topic", "/other"),
            ("topic", "/r/{x}"),
            ("topic", "/r/a"),
            ("lastEventID", "earliest"),
            ("tidings-route", "1"),
        ])
        .await;
    let mut next = async || {
        let event = reader.expect_next().await;
        (event.event, event.data)
    };
    assert_eq!(next().await, ("tidings-route".into(), "1 2".into()));
    assert_eq!(next().await, ("message".into(), "old".into()));
    assert_eq!(next().await, ("tidings-live".into(), old));
    server.publish(&[("topic", "/r/b"), ("data", "new")]).await;
    assert_eq!(next().await, ("tidings-route".into(), "1".into()));
    assert_eq!(next().await, ("message".into(), "new".into()));
}

/// `--max-stream-lifetime`: a stream ends in the last tenth of its lifetime, its last bytes a
/// `retry:` field asking the client back at once; the client that comes back with its last id
/// misses nothing published while it was away.
#[tokio::test]
async fn a_stream_ends_at_its_maximum_lifetime_and_its_client_resumes_without_a_gap() {
    let lifetime = Duration::from_secs(1);
    let server = TestServer::start(|c| c.max_stream_lifetime = lifetime).await;
    let opened = std::time::Instant::now();
    let response = server
        .subscribe_request(&[("topic", "/life")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let first = server.publish(&[("topic", "/life"), ("data", "1")]).await;
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("the stream ends")
        .unwrap();
    let lived = opened.elapsed();
    assert!(
        lived >= lifetime.mul_f64(0.9) && lived < lifetime * 5,
        "lived {lived:?}"
    );
    assert!(body.contains(&format!("id: {first}\n")), "{body:?}");
    let retry = format!("\n\nretry: {}\n\n", tidings_hub::LIFETIME_RETRY_MS);
    assert!(body.ends_with(&retry), "{body:?}");

    let second = server.publish(&[("topic", "/life"), ("data", "2")]).await;
    let third = server.publish(&[("topic", "/life"), ("data", "3")]).await;
    let response = server
        .subscribe_request(&[("topic", "/life")])
        .header("last-event-id", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut back = SseReader::new(response);
    assert_eq!(back.expect_next().await.id, second);
    assert_eq!(back.expect_next().await.id, third);
}
