//! The hub under concurrency over real HTTP: the history→live handoff while publishes race, and
//! a stalled subscriber evicted while the others keep receiving.

use crate::helpers::{HUB, SseReader, TestServer, publisher_token, read_to_close};
use reqwest::{Client, StatusCode};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longer than elsewhere: these tests push thousands of updates.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resuming_subscribers_get_exact_sequences_while_publishes_race() {
    let server = TestServer::start(|c| c.subscriber_buffer = 100_000).await;
    const TOTAL: usize = 600;
    let ids: Vec<String> = (0..TOTAL).map(|i| format!("r{i}")).collect();
    let url = server.url(HUB);
    let token = publisher_token(&["*"]);

    // Publishers: two concurrent streams of publishes, so commits batch up; ids are assigned in
    // publish order within each, and the hub's order is the order of acknowledgements.
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let publisher = {
        let (url, token, ids) = (url.clone(), token.clone(), ids.clone());
        tokio::spawn(async move {
            let client = Client::new();
            for id in &ids {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .form(&[("topic", "/race"), ("id", id.as_str())])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                acks_tx.send(id.clone()).unwrap();
            }
        })
    };

    // Subscribers join while publishing runs, each resuming from an id acknowledged just before.
    let mut readers = Vec::new();
    let mut acked = 0;
    for round in 0..10 {
        // Wait for a few more acknowledgements, then resume from the latest one.
        for _ in 0..(15 + round * 7) {
            acks_rx.recv().await.unwrap();
            acked += 1;
        }
        let from = &ids[acked - 1];
        let response = server
            .subscribe_request(&[("topic", "/race")])
            .header("Last-Event-ID", from.as_str())
            .send()
            .await
            .unwrap();
        let expected = ids[acked..].to_vec();
        readers.push(tokio::spawn(async move {
            let mut reader = SseReader::new(response);
            let mut got = Vec::new();
            while got.len() < expected.len() {
                got.push(reader.next_within(WAIT).await.expect("stream").id);
            }
            assert_eq!(got, expected, "exact sequence after the resume point");
        }));
    }
    publisher.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_subscriber_is_evicted_and_the_others_keep_receiving() {
    let server = TestServer::start(|c| c.subscriber_buffer = 8).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // A client that sends its request and then never reads: its socket buffers fill, then its
    // queue, and the hub must drop it rather than wait.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            format!("GET /.well-known/mercure?topic=/flood HTTP/1.1\r\nHost: {addr}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut healthy = server.subscribe(&[("topic", "/flood")]).await;
    while server.state.hub.stats().subscribers < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 64 KiB updates until the stalled one is gone; the healthy one reads along.
    let data = "x".repeat(64 * 1024);
    let token = publisher_token(&["*"]);
    let url = server.url(HUB);
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(event) = healthy.next_within(WAIT).await {
            if event.data == "done" {
                return n;
            }
            n += 1;
        }
        panic!("healthy stream ended");
    });
    let client = Client::new();
    let mut published = 0;
    let evicted = || server.state.hub.stats().subscribers_evicted;
    while evicted() == 0 {
        assert!(published < 2000, "the stalled subscriber was never evicted");
        let response = client
            .post(&url)
            .bearer_auth(&token)
            .form(&[("topic", "/flood"), ("data", &data)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        published += 1;
    }
    assert_eq!(
        server.state.hub.stats().subscribers as usize,
        1,
        "only the stalled one was dropped"
    );
    client
        .post(&url)
        .bearer_auth(&token)
        .form(&[("topic", "/flood"), ("data", "done")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        reader.await.unwrap(),
        published,
        "the healthy subscriber got every update"
    );

    // The evicted response ends once what was queued is written (a stream on a fresh
    // connection is close-delimited: the connection closes), which is what makes a browser
    // reconnect with its last id. It ends between two events.
    let received = read_to_close(&mut stalled).await;
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(received.ends_with(b"\n\n"), "ends between events");
}
