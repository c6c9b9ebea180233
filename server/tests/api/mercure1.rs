//! Mercure 1.0 subscriptions (spec at v1.0.0-alpha.3), on the same endpoint as draft-07: the
//! `match…` parameters, `last_event_id` and the `Mercure-Last-Event-ID` field. A request with
//! `topic` keeps draft-07's behaviour (the rest of this suite).

use crate::helpers::{SseReader, TestServer, WAIT};
use reqwest::StatusCode;

/// The next event's data within a short wait, or `None` if nothing comes.
async fn next_data(reader: &mut SseReader) -> Option<String> {
    tokio::time::timeout(WAIT / 4, reader.next())
        .await
        .ok()
        .flatten()
        .map(|event| event.data)
}

async fn refusal(server: &TestServer, query: &[(&str, &str)]) -> (StatusCode, String) {
    let response = server.subscribe_request(query).send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn match_is_byte_exact_even_with_braces() {
    let server = TestServer::start_default().await;
    let mut plain = server
        .subscribe(&[("match", "https://example.com/foo")])
        .await;
    let mut explicit = server.subscribe(&[("match_exact", "bar")]).await;
    let mut braces = server.subscribe(&[("match", "/books/{id}")]).await;
    server
        .publish(&[
            ("topic", "https://example.com/foo/"),
            ("data", "no: a slash more"),
        ])
        .await;
    server
        .publish(&[("topic", "/books/1"), ("data", "no: an expansion")])
        .await;
    server
        .publish(&[("topic", "https://example.com/foo"), ("data", "foo")])
        .await;
    server.publish(&[("topic", "bar"), ("data", "bar")]).await;
    server
        .publish(&[("topic", "/books/{id}"), ("data", "the literal")])
        .await;
    assert_eq!(next_data(&mut plain).await.as_deref(), Some("foo"));
    assert_eq!(next_data(&mut explicit).await.as_deref(), Some("bar"));
    assert_eq!(next_data(&mut braces).await.as_deref(), Some("the literal"));
    for reader in [&mut plain, &mut explicit, &mut braces] {
        assert_eq!(next_data(reader).await, None);
    }
}

#[tokio::test]
async fn match_urlpattern_follows_the_specs_example() {
    let server = TestServer::start_default().await;
    // The spec's subscription example: exact `https://example.com/foo` and `bar`, and the URL
    // pattern `https://example.com/bar/:id`, on one connection.
    let mut reader = server
        .subscribe(&[
            ("match", "https://example.com/foo"),
            ("match", "bar"),
            ("match_urlpattern", "https://example.com/bar/:id"),
        ])
        .await;
    for topic in [
        "https://example.com/bar/1/2",
        "https://example.org/bar/1",
        "https://example.com/baz/1",
        "https://example.com/bar/7",
        "bar",
        "https://example.com/foo",
    ] {
        server.publish(&[("topic", topic), ("data", topic)]).await;
    }
    let mut got = Vec::new();
    while let Some(data) = next_data(&mut reader).await {
        got.push(data);
    }
    assert_eq!(
        got,
        [
            "https://example.com/bar/7",
            "bar",
            "https://example.com/foo"
        ]
    );
}

#[tokio::test]
async fn a_relative_url_pattern_matches_relative_topics_and_star_matches_all() {
    let server = TestServer::start_default().await;
    let mut rooms = server
        .subscribe(&[("match_urlpattern", "/chat/:room")])
        .await;
    let mut all = server.subscribe(&[("match_urlpattern", "*")]).await;
    server
        .publish(&[("topic", "/chat/lobby/old"), ("data", "deeper")])
        .await;
    server
        .publish(&[("topic", "/chat/lobby"), ("data", "lobby")])
        .await;
    assert_eq!(next_data(&mut rooms).await.as_deref(), Some("lobby"));
    assert_eq!(next_data(&mut rooms).await, None);
    assert_eq!(next_data(&mut all).await.as_deref(), Some("deeper"));
    assert_eq!(next_data(&mut all).await.as_deref(), Some("lobby"));
}

#[tokio::test]
async fn matcher_names_and_values_the_spec_forbids_are_400() {
    let server = TestServer::start_default().await;
    for (query, reason) in [
        (vec![("matches", "/a")], "reserved"),
        (vec![("Match", "/a")], "reserved"),
        (vec![("match_regex", "/a")], "reserved"),
        (vec![("match_URLPATTERN", "/a")], "reserved"),
        (vec![("match", "/a\u{200B}b")], "format characters"),
        (vec![("match", "/a\u{0085}")], "control"),
        (vec![("match", "/a\u{7F}")], "control"),
        (vec![("match_urlpattern", "/a/(")], "URL pattern"),
        (vec![("match", "")], "empty"),
        (vec![("match", "/a"), ("topic", "/b")], "not both"),
    ] {
        let (status, text) = refusal(&server, &query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {text}");
        assert!(text.contains(reason), "{query:?}: {text}");
    }
    let long = "/".repeat(tidings_hub::MAX_SELECTOR_LEN + 1);
    let (status, _) = refusal(&server, &[("match", &long)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Past `--max-selectors` (100) matchers, or `--max-templates-per-subscription` (10) URL
    // patterns.
    let many: Vec<(&str, &str)> = (0..101).map(|_| ("match", "/a")).collect();
    let (status, text) = refusal(&server, &many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("too many"), "{text}");
    let patterns: Vec<(&str, &str)> = (0..11).map(|_| ("match_urlpattern", "/a/:b")).collect();
    let (status, text) = refusal(&server, &patterns).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("too many"), "{text}");
}

#[tokio::test]
async fn last_event_id_resumes_and_mercure_last_event_id_says_from_where() {
    let server = TestServer::start_default().await;
    let first = server.publish(&[("topic", "/r"), ("data", "one")]).await;
    server.publish(&[("topic", "/r"), ("data", "two")]).await;

    // The query parameter, as a browser's first connection sends it.
    let mut reader = server
        .subscribe(&[("match", "/r"), ("last_event_id", &first)])
        .await;
    assert_eq!(reader.headers()["mercure-last-event-id"], first.as_str());
    assert_eq!(reader.expect_next().await.data, "two");

    // The header wins over the parameter.
    let response = server
        .subscribe_request(&[("match", "/r"), ("last_event_id", "earliest")])
        .header("Last-Event-ID", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["mercure-last-event-id"], first.as_str());
    assert_eq!(SseReader::new(response).expect_next().await.data, "two");

    // `earliest`: everything, and the field says so.
    let mut reader = server
        .subscribe(&[("match", "/r"), ("last_event_id", "earliest")])
        .await;
    assert_eq!(reader.headers()["mercure-last-event-id"], "earliest");
    assert_eq!(reader.expect_next().await.data, "one");

    // An id the hub does not have: `earliest`, so a client comparing it with what it asked for
    // knows it may have missed something.
    let reader = server
        .subscribe(&[("match", "/r"), ("last_event_id", "urn:uuid:unknown")])
        .await;
    assert_eq!(reader.headers()["mercure-last-event-id"], "earliest");

    // No id asked for: no field.
    let reader = server.subscribe(&[("match", "/r")]).await;
    assert!(reader.headers().get("mercure-last-event-id").is_none());
}

#[tokio::test]
async fn draft_07_requests_are_unchanged_by_the_new_parameters() {
    let server = TestServer::start_default().await;
    let first = server.publish(&[("topic", "/d"), ("data", "one")]).await;
    // A template is still a template for `topic`, and draft-07 has no new field.
    let mut reader = server
        .subscribe(&[("topic", "/{x}"), ("lastEventID", &first)])
        .await;
    assert!(reader.headers().get("mercure-last-event-id").is_none());
    server.publish(&[("topic", "/d"), ("data", "two")]).await;
    assert_eq!(reader.expect_next().await.data, "two");
}

#[tokio::test]
async fn subscription_events_and_the_api_take_the_1_0_form() {
    use crate::helpers::{SUBSCRIBER_KEY, access_claims, access_token, subscriber_access_token};
    use serde_json::{Value, json};

    let server = TestServer::start_v1(|_| {}).await;
    // A watcher of every exact-matcher subscription, through a relative URL pattern resolved
    // against the hub's URL, as the spec's example does.
    let watcher_token = subscriber_access_token(&["*"]);
    let watcher = server
        .subscribe_request(&[(
            "match_urlpattern",
            "/.well-known/mercure/subscriptions/exact/:match/:subscriber",
        )])
        .bearer_auth(&watcher_token)
        .send()
        .await
        .unwrap();
    let mut watcher = SseReader::new(watcher);

    let member_token = access_token(
        SUBSCRIBER_KEY,
        access_claims(json!([{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["subscribe"],
            "topics": [{ "match": "/books/1" }],
            "payload": { "name": "ann" },
        }])),
    );
    let member = server
        .subscribe_request(&[("match", "/books/1")])
        .bearer_auth(member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(member.status(), StatusCode::OK);

    let event = watcher.expect_next().await;
    assert_eq!(event.event, "mercure", "the reserved event type");
    let doc: Value = serde_json::from_str(&event.data).unwrap();
    let subscriber = doc["subscriber"].as_str().unwrap().to_owned();
    let id = format!(
        "/.well-known/mercure/subscriptions/exact/%2Fbooks%2F1/{}",
        subscriber.replace(':', "%3A")
    );
    assert_eq!(
        doc,
        json!({
            "id": id,
            "type": "subscription",
            "match_type": "exact",
            "match": "/books/1",
            "subscriber": subscriber,
            "active": true,
            "payload": { "name": "ann" },
        })
    );
    assert!(!event.id.is_empty(), "a live id to resume from");

    // The API: the collection for that matcher, and the one subscription, as the event said.
    let client = server.client();
    let collection = client
        .get(server.url("/.well-known/mercure/subscriptions/exact/%2Fbooks%2F1"))
        .bearer_auth(&watcher_token)
        .send()
        .await
        .unwrap();
    assert_eq!(collection.status(), StatusCode::OK);
    assert_eq!(collection.headers()["content-type"], "application/json");
    let link = collection.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.starts_with("</.well-known/mercure>; rel=\"mercure\"; last-event-id=\""),
        "{link}"
    );
    let collection: Value = collection.json().await.unwrap();
    assert_eq!(
        collection["id"],
        "/.well-known/mercure/subscriptions/exact/%2Fbooks%2F1"
    );
    assert_eq!(collection["type"], "subscriptions");
    assert_eq!(collection["subscriptions"].as_array().unwrap().len(), 1);
    assert_eq!(collection["subscriptions"][0]["id"], id.as_str());

    let one = client
        .get(server.url(&id))
        .bearer_auth(&watcher_token)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one, doc);
    let missing = client
        .get(server.url("/.well-known/mercure/subscriptions/exact/%2Fbooks%2F1/urn%3Auuid%3Ax"))
        .bearer_auth(&watcher_token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Leaving is announced the same way.
    drop(member);
    let event = watcher.expect_next().await;
    assert_eq!(event.event, "mercure");
    let gone: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(gone["id"], id.as_str());
    assert_eq!(gone["active"], false);
}

#[tokio::test]
async fn query_carries_the_parameters_in_a_form_body_joined_with_the_query() {
    let server = TestServer::start_default().await;
    let query = reqwest::Method::from_bytes(b"QUERY").unwrap();
    let first = server
        .publish(&[("topic", "/in-body"), ("data", "old")])
        .await;
    // Matchers from both components; the query component's `last_event_id` wins over the body's.
    let response = server
        .client()
        .request(
            query.clone(),
            server.subscribe_url(&[("match", "/in-query"), ("last_event_id", &first)]),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("match=%2Fin-body&last_event_id=earliest")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["mercure-last-event-id"], first.as_str());
    let mut reader = SseReader::new(response);
    server
        .publish(&[("topic", "/in-body"), ("data", "body")])
        .await;
    server
        .publish(&[("topic", "/in-query"), ("data", "query")])
        .await;
    assert_eq!(reader.expect_next().await.data, "body");
    assert_eq!(reader.expect_next().await.data, "query");

    let url = server.url(crate::helpers::HUB);
    let not_a_form = server
        .client()
        .request(query.clone(), &url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let too_long = server
        .client()
        .request(query, &url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("match={}", "a".repeat(9000)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let put = server.client().put(&url).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers()["allow"], "GET, HEAD, POST, QUERY");
}

#[tokio::test]
async fn the_list_of_all_subscriptions_takes_the_callers_form() {
    use crate::helpers::{subscriber_access_token, subscriber_token};
    use serde_json::Value;

    let server = TestServer::start_v1(|_| {}).await;
    let v1 = server.subscribe(&[("match", "/books/1")]).await;
    let draft_07 = server.subscribe(&[("topic", "/books/{id}")]).await;
    let path = "/.well-known/mercure/subscriptions";

    // A Mercure 1.0 caller gets 1.0's collection: JSON, the cursor in the Link header only, and
    // the subscriptions whose events are in 1.0's form, each document as its own endpoint
    // serves it.
    let access = subscriber_access_token(&["*"]);
    let response = server.get_with(path, &access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.starts_with("</.well-known/mercure>; rel=\"mercure\"; last-event-id=\""),
        "{link}"
    );
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["id"], path);
    assert_eq!(doc["type"], "subscriptions");
    assert!(doc.get("@context").is_none(), "{doc}");
    assert!(doc.get("lastEventID").is_none(), "{doc}");
    let listed = doc["subscriptions"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{doc}");
    let one = &listed[0];
    assert_eq!(one["type"], "subscription");
    assert_eq!(one["match_type"], "exact");
    assert_eq!(one["match"], "/books/1");
    assert_eq!(one["active"], true);
    let own: Value = server
        .get_with(one["id"].as_str().unwrap(), &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(&own, one);

    // A draft-07 caller gets draft-07's, as before: JSON-LD with `lastEventID`, listing every
    // subscription in the form it was made in.
    let response = server.get_with(path, &subscriber_token(&["*"])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["type"], "Subscriptions");
    assert!(doc["lastEventID"].is_string());
    let listed = doc["subscriptions"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{doc}");
    assert!(listed.iter().any(|s| s["topic"] == "/books/{id}"), "{doc}");
    assert!(listed.iter().any(|s| s["match"] == "/books/1"), "{doc}");
    drop((v1, draft_07));
}

#[tokio::test]
async fn a_star_subscription_names_the_matcher_type_it_was_given_with() {
    use serde_json::Value;

    let server = TestServer::start_v1(|_| {}).await;
    let token = crate::helpers::subscriber_access_token(&["*"]);
    let mut watcher = server.watch_subscriptions(&token).await;
    // Its own subscription's event first.
    let own: Value = serde_json::from_str(&watcher.expect_next().await.data).unwrap();
    assert_eq!(own["match_type"], "urlpattern");

    // `*` is the wildcard whatever the type, but the subscription was made with a type, and its
    // document names that one (Mercure 1.0: "the topic matcher type used for this
    // subscription").
    let mut held = Vec::new();
    for (name, match_type) in [
        ("match_urlpattern", "urlpattern"),
        ("match_exact", "exact"),
        ("match", "exact"),
    ] {
        held.push(server.subscribe(&[(name, "*")]).await);
        let event = watcher.expect_next().await;
        let doc: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(doc["match"], "*", "{name}");
        assert_eq!(doc["match_type"], match_type, "{name}");
        let prefix = format!("/.well-known/mercure/subscriptions/{match_type}/%2A/");
        assert!(doc["id"].as_str().unwrap().starts_with(&prefix), "{doc}");
        // The API lists it under that type.
        let path = format!("/.well-known/mercure/subscriptions/{match_type}/%2A");
        let collection: Value = server.get_with(&path, &token).await.json().await.unwrap();
        let listed = collection["subscriptions"].as_array().unwrap();
        assert!(listed.contains(&doc), "{name}: {collection}");
    }
}
