//! `POST /.well-known/mercure`: the answer, and every way a publish can be refused for its form.

use crate::helpers::{HUB, TestServer, publisher_token};
use reqwest::{StatusCode, header};

#[tokio::test]
async fn publishing_answers_the_id_as_plain_text() {
    let server = TestServer::start_default().await;
    let response = server
        .post_form(
            Some(&publisher_token(&["*"])),
            &[("topic", "/t"), ("id", "chosen")],
        )
        .await;
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
    let token = publisher_token(&["*"]);
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
        let response = server.post_form(Some(&token), &form).await;
        assert_eq!(
            response.status(),
            status,
            "for {:?}",
            &form[..form.len().min(2)]
        );
        let text = response.text().await.unwrap();
        assert!(text.contains(words), "{text:?} should say {words:?}");
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    }
    let not_form = server
        .client()
        .post(server.url(HUB))
        .bearer_auth(&token)
        .body("topic=/t")
        .send()
        .await
        .unwrap();
    assert_eq!(not_form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Mercure 1.0's publish rules, applied to every publish (a publish says no protocol version):
/// the reserved namespace however a topic writes it, the names kept for the hub, and control or
/// format characters. Each is a 400 with its reason, and nothing is delivered.
#[tokio::test]
async fn reserved_names_and_invisible_characters_are_refused_with_their_reason() {
    let server = TestServer::start_default().await;
    let token = publisher_token(&["*"]);
    let mut everything = server.subscribe(&[("topic", "*")]).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("topic", "/.well-known/%6Dercure/subscriptions/x/y")],
            "reserved for the hub",
        ),
        (
            &[("topic", "/x/../.well-known/mercure/subscriptions")],
            "reserved for the hub",
        ),
        (
            &[("topic", "/.well-known/mercure/./x")],
            "reserved for the hub",
        ),
        (
            &[("topic", "https://hub.example/%2Ewell-known/mercure")],
            "reserved for the hub",
        ),
        (
            &[("topic", "\\.well-known\\mercure")],
            "reserved for the hub",
        ),
        (
            &[("topic", "/ok"), ("topic", "mercure/x")],
            "reserved for the hub",
        ),
        (&[("topic", "*")], "topic \"*\" is reserved"),
        (
            &[("topic", "/ok"), ("topic", "*")],
            "topic \"*\" is reserved",
        ),
        (
            &[("topic", "/t"), ("id", "earliest")],
            "id \"earliest\" is reserved",
        ),
        (
            &[("topic", "/t"), ("type", "mercure")],
            "type \"mercure\" is reserved",
        ),
        (
            &[("topic", "/t"), ("id", "#1")],
            "id must not start with '#'",
        ),
        (
            &[("topic", "/t"), ("id", "a\u{85}b")],
            "control or format characters",
        ),
        (
            &[("topic", "/t"), ("id", "a\u{200b}b")],
            "control or format characters",
        ),
        (
            &[("topic", "/t"), ("type", "a\tb")],
            "control or format characters",
        ),
        (
            &[("topic", "/t"), ("type", "a\u{202e}b")],
            "control or format characters",
        ),
        (&[("topic", "/t\u{2066}x")], "control or format characters"),
    ];
    for (form, words) in cases {
        let response = server.post_form(Some(&token), form).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{form:?}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains(words),
            "{form:?}: {text:?} should say {words:?}"
        );
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    }
    // Near misses are ordinary topics, ids and types.
    let id = server
        .publish(&[
            ("topic", "/.well-known/mercure-x"),
            ("topic", "/.well-known/%4Dercure"),
            ("id", "Earliest"),
            ("type", "mercure-x"),
        ])
        .await;
    assert_eq!(id, "Earliest");
    let event = everything.expect_next().await;
    assert_eq!(
        (event.id.as_str(), event.event.as_str()),
        ("Earliest", "mercure-x")
    );
}
