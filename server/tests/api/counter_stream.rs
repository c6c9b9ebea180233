//! `GET /web/StreamChat`, the seed's demo stream.

use crate::helpers::{SseReader, TestServer, WAIT};
use reqwest::{StatusCode, header};
use std::time::Duration;

const PATH: &str = "/web/StreamChat";

async fn fast_server() -> TestServer {
    TestServer::start(|c| c.stream_interval_ms = 2).await
}

/// Reads the whole stream and returns the ids, checking that each event's data equals its id.
async fn collect(response: reqwest::Response) -> Vec<u32> {
    let mut reader = SseReader::new(response);
    let mut ids = Vec::new();
    while let Some(event) = reader.next_within(WAIT).await {
        // The parser keeps the last id for events without one; data equal to the id shows that
        // each event brought its own.
        assert!(!event.id.is_empty(), "every event has an id");
        assert_eq!(event.data, event.id, "data and id are the same number");
        assert_eq!(event.event, "message", "no event type");
        ids.push(event.id.parse().expect("numeric id"));
    }
    ids
}

#[tokio::test]
async fn streams_1_to_100_in_order_with_sse_headers_then_ends() {
    let server = fast_server().await;
    let response = server.get(PATH).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(collect(response).await, (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn resumes_after_last_event_id() {
    let server = fast_server().await;
    for (last, first) in [(0, 1), (41, 42), (99, 100)] {
        let response = server
            .client()
            .get(server.url(PATH))
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            collect(response).await,
            (first..=100).collect::<Vec<_>>(),
            "after {last}"
        );
    }
}

#[tokio::test]
async fn answers_204_once_the_stream_is_complete() {
    let server = fast_server().await;
    let response = server
        .client()
        .get(server.url(PATH))
        .header("Last-Event-ID", "100")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn refuses_a_bad_last_event_id_with_a_reason() {
    let server = fast_server().await;
    for bad in ["101", "-1", "abc", "1.5", "", "+3"] {
        let response = server
            .client()
            .get(server.url(PATH))
            .header("Last-Event-ID", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "for {bad:?}");
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let reason = response.text().await.unwrap();
        assert!(
            reason.contains("Last-Event-ID"),
            "reason names the header: {reason}"
        );
    }
}

#[tokio::test]
async fn each_connection_is_independent() {
    let server = TestServer::start(|c| c.stream_interval_ms = 5).await;
    let a = server.get(PATH);
    let b = server
        .client()
        .get(server.url(PATH))
        .header("Last-Event-ID", "50")
        .send();
    let (a, b) = tokio::join!(a, b);
    let (a, b) = tokio::join!(collect(a), collect(b.unwrap()));
    assert_eq!(a, (1..=100).collect::<Vec<_>>());
    assert_eq!(b, (51..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn client_disconnect_stops_the_stream() {
    let server = TestServer::start(|c| c.stream_interval_ms = 20).await;
    let mut reader = SseReader::new(server.get(PATH).await);
    assert_eq!(reader.expect_next().await.id, "1");
    assert_eq!(server.state.metrics.counter_streams_open(), 1);

    drop(reader);
    // The server notices at its next write; the stream, its timer and its guard are then dropped.
    tokio::time::timeout(WAIT, async {
        while server.state.metrics.counter_streams_open() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the stream is dropped after the client leaves");
}

#[tokio::test]
async fn shutdown_ends_open_streams_so_the_server_stops() {
    // A one-hour interval and a one-hour grace: only ending the stream lets the server stop.
    let server = TestServer::start(|c| {
        c.stream_interval_ms = 3_600_000;
        c.shutdown_grace_secs = 3600;
    })
    .await;
    let mut reader = SseReader::new(server.get(PATH).await);
    assert_eq!(reader.expect_next().await.id, "1");

    server.shutdown.cancel();
    assert_eq!(
        reader.next_within(WAIT).await,
        None,
        "the stream ends cleanly"
    );
    let result = tokio::time::timeout(WAIT, server.task)
        .await
        .expect("server stops");
    result.unwrap().unwrap();
}
