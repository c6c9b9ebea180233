//! What every test needs: a server (in this process, or the real binary), tokens, the requests
//! the tests make (as methods of the server), and a reader for event streams.

use eventsource_stream::{Event, EventStream, EventStreamError};
use futures_util::{StreamExt, stream::BoxStream};
use reqwest::{Client, RequestBuilder, Response, StatusCode, header::HeaderMap};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tidings_server::{AppState, CancellationToken, Config, Server};
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// The hub's path.
pub const HUB: &str = "/.well-known/mercure";

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

/// A compact JWS of these header and claims, signed with `key` by `alg`, whatever the header
/// says (so a test can put anything in it).
pub fn sign_raw(
    header: serde_json::Value,
    claims: serde_json::Value,
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

/// The public URL of the servers [`TestServer::start_v1`] starts, as the Mercure 1.0
/// conformance suite expects it: the default issuer, and (with the hub's path) the audience.
pub const PUBLIC_URL: &str = "https://localhost";

/// The hub's resource identifier at [`PUBLIC_URL`].
pub const AUDIENCE: &str = "https://localhost/.well-known/mercure";

/// The metadata's URL at [`PUBLIC_URL`], as challenges name it.
pub const METADATA_URL: &str =
    "https://localhost/.well-known/oauth-protected-resource/.well-known/mercure";

/// A Mercure authorization detail granting `actions` on exact `topics`.
pub fn detail(actions: &[&str], topics: &[&str]) -> serde_json::Value {
    let topics: Vec<_> = topics
        .iter()
        .map(|t| serde_json::json!({ "match": t }))
        .collect();
    serde_json::json!({
        "type": "https://mercure.rocks/authorization-detail",
        "actions": actions,
        "topics": topics,
    })
}

/// The claims of a valid Mercure 1.0 token for a [`TestServer::start_v1`] server, with these
/// authorization details; a test changes what it checks.
pub fn access_claims(details: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "iss": PUBLIC_URL,
        "aud": AUDIENCE,
        "exp": now() + 3600,
        "authorization_details": details,
    })
}

/// An HS256 Mercure 1.0 access token (`typ: at+jwt`) with these claims, signed with `key`.
pub fn access_token(key: &str, claims: serde_json::Value) -> String {
    sign_raw(
        serde_json::json!({ "alg": "HS256", "typ": "at+jwt" }),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
}

/// A publisher's access token granting publish on these exact topics.
pub fn publisher_access_token(topics: &[&str]) -> String {
    access_token(
        PUBLISHER_KEY,
        access_claims(serde_json::json!([detail(&["publish"], topics)])),
    )
}

/// A subscriber's access token granting subscribe on these exact topics.
pub fn subscriber_access_token(topics: &[&str]) -> String {
    access_token(
        SUBSCRIBER_KEY,
        access_claims(serde_json::json!([detail(&["subscribe"], topics)])),
    )
}

/// Seconds since the Unix epoch, for `exp` and `nbf` claims.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Percent-encodes every byte that is not alphanumeric.
pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The configuration test servers start from: a fresh data folder, the test keys, port 0, and
/// the server's own publishers off.
pub fn test_config(data: &std::path::Path) -> Config {
    let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    config.data_dir = data.to_owned();
    config.publisher_jwt_key = Some(PUBLISHER_KEY.into());
    config.subscriber_jwt_key = Some(SUBSCRIBER_KEY.into());
    config.market_interval_ms = 0;
    config.monitor_interval_ms = 0;
    config
}

/// A server running in this process on `127.0.0.1:0`.
pub struct TestServer {
    pub base: String,
    /// The server's data folder, removed when the server is dropped.
    _data: tempfile::TempDir,
    pub state: AppState,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), tidings_server::Error>>,
    client: Client,
}

impl TestServer {
    /// A server with [`test_config`] changed by `configure`.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        configure(&mut config);
        Self::run(Server::bind(config).await.expect("bind"), data)
    }

    fn run(server: Server, data: tempfile::TempDir) -> Self {
        let base = format!("http://{}", server.local_addr());
        let state = server.state().clone();
        let shutdown = server.shutdown_token();
        let task = tokio::spawn(server.run());
        Self {
            base,
            _data: data,
            state,
            shutdown,
            task,
            client: Client::new(),
        }
    }

    /// A server with [`test_config`] changed by `configure`, serving at [`PUBLIC_URL`].
    pub async fn start_v1(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start(|config| {
            config.public_url = Some(PUBLIC_URL.into());
            configure(config);
        })
        .await
    }

    /// A server with [`test_config`] as it is.
    pub async fn start_default() -> Self {
        Self::start(|_| {}).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The client the helpers use, for requests they do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `GET path`, answered.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GETs `path` with this bearer token.
    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        let request = self.client.get(self.url(path)).bearer_auth(token);
        request.send().await.unwrap()
    }

    /// Posts a form to the hub, with this bearer token if any.
    pub async fn post_form(&self, token: Option<&str>, form: &[(&str, &str)]) -> Response {
        let request = self.client.post(self.url(HUB)).form(form);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
        .await
        .unwrap()
    }

    /// Publishes with an allow-all token, checks the 200 and returns the id.
    pub async fn publish(&self, form: &[(&str, &str)]) -> String {
        let response = self.post_form(Some(&publisher_token(&["*"])), form).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}",
            response.text().await
        );
        response.text().await.unwrap()
    }

    /// A publish of `form` with this access token in the `__Secure-mercure_access_token` cookie,
    /// sent from this server's own origin; a test adds what else it needs.
    pub fn post_form_with_cookie(&self, cookie: &str, form: &[(&str, &str)]) -> RequestBuilder {
        self.client
            .post(self.url(HUB))
            .header(reqwest::header::ORIGIN, &self.base)
            .header(
                reqwest::header::COOKIE,
                format!("__Secure-mercure_access_token={cookie}"),
            )
            .form(form)
    }

    /// The hub's URL with this query.
    pub fn subscribe_url(&self, query: &[(&str, &str)]) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        self.url(&format!("{HUB}?{query}"))
    }

    /// A subscription request with this query, for a test to add headers to.
    pub fn subscribe_request(&self, query: &[(&str, &str)]) -> RequestBuilder {
        self.client.get(self.subscribe_url(query))
    }

    /// Subscribes anonymously, checks the 200 and reads the stream.
    /// A Mercure 1.0 subscription to every subscription event, with `token` in the header.
    pub async fn watch_subscriptions(&self, token: &str) -> SseReader {
        let response = self
            .subscribe_request(&[(
                "match_urlpattern",
                "/.well-known/mercure/subscriptions/:type/:match/:subscriber",
            )])
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        SseReader::new(response)
    }

    pub async fn subscribe(&self, query: &[(&str, &str)]) -> SseReader {
        let response = self.subscribe_request(query).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        SseReader::new(response)
    }

    /// Posts a chat message to `room`.
    pub async fn post_chat(&self, room: &str, name: &str, text: &str) -> Response {
        self.chat_request(&self.client, room, name, text)
            .send()
            .await
            .unwrap()
    }

    /// A chat post sent with `client` (bound to another address, say), for a test to add
    /// headers to.
    pub fn chat_request(
        &self,
        client: &Client,
        room: &str,
        name: &str,
        text: &str,
    ) -> RequestBuilder {
        client
            .post(self.url(&format!("/api/chat/{room}")))
            .json(&serde_json::json!({ "name": name, "text": text }))
    }

    /// The chat form's post (its server function), as a script on the page sends it (asking
    /// for JSON), for a test to add headers to.
    pub fn chat_form_request(
        &self,
        client: &Client,
        room: &str,
        name: &str,
        text: &str,
    ) -> RequestBuilder {
        client
            .post(self.url("/api/send_chat"))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("room", room), ("name", name), ("text", text)])
    }
}

/// A client that does not follow redirects, to read them.
pub fn client_without_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client whose connections come from this loopback address (all of 127.0.0.0/8 reaches a
/// server on 127.0.0.1), so a test can be two clients.
pub fn client_from(address: &str) -> Client {
    Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Reads the events of a streaming response with `eventsource-stream`, a parser written apart
/// from the hub's encoder (CR, LF and CRLF line ends, as browsers accept). Comments are not
/// events; a test about them reads the raw bytes.
pub struct SseReader {
    headers: HeaderMap,
    events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
    /// The last bytes received, to tell a clean end from one inside an event.
    tail: Arc<Mutex<Vec<u8>>>,
}

impl SseReader {
    pub fn new(response: Response) -> Self {
        let headers = response.headers().clone();
        let tail = Arc::new(Mutex::new(Vec::new()));
        let seen = tail.clone();
        let bytes = response.bytes_stream().inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                let mut tail = seen.lock().unwrap();
                tail.extend_from_slice(chunk);
                let excess = tail.len().saturating_sub(4);
                tail.drain(..excess);
            }
        });
        Self {
            headers,
            events: EventStream::new(bytes).boxed(),
            tail,
        }
    }

    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The next event; `None` when the stream ends, which it must do between events.
    pub async fn next(&mut self) -> Option<Event> {
        match self.events.next().await {
            Some(Ok(event)) => Some(event),
            Some(Err(error)) => panic!("stream failed: {error}"),
            None => {
                let tail = self.tail.lock().unwrap();
                assert!(
                    ends_between_events(&tail),
                    "stream ended inside an event: {tail:?}"
                );
                None
            }
        }
    }

    /// The next event, or `None` when the stream ends. Panics after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.next())
            .await
            .expect("no event in time")
    }

    /// The next event within [`WAIT`]; panics if the stream ends instead.
    pub async fn expect_next(&mut self) -> Event {
        self.next_within(WAIT).await.expect("stream open")
    }
}

/// Whether a stream's last bytes end with a blank line (or there were none): two line ends in a
/// row, each CRLF, LF or CR.
fn ends_between_events(tail: &[u8]) -> bool {
    fn strip_line_end(bytes: &[u8]) -> Option<&[u8]> {
        bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .or_else(|| bytes.strip_suffix(b"\r"))
    }
    tail.is_empty() || strip_line_end(tail).and_then(strip_line_end).is_some()
}

/// The real `tidings` binary as a child process on a free port.
pub struct ChildServer {
    pub child: std::process::Child,
    /// `http://host:port`, or `https://` when it serves TLS.
    pub base: String,
    /// Its log, line by line, as far as written.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The client the helpers wait with (one that trusts its certificate, for HTTPS).
    pub client: Client,
}

impl ChildServer {
    /// Starts `tidings` with these arguments (plus `--addr 127.0.0.1:0` unless given) and waits
    /// for its "listening on" line.
    pub async fn spawn(args: &[&str]) -> Self {
        Self::spawn_command(
            std::process::Command::new(env!("CARGO_BIN_EXE_tidings")),
            args,
        )
        .await
    }

    /// As [`spawn`](Self::spawn), with a data folder of its own (removed when dropped), its own
    /// publishers off, and `extra`.
    pub async fn quiet(extra: &[&str]) -> (Self, tempfile::TempDir) {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--data-dir",
            data.path().to_str().unwrap(),
            "--market-interval-ms",
            "0",
            "--monitor-interval-ms",
            "0",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (Self::spawn(&args).await, data)
    }

    /// As [`spawn`](Self::spawn), but no file the server writes may grow past `bytes`
    /// (`RLIMIT_FSIZE`, with SIGXFSZ ignored so a write fails instead of killing the process):
    /// a disk that is full, for real, as SQLite sees it.
    pub async fn spawn_with_file_limit(args: &[&str], bytes: u64) -> Self {
        let mut command = std::process::Command::new("sh");
        command.args([
            "-c",
            r#"limit=$1; shift; trap '' XFSZ; exec prlimit --fsize="$limit" -- "$@""#,
            "sh",
            &bytes.to_string(),
            env!("CARGO_BIN_EXE_tidings"),
        ]);
        Self::spawn_command(command, args).await
    }

    /// As [`spawn`](Self::spawn), under an open-file limit of `files` (soft and hard), as a
    /// server under the common `ulimit -n 1024` runs.
    pub async fn spawn_with_open_files(args: &[&str], files: u64) -> Self {
        let mut command = std::process::Command::new("prlimit");
        command.args([
            &format!("--nofile={files}:{files}"),
            "--",
            env!("CARGO_BIN_EXE_tidings"),
        ]);
        Self::spawn_command(command, args).await
    }

    async fn spawn_command(mut command: std::process::Command, args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
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
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let base = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line.unwrap();
                kept.lock().unwrap().push(line.clone());
                if let Some(at) = line.find("listening on ") {
                    let base = line[at + "listening on ".len()..].trim().to_string();
                    // Keep draining so the child never blocks on a full pipe.
                    std::thread::spawn(move || {
                        for line in lines.map_while(Result::ok) {
                            kept.lock().unwrap().push(line);
                        }
                    });
                    return base;
                }
            }
            panic!("tidings exited without saying where it listens");
        })
        .await
        .unwrap();
        Self {
            child,
            base,
            log,
            client: Client::new(),
        }
    }

    /// Runs `tidings` with these arguments and variables (over the test keys) on a free port,
    /// expecting it to refuse to start: returns its log once it has exited with a failure.
    pub async fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
        let data = tempfile::tempdir().unwrap();
        Self::refused_in(data.path(), args, env).await
    }

    /// As [`refused`](Self::refused), with this data folder.
    pub async fn refused_in(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .env("NO_COLOR", "1")
            .env("TIDINGS_PUBLISHER_JWT_KEY", PUBLISHER_KEY)
            .env("TIDINGS_SUBSCRIBER_JWT_KEY", SUBSCRIBER_KEY)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tidings");
        let shown = format!("{args:?} {env:?}");
        tokio::task::spawn_blocking(move || {
            for _ in 0..400 {
                if let Some(exit) = child.try_wait().unwrap() {
                    let mut log = String::new();
                    child
                        .stdout
                        .take()
                        .unwrap()
                        .read_to_string(&mut log)
                        .unwrap();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut log)
                        .unwrap();
                    assert!(!exit.success(), "tidings exited cleanly: {log}");
                    return log;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            child.kill().ok();
            panic!("tidings started with {shown}");
        })
        .await
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `host:port` it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        let (_, addr) = self.base.split_once("://").unwrap();
        addr.parse().unwrap()
    }

    /// A raw connection to it from this local address (any of 127.0.0.0/8).
    pub async fn connect_from(&self, local: &str) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::new(local.parse().unwrap(), 0))
            .unwrap();
        socket.connect(self.addr()).await.unwrap()
    }

    /// `/metrics`, asked with `client`.
    pub async fn metrics(&self, client: &Client) -> String {
        client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One figure of `/metrics`, asked with `client` (whose connection the server counts).
    pub async fn metric(&self, client: &Client, name: &str) -> u64 {
        let text = self.metrics(client).await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    /// Waits (within about 10 s) until `/metrics` has this line.
    pub async fn wait_for_metric(&self, line: &str) {
        for _ in 0..100 {
            let text = self.metrics(&self.client).await;
            if text.lines().any(|l| l == line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never saw {line:?}");
    }

    /// Whether a log line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Waits (within [`WAIT`]) until a log line contains `text`, `times` times in all.
    pub async fn wait_for_log(&self, text: &str, times: usize) {
        for _ in 0..100 {
            let seen = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(text))
                .count();
            if seen >= times {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "never logged {text:?} {times} times: {:?}",
            self.log.lock().unwrap()
        );
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

/// Everything a raw connection sends until it closes (within [`WAIT`]).
pub async fn read_to_close(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut received))
        .await
        .expect("the connection closes in time")
        .unwrap();
    received
}

/// The next presence count `reader` receives (a chat room's `presence` event).
pub async fn next_presence(reader: &mut SseReader) -> u64 {
    let event = reader.expect_next().await;
    assert_eq!(event.event, "presence");
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    data["present"].as_u64().unwrap()
}
