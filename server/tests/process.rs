//! The `tidings` binary as a process: it reports its address and exits promptly on SIGTERM even
//! while a stream is open.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};
use support::SseReader;

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["--addr", "127.0.0.1:0", "--stream-interval-ms", "3600000"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--shutdown-grace-secs", "3600"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tidings");

    // The log's "listening on http://ADDR" line says which port it got.
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(at) = line.find("listening on ") {
                let base = line[at + "listening on ".len()..].trim().to_string();
                // Keep draining so the child never blocks on a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return base;
            }
        }
        panic!("tidings exited without saying where it listens");
    })
    .await
    .unwrap();

    let response = reqwest::get(format!("{base}/web/StreamChat"))
        .await
        .unwrap();
    let mut reader = SseReader::new(response);
    let first = reader.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.id.as_deref(), Some("1"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        reader.next_within(Duration::from_secs(10)).await,
        None,
        "stream ends"
    );

    let exit = tokio::task::spawn_blocking(move || {
        // Bounded wait: a process that hangs fails the test instead of hanging it.
        for _ in 0..200 {
            if let Some(exit) = child.try_wait().unwrap() {
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().ok();
        None
    })
    .await
    .unwrap();
    assert!(exit.expect("tidings exits after SIGTERM").success());
}
