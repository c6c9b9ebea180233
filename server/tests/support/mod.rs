//! Test helpers: a real server on a free loopback port, and a reader for SSE responses.

#![allow(dead_code)] // Each test binary uses its own subset.

use futures_util::StreamExt;
use std::time::Duration;
use tidings_server::{AppState, CancellationToken, Config, Server};
use tokio::task::JoinHandle;

/// The HS256 keys test servers use unless a test configures others.
pub const PUBLISHER_KEY: &str = "publisher-secret-for-tests-only-0123456789";
pub const SUBSCRIBER_KEY: &str = "subscriber-secret-for-tests-only-012345678";

/// A token signed with [`PUBLISHER_KEY`] that may publish to these selectors.
pub fn publisher_token(selectors: &[&str]) -> String {
    sign(
        PUBLISHER_KEY,
        serde_json::json!({ "mercure": { "publish": selectors } }),
    )
}

/// A token signed with [`SUBSCRIBER_KEY`] that may receive private updates of these selectors.
pub fn subscriber_token(selectors: &[&str]) -> String {
    sign(
        SUBSCRIBER_KEY,
        serde_json::json!({ "mercure": { "subscribe": selectors } }),
    )
}

/// An HS256 token with these claims.
pub fn sign(key: &str, claims: serde_json::Value) -> String {
    sign_with(key, jsonwebtoken::Algorithm::HS256, claims)
}

pub fn sign_with(key: &str, alg: jsonwebtoken::Algorithm, claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(key.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap()
}

/// A server running in this process on `127.0.0.1:0`.
pub struct TestServer {
    pub base: String,
    /// The server's data folder, removed when the server is dropped.
    pub data: tempfile::TempDir,
    pub state: AppState,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), tidings_server::Error>>,
}

impl TestServer {
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
        config.data_dir = data.path().to_owned();
        config.publisher_jwt_key = Some(PUBLISHER_KEY.into());
        config.subscriber_jwt_key = Some(SUBSCRIBER_KEY.into());
        // The server's own publishers stay quiet unless a test turns them on.
        config.market_interval_ms = 0;
        config.monitor_interval_ms = 0;
        configure(&mut config);
        let server = Server::bind(config).await.expect("bind");
        let base = format!("http://{}", server.local_addr());
        let state = server.state().clone();
        let shutdown = server.shutdown_token();
        let task = tokio::spawn(server.run());
        Self {
            base,
            data,
            state,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<String>,
}

/// Reads events from a streaming response, the way a browser's parser would (LF line ends only,
/// which is what Tidings writes).
pub struct SseReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next event, skipping comments; `None` when the stream ends. Panics after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<SseEvent> {
        tokio::time::timeout(timeout, self.next())
            .await
            .expect("no event in time")
    }

    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("utf-8 stream");
                if let Some(event) = parse_block(&text) {
                    return Some(event);
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(error)) => panic!("stream failed: {error}"),
                None => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended inside an event: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        }
    }
}

fn parse_block(text: &str) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut data: Option<String> = None;
    for line in text.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_string();
        match name {
            "id" => event.id = Some(value),
            "event" => event.event = Some(value),
            "retry" => event.retry = Some(value),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => data = Some(value),
            },
            other => panic!("unexpected field {other:?}"),
        }
    }
    event.data = data?;
    Some(event)
}

/// The real `tidings` binary as a child process on a free port.
pub struct ChildServer {
    pub child: std::process::Child,
    pub base: String,
}

impl ChildServer {
    /// Starts `tidings` with these arguments (plus `--addr 127.0.0.1:0` unless given) and waits
    /// for its "listening on" line.
    pub async fn spawn(args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("TIDINGS_PUBLISHER_JWT_KEY", PUBLISHER_KEY)
            .env("TIDINGS_SUBSCRIBER_JWT_KEY", SUBSCRIBER_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tidings");
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
        Self { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; `None` if it did not, in which case it is killed.
    pub async fn wait_exit(mut self) -> Option<std::process::ExitStatus> {
        tokio::task::spawn_blocking(move || {
            for _ in 0..400 {
                if let Some(exit) = self.child.try_wait().unwrap() {
                    return Some(exit);
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            self.child.kill().ok();
            None
        })
        .await
        .unwrap()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
