//! Internal failures: logged by the server, told to the client as a fixed line.

use crate::helpers::{ChildServer, SseReader, publisher_token};
use reqwest::{Client, StatusCode};

/// A full disk, for real: the server may not grow any file past 256 KiB, so once the history's
/// write-ahead log reaches that, SQLite's writes fail as they do on a full disk.
#[tokio::test]
async fn a_full_disk_fails_health_and_writes_without_echoing_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let server = ChildServer::spawn_with_file_limit(
        &[
            "--data-dir",
            data_dir,
            "--market-interval-ms",
            "0",
            "--monitor-interval-ms",
            "0",
        ],
        256 * 1024,
    )
    .await;
    let client = Client::new();
    let token = publisher_token(&["*"]);
    let publish_sized = |id: String, size: usize| {
        client
            .post(server.url("/.well-known/mercure"))
            .bearer_auth(&token)
            .form(&[
                ("topic", "/t"),
                ("id", id.as_str()),
                ("data", &"x".repeat(size)),
            ])
            .send()
    };
    let publish = |id: String| publish_sized(id, 16 * 1024);
    let health = || client.get(server.url("/healthz")).send();
    assert_eq!(health().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        publish("before".into()).await.unwrap().status(),
        StatusCode::OK
    );

    let mut refused = None;
    for i in 0..200 {
        let response = publish(format!("fill-{i}")).await.unwrap();
        if response.status() != StatusCode::OK {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the file size limit stopped the history");
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        refused.text().await.unwrap(),
        "the history is unavailable\n",
        "no SQLite message, no path"
    );
    let health = health().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.text().await.unwrap(), "history unavailable\n");

    // Fill what room is left with small updates, so that a small chat message fails too.
    for i in 0..200 {
        if publish_sized(format!("small-{i}"), 1)
            .await
            .unwrap()
            .status()
            != StatusCode::OK
        {
            break;
        }
    }
    let chat = client
        .post(server.url("/api/chat/general"))
        .json(&serde_json::json!({ "name": "ann", "text": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(chat.text().await.unwrap(), "the history is unavailable\n");

    // Reading still works: a resuming subscriber gets what the history has.
    let resumed = client
        .get(server.url("/.well-known/mercure?topic=/t&lastEventID=before"))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let mut events = SseReader::new(resumed);
    assert!(events.next().await.unwrap().id.starts_with("fill-0"));
}

#[tokio::test]
async fn a_corrupt_history_is_refused_at_start_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("history.sqlite3"), vec![0x5a; 8192]).unwrap();
    let log = ChildServer::refused_in(data.path(), &[], &[]).await;
    assert!(log.contains("cannot be used"), "{log}");
    assert!(log.contains("history.sqlite3"), "{log}");
}

/// A history that cannot be written fails readiness (503, in the reference hub's JSON, without
/// SQLite's words) while liveness holds: restarting the process would not help.
#[tokio::test]
async fn a_full_disk_fails_readiness_but_not_liveness() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn_with_file_limit(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--market-interval-ms",
            "0",
            "--monitor-interval-ms",
            "0",
        ],
        256 * 1024,
    )
    .await;
    let client = Client::new();
    let token = publisher_token(&["*"]);
    let probe = |path: &'static str| client.get(server.url(path)).send();
    assert_eq!(
        probe("/mercure/health/ready").await.unwrap().status(),
        StatusCode::OK
    );
    let mut full = false;
    for i in 0..200 {
        let response = client
            .post(server.url("/.well-known/mercure"))
            .bearer_auth(&token)
            .form(&[
                ("topic", "/t"),
                ("id", format!("fill-{i}").as_str()),
                ("data", &"x".repeat(16 * 1024)),
            ])
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::OK {
            full = true;
            break;
        }
    }
    assert!(full, "the file size limit stopped the history");
    let ready = probe("/mercure/health/ready").await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "status": "error", "error": "history unavailable" })
    );
    let live = probe("/mercure/health/live").await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({ "status": "ok" })
    );
}
