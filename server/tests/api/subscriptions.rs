//! Active subscriptions: the subscription events and the subscriptions API.

use crate::helpers::{
    SUBSCRIBER_KEY, SseReader, TestServer, sign_with, subscriber_token, urlencode,
};
use jsonwebtoken::Algorithm;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

#[tokio::test]
async fn subscription_events_and_the_subscriptions_api() {
    let server = TestServer::start_default().await;
    let watcher_token =
        subscriber_token(&["/.well-known/mercure/subscriptions{/topic}{/subscriber}"]);
    let watcher = server
        .subscribe_request(&[(
            "topic",
            "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
        )])
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
    let member = server
        .subscribe_request(&[("topic", "/room")])
        .bearer_auth(payload_token)
        .send()
        .await
        .unwrap();
    // The watcher's claim covers its own subscription too: that event comes first.
    let own: Value = serde_json::from_str(&watcher.expect_next().await.data).unwrap();
    assert_eq!(
        own["topic"],
        "/.well-known/mercure/subscriptions/{topic}/{subscriber}"
    );
    let joined: Value = serde_json::from_str(&watcher.expect_next().await.data).unwrap();
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
            urlencode(&subscriber_id)
        )
    );

    // The API, with a token for it.
    let api = |path: String| {
        server
            .client()
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
        urlencode(&subscriber_id)
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
    let anonymous = server.get("/.well-known/mercure/subscriptions").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let narrow = server
        .client()
        .get(server.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(subscriber_token(&["/room"]))
        .send()
        .await
        .unwrap();
    assert_eq!(narrow.status(), StatusCode::FORBIDDEN);

    // Leaving publishes the inactive event.
    drop(member);
    let left: Value = serde_json::from_str(&watcher.expect_next().await.data).unwrap();
    assert_eq!(left["active"], false);
    assert_eq!(left["subscriber"], subscriber_id.as_str());
}
