//! Sending to a chat room, through `POST /api/chat/{room}` and the chat form's server function
//! (`POST /api/send_chat`): validation, the rate limit, and the rooms' presence counts.

use crate::helpers::{
    SUBSCRIBER_KEY, SseReader, TestServer, WAIT, client_from, client_without_redirects,
    next_presence, now, subscriber_token,
};
use reqwest::{StatusCode, header};
use serde_json::Value;
use std::time::Duration;
use tidings_app::model::PRESENCE_TEMPLATE;

#[tokio::test]
async fn chat_posts_are_trimmed_and_published_on_the_room_topic() {
    let server = TestServer::start_default().await;
    let mut room = server.subscribe(&[("topic", "/chat/general")]).await;
    let response = server
        .post_chat("general", "  ann ", "  hello <b>world</b>  ")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.text().await.unwrap();
    let event = room.next_within(WAIT).await.unwrap();
    assert_eq!(event.id, id);
    let message: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(message["name"], "ann");
    assert_eq!(message["text"], "hello <b>world</b>");
    assert!(message["at_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bad_chat_posts_get_400_with_a_reason() {
    let server = TestServer::start_default().await;
    let long_name = "n".repeat(33);
    let long_text = "t".repeat(2001);
    let cases = [
        ("Bad-Room", "ann", "hi", "room"),
        ("general", "", "hi", "name"),
        ("general", "   ", "hi", "name"),
        ("general", &long_name, "hi", "name"),
        ("general", "ann", "  \n ", "message"),
        ("general", "ann", &long_text, "message"),
    ];
    // Refused posts do not count against the rate limit: all these come from one address.
    for (room, name, text, words) in cases {
        let response = server.post_chat(room, name, text).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{room} {name:?}"
        );
        let reason = response.text().await.unwrap();
        assert!(reason.contains(words), "{reason:?} mentions {words}");
    }
    // Exactly at the limits is fine.
    let ok = server
        .post_chat("general", &"n".repeat(32), &"é".repeat(2000))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_burst_of_chat_posts_is_rate_limited_per_client_address() {
    let server = TestServer::start_default().await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(server.post_chat("general", "ann", &format!("m{i}")).await);
    }
    let ok = statuses
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    assert_eq!(ok, tidings_server::chat::BURST as usize);
    let limited = statuses
        .into_iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .unwrap();
    assert_retry_after_a_second_or_two(&limited);
    assert!(limited.text().await.unwrap().contains("too many"));
    assert_another_client_is_not_limited(server.chat_request(
        &client_from("127.0.0.2"),
        "general",
        "bob",
        "hi",
    ))
    .await;
}

/// A refusal for going too fast says when to try again: when the next message is allowed.
#[tokio::test]
async fn the_chat_allowance_is_set_by_flags() {
    let server = TestServer::start(|c| {
        c.chat_burst = 2;
        c.chat_refill = std::time::Duration::from_secs(3600);
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let answer = server.post_chat("general", "ann", &format!("m{i}")).await;
        statuses.push(answer.status());
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = answer.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((3000..=3600).contains(&retry_after), "{retry_after}");
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    for (args, says) in [
        (["--chat-refill", "0s"], "refill"),
        (["--chat-burst", "0"], "chat-burst"),
    ] {
        let log = crate::helpers::ChildServer::refused(&args, &[]).await;
        assert!(log.contains(says), "{log}");
    }
}

fn assert_retry_after_a_second_or_two(limited: &reqwest::Response) {
    let retry_after = limited.headers()[header::RETRY_AFTER].to_str().unwrap();
    assert!(["1", "2"].contains(&retry_after), "{retry_after}");
}

/// The same post from another address goes through.
async fn assert_another_client_is_not_limited(post: reqwest::RequestBuilder) {
    let other = post.send().await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another client is not limited"
    );
}

#[tokio::test]
async fn the_chat_form_checks_and_limits_as_the_json_route_does_sharing_the_allowance() {
    let server = TestServer::start_default().await;
    let mut room = server.subscribe(&[("topic", "/chat/general")]).await;
    let long = "t".repeat(2001);
    for (room, name, text) in [
        ("Bad-Room", "ann", "hi"),
        ("general", " ", "hi"),
        ("general", "ann", "  \n "),
        ("general", "ann", long.as_str()),
    ] {
        let form = server
            .chat_form_request(server.client(), room, name, text)
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::BAD_REQUEST, "{room} {name:?}");
        let refused: Value = form.json().await.unwrap();
        let json_route = server
            .post_chat(room, name, text)
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(refused["status"], 400);
        assert_eq!(refused["reason"], json_route.trim(), "the same words");
    }

    let sent = server
        .chat_form_request(server.client(), "general", "  ann ", " hello ")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    let cookie = sent.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("tidings-name=ann;"), "{cookie}");
    let event = room.next_within(WAIT).await.unwrap();
    let message: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        (&message["name"], &message["text"]),
        (&"ann".into(), &"hello".into())
    );

    // One allowance per address, whichever way its messages come.
    for i in 1..tidings_server::chat::BURST {
        let response = server.post_chat("general", "ann", &format!("m{i}")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let limited = server
        .chat_form_request(server.client(), "general", "ann", "one too many")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_retry_after_a_second_or_two(&limited);
    let refused: Value = limited.json().await.unwrap();
    assert_eq!(refused["reason"], "too many messages: wait a moment");
    assert_another_client_is_not_limited(server.chat_form_request(
        &client_from("127.0.0.2"),
        "general",
        "bob",
        "hi",
    ))
    .await;
}

#[tokio::test]
async fn a_chat_form_posted_without_javascript_is_sent_back_to_the_room() {
    let server = TestServer::start(|c| {
        c.trusted_proxies = proxies(&["127.0.0.1"]);
    })
    .await;
    let client = client_without_redirects();
    let page = server.url("/chat/general");
    let post = |text: &str, forwarded: &str| {
        client
            .post(server.url("/api/send_chat"))
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .header(header::REFERER, &page)
            .header("X-Forwarded-For", forwarded)
            .form(&[("room", "general"), ("name", "ann"), ("text", text)])
            .send()
    };
    let sent = post("hello", "198.51.100.1").await.unwrap();
    assert_eq!(sent.status(), StatusCode::FOUND);
    assert_eq!(sent.headers()[header::LOCATION], "/chat/general");
    let html = server.get("/chat/general").await.text().await.unwrap();
    assert!(html.contains(">hello<"), "the room shows it");

    // Refused: back to the room, the reason in the address, where the page finds it.
    let refused = post("  ", "198.51.100.1").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FOUND);
    let location = refused.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("/chat/general?"), "{location}");
    assert!(location.contains("__err="), "{location}");
    let html = server.get(location).await;
    let html = html.text().await.unwrap();
    assert!(
        html.contains("400: the message must be 1 to 2000 characters"),
        "the page shows the reason"
    );

    // The allowance is the forwarded client's, as for the JSON route.
    for i in 1..tidings_server::chat::BURST {
        assert_eq!(
            post(&format!("m{i}"), "198.51.100.1")
                .await
                .unwrap()
                .status(),
            StatusCode::FOUND
        );
    }
    let limited = post("one too many", "198.51.100.1").await.unwrap();
    let location = limited.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.contains("__err="), "{location}");
    let other = post("hi", "198.51.100.2").await.unwrap();
    assert_eq!(
        other.headers()[header::LOCATION],
        "/chat/general",
        "another client"
    );
}

#[tokio::test]
async fn the_chat_form_refuses_posts_from_other_sites() {
    let server = TestServer::start_default().await;
    let response = server
        .chat_form_request(server.client(), "general", "ann", "hi")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let same_site = server
        .chat_form_request(server.client(), "general", "ann", "hi")
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), StatusCode::OK);
}

/// `--trusted-proxy` values, parsed as the flag is.
fn proxies(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter()
        .map(|p| tidings_server::client_addr::parse_network(p).unwrap())
        .collect()
}

/// Posts `BURST` messages with `headers`, each allowed, then one more, and returns its status.
async fn status_after_burst(server: &TestServer, headers: &[(&str, &str)]) -> StatusCode {
    let post = |i: u32| {
        let mut request = server.chat_request(server.client(), "general", "ann", &format!("m{i}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for i in 0..tidings_server::chat::BURST {
        assert_eq!(
            post(i).await.unwrap().status(),
            StatusCode::OK,
            "{headers:?}"
        );
    }
    post(99).await.unwrap().status()
}

#[tokio::test]
async fn choosing_another_client_id_does_not_escape_the_limit() {
    let server = TestServer::start_default().await;
    status_after_burst(&server, &[]).await;
    for id in ["a", "b", "c"] {
        let response = server
            .chat_request(server.client(), "general", "ann", "again")
            .header("X-Tidings-Client", id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{id}");
    }
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_from_untrusted_peers() {
    let untrusting = TestServer::start_default().await;
    // Trusting another address does not make this peer a proxy.
    let other_proxy = TestServer::start(|c| {
        c.trusted_proxies = proxies(&["127.0.0.2"]);
    })
    .await;
    for server in [&untrusting, &other_proxy] {
        status_after_burst(server, &[]).await;
        for forwarded in ["198.51.100.1", "198.51.100.2", "203.0.113.5, 198.51.100.3"] {
            let response = server
                .chat_request(server.client(), "general", "ann", "again")
                .header("X-Forwarded-For", forwarded)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "{forwarded}"
            );
        }
    }
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_from_a_trusted_proxy() {
    let server = TestServer::start(|c| {
        c.trusted_proxies = proxies(&["127.0.0.1", "10.0.0.0/8"]);
    })
    .await;
    let xff = |value| [("X-Forwarded-For", value)];
    assert_eq!(
        status_after_burst(&server, &xff("198.51.100.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The rightmost address that is not a trusted proxy is the client; what is left of it, the
    // client may have written.
    for forwarded in [
        "203.0.113.77, 198.51.100.1",
        "198.51.100.1, 10.1.2.3",
        "192.0.2.1, 198.51.100.1, 10.1.2.3",
    ] {
        let response = server
            .chat_request(server.client(), "general", "ann", "again")
            .header("X-Forwarded-For", forwarded)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{forwarded}"
        );
    }
    // Another address behind the proxy, and the proxy itself, have their own allowances.
    assert_eq!(
        status_after_burst(&server, &xff("198.51.100.2")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status_after_burst(&server, &[]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A watcher of `/chat/lobby`'s presence (with a token for it) and one member, once the
/// watcher has heard the count of 1.
async fn one_in_the_lobby(server: &TestServer) -> (SseReader, SseReader) {
    let token = subscriber_token(&[PRESENCE_TEMPLATE]);
    let mut presence = server
        .subscribe(&[("topic", "/chat/lobby/presence"), ("authorization", &token)])
        .await;
    let member = server.subscribe(&[("topic", "/chat/lobby")]).await;
    assert_eq!(next_presence(&mut presence).await, 1);
    (presence, member)
}

#[tokio::test]
async fn presence_counts_follow_a_rooms_subscribers() {
    let server = TestServer::start_default().await;
    let (mut presence, member) = one_in_the_lobby(&server).await;
    drop(member);
    assert_eq!(next_presence(&mut presence).await, 0);
}

#[tokio::test]
async fn a_page_moving_to_a_fresh_token_is_not_counted_twice() {
    let server = TestServer::start_default().await;
    let (mut presence, mut member) = one_in_the_lobby(&server).await;
    // Twelve moves, each with both connections open for 120 ms (a page's takes a few): long
    // enough that checks every 250 ms see some of the overlaps (each, about every other time).
    // They are 600 ms apart, as a page's are minutes apart: no two checks in a row see two.
    for _ in 0..12 {
        let next = server.subscribe(&[("topic", "/chat/lobby")]).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        member = next;
        tokio::time::sleep(Duration::from_millis(480)).await;
    }
    drop(member);
    // The one change announced: the page leaving.
    assert_eq!(next_presence(&mut presence).await, 0);
}

/// `POST /api/page_token`: the pages' server function.
async fn ask_page_token(server: &TestServer) -> reqwest::Response {
    server
        .client()
        .post(server.url("/api/page_token"))
        .send()
        .await
        .unwrap()
}

/// A page token, as JSON.
async fn page_token(server: &TestServer) -> Value {
    let response = ask_page_token(server).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn presence_counts_are_private_and_a_page_token_receives_them() {
    let server = TestServer::start_default().await;
    let issued = page_token(&server).await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let mut anonymous = server.subscribe(&[("topic", "/chat/lobby/presence")]).await;
    let mut holder = server
        .subscribe(&[("topic", "/chat/lobby/presence"), ("authorization", &token)])
        .await;
    let member = server.subscribe(&[("topic", "/chat/lobby")]).await;
    assert_eq!(next_presence(&mut holder).await, 1);
    // The anonymous one got nothing (a heartbeat comment is not an event).
    assert!(
        tokio::time::timeout(Duration::from_millis(600), anonymous.next())
            .await
            .is_err()
    );
    drop(member);
}

#[tokio::test]
async fn a_page_token_may_receive_presence_only_and_ends_with_the_configured_lifetime() {
    let server = TestServer::start(|config| {
        config.page_token_lifetime = Duration::from_secs(120);
    })
    .await;
    let issued = page_token(&server).await;
    let expires_in_ms = issued["expires_in_ms"].as_u64().unwrap();
    assert!(
        (119_000..=120_000).contains(&expires_in_ms),
        "{expires_in_ms}"
    );
    let token = issued["token"].as_str().unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SUBSCRIBER_KEY.as_bytes()),
        &validation,
    )
    .expect("signed with the subscriber key")
    .claims;
    assert_eq!(
        claims["mercure"]["subscribe"],
        serde_json::json!([PRESENCE_TEMPLATE])
    );
    assert!(claims["mercure"].get("publish").is_none());
    let exp = claims["exp"].as_u64().unwrap();
    assert!((now() + 119..=now() + 121).contains(&exp), "{exp}");
    // Each one is distinct (the per-token limit counts one browser's subscriptions).
    assert_ne!(page_token(&server).await["token"], issued["token"]);
    // It cannot publish, nor read other private updates.
    let refused = server
        .post_form(Some(token), &[("topic", "/chat/lobby"), ("data", "x")])
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let mut reader = server
        .subscribe(&[("topic", "/secret"), ("authorization", token)])
        .await;
    server
        .publish(&[("topic", "/secret"), ("data", "hidden"), ("private", "on")])
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(600), reader.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn without_a_secret_to_sign_with_there_are_no_page_tokens_and_presence_is_public() {
    let server = TestServer::start(|config| {
        config.jwt_alg = tidings_server::config::JwtAlg::EdDsa;
        config.publisher_jwt_key = Some(crate::access_tokens::ED_PUBLIC.into());
        config.subscriber_jwt_key = None;
    })
    .await;
    let response = ask_page_token(&server).await;
    assert!(response.status().is_server_error(), "{}", response.status());
    let mut presence = server.subscribe(&[("topic", "/chat/lobby/presence")]).await;
    let member = server.subscribe(&[("topic", "/chat/lobby")]).await;
    assert_eq!(next_presence(&mut presence).await, 1);
    drop(member);
}
