//! `POST /api/chat/{room}`: validation, the rate limit, and the rooms' presence counts.

use crate::helpers::{TestServer, WAIT};
use reqwest::{StatusCode, header};
use serde_json::Value;

#[tokio::test]
async fn chat_posts_are_trimmed_and_published_on_the_room_topic() {
    let server = TestServer::start_default().await;
    let mut room = server.subscribe(&[("topic", "/chat/general")]).await;
    let response = server
        .post_chat("general", "c1", "  ann ", "  hello <b>world</b>  ")
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
    for (i, (room, name, text, words)) in cases.into_iter().enumerate() {
        let response = server
            .post_chat(room, &format!("client{i}"), name, text)
            .await;
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
        .post_chat("general", "edge", &"n".repeat(32), &"é".repeat(2000))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_burst_of_chat_posts_is_rate_limited_per_client() {
    let server = TestServer::start_default().await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(
            server
                .post_chat("general", "burst", "ann", &format!("m{i}"))
                .await,
        );
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
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    assert!(limited.text().await.unwrap().contains("too many"));
    let other = server
        .post_chat("general", "someone-else", "bob", "hi")
        .await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another client is not limited"
    );
}

#[tokio::test]
async fn presence_counts_follow_a_rooms_subscribers() {
    let server = TestServer::start_default().await;
    let mut presence = server.subscribe(&[("topic", "/chat/lobby/presence")]).await;
    let member = server.subscribe(&[("topic", "/chat/lobby")]).await;
    let event = presence.next_within(WAIT).await.unwrap();
    assert_eq!(event.event, "presence");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["present"],
        1
    );
    drop(member);
    let event = presence.next_within(WAIT).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["present"],
        0
    );
}
