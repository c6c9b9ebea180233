//! The `tidings` binary as a process: shutdown on SIGTERM, and durability across `kill -9`.

use crate::helpers::{ChildServer, SseReader, WAIT, publisher_token};
use reqwest::{Client, StatusCode};

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = ChildServer::spawn(&[
        "--data-dir",
        dir,
        "--stream-interval-ms",
        "3600000",
        "--shutdown-grace-secs",
        "3600",
    ])
    .await;

    let mut counter = SseReader::new(reqwest::get(server.url("/web/StreamChat")).await.unwrap());
    assert_eq!(counter.expect_next().await.id, "1");
    let hub = reqwest::get(server.url("/.well-known/mercure?topic=/t"))
        .await
        .unwrap();
    assert_eq!(hub.status(), StatusCode::OK);
    let mut hub = SseReader::new(hub);

    server.signal("-TERM");
    assert_eq!(
        counter.next_within(WAIT).await,
        None,
        "the counter stream ends"
    );
    assert_eq!(hub.next_within(WAIT).await, None, "the hub stream ends");
    let exit = server
        .wait_exit()
        .await
        .expect("tidings exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn acknowledged_updates_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = ChildServer::spawn(&["--data-dir", dir]).await;
    let token = publisher_token(&["*"]);
    let client = Client::new();

    // Publish concurrently (so commits are grouped), collecting every acknowledged id.
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url, token) = (
            client.clone(),
            server.url("/.well-known/mercure"),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..50 {
                let id = format!("w{worker}-{i}");
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .form(&[("topic", "/durable"), ("id", &id), ("data", &i.to_string())])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                acked.push(response.text().await.unwrap());
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.push(task.await.unwrap());
    }
    server.signal("-KILL");
    server.wait_exit().await.expect("killed");

    let server = ChildServer::spawn(&["--data-dir", dir]).await;
    let response =
        reqwest::get(server.url("/.well-known/mercure?topic=/durable&lastEventID=earliest"))
            .await
            .unwrap();
    let mut reader = SseReader::new(response);
    let mut replayed = Vec::new();
    while replayed.len() < 8 * 50 {
        replayed.push(reader.next_within(WAIT).await.expect("replay").id);
    }
    // Every acknowledged id is there once, and each publisher's ids are in its order.
    for ids in &acked {
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| {
                replayed
                    .iter()
                    .position(|r| r == id)
                    .expect("acknowledged id kept")
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "in publish order"
        );
    }
    let mut unique = replayed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), replayed.len(), "no duplicates");
}
