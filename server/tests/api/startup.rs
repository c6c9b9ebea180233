//! Configurations the server refuses to start with, and what it says.

use crate::helpers::{PUBLISHER_KEY, test_config};
use tidings_server::Server;

/// Why `Server::bind` refuses this configuration.
async fn refusal(configure: impl FnOnce(&mut tidings_server::Config)) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path());
    configure(&mut config);
    match Server::bind(config).await {
        Ok(_) => panic!("the server started"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn hs256_keys_shorter_than_32_bytes_are_refused() {
    let short = "k".repeat(31);
    for key in ["", "x", short.as_str()] {
        let reason = refusal(|c| c.publisher_jwt_key = Some(key.into())).await;
        assert!(
            reason.contains("--publisher-jwt-key") && reason.contains("at least 32 bytes"),
            "{key:?}: {reason}"
        );
        let reason = refusal(|c| c.subscriber_jwt_key = Some(key.into())).await;
        assert!(
            reason.contains("--subscriber-jwt-key") && reason.contains("at least 32 bytes"),
            "{key:?}: {reason}"
        );
        // Without a subscriber key, the publisher key verifies subscribers too: named once.
        let reason = refusal(|c| {
            c.publisher_jwt_key = Some(key.into());
            c.subscriber_jwt_key = None;
        })
        .await;
        assert!(reason.contains("--publisher-jwt-key"), "{key:?}: {reason}");
    }
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path());
    config.publisher_jwt_key = Some("k".repeat(32));
    assert!(Server::bind(config).await.is_ok(), "32 bytes are enough");
    assert!(
        PUBLISHER_KEY.len() >= 32,
        "the tests' own keys are long enough"
    );
}

#[tokio::test]
async fn the_binary_says_why_it_refuses_a_short_key() {
    for key in ["", "x"] {
        let log =
            crate::helpers::ChildServer::refused(&[], &[("TIDINGS_PUBLISHER_JWT_KEY", key)]).await;
        assert!(log.contains("at least 32 bytes"), "{key:?}: {log}");
    }
}

#[tokio::test]
async fn cors_any_origin_with_exact_origins_is_refused() {
    let reason = refusal(|c| {
        c.cors_origins = vec!["https://app.example".parse().unwrap(), "*".parse().unwrap()]
    })
    .await;
    assert!(
        reason.contains("'*'") && reason.contains("https://app.example"),
        "{reason}"
    );
    let log = crate::helpers::ChildServer::refused(
        &["--cors-origin", "*", "--cors-origin", "https://app.example"],
        &[],
    )
    .await;
    assert!(log.contains("cannot be combined"), "{log}");
    let log = crate::helpers::ChildServer::refused(
        &[],
        &[("TIDINGS_CORS_ORIGINS", "https://app.example,*")],
    )
    .await;
    assert!(log.contains("cannot be combined"), "{log}");
}
