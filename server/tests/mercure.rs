//! The Mercure hub over real HTTP, with a real SQLite file in a temporary folder: one test per
//! rule of the protocol that Tidings implements.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, RequestBuilder, Response, StatusCode, header};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{PUBLISHER_KEY, SUBSCRIBER_KEY, SseEvent, SseReader, TestServer};
use support::{publisher_token as publisher, sign_with, subscriber_token as subscriber};

const HUB: &str = "/.well-known/mercure";
const WAIT: Duration = Duration::from_secs(10);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn server() -> TestServer {
    TestServer::start(|_| {}).await
}

fn post(server: &TestServer, token: Option<&str>, form: &[(&str, &str)]) -> RequestBuilder {
    let request = Client::new().post(server.url(HUB)).form(form);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Publishes with an allow-all token and returns the id.
async fn publish(server: &TestServer, form: &[(&str, &str)]) -> String {
    let response = post(server, Some(&publisher(&["*"])), form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
    response.text().await.unwrap()
}

fn subscribe_url(server: &TestServer, query: &[(&str, &str)]) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    server.url(&format!("{HUB}?{query}"))
}

async fn subscribe(server: &TestServer, query: &[(&str, &str)]) -> Response {
    let response = Client::new()
        .get(subscribe_url(server, query))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
}

async fn next(reader: &mut SseReader) -> SseEvent {
    reader.next_within(WAIT).await.expect("stream open")
}

async fn reason(response: Response) -> String {
    response.text().await.unwrap()
}

// ---- Subscribing ----

#[tokio::test]
async fn subscribing_without_a_topic_is_a_400_with_a_reason() {
    let server = server().await;
    let response = Client::new().get(server.url(HUB)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(reason(response).await.contains("missing topic"));
}

#[tokio::test]
async fn subscription_headers_are_sent_at_once() {
    let server = server().await;
    // No event is published: the response head must still arrive (flushed at once).
    let response = tokio::time::timeout(
        WAIT,
        Client::new()
            .get(subscribe_url(&server, &[("topic", "/t")]))
            .send(),
    )
    .await
    .expect("headers before any event")
    .unwrap();
    let h = response.headers();
    assert_eq!(h[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(
        h[header::CACHE_CONTROL],
        "private, no-cache, no-store, must-revalidate, max-age=0"
    );
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["last-event-id"], "earliest");
    // Registered before the headers went out: a publish right now reaches it.
    publish(&server, &[("topic", "/t"), ("data", "now")]).await;
    assert_eq!(next(&mut SseReader::new(response)).await.data, "now");
}

#[tokio::test]
async fn events_carry_id_type_retry_and_every_line_of_data() {
    let server = server().await;
    let mut reader = SseReader::new(subscribe(&server, &[("topic", "/t")]).await);
    let data = "first\nsecond\r\nthird\rfourth\n\n  indented";
    let id = publish(
        &server,
        &[
            ("topic", "/t"),
            ("data", data),
            ("type", "kind"),
            ("retry", "2500"),
        ],
    )
    .await;
    let event = next(&mut reader).await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert!(id.starts_with("urn:uuid:"), "generated ids are URNs: {id}");
    assert_eq!(event.event.as_deref(), Some("kind"));
    assert_eq!(event.retry.as_deref(), Some("2500"));
    assert_eq!(event.data, "first\nsecond\nthird\nfourth\n\n  indented");
}

#[tokio::test]
async fn alternate_topics_reach_their_subscribers() {
    let server = server().await;
    let mut alt = SseReader::new(subscribe(&server, &[("topic", "https://example.com/alt")]).await);
    publish(
        &server,
        &[
            ("topic", "https://example.com/canonical"),
            ("topic", "https://example.com/alt"),
            ("data", "x"),
            ("id", "u1"),
        ],
    )
    .await;
    assert_eq!(next(&mut alt).await.id.as_deref(), Some("u1"));
}

#[tokio::test]
async fn selectors_match_exactly_by_template_or_all() {
    let server = server().await;
    let mut template =
        SseReader::new(subscribe(&server, &[("topic", "https://example.com/books/{id}")]).await);
    let mut all = SseReader::new(subscribe(&server, &[("topic", "*")]).await);
    let mut exact = SseReader::new(
        subscribe(
            &server,
            &[("topic", "https://example.com/books/2"), ("topic", "/x")],
        )
        .await,
    );
    publish(
        &server,
        &[
            ("topic", "https://example.com/books/1/reviews"),
            ("id", "deep"),
        ],
    )
    .await;
    publish(
        &server,
        &[("topic", "https://example.com/books/1"), ("id", "b1")],
    )
    .await;
    publish(
        &server,
        &[("topic", "https://example.com/books/2"), ("id", "b2")],
    )
    .await;
    assert_eq!(next(&mut template).await.id.as_deref(), Some("b1"));
    assert_eq!(next(&mut template).await.id.as_deref(), Some("b2"));
    for id in ["deep", "b1", "b2"] {
        assert_eq!(next(&mut all).await.id.as_deref(), Some(id));
    }
    assert_eq!(next(&mut exact).await.id.as_deref(), Some("b2"));
}

#[tokio::test]
async fn resumes_after_last_event_id_header_or_query_and_header_wins() {
    let server = server().await;
    for i in 1..=4 {
        publish(&server, &[("topic", "/t"), ("id", &format!("e{i}"))]).await;
    }
    let response = Client::new()
        .get(subscribe_url(
            &server,
            &[("topic", "/t"), ("lastEventID", "e1")],
        ))
        .header("Last-Event-ID", "e2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["last-event-id"], "e2");
    let mut reader = SseReader::new(response);
    assert_eq!(next(&mut reader).await.id.as_deref(), Some("e3"));
    assert_eq!(next(&mut reader).await.id.as_deref(), Some("e4"));

    let mut reader =
        SseReader::new(subscribe(&server, &[("topic", "/t"), ("lastEventID", "e3")]).await);
    assert_eq!(next(&mut reader).await.id.as_deref(), Some("e4"));

    let response = subscribe(&server, &[("topic", "/t"), ("lastEventID", "earliest")]).await;
    assert_eq!(response.headers()["last-event-id"], "earliest");
    let mut reader = SseReader::new(response);
    assert_eq!(next(&mut reader).await.id.as_deref(), Some("e1"));

    // Without a Last-Event-ID, the header names the last update in the hub before this stream
    // (subscription events included): resuming from it later misses nothing.
    let response = subscribe(&server, &[("topic", "/t")]).await;
    let head = response.headers()["last-event-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(head, "earliest");
    drop(response);
    publish(&server, &[("topic", "/t"), ("id", "e5")]).await;
    let mut reader =
        SseReader::new(subscribe(&server, &[("topic", "/t"), ("lastEventID", &head)]).await);
    assert_eq!(next(&mut reader).await.id.as_deref(), Some("e5"));
}

#[tokio::test]
async fn an_unknown_last_event_id_gets_the_gap_event() {
    let server = server().await;
    publish(&server, &[("topic", "/t"), ("id", "known")]).await;
    let response = Client::new()
        .get(subscribe_url(&server, &[("topic", "/t")]))
        .header("Last-Event-ID", "pruned-or-never-seen")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["last-event-id"], "known");
    let mut reader = SseReader::new(response);
    let gap = next(&mut reader).await;
    assert_eq!(gap.event.as_deref(), Some("tidings-history-gap"));
    publish(&server, &[("topic", "/t"), ("id", "after")]).await;
    assert_eq!(next(&mut reader).await.id.as_deref(), Some("after"));
}

#[tokio::test]
async fn duplicate_ids_resume_from_the_earliest() {
    let server = server().await;
    for (id, data) in [("dup", "1"), ("x", "2"), ("dup", "3"), ("y", "4")] {
        publish(&server, &[("topic", "/t"), ("id", id), ("data", data)]).await;
    }
    let mut reader =
        SseReader::new(subscribe(&server, &[("topic", "/t"), ("lastEventID", "dup")]).await);
    for data in ["2", "3", "4"] {
        assert_eq!(next(&mut reader).await.data, data);
    }
}

#[tokio::test]
async fn idle_streams_get_heartbeat_comments() {
    let server = TestServer::start(|c| c.heartbeat_secs = 1).await;
    let response = subscribe(&server, &[("topic", "/quiet")]).await;
    let mut body = response.bytes_stream();
    use futures_util::StreamExt;
    let chunk = tokio::time::timeout(WAIT, body.next())
        .await
        .expect("a heartbeat")
        .unwrap()
        .unwrap();
    assert!(chunk.starts_with(b":"), "a comment line: {chunk:?}");
}

// ---- Publishing ----

#[tokio::test]
async fn publishing_answers_the_id_as_plain_text() {
    let server = server().await;
    let response = post(
        &server,
        Some(&publisher(&["*"])),
        &[("topic", "/t"), ("id", "chosen")],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(response.text().await.unwrap(), "chosen");
}

#[tokio::test]
async fn bad_publishes_get_4xx_with_a_one_line_reason() {
    let server = TestServer::start(|c| c.max_publish_bytes = 16 * 1024).await;
    let token = publisher(&["*"]);
    let many: Vec<(&str, &str)> = std::iter::repeat_n(("topic", "/t"), 1001).collect();
    let big = "x".repeat(20_000);
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form, StatusCode, &str)> = vec![
        (
            vec![("data", "no topic")],
            StatusCode::BAD_REQUEST,
            "missing topic",
        ),
        (
            vec![("topic", "/t"), ("id", "a\nb")],
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            vec![("topic", "/t"), ("id", "a\rb")],
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            vec![("topic", "/t"), ("id", "a\0b")],
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            vec![("topic", "/t"), ("id", "#frag")],
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            vec![("topic", "/t"), ("type", "a\nb")],
            StatusCode::BAD_REQUEST,
            "type",
        ),
        (
            vec![("topic", "/t"), ("retry", "10s")],
            StatusCode::BAD_REQUEST,
            "retry",
        ),
        (
            vec![("topic", "/t"), ("retry", "-1")],
            StatusCode::BAD_REQUEST,
            "retry",
        ),
        (
            vec![("topic", "/.well-known/mercure/subscriptions/x/y")],
            StatusCode::BAD_REQUEST,
            "reserved",
        ),
        (
            vec![("topic", "https://evil.example/.well-known/mercure")],
            StatusCode::BAD_REQUEST,
            "reserved",
        ),
        (many, StatusCode::BAD_REQUEST, "too many topics"),
        (
            vec![("topic", "/t"), ("data", &big)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
    ];
    for (form, status, words) in cases {
        let response = post(&server, Some(&token), &form).send().await.unwrap();
        assert_eq!(
            response.status(),
            status,
            "for {:?}",
            &form[..form.len().min(2)]
        );
        let text = reason(response).await;
        assert!(text.contains(words), "{text:?} should say {words:?}");
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    }
    let not_form = Client::new()
        .post(server.url(HUB))
        .bearer_auth(&token)
        .body("topic=/t")
        .send()
        .await
        .unwrap();
    assert_eq!(not_form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

// ---- Authorization ----

#[tokio::test]
async fn publish_auth_matrix() {
    let server = server().await;
    let form = [("topic", "https://example.com/books/1"), ("data", "x")];
    let expired = sign_with(
        PUBLISHER_KEY,
        Algorithm::HS256,
        json!({ "mercure": { "publish": ["*"] }, "exp": now() - 3600 }),
    );
    let wrong_alg = sign_with(
        PUBLISHER_KEY,
        Algorithm::HS512,
        json!({ "mercure": { "publish": ["*"] } }),
    );
    let wrong_key = sign_with(
        "not-the-key",
        Algorithm::HS256,
        json!({ "mercure": { "publish": ["*"] } }),
    );
    // An unsigned token: header {"alg":"none"}, the claims, and an empty signature.
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none_alg = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"mercure": {"publish": ["*"]}}))
    );
    let subscriber_only = subscriber(&["*"]);
    let cases = [
        (None, StatusCode::UNAUTHORIZED),
        (Some("garbage".to_owned()), StatusCode::UNAUTHORIZED),
        (Some(expired), StatusCode::UNAUTHORIZED),
        (Some(wrong_alg), StatusCode::UNAUTHORIZED),
        (Some(wrong_key), StatusCode::UNAUTHORIZED),
        (Some(none_alg), StatusCode::UNAUTHORIZED),
        (Some(subscriber_only), StatusCode::UNAUTHORIZED),
        (
            Some(publisher(&["https://example.com/authors/{id}"])),
            StatusCode::FORBIDDEN,
        ),
        (
            Some(sign_with(
                PUBLISHER_KEY,
                Algorithm::HS256,
                json!({ "mercure": {} }),
            )),
            StatusCode::FORBIDDEN,
        ),
        (
            Some(publisher(&["https://example.com/books/{id}"])),
            StatusCode::OK,
        ),
        (Some(publisher(&["*"])), StatusCode::OK),
    ];
    for (token, status) in cases {
        let response = post(&server, token.as_deref(), &form).send().await.unwrap();
        assert_eq!(response.status(), status, "token {token:?}");
    }
    // Every topic of the update must be allowed, alternates included.
    let partial = publisher(&["https://example.com/books/{id}"]);
    let response = post(
        &server,
        Some(&partial),
        &[
            ("topic", "https://example.com/books/1"),
            ("topic", "/other"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The token may also come as the `authorization` query parameter.
    let with_query = Client::new()
        .post(format!(
            "{}?authorization={}",
            server.url(HUB),
            publisher(&["*"])
        ))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(with_query.status(), StatusCode::OK);
    // A malformed Authorization header is refused, not ignored.
    let response = Client::new()
        .post(server.url(HUB))
        .header(header::AUTHORIZATION, "Basic abc")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn private_updates_reach_only_subscribers_allowed_to_see_them() {
    let server = server().await;
    let topic = "https://example.com/users/7/inbox";
    let mut anonymous = SseReader::new(subscribe(&server, &[("topic", topic)]).await);
    let allowed_url = subscribe_url(
        &server,
        &[
            ("topic", topic),
            (
                "authorization",
                &subscriber(&["https://example.com/users/{id}/inbox"]),
            ),
        ],
    );
    let mut allowed = SseReader::new(Client::new().get(allowed_url).send().await.unwrap());
    let other = Client::new()
        .get(subscribe_url(&server, &[("topic", topic)]))
        .bearer_auth(subscriber(&["https://example.com/users/8/inbox"]))
        .send()
        .await
        .unwrap();
    let mut other = SseReader::new(other);

    publish(
        &server,
        &[
            ("topic", topic),
            ("data", "secret"),
            ("private", "on"),
            ("id", "p1"),
        ],
    )
    .await;
    publish(
        &server,
        &[("topic", topic), ("data", "public"), ("id", "q1")],
    )
    .await;
    assert_eq!(next(&mut allowed).await.id.as_deref(), Some("p1"));
    assert_eq!(next(&mut allowed).await.id.as_deref(), Some("q1"));
    assert_eq!(
        next(&mut anonymous).await.id.as_deref(),
        Some("q1"),
        "anonymous: public only"
    );
    assert_eq!(
        next(&mut other).await.id.as_deref(),
        Some("q1"),
        "claim for another topic: public only"
    );
}

#[tokio::test]
async fn subscriber_tokens_come_from_header_query_or_cookie_and_bad_ones_are_refused() {
    let server = TestServer::start(|c| c.no_anonymous = true).await;
    let url = subscribe_url(&server, &[("topic", "/t")]);
    let anonymous = Client::new().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let invalid = Client::new()
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    let token = subscriber(&["/t"]);
    assert_eq!(
        Client::new()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let with_query = subscribe_url(&server, &[("topic", "/t"), ("authorization", &token)]);
    assert_eq!(
        Client::new().get(with_query).send().await.unwrap().status(),
        StatusCode::OK
    );
    let cookie = Client::new()
        .get(&url)
        .header(
            header::COOKIE,
            format!("other=1; mercureAuthorization={token}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_stream_closes_when_its_token_expires() {
    let server = server().await;
    let token = sign_with(
        SUBSCRIBER_KEY,
        Algorithm::HS256,
        json!({ "mercure": { "subscribe": ["*"] }, "exp": now() + 2 }),
    );
    let response = Client::new()
        .get(subscribe_url(&server, &[("topic", "/t")]))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response);
    assert_eq!(
        reader.next_within(WAIT).await,
        None,
        "the stream ends at exp"
    );
}

#[tokio::test]
async fn cookie_authenticated_publishes_must_come_from_an_allowed_origin() {
    let server =
        TestServer::start(|c| c.cors_origins = vec!["https://app.example".parse().unwrap()]).await;
    let cookie = format!("mercureAuthorization={}", publisher(&["*"]));
    let send = |origin: Option<&str>| {
        let mut request = Client::new()
            .post(server.url(HUB))
            .header(header::COOKIE, &cookie)
            .form(&[("topic", "/t")]);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(Some("https://evil.example")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(Some("https://app.example")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(Some(&server.base)).await.unwrap().status(),
        StatusCode::OK,
        "same origin"
    );
}

#[tokio::test]
async fn cors_allows_configured_origins_with_credentials() {
    let server =
        TestServer::start(|c| c.cors_origins = vec!["https://app.example".parse().unwrap()]).await;
    let preflight = Client::new()
        .request(reqwest::Method::OPTIONS, server.url(HUB))
        .header(header::ORIGIN, "https://app.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, last-event-id, cache-control",
        )
        .send()
        .await
        .unwrap();
    let h = preflight.headers();
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["authorization", "last-event-id", "cache-control"] {
        assert!(allowed.contains(name), "{name} allowed: {allowed}");
    }
    let other = Client::new()
        .get(subscribe_url(&server, &[("topic", "/t")]))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        other
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

#[tokio::test]
async fn asymmetric_keys_verify_es256_and_refuse_hs256() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    let run = |args: &[&str]| {
        assert!(
            std::process::Command::new("openssl")
                .args(args)
                .status()
                .unwrap()
                .success()
        )
    };
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        private.to_str().unwrap(),
        "-out",
        dir.path().join("pk8.pem").to_str().unwrap(),
    ]);
    run(&[
        "ec",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let public_path = public.to_str().unwrap().to_owned();
    let server = TestServer::start(move |c| {
        c.jwt_alg = tidings_server::config::JwtAlg::Es256;
        c.publisher_jwt_key = Some(public_path.clone());
        c.subscriber_jwt_key = None;
    })
    .await;
    let pem = std::fs::read(dir.path().join("pk8.pem")).unwrap();
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &json!({ "mercure": { "publish": ["*"] } }),
        &EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap();
    assert_eq!(
        post(&server, Some(&es256), &[("topic", "/t")])
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // An HS256 token "signed" with the public key text must not pass (the classic confusion).
    let public_text = std::fs::read_to_string(&public).unwrap();
    let confused = sign_with(
        &public_text,
        Algorithm::HS256,
        json!({ "mercure": { "publish": ["*"] } }),
    );
    assert_eq!(
        post(&server, Some(&confused), &[("topic", "/t")])
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

// ---- Active subscriptions ----

#[tokio::test]
async fn subscription_events_and_the_subscriptions_api() {
    let server = server().await;
    let watcher_token = subscriber(&["/.well-known/mercure/subscriptions{/topic}{/subscriber}"]);
    let watcher = Client::new()
        .get(subscribe_url(
            &server,
            &[(
                "topic",
                "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
            )],
        ))
        .bearer_auth(&watcher_token)
        .send()
        .await
        .unwrap();
    let mut watcher = SseReader::new(watcher);

    let payload_token = sign_with(
        SUBSCRIBER_KEY,
        Algorithm::HS256,
        json!({ "mercure": { "subscribe": ["/room"], "payload": { "name": "ann" } } }),
    );
    let member = Client::new()
        .get(subscribe_url(&server, &[("topic", "/room")]))
        .bearer_auth(payload_token)
        .send()
        .await
        .unwrap();
    // The watcher's claim covers its own subscription too: that event comes first.
    let own: Value = serde_json::from_str(&next(&mut watcher).await.data).unwrap();
    assert_eq!(
        own["topic"],
        "/.well-known/mercure/subscriptions/{topic}/{subscriber}"
    );
    let joined: Value = serde_json::from_str(&next(&mut watcher).await.data).unwrap();
    assert_eq!(joined["type"], "Subscription");
    assert_eq!(joined["topic"], "/room");
    assert_eq!(joined["active"], true);
    assert_eq!(joined["payload"]["name"], "ann");
    let subscriber_id = joined["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber_id.starts_with("urn:uuid:"));
    assert_eq!(
        joined["id"],
        format!(
            "/.well-known/mercure/subscriptions/%2Froom/{}",
            utf8(&subscriber_id)
        )
    );

    // The API, with a token for it.
    let api = |path: String| {
        Client::new()
            .get(server.url(&path))
            .bearer_auth(&watcher_token)
            .send()
    };
    let list = api("/.well-known/mercure/subscriptions".into())
        .await
        .unwrap();
    assert_eq!(list.headers()[header::CONTENT_TYPE], "application/ld+json");
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["type"], "Subscriptions");
    assert!(list["lastEventID"].is_string());
    let topics: Vec<&str> = list["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    assert!(topics.contains(&"/room"));
    let room: Value = api("/.well-known/mercure/subscriptions/%2Froom".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(room["subscriptions"].as_array().unwrap().len(), 1);
    let one = api(format!(
        "/.well-known/mercure/subscriptions/%2Froom/{}",
        utf8(&subscriber_id)
    ))
    .await
    .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["subscriber"], subscriber_id.as_str());
    assert!(one["lastEventID"].is_string());
    let missing = api("/.well-known/mercure/subscriptions/%2Froom/urn%3Auuid%3Anobody".into())
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let anonymous = Client::new()
        .get(server.url("/.well-known/mercure/subscriptions"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let narrow = Client::new()
        .get(server.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(subscriber(&["/room"]))
        .send()
        .await
        .unwrap();
    assert_eq!(narrow.status(), StatusCode::FORBIDDEN);

    // Leaving publishes the inactive event.
    drop(member);
    let left: Value = serde_json::from_str(&next(&mut watcher).await.data).unwrap();
    assert_eq!(left["active"], false);
    assert_eq!(left["subscriber"], subscriber_id.as_str());
}

fn utf8(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---- Operations ----

#[tokio::test]
async fn metrics_healthz_and_the_discovery_link() {
    let server = server().await;
    let _subscriber = subscribe(&server, &[("topic", "/t")]).await;
    publish(&server, &[("topic", "/t")]).await;
    let metrics = Client::new()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "tidings_subscribers 1",
        // The subscription event is sent live, never stored: only the update counts.
        "tidings_updates_published_total 1",
        "tidings_history_updates 1",
        "tidings_publish_seconds_count 1",
        "tidings_subscribers_evicted_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} in:\n{metrics}"
        );
    }
    assert!(metrics.contains("tidings_events_delivered_total"));
    let health = Client::new()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let page = Client::new().get(server.url("/")).send().await.unwrap();
    assert_eq!(
        page.headers()[header::LINK],
        "</.well-known/mercure>; rel=\"mercure\""
    );
}
