//! Tokens: where they come from, which are refused, and what they allow.

use crate::helpers::{
    HUB, PUBLISHER_KEY, SUBSCRIBER_KEY, SseReader, TestServer, WAIT, now, publisher_token,
    sign_with, subscriber_token,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

#[tokio::test]
async fn publish_auth_matrix() {
    let server = TestServer::start_default().await;
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
    let subscriber_only = subscriber_token(&["*"]);
    let cases = [
        (None, StatusCode::UNAUTHORIZED),
        (Some("garbage".to_owned()), StatusCode::UNAUTHORIZED),
        (Some(expired), StatusCode::UNAUTHORIZED),
        (Some(wrong_alg), StatusCode::UNAUTHORIZED),
        (Some(wrong_key), StatusCode::UNAUTHORIZED),
        (Some(none_alg), StatusCode::UNAUTHORIZED),
        (Some(subscriber_only), StatusCode::UNAUTHORIZED),
        (
            Some(publisher_token(&["https://example.com/authors/{id}"])),
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
            Some(publisher_token(&["https://example.com/books/{id}"])),
            StatusCode::OK,
        ),
        (Some(publisher_token(&["*"])), StatusCode::OK),
    ];
    for (token, status) in cases {
        let response = server.post_form(token.as_deref(), &form).await;
        assert_eq!(response.status(), status, "token {token:?}");
    }
    // Every topic of the update must be allowed, alternates included.
    let partial = publisher_token(&["https://example.com/books/{id}"]);
    let response = server
        .post_form(
            Some(&partial),
            &[
                ("topic", "https://example.com/books/1"),
                ("topic", "/other"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The token may also come as the `authorization` query parameter.
    let with_query = server
        .client()
        .post(format!(
            "{}?authorization={}",
            server.url(HUB),
            publisher_token(&["*"])
        ))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(with_query.status(), StatusCode::OK);
    // A malformed Authorization header is refused, not ignored.
    let response = server
        .client()
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
    let server = TestServer::start_default().await;
    let topic = "https://example.com/users/7/inbox";
    let mut anonymous = server.subscribe(&[("topic", topic)]).await;
    let mut allowed = server
        .subscribe(&[
            ("topic", topic),
            (
                "authorization",
                &subscriber_token(&["https://example.com/users/{id}/inbox"]),
            ),
        ])
        .await;
    let other = server
        .subscribe_request(&[("topic", topic)])
        .bearer_auth(subscriber_token(&["https://example.com/users/8/inbox"]))
        .send()
        .await
        .unwrap();
    let mut other = SseReader::new(other);

    server
        .publish(&[
            ("topic", topic),
            ("data", "secret"),
            ("private", "on"),
            ("id", "p1"),
        ])
        .await;
    server
        .publish(&[("topic", topic), ("data", "public"), ("id", "q1")])
        .await;
    assert_eq!(allowed.expect_next().await.id, "p1");
    assert_eq!(allowed.expect_next().await.id, "q1");
    assert_eq!(
        anonymous.expect_next().await.id,
        "q1",
        "anonymous: public only"
    );
    assert_eq!(
        other.expect_next().await.id,
        "q1",
        "claim for another topic: public only"
    );
}

#[tokio::test]
async fn subscriber_tokens_come_from_header_query_or_cookie_and_bad_ones_are_refused() {
    let server = TestServer::start(|c| c.no_anonymous = true).await;
    let topic = [("topic", "/t")];
    let anonymous = server.subscribe_request(&topic).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let invalid = server
        .subscribe_request(&topic)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    let token = subscriber_token(&["/t"]);
    assert_eq!(
        server
            .subscribe_request(&topic)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let with_query = server
        .subscribe_request(&[("topic", "/t"), ("authorization", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(with_query.status(), StatusCode::OK);
    let cookie = server
        .subscribe_request(&topic)
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
    let server = TestServer::start_default().await;
    let token = sign_with(
        SUBSCRIBER_KEY,
        Algorithm::HS256,
        json!({ "mercure": { "subscribe": ["*"] }, "exp": now() + 2 }),
    );
    let response = server
        .subscribe_request(&[("topic", "/t")])
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
    let cookie = format!("mercureAuthorization={}", publisher_token(&["*"]));
    let send = |origin: Option<&str>| {
        let mut request = server
            .client()
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
        server
            .post_form(Some(&es256), &[("topic", "/t")])
            .await
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
        server
            .post_form(Some(&confused), &[("topic", "/t")])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_token_is_refused_before_its_nbf() {
    let server = TestServer::start_default().await;
    let publish = |nbf: u64| {
        sign_with(
            PUBLISHER_KEY,
            Algorithm::HS256,
            json!({ "mercure": { "publish": ["*"] }, "nbf": nbf }),
        )
    };
    let subscribe = |nbf: u64| {
        sign_with(
            SUBSCRIBER_KEY,
            Algorithm::HS256,
            json!({ "mercure": { "subscribe": ["*"] }, "nbf": nbf }),
        )
    };
    let form = [("topic", "/t")];
    let early = server.post_form(Some(&publish(now() + 3600)), &form).await;
    assert_eq!(early.status(), StatusCode::UNAUTHORIZED);
    let due = server.post_form(Some(&publish(now() - 60)), &form).await;
    assert_eq!(due.status(), StatusCode::OK);
    for (nbf, status) in [
        (now() + 3600, StatusCode::UNAUTHORIZED),
        (now() - 60, StatusCode::OK),
    ] {
        let response = server
            .subscribe_request(&form)
            .bearer_auth(subscribe(nbf))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "nbf {nbf}");
    }
}

#[tokio::test]
async fn a_far_future_exp_means_no_expiry() {
    let server = TestServer::start_default().await;
    // 18000000000000000000 overflows an `Instant`; 10^13 s (year 318857) does not.
    for exp in [18_000_000_000_000_000_000_u64, 10_000_000_000_000] {
        let token = sign_with(
            SUBSCRIBER_KEY,
            Algorithm::HS256,
            json!({ "mercure": { "subscribe": ["*"] }, "exp": exp }),
        );
        let response = server
            .subscribe_request(&[("topic", "/far")])
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "exp {exp}");
        let mut reader = SseReader::new(response);
        let id = server
            .publish(&[("topic", "/far"), ("data", "still here")])
            .await;
        assert_eq!(reader.expect_next().await.id, id, "exp {exp}");
        let publisher = sign_with(
            PUBLISHER_KEY,
            Algorithm::HS256,
            json!({ "mercure": { "publish": ["*"] }, "exp": exp }),
        );
        let published = server.post_form(Some(&publisher), &[("topic", "/x")]).await;
        assert_eq!(published.status(), StatusCode::OK, "exp {exp}");
    }
}

#[tokio::test]
async fn the_token_is_checked_before_any_selector_is_parsed() {
    let server = TestServer::start_default().await;
    let bad_selector = [("topic", "/ok"), ("topic", "")];
    let anonymous = server
        .subscribe_request(&bad_selector)
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::BAD_REQUEST,
        "selectors count"
    );
    for request in [
        server.subscribe_request(&bad_selector).bearer_auth("nope"),
        server
            .subscribe_request(&bad_selector)
            .bearer_auth(publisher_token(&["*"])),
        server
            .subscribe_request(&bad_selector)
            .header(header::AUTHORIZATION, "Basic abc"),
        server.subscribe_request(&[
            ("topic", "/ok"),
            ("topic", "a\u{1}b"),
            ("authorization", "nope"),
        ]),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let reason = response.text().await.unwrap();
        assert!(
            reason.contains("token") || reason.contains("Bearer"),
            "{reason}"
        );
    }
    // With --no-anonymous, a request without a token is refused before its topics are read.
    let closed = TestServer::start(|c| c.no_anonymous = true).await;
    for query in [&bad_selector[..], &[][..]] {
        let response = closed.subscribe_request(query).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{query:?}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("needs a subscriber token")
        );
    }
}
