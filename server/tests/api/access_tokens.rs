//! Mercure 1.0 authorization: RFC 9068 access tokens, their grants, where they come from, the
//! RFC 6750 challenges, the RFC 9728 metadata, and keys from an authorization server's JWK Set.

use crate::helpers::{
    AUDIENCE, HUB, METADATA_URL, PUBLIC_URL, PUBLISHER_KEY, SUBSCRIBER_KEY, SseReader, TestServer,
    access_claims, access_token, detail, now, publisher_access_token, publisher_token, sign_raw,
    subscriber_access_token,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};

/// The token of the Mercure 1.0 conformance suite (`conformance-tests/mercure.spec.ts` at
/// v1.0.0-alpha.3): HS256, `typ: at+jwt`, `iss: https://localhost`, `aud:
/// https://localhost/.well-known/mercure`, `exp: 4102444800`, publish and subscribe on `*`,
/// and no `sub`, `client_id`, `iat` or `jti`.
const CONFORMANCE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJhdWQiOiJodHRwczovL2xvY2FsaG9zdC8ud2VsbC1rbm93bi9tZXJjdXJlIiwiaXNzIjoiaHR0cHM6Ly9sb2NhbGhvc3QiLCJhdXRob3JpemF0aW9uX2RldGFpbHMiOlt7InR5cGUiOiJodHRwczovL21lcmN1cmUucm9ja3MvYXV0aG9yaXphdGlvbi1kZXRhaWwiLCJhY3Rpb25zIjpbInB1Ymxpc2giXSwidG9waWNzIjpbeyJtYXRjaCI6IioifV19LHsidHlwZSI6Imh0dHBzOi8vbWVyY3VyZS5yb2Nrcy9hdXRob3JpemF0aW9uLWRldGFpbCIsImFjdGlvbnMiOlsic3Vic2NyaWJlIl0sInRvcGljcyI6W3sibWF0Y2giOiIqIn1dfV0sImV4cCI6NDEwMjQ0NDgwMH0.z_S8IP5WZsCK8h3pcq0PB5zvJE0OdTrGA70khAYJQy4";

/// The suite's key.
const CONFORMANCE_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";

/// An Ed25519 key pair (PKCS#8 and SPKI PEM, and the public key as a JWK's `x`).
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKECdYgTMk1fBUwchCX8J5uIVEeRcVhZyNlyOaCC2ZKd
-----END PRIVATE KEY-----
";
pub(crate) const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA6QDiVDqKf/2Jb3je3N0CC6CvH/7WqMbwKd2OR1brpQU=
-----END PUBLIC KEY-----
";
const ED_X: &str = "6QDiVDqKf_2Jb3je3N0CC6CvH_7WqMbwKd2OR1brpQU";

/// Another one.
const ED2_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJi2SjbypLKh3ai4pVZuu2OufsbpO0HX8h4NPbh6m7OA
-----END PRIVATE KEY-----
";
const ED2_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAcZUEQMTSaiO3OjO3vpTJVknQwfnb3bsGhWwyE1Wo6yY=
-----END PUBLIC KEY-----
";
const ED2_X: &str = "cZUEQMTSaiO3OjO3vpTJVknQwfnb3bsGhWwyE1Wo6yY";

/// An EdDSA access token with these header fields besides `alg` and `typ`, signed with a PKCS#8
/// Ed25519 key.
fn eddsa_token(private_pem: &str, extra_header: Value, claims: Value) -> String {
    let mut header = json!({ "alg": "EdDSA", "typ": "at+jwt" });
    header
        .as_object_mut()
        .unwrap()
        .extend(extra_header.as_object().unwrap().clone());
    let key = EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
    sign_raw(header, claims, &key, Algorithm::EdDSA)
}

/// The challenge a refusal carries.
fn challenge(response: &Response) -> &str {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

fn invalid_token() -> String {
    format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA_URL}\"")
}

#[tokio::test]
async fn the_conformance_suites_token_publishes_and_receives_private_updates() {
    let server = TestServer::start_v1(|c| {
        c.publisher_jwt_key = Some(CONFORMANCE_KEY.into());
        c.subscriber_jwt_key = Some(CONFORMANCE_KEY.into());
    })
    .await;
    let response = server
        .subscribe_request(&[("topic", "https://example.net/foo/1")])
        .bearer_auth(CONFORMANCE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseReader::new(response);
    let response = server
        .post_form(
            Some(CONFORMANCE_TOKEN),
            &[
                ("topic", "https://example.net/foo/1"),
                ("data", "secret"),
                ("private", "on"),
                ("id", "c1"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "c1");
    let event = stream.expect_next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), ("c1", "secret"));
}

#[tokio::test]
async fn each_failed_check_of_an_access_token_is_invalid_token() {
    let server = TestServer::start_v1(|c| c.max_token_matchers = 3).await;
    let form = [("topic", "/books/1"), ("data", "x")];
    let grant = || json!([detail(&["publish"], &["/books/1"])]);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = access_claims(grant());
        change(&mut claims);
        access_token(PUBLISHER_KEY, claims)
    };
    let hs256 = EncodingKey::from_secret(PUBLISHER_KEY.as_bytes());
    let with_header = |header: Value, alg| sign_raw(header, access_claims(grant()), &hs256, alg);
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let refused: Vec<(&str, String)> = vec![
        (
            "no iss",
            with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))),
        ),
        (
            "another iss",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        ("iss as an array", with(&|c| c["iss"] = json!([PUBLIC_URL]))),
        (
            "no aud",
            with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))),
        ),
        (
            "another aud",
            with(&|c| c["aud"] = json!("https://other.example/.well-known/mercure")),
        ),
        (
            "no exp",
            with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
        ),
        ("expired", with(&|c| c["exp"] = json!(now() - 3600))),
        ("exp not a number", with(&|c| c["exp"] = json!("soon"))),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now() + 3600)),
        ),
        (
            "wrong key",
            access_token(
                "not-the-key-not-the-key-not-the-key",
                access_claims(grant()),
            ),
        ),
        (
            "the subscriber's key",
            access_token(SUBSCRIBER_KEY, access_claims(grant())),
        ),
        (
            "HS512, not allowed",
            with_header(json!({"alg": "HS512", "typ": "at+jwt"}), Algorithm::HS512),
        ),
        (
            "embedded jwk",
            with_header(
                json!({"alg": "HS256", "typ": "at+jwt", "jwk": {"kty": "oct", "k": "AAAA"}}),
                Algorithm::HS256,
            ),
        ),
        (
            "jku",
            with_header(
                json!({"alg": "HS256", "typ": "at+jwt", "jku": "https://evil.example/jwks"}),
                Algorithm::HS256,
            ),
        ),
        (
            "x5u",
            with_header(
                json!({"alg": "HS256", "typ": "at+jwt", "x5u": "https://evil.example/cert"}),
                Algorithm::HS256,
            ),
        ),
        (
            "crit",
            with_header(
                json!({"alg": "HS256", "typ": "at+jwt", "crit": ["exp"]}),
                Algorithm::HS256,
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "at+jwt"})),
                b64(access_claims(grant()))
            ),
        ),
        (
            "unknown match_type",
            with(&|c| c["authorization_details"][0]["topics"][0]["match_type"] = json!("regex")),
        ),
        (
            "match_type not a string",
            with(&|c| c["authorization_details"][0]["topics"][0]["match_type"] = json!(1)),
        ),
        (
            "match not a string",
            with(&|c| c["authorization_details"][0]["topics"][0]["match"] = json!(["/books/1"])),
        ),
        (
            "an empty match",
            with(&|c| c["authorization_details"][0]["topics"][0]["match"] = json!("")),
        ),
        (
            "a control character in a match",
            with(&|c| c["authorization_details"][0]["topics"][0]["match"] = json!("/books/\n")),
        ),
        (
            "a topic not an object",
            with(&|c| c["authorization_details"][0]["topics"][0] = json!("/books/1")),
        ),
        (
            "no topics",
            with(&|c| c["authorization_details"][0]["topics"] = json!([])),
        ),
        (
            "a non-string action",
            with(&|c| c["authorization_details"][0]["actions"] = json!(["publish", 7])),
        ),
        (
            "no actions",
            with(&|c| c["authorization_details"][0]["actions"] = json!([])),
        ),
        (
            "a payload not an object",
            with(&|c| c["authorization_details"][0]["payload"] = json!("x")),
        ),
        (
            "details not an array",
            with(&|c| c["authorization_details"] = json!({})),
        ),
        (
            "a detail without type",
            with(&|c| {
                drop(
                    c["authorization_details"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("type"),
                )
            }),
        ),
        (
            "more matchers than --max-token-matchers",
            with(&|c| {
                c["authorization_details"] = json!([
                    detail(&["publish"], &["/a", "/b"]),
                    detail(&["publish"], &["/c", "/books/1"])
                ])
            }),
        ),
        (
            "a bad detail beside a good one",
            with(
                &|c| c["authorization_details"] = json!([detail(&["publish"], &["/books/1"]), {"type": "https://mercure.rocks/authorization-detail", "actions": ["publish"], "topics": [{"match": "/x", "match_type": "glob"}]}]),
            ),
        ),
    ];
    for (case, token) in refused {
        let response = server.post_form(Some(&token), &form).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(challenge(&response), invalid_token(), "{case}");
        // Which check failed is not said.
        assert_eq!(response.text().await.unwrap(), "invalid token\n", "{case}");
    }
    let accepted: Vec<(&str, String)> = vec![
        ("the valid token", with(&|_| {})),
        (
            "aud as an array",
            with(&|c| c["aud"] = json!(["https://other.example", AUDIENCE])),
        ),
        (
            "typ with application/, in capitals",
            with_header(
                json!({"alg": "HS256", "typ": "application/AT+JWT"}),
                Algorithm::HS256,
            ),
        ),
        ("nbf passed", with(&|c| c["nbf"] = json!(now() - 10))),
        (
            "an unknown action beside publish",
            with(&|c| c["authorization_details"][0]["actions"] = json!(["delete", "publish"])),
        ),
        (
            "a detail of another type",
            with(&|c| {
                c["authorization_details"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "https://example.com/payment", "amount": 3}))
            }),
        ),
        (
            "match_type exact",
            with(&|c| c["authorization_details"][0]["topics"][0]["match_type"] = json!("exact")),
        ),
        (
            "a fractional exp",
            with(&|c| c["exp"] = json!(now() as f64 + 3600.5)),
        ),
    ];
    for (case, token) in accepted {
        let response = server.post_form(Some(&token), &form).await;
        assert_eq!(response.status(), StatusCode::OK, "{case}");
    }
}

#[tokio::test]
async fn grants_decide_what_an_access_token_may_publish() {
    let server = TestServer::start_v1(|_| {}).await;
    let token = access_token(
        PUBLISHER_KEY,
        access_claims(json!([
            detail(&["publish"], &["/books/1"]),
            detail(&["subscribe"], &["/books/2"]),
            detail(&["delete"], &["/books/3"]),
            detail(&["publish", "subscribe"], &["/books/{id}"]),
        ])),
    );
    let publish = |topics: &'static [&'static str]| {
        let token = token.clone();
        let server = &server;
        async move {
            let form: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
            server.post_form(Some(&token), &form).await
        }
    };
    assert_eq!(publish(&["/books/1"]).await.status(), StatusCode::OK);
    // `exact` is byte for byte: a template's text grants only itself.
    assert_eq!(publish(&["/books/{id}"]).await.status(), StatusCode::OK);
    let insufficient =
        format!("Bearer error=\"insufficient_scope\", resource_metadata=\"{METADATA_URL}\"");
    for topics in [
        &["/books/2"][..],
        &["/books/3"],
        &["/books/4"],
        &["/books/1", "/books/2"],
    ] {
        let response = publish(topics).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{topics:?}");
        assert_eq!(challenge(&response), insufficient, "{topics:?}");
    }
    // A token without details grants nothing.
    let nothing = access_token(PUBLISHER_KEY, access_claims(Value::Null));
    let response = server
        .post_form(Some(&nothing), &[("topic", "/books/1")])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // `*` matches every topic, whatever the match_type says.
    let everything = access_token(
        PUBLISHER_KEY,
        access_claims(json!([{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["publish"],
            "topics": [{"match": "*", "match_type": "exact"}],
        }])),
    );
    let response = server
        .post_form(
            Some(&everything),
            &[("topic", "/anything"), ("topic", "/else")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_subscriber_gets_the_private_updates_its_access_token_grants() {
    let server = TestServer::start_v1(|_| {}).await;
    let granted = subscriber_access_token(&["/inbox/7"]);
    let response = server
        .subscribe_request(&[("topic", "/inbox/7"), ("topic", "/inbox/8")])
        .bearer_auth(&granted)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut allowed = SseReader::new(response);
    let mut anonymous = server
        .subscribe(&[("topic", "/inbox/7"), ("topic", "/inbox/8")])
        .await;
    for (topic, id, private) in [
        ("/inbox/7", "p7", true),
        ("/inbox/8", "p8", true),
        ("/inbox/8", "q8", false),
    ] {
        let mut form = vec![("topic", topic), ("id", id), ("data", "x")];
        if private {
            form.push(("private", "on"));
        }
        server.publish(&form).await;
    }
    assert_eq!(allowed.expect_next().await.id, "p7");
    assert_eq!(
        allowed.expect_next().await.id,
        "q8",
        "/inbox/8 is not granted"
    );
    assert_eq!(anonymous.expect_next().await.id, "q8");
}

#[tokio::test]
async fn the_first_matching_subscribe_detail_gives_the_payload() {
    let server = TestServer::start_v1(|_| {}).await;
    let token = access_token(
        SUBSCRIBER_KEY,
        access_claims(json!([
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["subscribe"],
             "topics": [{"match": "/other"}], "payload": {"which": "other"}},
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["publish"],
             "topics": [{"match": "/room"}], "payload": {"which": "publish"}},
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["subscribe"],
             "topics": [{"match": "/room"}], "payload": {"which": "room"}},
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["subscribe"],
             "topics": [{"match": "*"}], "payload": {"which": "default"}},
        ])),
    );
    let stream = |topic: &'static str| {
        server
            .subscribe_request(&[("match", topic)])
            .bearer_auth(&token)
            .send()
    };
    let room = stream("/room").await.unwrap();
    assert_eq!(room.status(), StatusCode::OK);
    let elsewhere = stream("/elsewhere").await.unwrap();
    assert_eq!(elsewhere.status(), StatusCode::OK);
    // The subscriptions API, with an access token granting subscribe on its path (1.0's form).
    let reader = subscriber_access_token(&["/.well-known/mercure/subscriptions"]);
    let doc: Value = server
        .get_with("/.well-known/mercure/subscriptions", &reader)
        .await
        .json()
        .await
        .unwrap();
    let payload_of = |topic: &str| {
        doc["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["match"] == topic)
            .map(|s| s["payload"].clone())
    };
    assert_eq!(payload_of("/room"), Some(json!({"which": "room"})));
    assert_eq!(payload_of("/elsewhere"), Some(json!({"which": "default"})));
    // Not granted: 403 with the challenge.
    let response = server
        .client()
        .get(server.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(subscriber_access_token(&["/room"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&response).starts_with("Bearer error=\"insufficient_scope\""));
    drop((room, elsewhere));
}

#[tokio::test]
async fn an_access_token_comes_from_the_header_or_the_access_cookie_never_the_url() {
    let server = TestServer::start_v1(|c| c.no_anonymous = true).await;
    let form = [("topic", "/t"), ("data", "x")];
    let good = publisher_access_token(&["/t"]);
    let bad = publisher_access_token(&["/elsewhere"]);
    // The cookie alone.
    let response = server
        .post_form_with_cookie(&good, &form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The header wins over the cookie, both ways.
    let response = server
        .post_form_with_cookie(&bad, &form)
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = server
        .post_form_with_cookie(&good, &form)
        .bearer_auth(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The access cookie holds access tokens only.
    let response = server
        .post_form_with_cookie(&publisher_token(&["*"]), &form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), invalid_token());
    // An access token in the URL, or in the draft-07 cookie, is a malformed request.
    let invalid_request =
        format!("Bearer error=\"invalid_request\", resource_metadata=\"{METADATA_URL}\"");
    let in_url = server
        .client()
        .post(format!("{}?authorization={good}", server.url(HUB)))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(in_url.status(), StatusCode::BAD_REQUEST);
    assert_eq!(challenge(&in_url), invalid_request);
    let in_old_cookie = server
        .client()
        .post(server.url(HUB))
        .header(header::ORIGIN, &server.base)
        .header(header::COOKIE, format!("mercureAuthorization={good}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(in_old_cookie.status(), StatusCode::BAD_REQUEST);
    assert_eq!(challenge(&in_old_cookie), invalid_request);

    // An access token is never taken from the URL, whatever the request selects with; a
    // draft-07 token keeps its places (an EventSource cannot send headers) for a draft-07
    // request only.
    let subscriber = crate::helpers::subscriber_token(&["*"]);
    let access = subscriber_access_token(&["/t"]);
    for selecting in [("match", "/t"), ("topic", "/t")] {
        let response = server
            .subscribe_request(&[selecting, ("authorization", &access)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{selecting:?}");
        assert_eq!(challenge(&response), invalid_request, "{selecting:?}");
    }
    let response = server
        .subscribe_request(&[("topic", "/t"), ("authorization", &subscriber)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A QUERY request is Mercure 1.0's too, whatever its body selects.
    let response = server
        .client()
        .request(
            reqwest::Method::from_bytes(b"QUERY").unwrap(),
            format!("{}?authorization={access}", server.url(HUB)),
        )
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("match=/t")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(challenge(&response), invalid_request);
    // A Mercure 1.0 request's refusals are challenges, whatever the token (see
    // a_mercure_1_request_takes_only_an_access_token for a good draft-07 one).
    let response = server
        .subscribe_request(&[("match_exact", "/t")])
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), invalid_token());
    let response = server
        .subscribe_request(&[("match", "/t")])
        .header(header::AUTHORIZATION, "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(challenge(&response), invalid_request);
    // An access token in the header serves a 1.0 subscription.
    let response = server
        .subscribe_request(&[("match", "/t")])
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Mercure 1.0 requests of each kind, with `extra` pairs in the query component: a subscription
/// with `match`, a `QUERY` (its matcher in the body), and the 1.0 endpoints of the subscriptions
/// API; each with the status it gets when its token is good (an unknown subscription: 404).
fn mercure_1_requests(
    server: &TestServer,
    extra: &[(&str, &str)],
) -> Vec<(&'static str, reqwest::RequestBuilder, StatusCode)> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(extra)
        .finish();
    let with = |path: &str| match extra.is_empty() {
        true => server.url(path),
        false => format!("{}?{query}", server.url(path)),
    };
    let mut matching = vec![("match", "/t")];
    matching.extend_from_slice(extra);
    let client = server.client();
    vec![
        ("match", server.subscribe_request(&matching), StatusCode::OK),
        (
            "QUERY",
            client
                .request(reqwest::Method::from_bytes(b"QUERY").unwrap(), with(HUB))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("match=%2Ft"),
            StatusCode::OK,
        ),
        (
            "a matcher's subscriptions",
            client.get(with("/.well-known/mercure/subscriptions/exact/%2Ft")),
            StatusCode::OK,
        ),
        (
            "one subscription",
            client.get(with(
                "/.well-known/mercure/subscriptions/exact/%2Ft/urn%3Auuid%3Anobody",
            )),
            StatusCode::NOT_FOUND,
        ),
    ]
}

#[tokio::test]
async fn a_mercure_1_request_takes_only_an_access_token() {
    let server = TestServer::start_v1(|c| c.no_anonymous = true).await;
    let draft_07 = crate::helpers::subscriber_token(&["*"]);
    let access = subscriber_access_token(&["*"]);
    let bare = format!("Bearer resource_metadata=\"{METADATA_URL}\"");
    let invalid_request =
        format!("Bearer error=\"invalid_request\", resource_metadata=\"{METADATA_URL}\"");
    let claim_cookie = |token: &str| format!("mercureAuthorization={token}");
    let access_cookie = |token: &str| format!("__Secure-mercure_access_token={token}");

    // A draft-07 token, valid for every topic, in the header: invalid_token, and the body says
    // no more.
    for (kind, request, _) in mercure_1_requests(&server, &[]) {
        let response = request.bearer_auth(&draft_07).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{kind}");
        assert_eq!(challenge(&response), invalid_token(), "{kind}");
        assert_eq!(response.text().await.unwrap(), "invalid token\n", "{kind}");
    }
    // In the access cookie: the same.
    for (kind, request, _) in mercure_1_requests(&server, &[]) {
        let response = request
            .header(header::COOKIE, access_cookie(&draft_07))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{kind}");
        assert_eq!(challenge(&response), invalid_token(), "{kind}");
    }
    // Any token in the URL is a malformed request, beside a good header too.
    for token in [&draft_07, &access] {
        for (kind, request, _) in mercure_1_requests(&server, &[("authorization", token)]) {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{kind}");
            assert_eq!(challenge(&response), invalid_request, "{kind}");
        }
    }
    for (kind, request, _) in mercure_1_requests(&server, &[("authorization", &draft_07)]) {
        let response = request.bearer_auth(&access).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{kind}");
        assert_eq!(challenge(&response), invalid_request, "{kind}");
    }
    // The draft-07 cookie is not looked at, whatever it holds: the request is anonymous (and
    // this hub refuses anonymous callers with the bare challenge).
    for token in [&draft_07, &access] {
        for (kind, request, _) in mercure_1_requests(&server, &[]) {
            let response = request
                .header(header::COOKIE, claim_cookie(token))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{kind}");
            assert_eq!(challenge(&response), bare, "{kind}");
        }
    }
    // An access token from the header (beside the draft-07 cookie, ignored) or the access
    // cookie serves each.
    for (kind, request, status) in mercure_1_requests(&server, &[]) {
        let response = request
            .bearer_auth(&access)
            .header(header::COOKIE, claim_cookie(&draft_07))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{kind}");
    }
    for (kind, request, status) in mercure_1_requests(&server, &[]) {
        let response = request
            .header(header::COOKIE, access_cookie(&access))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{kind}");
    }
    // A publish is no subscription, whatever its URL says: a draft-07 token publishes.
    let response = server
        .client()
        .post(format!("{}?match=%2Ft", server.url(HUB)))
        .bearer_auth(crate::helpers::publisher_token(&["*"]))
        .form(&[("topic", "/t"), ("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The same draft-07 token still serves a draft-07 request from each of its places.
    let topic = [("topic", "/t")];
    let in_header = server.subscribe_request(&topic).bearer_auth(&draft_07);
    let in_url = server.subscribe_request(&[("topic", "/t"), ("authorization", &draft_07)]);
    let in_cookie = server
        .subscribe_request(&topic)
        .header(header::COOKIE, claim_cookie(&draft_07));
    for (place, request) in [
        ("header", in_header),
        ("url", in_url),
        ("cookie", in_cookie),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{place}");
    }
}

#[tokio::test]
async fn refusals_are_bearer_challenges_naming_the_metadata() {
    let server = TestServer::start_v1(|c| c.no_anonymous = true).await;
    let bare = format!("Bearer resource_metadata=\"{METADATA_URL}\"");
    let response = server.post_form(None, &[("topic", "/t")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), bare);
    let response = server
        .subscribe_request(&[("topic", "/t")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), bare);
    let response = server
        .client()
        .get(server.url("/.well-known/mercure/subscriptions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), bare);
    let expired = access_token(
        SUBSCRIBER_KEY,
        json!({"iss": PUBLIC_URL, "aud": AUDIENCE, "exp": now() - 60}),
    );
    let response = server
        .subscribe_request(&[("topic", "/t")])
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), invalid_token());
    // Draft-07 tokens are refused as before: a plain reason, no error code.
    let response = server.post_form(Some("garbage"), &[("topic", "/t")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert!(
        response
            .text()
            .await
            .unwrap()
            .starts_with("invalid token: ")
    );
}

#[tokio::test]
async fn the_protected_resource_metadata_describes_the_hub() {
    let path = "/.well-known/oauth-protected-resource/.well-known/mercure";
    let server = TestServer::start_v1(|_| {}).await;
    let response = server.get(path).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["resource"], AUDIENCE);
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["mercure_cookie"], "__Secure-mercure_access_token");
    assert_eq!(doc["mercure_subscriptions"], true);
    assert_eq!(
        doc["authorization_details_types_supported"],
        json!(["https://mercure.rocks/authorization-detail"])
    );
    // Self-issued tokens: no authorization server to name.
    assert!(doc.get("authorization_servers").is_none(), "{doc}");

    // By default the hub is named after the address it listens on; --jwt-audience renames it.
    let server = TestServer::start_default().await;
    let doc: Value = server.get(path).await.json().await.unwrap();
    assert_eq!(doc["resource"], format!("{}{HUB}", server.base));
    let server = TestServer::start_v1(|c| c.jwt_audience = Some("urn:example:hub".into())).await;
    let doc: Value = server.get(path).await.json().await.unwrap();
    assert_eq!(doc["resource"], "urn:example:hub");
    let token = |aud: &str| {
        let mut claims = access_claims(json!([detail(&["publish"], &["/t"])]));
        claims["aud"] = json!(aud);
        access_token(PUBLISHER_KEY, claims)
    };
    let form = [("topic", "/t")];
    let response = server
        .post_form(Some(&token("urn:example:hub")), &form)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = server.post_form(Some(&token(AUDIENCE)), &form).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn eddsa_access_tokens_verify_with_each_roles_key() {
    let server = TestServer::start_v1(|c| {
        c.jwt_alg = tidings_server::config::JwtAlg::EdDsa;
        c.publisher_jwt_key = Some(ED_PUBLIC.into());
        c.subscriber_jwt_key = Some(ED2_PUBLIC.into());
    })
    .await;
    let claims = access_claims(json!([detail(&["publish", "subscribe"], &["/t"])]));
    let form = [("topic", "/t"), ("data", "x")];
    let publisher = eddsa_token(ED_PRIVATE, json!({}), claims.clone());
    assert_eq!(
        server.post_form(Some(&publisher), &form).await.status(),
        StatusCode::OK
    );
    // The subscriber's key does not publish, nor the publisher's subscribe.
    let subscriber = eddsa_token(ED2_PRIVATE, json!({}), claims.clone());
    let response = server.post_form(Some(&subscriber), &form).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server
        .subscribe_request(&[("topic", "/t")])
        .bearer_auth(&subscriber)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = server
        .subscribe_request(&[("topic", "/t")])
        .bearer_auth(&publisher)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // An HS256 token signed with the public key's text (algorithm confusion) is refused.
    let confused = access_token(ED_PUBLIC, claims);
    let response = server.post_form(Some(&confused), &form).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A JWK Set served by a local axum server, which counts its fetches and can be changed.
struct JwksServer {
    url: String,
    keys: std::sync::Arc<std::sync::Mutex<Value>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Value) -> Self {
        use axum::{Router, routing::get};
        use std::sync::{Arc, Mutex, atomic::AtomicUsize};
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let app = Router::new()
            .route(
                "/jwks.json",
                get(move || {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = served.lock().unwrap().to_string();
                    async move { ([(header::CONTENT_TYPE, "application/json")], body) }
                }),
            )
            .route(
                "/slow.json",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    "{\"keys\": []}"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, keys, fetches }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The hub's protected resource metadata (RFC 9728).
async fn metadata(server: &TestServer) -> Value {
    let path = "/.well-known/oauth-protected-resource/.well-known/mercure";
    server.get(path).await.json().await.unwrap()
}

fn okp(kid: &str, x: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"})
}

#[tokio::test]
async fn an_authorization_servers_jwks_verifies_its_tokens_and_is_fetched_sparingly() {
    const AS: &str = "https://as.example";
    const SELF: &str = "https://publisher.example";
    let jwks = JwksServer::start(json!({"keys": [
        okp("k1", ED_X),
        // Skipped, not fatal: a symmetric key, an encryption key, a malformed one, a short one.
        {"kty": "oct", "k": "c2VjcmV0", "kid": "k1"},
        {"kty": "OKP", "crv": "Ed25519", "x": ED2_X, "kid": "enc", "use": "enc"},
        {"kty": "RSA", "kid": "broken"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short"},
    ]}))
    .await;
    let server = TestServer::start_v1(|c| {
        c.jwt_issuers = vec![AS.into(), SELF.into()];
        c.jwks_url = vec![format!("{}/jwks.json", jwks.url)];
        c.jwks_issuer = vec![AS.into()];
        c.jwks_min_interval = std::time::Duration::from_secs(2);
    })
    .await;
    let claims = |iss: &str| {
        let mut claims = access_claims(json!([detail(&["publish"], &["/t"])]));
        claims["iss"] = json!(iss);
        claims
    };
    let form = [("topic", "/t"), ("data", "x")];
    let publish = |token: String| {
        let server = &server;
        async move { server.post_form(Some(&token), &form).await.status() }
    };
    let k1 = eddsa_token(ED_PRIVATE, json!({"kid": "k1"}), claims(AS));
    assert_eq!(publish(k1.clone()).await, StatusCode::OK);
    assert_eq!(publish(k1.clone()).await, StatusCode::OK);
    assert_eq!(jwks.fetches(), 1, "the set is cached");
    // Without a kid, the keys of the algorithm are tried.
    let no_kid = eddsa_token(ED_PRIVATE, json!({}), claims(AS));
    assert_eq!(publish(no_kid).await, StatusCode::OK);
    // The skipped keys verify nothing.
    for kid in ["enc", "short"] {
        let token = eddsa_token(ED2_PRIVATE, json!({"kid": kid}), claims(AS));
        assert_eq!(publish(token).await, StatusCode::UNAUTHORIZED, "{kid}");
    }
    let forged = access_token("c2VjcmV0-c2VjcmV0-c2VjcmV0-c2VjcmV0", claims(AS));
    assert_eq!(publish(forged).await, StatusCode::UNAUTHORIZED);

    // Keys are bound to their issuers: the authorization server's key does not sign for the
    // self-issuer, nor the static key for the authorization server.
    let crossed = eddsa_token(ED_PRIVATE, json!({"kid": "k1"}), claims(SELF));
    assert_eq!(publish(crossed).await, StatusCode::UNAUTHORIZED);
    let crossed = access_token(PUBLISHER_KEY, claims(AS));
    assert_eq!(publish(crossed).await, StatusCode::UNAUTHORIZED);
    let own = access_token(PUBLISHER_KEY, claims(SELF));
    assert_eq!(publish(own).await, StatusCode::OK);

    // The server rotates in a key: an unknown kid fetches the set again, but not sooner than
    // --jwks-min-interval after the last fetch, however many tokens ask.
    let fetched = jwks.fetches();
    jwks.keys.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(okp("k2", ED2_X));
    let k2 = eddsa_token(ED2_PRIVATE, json!({"kid": "k2"}), claims(AS));
    for i in 0..20 {
        let unknown = eddsa_token(
            ED2_PRIVATE,
            json!({"kid": format!("k{}", 100 + i)}),
            claims(AS),
        );
        assert_eq!(publish(unknown).await, StatusCode::UNAUTHORIZED);
    }
    assert!(jwks.fetches() <= fetched + 1, "{} fetches", jwks.fetches());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(publish(k2).await, StatusCode::OK);
    assert_eq!(publish(k1).await, StatusCode::OK);

    let doc = metadata(&server).await;
    assert_eq!(doc["authorization_servers"], json!([AS]));
}

#[tokio::test]
async fn a_jwks_too_large_or_too_slow_gives_no_keys() {
    const AS: &str = "https://as.example";
    let padding = "x".repeat(2000);
    let jwks = JwksServer::start(json!({"keys": [okp("k1", ED_X)], "padding": padding})).await;
    let token = eddsa_token(ED_PRIVATE, json!({"kid": "k1"}), {
        let mut claims = access_claims(json!([detail(&["publish"], &["/t"])]));
        claims["iss"] = json!(AS);
        claims
    });
    let form = [("topic", "/t"), ("data", "x")];
    let large = TestServer::start_v1(|c| {
        c.jwt_issuers = vec![AS.into()];
        c.jwks_url = vec![format!("{}/jwks.json", jwks.url)];
        c.jwks_max_bytes = 1000;
    })
    .await;
    let response = large.post_form(Some(&token), &form).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(jwks.fetches(), 1);
    let slow = TestServer::start_v1(|c| {
        c.jwt_issuers = vec![AS.into()];
        c.jwks_url = vec![format!("{}/slow.json", jwks.url)];
        c.jwks_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let started = std::time::Instant::now();
    let response = slow.post_form(Some(&token), &form).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The same set, small enough and in time, verifies.
    let fine = TestServer::start_v1(|c| {
        c.jwt_issuers = vec![AS.into()];
        c.jwks_url = vec![format!("{}/jwks.json", jwks.url)];
    })
    .await;
    let response = fine.post_form(Some(&token), &form).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn several_authorization_servers_each_verify_their_own_tokens() {
    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    let a = JwksServer::start(json!({"keys": [okp("a1", ED_X)]})).await;
    let b = JwksServer::start(json!({"keys": [okp("b1", ED2_X)]})).await;
    let server = TestServer::start_v1(|c| {
        c.jwks_url = vec![
            format!("{}/jwks.json", a.url),
            format!("{}/jwks.json", b.url),
        ];
        c.jwks_issuer = vec![A.into(), B.into()];
    })
    .await;
    let token = |private: &str, kid: &str, iss: &str| {
        let mut claims = access_claims(json!([detail(&["publish"], &["/t"])]));
        claims["iss"] = json!(iss);
        eddsa_token(private, json!({ "kid": kid }), claims)
    };
    let form = [("topic", "/t"), ("data", "x")];
    let publish = |token: String| {
        let server = &server;
        async move { server.post_form(Some(&token), &form).await.status() }
    };
    assert_eq!(publish(token(ED_PRIVATE, "a1", A)).await, StatusCode::OK);
    assert_eq!(publish(token(ED2_PRIVATE, "b1", B)).await, StatusCode::OK);
    // Each issuer's tokens verify with its own set only.
    assert_eq!(
        publish(token(ED2_PRIVATE, "b1", A)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        publish(token(ED_PRIVATE, "a1", B)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!((a.fetches(), b.fetches()), (1, 1));
    let doc = metadata(&server).await;
    assert_eq!(doc["authorization_servers"], json!([A, B]));
}

#[tokio::test]
async fn jwks_urls_and_their_issuers_must_pair_up() {
    for args in [
        // Two sets, one issuer named.
        &[
            "--jwks-url",
            "https://a.example/j,https://b.example/j",
            "--jwks-issuer",
            "https://a.example",
        ][..],
        // Two sets of one issuer.
        &[
            "--jwks-url",
            "https://a.example/j,https://b.example/j",
            "--jwks-issuer",
            "https://a.example,https://a.example",
        ],
        // An issuer without a set.
        &["--jwks-issuer", "https://a.example"],
    ] {
        let log = crate::helpers::ChildServer::refused(args, &[]).await;
        assert!(
            log.contains("--jwks-url needs --jwks-issuer"),
            "{args:?}: {log}"
        );
    }
}

#[tokio::test]
async fn a_jwks_url_without_an_issuer_refuses_to_start() {
    let log = crate::helpers::ChildServer::refused(
        &[
            "--jwks-url",
            "https://as.example/jwks.json",
            "--jwt-issuer",
            "https://a.example,https://b.example",
        ],
        &[],
    )
    .await;
    assert!(log.contains("--jwks-url needs --jwks-issuer"), "{log}");
    let log =
        crate::helpers::ChildServer::refused(&["--public-url", "https://x.example/path"], &[])
            .await;
    assert!(log.contains("is not an origin"), "{log}");
}

/// A Mercure authorization detail granting `actions` on URL patterns.
fn pattern_detail(actions: &[&str], patterns: &[&str]) -> Value {
    let topics: Vec<_> = patterns
        .iter()
        .map(|p| json!({ "match": p, "match_type": "urlpattern" }))
        .collect();
    json!({
        "type": "https://mercure.rocks/authorization-detail",
        "actions": actions,
        "topics": topics,
    })
}

#[tokio::test]
async fn url_pattern_grants_allow_publishing_and_reading_what_they_match() {
    let server = TestServer::start_v1(|_| {}).await;
    let publisher = access_token(
        PUBLISHER_KEY,
        access_claims(json!([pattern_detail(
            &["publish"],
            &[
                "https://example.com/books/:id",
                "https://example.com/users/:user/*"
            ]
        )])),
    );
    for (topic, status) in [
        ("https://example.com/books/1", StatusCode::OK),
        ("https://example.com/users/42/books/2", StatusCode::OK),
        ("https://example.com/books/1/2", StatusCode::FORBIDDEN),
        ("https://example.com/authors/1", StatusCode::FORBIDDEN),
        ("https://example.org/books/1", StatusCode::FORBIDDEN),
    ] {
        let response = server
            .post_form(Some(&publisher), &[("topic", topic)])
            .await;
        assert_eq!(response.status(), status, "{topic}");
    }

    // The spec's example: a subscriber listening to every book, allowed to read only book 1
    // and its own namespace, which a private update reaches through an alternate topic.
    let reader = access_token(
        SUBSCRIBER_KEY,
        access_claims(json!([
            detail(&["subscribe"], &["https://example.com/books/1"]),
            pattern_detail(&["subscribe"], &["https://example.com/users/42/*"]),
        ])),
    );
    let response = server
        .subscribe_request(&[("match_urlpattern", "https://example.com/books/:id")])
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseReader::new(response);
    for (topics, id) in [
        (&["https://example.com/books/2"][..], "not-granted"),
        (&["https://example.com/books/1"], "granted"),
        (
            &[
                "https://example.com/books/3",
                "https://example.com/users/42/books/3",
            ],
            "through-the-alternate",
        ),
    ] {
        let mut form: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
        form.extend([("id", id), ("private", "on"), ("data", "x")]);
        server.publish(&form).await;
    }
    assert_eq!(stream.expect_next().await.id, "granted");
    assert_eq!(stream.expect_next().await.id, "through-the-alternate");

    // A malformed pattern invalidates the token.
    let broken = access_token(
        PUBLISHER_KEY,
        access_claims(json!([pattern_detail(
            &["publish"],
            &["https://example.com/("]
        )])),
    );
    let response = server
        .post_form(Some(&broken), &[("topic", "https://example.com/books/1")])
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), invalid_token());
}

#[tokio::test]
async fn a_url_pattern_grant_gives_its_payload_to_the_subscription_with_that_pattern() {
    let server = TestServer::start_v1(|_| {}).await;
    let token = access_token(
        SUBSCRIBER_KEY,
        access_claims(json!([
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["subscribe"],
             "topics": [{"match": "https://example.com/foo"}], "payload": {"custom1": "foo"}},
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["subscribe"],
             "topics": [{"match": "https://example.com/bar/:id", "match_type": "urlpattern"}],
             "payload": {"custom2": "bar"}},
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["subscribe"],
             "topics": [{"match": "*"}], "payload": {"custom3": "default"}},
        ])),
    );
    let mut watcher = server.watch_subscriptions(&token).await;
    // Its own subscription first: its pattern is not granted, so the `*` default applies.
    let own: Value = serde_json::from_str(&watcher.expect_next().await.data).unwrap();
    assert_eq!(own["payload"], json!({"custom3": "default"}));
    let mut payloads = Vec::new();
    let mut held = Vec::new();
    for (name, value) in [
        ("match_urlpattern", "https://example.com/bar/:id"),
        ("match", "https://example.com/foo"),
        ("match", "https://example.com/baz"),
    ] {
        let response = server
            .subscribe_request(&[(name, value)])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
        let event = watcher.expect_next().await;
        let doc: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(doc["match"], value);
        payloads.push(doc["payload"].clone());
    }
    assert_eq!(
        payloads,
        [
            json!({"custom2": "bar"}),
            json!({"custom1": "foo"}),
            json!({"custom3": "default"})
        ]
    );
}

#[tokio::test]
async fn url_patterns_resolve_against_the_public_url() {
    let server = TestServer::start_v1(|_| {}).await;
    let mut stream = server
        .subscribe(&[("match_urlpattern", "https://localhost/books/:id")])
        .await;
    // A relative topic is the public URL's, not some other host's.
    server
        .publish(&[("topic", "/books/1"), ("id", "relative")])
        .await;
    assert_eq!(stream.expect_next().await.id, "relative");
}
