//! HTTPS and HTTP/2, against the real binary: certificates made for each test by a certificate
//! authority of its own (the `openssl` command), trusted by the test's client and nobody else.
//! HTTP/2 over TLS (ALPN) and HTTP/1.1 over TLS on one port; HTTP/2 with prior knowledge beside
//! HTTP/1.1 on plain text; the certificate swapped on SIGHUP; the edge's deadlines and caps
//! over TLS and HTTP/2.

use crate::helpers::{ChildServer, HUB, SseReader, TestServer, WAIT, publisher_token};
use reqwest::{Client, Response, StatusCode, Version};
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority of one test's own, in a temporary folder.
struct TestCa {
    dir: tempfile::TempDir,
}

/// A certificate for 127.0.0.1 signed by a [`TestCa`].
struct Issued {
    /// PEM: the certificate, then the authority's (a chain).
    cert: PathBuf,
    /// PEM: its private key (PKCS#8).
    key: PathBuf,
    /// The certificate itself, as a server presents it.
    der: Vec<u8>,
}

/// Runs `openssl` in `dir` with these arguments, separated by spaces.
fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new P-256 key and a certificate for it, valid two days.
const NEW_CERTIFICATE: &str =
    "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2";

impl TestCa {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &format!("{NEW_CERTIFICATE} -keyout ca.key -out ca.pem -subj /CN=tidings-test-ca"),
        );
        Self { dir }
    }

    /// A new certificate (its common name `name`) and key, written to `name.pem` and `name.key`.
    fn issue(&self, name: &str) -> Issued {
        openssl(
            self.dir.path(),
            &format!(
                "{NEW_CERTIFICATE} -keyout {name}.key -out {name}.leaf -subj /CN={name} \
                 -CA ca.pem -CAkey ca.key -addext subjectAltName=IP:127.0.0.1 \
                 -addext basicConstraints=critical,CA:FALSE"
            ),
        );
        openssl(
            self.dir.path(),
            &format!("x509 -in {name}.leaf -outform DER -out {name}.der"),
        );
        let read = |file: String| std::fs::read(self.dir.path().join(file)).unwrap();
        let chain = [read(format!("{name}.leaf")), read("ca.pem".into())].concat();
        let cert = self.dir.path().join(format!("{name}.pem"));
        std::fs::write(&cert, chain).unwrap();
        Issued {
            cert,
            key: self.dir.path().join(format!("{name}.key")),
            der: read(format!("{name}.der")),
        }
    }

    /// A client that trusts this authority only, and says which certificate a server showed.
    fn client(&self) -> reqwest::ClientBuilder {
        let root = std::fs::read(self.dir.path().join("ca.pem")).unwrap();
        Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .tls_info(true)
    }
}

/// The binary on HTTPS with `issued`, its own publishers off, and `extra`; its helpers' client
/// trusts `ca`.
async fn https_server(
    ca: &TestCa,
    issued: &Issued,
    extra: &[&str],
) -> (ChildServer, tempfile::TempDir) {
    let mut args = vec![
        "--tls-cert",
        issued.cert.to_str().unwrap(),
        "--tls-key",
        issued.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (mut server, data) = ChildServer::quiet(&args).await;
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    server.client = ca.client().build().unwrap();
    (server, data)
}

/// Subscribes to `topic` with `client` and checks the 200 and the protocol.
async fn subscribe(
    client: &Client,
    server: &ChildServer,
    topic: &str,
    version: Version,
) -> SseReader {
    let response = client
        .get(server.url(&format!("{HUB}?topic={topic}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), version);
    SseReader::new(response)
}

/// Publishes `data` on `topic` with `client`, checking the 200.
async fn publish(client: &Client, base: &str, topic: &str, data: &str) {
    let response = client
        .post(format!("{base}{HUB}"))
        .bearer_auth(publisher_token(&["*"]))
        .form(&[("topic", topic), ("data", data)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// `GET /healthz` with a new client (so on a new connection) built from `client`.
async fn healthz(
    client: reqwest::ClientBuilder,
    server: &ChildServer,
) -> reqwest::Result<Response> {
    client
        .build()
        .unwrap()
        .get(server.url("/healthz"))
        .send()
        .await
}

/// The certificate the server showed for this response.
fn shown(response: &Response) -> Vec<u8> {
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("over TLS");
    info.peer_certificate().expect("a certificate").to_vec()
}

#[tokio::test]
async fn https_negotiates_h2_whose_streams_flush_each_event_and_count_against_the_caps() {
    let ca = TestCa::new();
    let issued = ca.issue("one");
    let (server, _data) = https_server(&ca, &issued, &["--max-subscribers-per-address", "2"]).await;
    let client = ca.client().build().unwrap();
    let page = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.version(), Version::HTTP_2, "ALPN chose h2");
    assert_eq!(shown(&page), issued.der);
    // The hub names itself with the scheme it is reached by.
    let metadata: serde_json::Value = client
        .get(server.url("/.well-known/oauth-protected-resource/.well-known/mercure"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], server.url(HUB));

    // Two streams and a publish on one connection; each event arrives alone, at once (the
    // heartbeat, 15 s away, would push nothing out within the wait).
    let mut first = subscribe(&client, &server, "/h2", Version::HTTP_2).await;
    let mut second = subscribe(&client, &server, "/h2", Version::HTTP_2).await;
    for n in ["1", "2"] {
        publish(&client, &server.base, "/h2", n).await;
        assert_eq!(first.expect_next().await.data, n);
        assert_eq!(second.expect_next().await.data, n);
    }
    // Every stream counts against the address's subscriptions, one connection or not.
    let refused = client
        .get(server.url(&format!("{HUB}?topic=/h2")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().await.unwrap().contains("at most 2"));
    drop(first);
    server.wait_for_metric("tidings_subscribers 1").await;
    let mut third = subscribe(&client, &server, "/h2", Version::HTTP_2).await;
    publish(&client, &server.base, "/h2", "3").await;
    assert_eq!(third.expect_next().await.data, "3");
    assert_eq!(second.expect_next().await.data, "3");
    // All of it on one connection (the helpers' client has another).
    server.wait_for_metric("tidings_connections 2").await;
}

#[tokio::test]
async fn http1_over_tls_still_works() {
    let ca = TestCa::new();
    let issued = ca.issue("one");
    let (server, _data) = https_server(&ca, &issued, &[]).await;
    let client = ca.client().http1_only().build().unwrap();
    let page = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.version(), Version::HTTP_11);
    assert!(page.text().await.unwrap().contains("</html>"));
    let mut stream = subscribe(&client, &server, "/h1", Version::HTTP_11).await;
    assert_eq!(
        stream.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    publish(&client, &server.base, "/h1", "over TLS").await;
    assert_eq!(stream.expect_next().await.data, "over TLS");
    // A client that leaves is noticed.
    drop(stream);
    server.wait_for_metric("tidings_subscribers 0").await;
}

#[tokio::test]
async fn h2c_with_prior_knowledge_beside_http1_on_plain_text_with_a_cap_on_streams() {
    let server = TestServer::start(|c| c.max_streams_per_connection = 2).await;
    let h2c = Client::builder().http2_prior_knowledge().build().unwrap();
    let page = h2c.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (page.status(), page.version()),
        (StatusCode::OK, Version::HTTP_2)
    );
    let plain = server.get("/healthz").await;
    assert_eq!(
        (plain.status(), plain.version()),
        (StatusCode::OK, Version::HTTP_11)
    );

    let open = |topic: &'static str| {
        let request = h2c.get(server.url(&format!("{HUB}?topic={topic}")));
        async move { request.send().await.unwrap() }
    };
    let mut first = SseReader::new(open("/a").await);
    let second = SseReader::new(open("/b").await);
    // The connection's two streams are in use: a third request waits for one to end.
    let third = tokio::spawn(open("/c"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!third.is_finished(), "a third stream was served at once");
    server.publish(&[("topic", "/a"), ("data", "first")]).await;
    assert_eq!(first.expect_next().await.data, "first");
    drop(second);
    let third = tokio::time::timeout(WAIT, third)
        .await
        .expect("served once one ended")
        .unwrap();
    assert_eq!(
        (third.status(), third.version()),
        (StatusCode::OK, Version::HTTP_2)
    );
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_a_bad_file_keeps_the_one_in_use() {
    let ca = TestCa::new();
    let (one, two) = (ca.issue("one"), ca.issue("two"));
    // The server's files: `one`'s now.
    let files = tempfile::tempdir().unwrap();
    let live = Issued {
        cert: files.path().join("cert.pem"),
        key: files.path().join("key.pem"),
        der: one.der.clone(),
    };
    std::fs::copy(&one.cert, &live.cert).unwrap();
    std::fs::copy(&one.key, &live.key).unwrap();
    let (server, _data) = https_server(&ca, &live, &[]).await;
    let shown_to_a_new_client = || async {
        let response = healthz(ca.client(), &server).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        shown(&response)
    };
    assert_eq!(shown_to_a_new_client().await, one.der);
    let before = ca.client().build().unwrap();
    let mut stream = subscribe(&before, &server, "/swap", Version::HTTP_2).await;

    std::fs::copy(&two.cert, &live.cert).unwrap();
    std::fs::copy(&two.key, &live.key).unwrap();
    server.signal("-HUP");
    server
        .wait_for_log("SIGHUP: new connections get the certificate", 1)
        .await;
    assert_eq!(shown_to_a_new_client().await, two.der);
    // A connection from before goes on as it was.
    publish(&server.client, &server.base, "/swap", "still here").await;
    assert_eq!(stream.expect_next().await.data, "still here");

    // A half-written certificate, and a key that is not the certificate's: each logged, and
    // the certificate in use stays.
    std::fs::write(&live.cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    server.signal("-HUP");
    server.wait_for_log("the certificate in use stays", 1).await;
    std::fs::copy(&two.cert, &live.cert).unwrap();
    std::fs::copy(&one.key, &live.key).unwrap();
    server.signal("-HUP");
    server.wait_for_log("the certificate in use stays", 2).await;
    assert!(
        server.logged("is not usable PEM"),
        "{:?}",
        server.log.lock().unwrap()
    );
    assert!(
        server.logged("does not fit the certificate"),
        "{:?}",
        server.log.lock().unwrap()
    );
    assert_eq!(shown_to_a_new_client().await, two.der);
}

/// Reads until the server closes (a reset counts as a close) or [`WAIT`] passes.
async fn until_closed(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while let Ok(n @ 1..) = tcp.read(&mut buf).await {
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("closed in time");
    received
}

#[tokio::test]
async fn over_tls_a_handshake_has_the_head_deadline_and_connections_their_caps() {
    let ca = TestCa::new();
    let issued = ca.issue("one");
    let (server, _data) = https_server(
        &ca,
        &issued,
        &[
            "--head-timeout",
            "1s",
            "--idle-timeout",
            "30s",
            "--max-connections-per-address",
            "1",
        ],
    )
    .await;
    // A ClientHello's first bytes, and no more: closed once the head deadline passes, long
    // before the idle one, with nothing said.
    let mut tcp = server.connect_from("127.0.0.2").await;
    tcp.write_all(&[
        0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03,
    ])
    .await
    .unwrap();
    let started = Instant::now();
    let said = until_closed(&mut tcp).await;
    let took = started.elapsed();
    assert!(said.is_empty(), "{said:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // One connection per address: a second from the same one is closed before any handshake,
    // while another address is served.
    let _held = server.connect_from("127.0.0.3").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let from = |address: &str| {
        ca.client()
            .local_address(address.parse::<IpAddr>().unwrap())
    };
    assert!(healthz(from("127.0.0.3"), &server).await.is_err());
    let served = healthz(from("127.0.0.4"), &server).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}

#[tokio::test]
async fn tls_files_that_cannot_serve_stop_the_start_with_the_reason() {
    let ca = TestCa::new();
    let (one, two) = (ca.issue("one"), ca.issue("two"));
    let missing = ca.dir.path().join("missing.pem");
    let text = ca.dir.path().join("text.pem");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    for (cert, key, says) in [
        (
            path(&missing),
            path(&one.key),
            "cannot read the TLS certificate (--tls-cert) file",
        ),
        (
            path(&one.cert),
            path(&missing),
            "cannot read the TLS key (--tls-key) file",
        ),
        (path(&text), path(&one.key), "no certificate in it"),
        (path(&one.cert), path(&one.cert), "no private key in it"),
        (
            path(&one.cert),
            path(&two.key),
            "does not fit the certificate",
        ),
    ] {
        let log = ChildServer::refused(&["--tls-cert", &cert, "--tls-key", &key], &[]).await;
        assert!(log.contains(says), "{says}: {log}");
    }
    let log = ChildServer::refused(&["--tls-cert", &path(&one.cert)], &[]).await;
    assert!(log.contains("--tls-key"), "{log}");
    let data = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(data.path());
    config.tls_cert = Some(one.cert.clone());
    let refused = tidings_server::Server::bind(config)
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("give both, or neither"),
        "{refused}"
    );
    let missing_shown = path(&missing);
    let log = ChildServer::refused(
        &[],
        &[
            ("TIDINGS_TLS_CERT", &missing_shown),
            ("TIDINGS_TLS_KEY", &path(&one.key)),
        ],
    )
    .await;
    assert!(log.contains(&missing_shown), "{log}");
}
