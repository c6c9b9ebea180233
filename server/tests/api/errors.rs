//! Internal failures: logged by the server, told to the client as a fixed line.

use crate::helpers::{BreakableHistory, TestServer, publisher_token};
use reqwest::StatusCode;

#[tokio::test]
async fn storage_errors_are_not_echoed_to_clients() {
    let data = tempfile::tempdir().unwrap();
    let history = BreakableHistory::open(data.path());
    let server = TestServer::start_with_history(history.clone()).await;
    let id = server.publish(&[("topic", "/t"), ("id", "before")]).await;
    history.break_down();

    let published = server
        .post_form(Some(&publisher_token(&["*"])), &[("topic", "/t")])
        .await;
    let resumed = server
        .subscribe_request(&[("topic", "/t"), ("lastEventID", &id)])
        .send()
        .await
        .unwrap();
    let chat = server.post_chat("general", "ann", "hello").await;
    for (what, response) in [
        ("publish", published),
        ("subscribe", resumed),
        ("chat", chat),
    ] {
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{what}"
        );
        let body = response.text().await.unwrap();
        assert_eq!(body, "the history is unavailable\n", "{what}");
    }

    // A server-rendered page whose snapshot failed says so, without the store's message.
    let page = server.get("/chat/general").await.text().await.unwrap();
    assert!(!page.contains("secret"), "{page}");
    assert!(page.contains("the history is unavailable"), "{page}");
}
