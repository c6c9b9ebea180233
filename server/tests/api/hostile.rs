//! The hub under hostile load: each test is a row of what an attacker tried (issue 9), against a
//! real server on a free port, and what must hold instead.

use crate::helpers::{ChildServer, HUB, TestServer, publisher_token, subscriber_token};
use futures_util::future::join_all;
use reqwest::{StatusCode, header};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ids a subscription from `earliest` to `topic` replays, oldest first, up to the first gap
/// event.
async fn retained(server: &TestServer, topic: &str) -> Vec<String> {
    let mut events = server
        .subscribe(&[("topic", topic), ("lastEventID", "earliest")])
        .await;
    let mut ids = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), events.next()).await {
        if event.event != "message" {
            break;
        }
        ids.push(event.id);
    }
    ids
}

#[tokio::test]
async fn subscription_events_never_push_published_updates_out_of_the_history() {
    // 30 anonymous subscriptions of 1000 distinct topics each used to store 30,000 subscription
    // events, pruning the news away.
    let server = TestServer::start(|c| {
        c.history_max_events = 100;
        c.max_selectors = 1000;
        c.max_query_bytes = 100_000;
    })
    .await;
    let news: Vec<String> = (0..5).map(|i| format!("news-{i}")).collect();
    for id in &news {
        server.publish(&[("topic", "/news"), ("id", id)]).await;
    }
    let requests = (0..30).map(|c| {
        let topics: Vec<(&str, String)> = (0..1000)
            .map(|t| ("topic", format!("/spam/{c}/{t}")))
            .collect();
        let query: Vec<(&str, &str)> = topics.iter().map(|(k, v)| (*k, v.as_str())).collect();
        server.subscribe_request(&query).send()
    });
    let responses = join_all(requests).await;
    assert!(
        responses
            .iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::OK)
    );
    drop(responses);
    assert_eq!(retained(&server, "/news").await, news);
    assert_eq!(server.state.hub.stats().history_updates, 5);
}

#[tokio::test]
async fn connections_coming_and_going_leave_nothing_behind() {
    // Plain connections on one topic opening and closing, round after round, used to fill the
    // history with subscription events and leave the process hundreds of MB larger. The real
    // binary (with its allocator) over raw TCP; the scale is the bench's job (`make bench`).
    let (server, _data) = ChildServer::quiet(&[
        "--max-subscribers-per-address",
        "100000",
        "--max-subscribers",
        "100000",
        "--subscribe-rate",
        "100000",
        "--subscribe-burst",
        "100000",
        "--max-connections-per-address",
        "100000",
    ])
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let token = publisher_token(&["*"]);
    let client = reqwest::Client::new();
    let published = client
        .post(server.url(HUB))
        .bearer_auth(&token)
        .form(&[("topic", "/kept"), ("id", "kept")])
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::OK);
    let baseline = rss_kib(server.child.id());
    for _round in 0..4 {
        let mut sockets = Vec::new();
        for _ in 0..2000 {
            let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
            socket
                .write_all(b"GET /.well-known/mercure?topic=/churn HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            sockets.push(socket);
        }
        for socket in &mut sockets {
            let mut head = [0u8; 12];
            socket.read_exact(&mut head).await.unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
        }
        drop(sockets);
        server.wait_for_metric("tidings_subscribers 0").await;
    }
    server.wait_for_metric("tidings_history_updates 1").await;
    // Memory goes back: within 64 MB of where it started (jemalloc purges within a second).
    let mut after = rss_kib(server.child.id());
    for _ in 0..50 {
        if after < baseline + 64 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rss_kib(server.child.id());
    }
    assert!(
        after < baseline + 64 * 1024,
        "RSS {after} KiB after, {baseline} KiB before"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn many_distinct_templates_are_limited_and_a_publish_tests_only_those_that_could_match() {
    // 30 connections × 1000 distinct templates used to make a publish walk all 30,000 under the
    // registry lock. By default one subscription may bring 10 templates.
    let server = TestServer::start(|c| {
        c.max_selectors = 1000;
        c.max_query_bytes = 100_000;
    })
    .await;
    let many: Vec<String> = (0..1000).map(|i| format!("/t/{i}/{{x}}")).collect();
    let query: Vec<(&str, &str)> = many.iter().map(|t| ("topic", t.as_str())).collect();
    let refused = server.subscribe_request(&query).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("at most 10"));

    // With the limits raised: a publish tests the one template whose prefix starts its topic.
    let server = TestServer::start(|c| {
        c.max_selectors = 1000;
        c.max_query_bytes = 100_000;
        c.max_templates_per_subscription = 1000;
        c.max_templates = 30_000;
    })
    .await;
    let mut streams = Vec::new();
    for c in 0..30 {
        let templates: Vec<String> = (0..1000).map(|i| format!("/t/{c}/{i}/{{x}}")).collect();
        let query: Vec<(&str, &str)> = templates.iter().map(|t| ("topic", t.as_str())).collect();
        streams.push(server.subscribe(&query).await);
    }
    let stats = server.state.hub.stats();
    assert_eq!(stats.distinct_selectors, 30_000);
    server
        .publish(&[("topic", "/t/7/123/x"), ("id", "hit")])
        .await;
    let after = server.state.hub.stats();
    assert_eq!(after.template_tests - stats.template_tests, 1);
    assert_eq!(streams[7].expect_next().await.id, "hit");
    drop(streams);
    for _ in 0..100 {
        if server.state.hub.stats().templates == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = server.state.hub.stats();
    assert_eq!(
        (left.templates, left.distinct_selectors),
        (0, 0),
        "all freed"
    );

    // And the hub-wide cap: a new distinct template past it is refused; a shared one is not.
    let capped = TestServer::start(|c| c.max_templates = 2).await;
    let _held = capped
        .subscribe(&[("topic", "/a/{x}"), ("topic", "/b/{x}")])
        .await;
    let full = capped
        .subscribe_request(&[("topic", "/c/{x}")])
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(full.headers().contains_key(header::RETRY_AFTER));
    let shared = capped
        .subscribe_request(&[("topic", "/a/{x}")])
        .send()
        .await
        .unwrap();
    assert_eq!(shared.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unauthenticated_query_of_templates_compiles_nothing() {
    let server = TestServer::start(|c| {
        c.no_anonymous = true;
        c.max_query_bytes = 100_000;
    })
    .await;
    // About 63 KB of templates.
    let templates: Vec<String> = (0..1500).map(|i| format!("/q/{i}/{{x}}{{?y}}")).collect();
    let query: Vec<(&str, &str)> = templates.iter().map(|t| ("topic", t.as_str())).collect();
    let before = server.state.hub.stats().templates_compiled;
    let refused = server.subscribe_request(&query).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.state.hub.stats().templates_compiled, before);

    // By default a query that long is refused for its length alone.
    let server = TestServer::start_default().await;
    let long = server.subscribe_request(&query).send().await.unwrap();
    assert_eq!(long.status(), StatusCode::URI_TOO_LONG);
    assert!(long.text().await.unwrap().contains("8192 bytes"));
    assert_eq!(server.state.hub.stats().templates_compiled, 0);
}

#[tokio::test]
async fn a_replay_that_pruning_overtakes_announces_the_gap_instead_of_skipping() {
    // A resume from an old id while a storm of publishes prunes used to skip what was pruned
    // under the replay, silently.
    let server = TestServer::start(|c| {
        c.history_max_events = 1200;
        c.subscriber_buffer = 100_000;
    })
    .await;
    // Large updates, so that the replay's first chunk (512 updates, 8 MB) cannot all sit in
    // socket buffers: the replay waits for this reader while the storm prunes.
    let data = "x".repeat(16 * 1024);
    let token = publisher_token(&["*"]);
    let publish_range = |range: std::ops::Range<usize>| {
        join_all(range.map(|i| {
            let form = [
                ("topic", "/storm".to_owned()),
                ("id", format!("s{i}")),
                ("data", data.clone()),
            ];
            let request = server
                .client()
                .post(server.url(HUB))
                .bearer_auth(&token)
                .form(&form);
            async move { assert_eq!(request.send().await.unwrap().status(), StatusCode::OK) }
        }))
    };
    // In order (each batch acknowledged before the next), concurrently within a batch.
    for start in (0..1200).step_by(100) {
        publish_range(start..start + 1).await;
        publish_range(start + 1..start + 100).await;
    }
    let ids = retained(&server, "/storm").await;
    let mut events = server
        .subscribe(&[("topic", "/storm"), ("lastEventID", &ids[0])])
        .await;
    assert_eq!(events.expect_next().await.id, ids[1]);
    for start in (1200..2400).step_by(100) {
        publish_range(start..start + 100).await;
    }
    let mut next = 2;
    loop {
        let event = events.expect_next().await;
        if event.event == "tidings-history-gap" {
            break;
        }
        assert_eq!(event.id, ids[next], "nothing skipped silently");
        next += 1;
    }
    assert!(next < ids.len(), "the gap came before the replay's end");
    assert_eq!(server.state.hub.stats().history_gaps, 1);
}

#[tokio::test]
async fn volatile_updates_do_not_count_against_the_others() {
    // Retention used to count positions: volatile updates pruned from between the others left
    // holes, and the others went long before --history-max-events of them existed.
    let server = TestServer::start(|c| {
        c.history_max_events = 30;
        c.volatile_max_age = Duration::from_millis(200);
    })
    .await;
    let first = server.publish(&[("topic", "/chat/x"), ("id", "c0")]).await;
    for _round in 0..2 {
        for t in 0..20 {
            server
                .publish(&[("topic", &format!("/ticker/S{t}")), ("data", "1")])
                .await;
        }
        // The once-a-second prune drops them once they are 200 ms old.
        for _ in 0..50 {
            if server.state.hub.stats().history_updates == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(server.state.hub.stats().history_updates, 1);
    }
    let second = server.publish(&[("topic", "/chat/x"), ("id", "c1")]).await;
    // Two updates kept of thirty allowed: both stay, whatever positions they have.
    assert_eq!(retained(&server, "/chat/x").await, [first, second]);
}

#[tokio::test]
async fn subscribe_claims_grant_only_what_the_template_can_expand_to() {
    let server = TestServer::start_default().await;
    let token = subscriber_token(&["/u{/id}", "/p/{id:1}"]);
    let response = server
        .subscribe_request(&[("topic", "*")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut events = crate::helpers::SseReader::new(response);
    for topic in ["/u/alice/private/x", "/p/ab", "/u/alice", "/p/a"] {
        server
            .publish(&[("topic", topic), ("private", "on"), ("id", topic)])
            .await;
    }
    assert_eq!(events.expect_next().await.id, "/u/alice");
    assert_eq!(events.expect_next().await.id, "/p/a");
}

#[tokio::test]
async fn an_anonymous_subscriber_learns_no_private_id() {
    let server = TestServer::start_default().await;
    server
        .publish(&[("topic", "/open"), ("id", "public")])
        .await;
    server
        .publish(&[("topic", "/secret"), ("id", "private"), ("private", "on")])
        .await;
    let events = server.subscribe(&[("topic", "*")]).await;
    assert_eq!(events.headers()["last-event-id"], "public");
    let mut gap = server
        .subscribe(&[("topic", "*"), ("lastEventID", "unknown")])
        .await;
    assert_eq!(gap.headers()["last-event-id"], "public");
    let event = gap.expect_next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("tidings-history-gap", "public")
    );
    let allowed = server
        .subscribe_request(&[("topic", "*")])
        .bearer_auth(subscriber_token(&["/secret"]))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.headers()["last-event-id"], "private");
}

#[tokio::test]
async fn open_subscriptions_are_limited_per_address_and_in_all() {
    let server = TestServer::start(|c| {
        c.max_subscribers_per_address = 2;
        c.max_subscribers = 3;
    })
    .await;
    let _a = server.subscribe(&[("topic", "/t")]).await;
    let _b = server.subscribe(&[("topic", "/t")]).await;
    let third = server
        .subscribe_request(&[("topic", "/t")])
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.text().await.unwrap().contains("at most 2"));
    // Another address may, up to the total.
    let other = crate::helpers::client_from("127.0.0.2");
    let ok = other
        .get(server.subscribe_url(&[("topic", "/t")]))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let third_client = crate::helpers::client_from("127.0.0.3");
    let full = third_client
        .get(server.subscribe_url(&[("topic", "/t")]))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
    // Closing one frees its place.
    drop(ok);
    let mut freed = None;
    for _ in 0..50 {
        let response = third_client
            .get(server.subscribe_url(&[("topic", "/t")]))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            freed = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        freed.is_some(),
        "a closed subscription gives its place back"
    );

    // And the rate of new subscriptions per address.
    let server = TestServer::start(|c| {
        c.subscribe_rate = 1;
        c.subscribe_burst = 3;
    })
    .await;
    for _ in 0..3 {
        drop(server.subscribe(&[("topic", "/t")]).await);
    }
    let fast = server
        .subscribe_request(&[("topic", "/t")])
        .send()
        .await
        .unwrap();
    assert_eq!(fast.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(fast.headers().contains_key(header::RETRY_AFTER));
}

/// `--max-subscribers-per-token`: one token holds so many open subscriptions, whichever
/// addresses use it; other tokens and anonymous subscribers are not affected.
#[tokio::test]
async fn open_subscriptions_are_limited_per_token() {
    let server = TestServer::start(|c| c.max_subscribers_per_token = 2).await;
    let token = subscriber_token(&["*"]);
    let open = |from: &str, token: Option<&str>| {
        let request =
            crate::helpers::client_from(from).get(server.subscribe_url(&[("topic", "/t")]));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send()
    };
    let first = open("127.0.0.1", Some(&token)).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = open("127.0.0.2", Some(&token)).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let third = open("127.0.0.3", Some(&token)).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        third.text().await.unwrap(),
        "too many open subscriptions with this token (at most 2)\n"
    );
    let other_token = open("127.0.0.3", Some(&subscriber_token(&["/t"])))
        .await
        .unwrap();
    assert_eq!(other_token.status(), StatusCode::OK);
    let anonymous = open("127.0.0.3", None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::OK);
    // Closing one frees its place, once the server has seen it close.
    drop(first);
    let deadline = tokio::time::Instant::now() + crate::helpers::WAIT;
    while open("127.0.0.3", Some(&token)).await.unwrap().status() != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed subscription gives its place back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
