//! Event streams on a fresh connection are served without hyper (`lean_streams`): what a
//! client sees must be plain HTTP/1.1 all the same, whatever way its request arrives.

use crate::helpers::{HUB, TestServer, WAIT, read_to_close};
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until `needle` has arrived (or the connection closes); everything read.
async fn read_until(tcp: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !received.windows(needle.len()).any(|w| w == needle) {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("in time");
    received
}

#[tokio::test]
async fn a_stream_on_a_fresh_connection_is_close_delimited_and_ends_when_the_client_leaves() {
    let server = TestServer::start_default().await;
    let mut tcp = connect(&server).await;
    // The head in three pieces, as a slow client may send it.
    for piece in [
        "GET /.well-known/mercure?topic=/lean HT",
        "TP/1.1\r\nHost: x\r\nAccept: text/event-",
        "stream\r\n\r\n",
    ] {
        tcp.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let head = read_until(&mut tcp, b"\r\n\r\n").await;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");

    server
        .publish(&[("topic", "/lean"), ("id", "one"), ("data", "hello")])
        .await;
    let event = read_until(&mut tcp, b"data: hello\n\n").await;
    assert!(String::from_utf8_lossy(&event).contains("id: one\n"));

    drop(tcp);
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.state.hub.stats().subscribers > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber stays"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_error_on_a_fresh_connection_has_its_length_and_reason() {
    let server = TestServer::start_default().await;
    let mut tcp = connect(&server).await;
    tcp.write_all(b"GET /.well-known/mercure HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .expect("answered and closed")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{response}"
    );
    assert!(!body.is_empty());
}

#[tokio::test]
async fn a_stream_on_a_kept_alive_connection_is_hyper_s_and_works_the_same() {
    let server = TestServer::start_default().await;
    let mut tcp = connect(&server).await;
    // A first request (not a stream) makes the connection hyper's; the stream comes second.
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut tcp, b"ok\n").await;
    tcp.write_all(format!("GET {HUB}?topic=/kept HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_until(&mut tcp, b"\r\n\r\n").await;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.contains("200 ok"), "{head}");
    assert!(
        head.contains("transfer-encoding: chunked"),
        "hyper's: {head}"
    );
    server
        .publish(&[("topic", "/kept"), ("data", "again")])
        .await;
    read_until(&mut tcp, b"data: again\n\n").await;
}

#[tokio::test]
async fn other_requests_on_a_fresh_connection_reach_hyper_intact() {
    let server = TestServer::start_default().await;
    // A HEAD with a second request pipelined after it: neither is a lean stream, so hyper
    // answers both, from the bytes the listener already read.
    let mut tcp = connect(&server).await;
    tcp.write_all(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = read_to_close(&mut tcp).await;
    let response = String::from_utf8_lossy(&response);
    assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
}
