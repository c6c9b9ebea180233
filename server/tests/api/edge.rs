//! The connection edge, against the real binary over raw TCP: every connection has a deadline
//! for its heads and for idling, a cap per address and in all, and gets an answer (then a
//! close) for what HTTP/1.1 forbids, on the lean path and hyper's alike.

use crate::helpers::{ChildServer, HUB, WAIT, read_to_close};
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Reads one response head (up to its blank line), within [`WAIT`].
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, async {
        while !received.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            received.push(byte[0]);
        }
    })
    .await
    .expect("a response head in time");
    String::from_utf8_lossy(&received).to_lowercase()
}

/// Sends `bytes` one at a time, `every` apart, until done or the server closes; what the
/// server answered meanwhile, up to its close.
async fn dribble(tcp: TcpStream, bytes: &[u8], every: Duration) -> String {
    let (mut reader, mut writer) = tcp.into_split();
    let bytes = bytes.to_vec();
    tokio::spawn(async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, reader.read_to_end(&mut received))
        .await
        .expect("closed in time")
        .ok();
    String::from_utf8_lossy(&received).to_lowercase()
}

/// Asks `/healthz` on a kept-alive connection and reads the whole answer.
async fn healthz(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(tcp).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    let mut ok = [0u8; 3];
    tcp.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"ok\n");
}

#[tokio::test]
async fn a_head_has_one_deadline_from_its_first_byte() {
    let (server, _data) = ChildServer::quiet(&["--head-timeout", "2s"]).await;
    // A stream's head (the lean path), one byte every 400 ms: 24 s to send in full.
    let tcp = server.connect_from("127.0.0.1").await;
    let head = format!("GET {HUB}?topic=/slow HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = dribble(tcp, head.as_bytes(), Duration::from_millis(400)).await;
    assert!(answer.starts_with("http/1.1 408 "), "{answer}");

    // A head too long for the stream path, then slow: the same deadline.
    let mut tcp = server.connect_from("127.0.0.1").await;
    let mut long = format!("GET {HUB}?topic=/slow HTTP/1.1\r\nHost: x\r\n");
    for i in 0..20 {
        long.push_str(&format!("x-pad-{i}: {}\r\n", "a".repeat(1500)));
    }
    tcp.write_all(long.as_bytes()).await.unwrap();
    let answer = dribble(tcp, b"x-more: 1\r\n\r\n", Duration::from_millis(400)).await;
    assert!(answer.starts_with("http/1.1 408 "), "{answer}");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_and_its_later_heads_have_the_deadline() {
    let (server, _data) =
        ChildServer::quiet(&["--idle-timeout", "1s", "--head-timeout", "2s"]).await;
    // Idle after an answer: closed.
    let mut tcp = server.connect_from("127.0.0.1").await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    let rest = read_to_close(&mut tcp).await;
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "ok\n",
        "closed after the body"
    );

    // Idle before any request: closed with nothing said.
    let mut tcp = server.connect_from("127.0.0.1").await;
    assert!(read_to_close(&mut tcp).await.is_empty());

    // A later head, slow: 408.
    let mut tcp = server.connect_from("127.0.0.1").await;
    healthz(&mut tcp).await;
    let later = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = dribble(tcp, later, Duration::from_millis(300)).await;
    assert!(answer.starts_with("http/1.1 408 "), "{answer}");
}

#[tokio::test]
async fn one_address_cannot_take_every_descriptor() {
    // The common `ulimit -n 1024`; the cap per address is the default.
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn_with_open_files(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--market-interval-ms",
            "0",
            "--monitor-interval-ms",
            "0",
        ],
        1024,
    )
    .await;
    assert!(
        server.logged("open-file limit 1024: at most 960 connections, 256 per address"),
        "{:?}",
        server.log.lock().unwrap()
    );
    // 1,100 connections from one address, each asking /healthz once and then holding on.
    let mut held = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for _ in 0..1100 {
        let mut tcp = server.connect_from("127.0.0.2").await;
        let _ = tcp
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let head = read_head(&mut tcp).await;
        if head.starts_with("http/1.1 200 ") {
            served += 1;
        } else {
            assert!(head.starts_with("http/1.1 429 "), "{head}");
            refused += 1;
        }
        held.push(tcp);
    }
    assert_eq!((served, refused), (256, 844));
    // Another address is served at once meanwhile: a subscriber, and a page.
    let mut tcp = server.connect_from("127.0.0.3").await;
    tcp.write_all(format!("GET {HUB}?topic=/t HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    let health = crate::helpers::client_from("127.0.0.4")
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    assert!(!server.logged("Too many open files"));
}

#[tokio::test]
async fn bare_carriage_returns_get_400_and_a_close_at_once() {
    let (server, _data) = ChildServer::quiet(&[]).await;
    let heads: [&[u8]; 2] = [
        b"GET /.well-known/mercure HTTP/1.1\rHost: x\r\r",
        b"GET / HTTP/1.1\r\nHo\x01st: x\rHost: y\r\r\r\r\r",
    ];
    let mut connections = Vec::new();
    for i in 0..200 {
        let mut tcp = server.connect_from("127.0.0.1").await;
        tcp.write_all(heads[i % 2]).await.unwrap();
        connections.push(tcp);
    }
    for mut tcp in connections {
        let answer = String::from_utf8_lossy(&read_to_close(&mut tcp).await).to_lowercase();
        assert!(answer.starts_with("http/1.1 400 "), "{answer}");
    }
    // The same bytes as a later request on a kept-alive connection: 400 as well.
    let mut tcp = server.connect_from("127.0.0.1").await;
    healthz(&mut tcp).await;
    tcp.write_all(heads[0]).await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut tcp).await).to_lowercase();
    assert!(answer.starts_with("http/1.1 400 "), "{answer}");
}

#[tokio::test]
async fn a_request_needs_exactly_one_host_on_both_paths() {
    let (server, _data) = ChildServer::quiet(&[]).await;
    let stream = format!("GET {HUB}?topic=/t HTTP/1.1\r\n");
    for head in [
        format!("{stream}\r\n"),
        format!("{stream}Host: a\r\nHost: b\r\n\r\n"),
        "GET /healthz HTTP/1.1\r\n\r\n".to_owned(),
    ] {
        let mut tcp = server.connect_from("127.0.0.1").await;
        tcp.write_all(head.as_bytes()).await.unwrap();
        let answer = String::from_utf8_lossy(&read_to_close(&mut tcp).await).to_lowercase();
        assert!(answer.starts_with("http/1.1 400 "), "{head:?}: {answer}");
    }
    // Later requests on a kept-alive connection (hyper's).
    for later in [
        format!("{stream}\r\n"),
        format!("{stream}Host: a\r\nHost: b\r\n\r\n"),
    ] {
        let mut tcp = server.connect_from("127.0.0.1").await;
        tcp.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n{later}").as_bytes())
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&read_to_close(&mut tcp).await).to_lowercase();
        let second = answer.split("http/1.1 ").nth(2).unwrap_or("");
        assert!(second.starts_with("400 "), "{later:?}: {answer}");
    }
    // HTTP/1.0 may leave Host out.
    let mut tcp = server.connect_from("127.0.0.1").await;
    tcp.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut tcp).await).to_lowercase();
    assert!(answer.starts_with("http/1.0 200 "), "{answer}");
}

#[tokio::test]
async fn a_stream_served_by_hyper_notices_its_client_leaving() {
    let (server, _data) = ChildServer::quiet(&["--heartbeat-secs", "0"]).await;
    let subscribe = format!("GET {HUB}?topic=/quiet HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut streams = Vec::new();
    for i in 0..6 {
        let mut tcp = server.connect_from("127.0.0.1").await;
        if i % 2 == 0 {
            // A request pipelined behind the stream.
            tcp.write_all(
                format!("{subscribe}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        } else {
            // A stream after another request on a kept-alive connection.
            healthz(&mut tcp).await;
            tcp.write_all(subscribe.as_bytes()).await.unwrap();
        }
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        streams.push(tcp);
    }
    server.wait_for_metric("tidings_subscribers 6").await;
    drop(streams);
    server.wait_for_metric("tidings_subscribers 0").await;
}

#[tokio::test]
async fn counter_streams_share_the_subscription_budget() {
    let (server, _data) = ChildServer::quiet(&["--max-subscribers-per-address", "3"]).await;
    let one = crate::helpers::client_from("127.0.0.5");
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = one.get(server.url("/web/StreamChat")).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        open.push(response);
    }
    let hub = one
        .get(server.url(&format!("{HUB}?topic=/t")))
        .send()
        .await
        .unwrap();
    assert_eq!(hub.status(), reqwest::StatusCode::OK);
    open.push(hub);
    let refused = one.get(server.url("/web/StreamChat")).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().await.unwrap().contains("at most 3"));
    let other = crate::helpers::client_from("127.0.0.6")
        .get(server.url("/web/StreamChat"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), reqwest::StatusCode::OK);
    drop(open);
}

#[tokio::test]
async fn behind_a_proxy_each_client_keeps_its_own_allowance_whatever_it_writes() {
    // The proxy is 127.0.0.1 and appends the address it saw; before it, each client wrote
    // bytes that are not text. Chat allows a burst of 5 posts per client.
    let (server, _data) = ChildServer::quiet(&["--trusted-proxy", "127.0.0.1"]).await;
    let proxy = reqwest::Client::new();
    let post = |forwarded: &'static [u8]| {
        let request = proxy
            .post(server.url("/api/chat/lobby"))
            .json(&serde_json::json!({ "name": "ann", "text": "hi" }))
            .header(
                "x-forwarded-for",
                reqwest::header::HeaderValue::from_bytes(forwarded).unwrap(),
            );
        async move { request.send().await.unwrap().status() }
    };
    for _ in 0..5 {
        assert_eq!(
            post(b"\xff\xfe, 198.51.100.1").await,
            reqwest::StatusCode::OK
        );
    }
    assert_eq!(
        post(b"\xff\xfe, 198.51.100.1").await,
        reqwest::StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        post(b"caf\xe9, 198.51.100.2").await,
        reqwest::StatusCode::OK
    );
}

/// `tidings_connections` as the server counts it now.
async fn connections(client: &reqwest::Client, server: &ChildServer) -> u64 {
    server.metric(client, "tidings_connections").await
}

/// Waits (within [`WAIT`]) until the server counts `count` connections.
async fn wait_for_connections(client: &reqwest::Client, server: &ChildServer, count: u64) {
    for _ in 0..100 {
        if connections(client, server).await == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} connections, not {count}",
        connections(client, server).await
    );
}

#[tokio::test]
async fn a_request_in_progress_is_bounded_too() {
    let (server, _data) =
        ChildServer::quiet(&["--idle-timeout", "1s", "--write-timeout", "1s"]).await;
    let client = reqwest::Client::new();
    let baseline = connections(&client, &server).await;

    // A body that stops coming: answered, and the connection closed.
    let mut tcp = server.connect_from("127.0.0.1").await;
    tcp.write_all(
        b"POST /api/chat/lobby HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"name\"",
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut tcp).await).to_lowercase();
    assert!(answer.starts_with("http/1.1 4"), "{answer}");

    // A stream (hyper's: after another request) whose client never reads while a lot is
    // published: let go once writing makes no progress.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr()).await.unwrap();
    healthz(&mut stalled).await;
    stalled
        .write_all(format!("GET {HUB}?topic=/flood HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_head(&mut stalled).await;
    let token = crate::helpers::publisher_token(&["*"]);
    let data = "x".repeat(60_000);
    for _ in 0..200 {
        let response = client
            .post(server.url(HUB))
            .bearer_auth(&token)
            .form(&[("topic", "/flood"), ("data", &data)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
    wait_for_connections(&client, &server, baseline).await;
    drop(stalled);
}
