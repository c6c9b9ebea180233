//! Several nodes on one Redis: the real binary, three times, on a real `redis-server` of the
//! test's own. Every node delivers one order (Redis's), a client resumes exactly on any node,
//! and neither a node's `kill -9` nor Redis going away loses an acknowledged update.

use crate::helpers::{
    ChildServer, HUB, SseReader, next_presence, publisher_token, subscriber_token, urlencode,
};
use reqwest::{Client, StatusCode};
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tidings_testkit::RedisServer;

/// Nodes of one cluster, on one Redis.
struct Cluster {
    redis: RedisServer,
    nodes: Vec<ChildServer>,
    /// More arguments for every node.
    extra: Vec<&'static str>,
}

impl Cluster {
    async fn start(nodes: usize) -> Self {
        Self::start_with(nodes, &[]).await
    }

    async fn start_with(nodes: usize, extra: &[&'static str]) -> Self {
        let redis = RedisServer::start();
        let mut cluster = Cluster {
            redis,
            nodes: Vec::new(),
            extra: extra.to_vec(),
        };
        for _ in 0..nodes {
            cluster.nodes.push(cluster.spawn_node().await);
        }
        cluster
    }

    async fn spawn_node(&self) -> ChildServer {
        let url = self.redis.url();
        let mut args = vec![
            "--redis-url",
            &url,
            "--market-interval-ms",
            "0",
            "--monitor-interval-ms",
            "0",
            "--heartbeat-secs",
            "1",
        ];
        args.extend(&self.extra);
        ChildServer::spawn(&args).await
    }

    fn node(&self, i: usize) -> &ChildServer {
        &self.nodes[i]
    }
}

/// A subscription to `topic` on `node`, after `last_event_id` if given.
async fn subscribe(node: &ChildServer, topic: &str, last_event_id: Option<&str>) -> SseReader {
    // Presence counts are private updates: a page token's grant receives them.
    let token = subscriber_token(&[tidings_app::model::PRESENCE_TEMPLATE]);
    let mut query = vec![("topic", topic), ("authorization", &token)];
    if let Some(id) = last_event_id {
        query.push(("lastEventID", id));
    }
    let response = Client::new()
        .get(node.url(HUB))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    SseReader::new(response)
}

/// Publishes `id` on `topic` through `node`: the response's status.
async fn publish(
    client: &Client,
    node: &str,
    topic: &str,
    id: &str,
) -> reqwest::Result<StatusCode> {
    let response = client
        .post(format!("{node}{HUB}"))
        .bearer_auth(publisher_token(&["*"]))
        .form(&[("topic", topic), ("id", id), ("data", id)])
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            response.headers().contains_key("retry-after"),
            "a 503 says when to retry"
        );
    }
    Ok(status)
}

/// The ids of the next `n` events (each within 20 s).
async fn ids(reader: &mut SseReader, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), reader.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived", ids.len()))
            .expect("stream open");
        assert_ne!(event.event, "tidings-history-gap", "no gap: {ids:?}");
        ids.push(event.id);
    }
    ids
}

/// Events until `last` arrives (within 20 s of each other), its id included.
async fn ids_until(reader: &mut SseReader, last: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), reader.next())
            .await
            .unwrap_or_else(|_| panic!("{last} never arrived after {} events", ids.len()))
            .expect("stream open");
        assert_ne!(event.event, "tidings-history-gap", "no gap");
        let done = event.id == last;
        ids.push(event.id);
        if done {
            return ids;
        }
    }
}

/// Events until every id of `wanted` has come (within 20 s of each other), checked unique.
async fn receive_all(reader: &mut SseReader, wanted: &HashSet<&String>) -> Vec<String> {
    let mut missing = wanted.clone();
    let mut got = Vec::new();
    while !missing.is_empty() {
        let event = tokio::time::timeout(Duration::from_secs(20), reader.next())
            .await
            .unwrap_or_else(|_| panic!("{} acknowledged updates missing", missing.len()))
            .expect("the stream stayed open");
        missing.remove(&event.id);
        got.push(event.id);
    }
    assert_unique(&got);
    got
}

fn assert_unique(ids: &[String]) {
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an event came twice");
}

#[tokio::test]
async fn three_nodes_deliver_concurrent_publishes_in_one_order() {
    let cluster = Cluster::start(3).await;
    let mut readers = Vec::new();
    for i in 0..3 {
        readers.push(subscribe(cluster.node(i), "/orders", None).await);
    }
    let client = Client::new();
    let mut publishers = Vec::new();
    for (p, node) in [0, 1].into_iter().enumerate() {
        let base = cluster.node(node).base.clone();
        let client = client.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..100 {
                let id = format!("p{p}-{i}");
                let status = publish(&client, &base, "/orders", &id).await.unwrap();
                assert_eq!(status, StatusCode::OK);
            }
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let mut sequences = Vec::new();
    for reader in &mut readers {
        sequences.push(ids(reader, 200).await);
    }
    assert_unique(&sequences[0]);
    assert_eq!(sequences[0], sequences[1], "node 1 and node 2 agree");
    assert_eq!(sequences[0], sequences[2], "node 1 and node 3 agree");
    for p in 0..2 {
        let own: Vec<&String> = sequences[0]
            .iter()
            .filter(|id| id.starts_with(&format!("p{p}-")))
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(
            own,
            expected.iter().collect::<Vec<_>>(),
            "each publisher's order kept"
        );
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_while_publishes_continue() {
    let cluster = Cluster::start(3).await;
    let mut on_two = subscribe(cluster.node(1), "/feed", None).await;
    let base = cluster.node(0).base.clone();
    let publisher = tokio::spawn(async move {
        let client = Client::new();
        for i in 0..300 {
            let status = publish(&client, &base, "/feed", &format!("u{i}"))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK);
        }
    });
    // The client leaves node 2 after 50 updates, and comes back on node 3 with the last id.
    let seen = ids(&mut on_two, 50).await;
    let last = seen.last().unwrap().clone();
    let mut on_three = subscribe(cluster.node(2), "/feed", Some(&last)).await;
    let rest = ids_until(&mut on_three, "u299").await;
    publisher.await.unwrap();
    let everything = [seen, rest].concat();
    let expected: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    assert_eq!(
        everything, expected,
        "no gap, no duplicate across the switch"
    );
}

#[tokio::test]
async fn a_node_killed_during_a_storm_loses_no_acknowledged_update() {
    let cluster = Cluster::start(3).await;
    let mut survivors = vec![
        subscribe(cluster.node(1), "/storm", None).await,
        subscribe(cluster.node(2), "/storm", None).await,
    ];
    let acknowledged = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut publishers = Vec::new();
    // Four publishers: two on the node that dies, one on each survivor.
    for (p, node) in [0, 0, 1, 2].into_iter().enumerate() {
        let base = cluster.node(node).base.clone();
        let acknowledged = acknowledged.clone();
        publishers.push(tokio::spawn(async move {
            let client = Client::new();
            let mut i = 0;
            while i < 400 {
                let id = format!("s{p}-{i}");
                if let Ok(StatusCode::OK) = publish(&client, &base, "/storm", &id).await {
                    acknowledged.lock().push(id);
                }
                i += 1;
            }
        }));
    }
    // Let the storm run, then kill node 1 mid-flight.
    while acknowledged.lock().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.node(0).signal("-KILL");
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let acknowledged = acknowledged.lock().clone();
    assert!(
        acknowledged.len() >= 800,
        "the survivors' publishers finished"
    );

    // Every acknowledged update reached both survivors' subscribers, in one order.
    let wanted: HashSet<&String> = acknowledged.iter().collect();
    let mut sequences = Vec::new();
    for reader in &mut survivors {
        sequences.push(receive_all(reader, &wanted).await);
    }
    assert_eq!(sequences[0], sequences[1], "the survivors agree");

    // And the history has them: a new subscriber replays every one from the earliest.
    let mut replay = subscribe(cluster.node(2), "/storm", Some("earliest")).await;
    let replayed = ids(&mut replay, sequences[0].len()).await;
    let replayed: HashSet<&String> = replayed.iter().collect();
    assert!(
        wanted.is_subset(&replayed),
        "the history holds every acknowledged update"
    );
}

/// How Redis goes away in a test.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Killed (connections refused), restarted after.
    Killed,
    /// Stopped with SIGSTOP: connections accepted, nothing answered; resumed after.
    Hung,
}

#[tokio::test]
async fn redis_away_for_five_seconds_costs_503s_but_no_acknowledged_update() {
    publish_through(Outage::Killed, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_hung_redis_costs_prompt_503s_never_a_hang() {
    publish_through(Outage::Hung, Duration::from_secs(6)).await;
}

/// Two nodes, a publisher on each, and Redis away for `outage` in the middle: publishes get
/// 503 (each with Retry-After, each within the client's 10 s timeout), `/healthz` says Redis
/// is unreachable, the streams stay open, and once Redis is back both nodes' subscribers get
/// every acknowledged update.
async fn publish_through(kind: Outage, outage: Duration) {
    let mut cluster = Cluster::start(2).await;
    let mut readers = vec![
        subscribe(cluster.node(0), "/outage", None).await,
        subscribe(cluster.node(1), "/outage", None).await,
    ];
    let acknowledged = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let storm = outage + Duration::from_secs(4);
    let mut publishers = Vec::new();
    for (p, node) in [0, 1].into_iter().enumerate() {
        let base = cluster.node(node).base.clone();
        let acknowledged = acknowledged.clone();
        let refused = refused.clone();
        publishers.push(tokio::spawn(async move {
            let client = Client::new();
            let mut i = 0;
            while started.elapsed() < storm {
                let id = format!("o{p}-{i}");
                i += 1;
                match publish(&client, &base, "/outage", &id).await {
                    Ok(StatusCode::OK) => acknowledged.lock().push(id),
                    Ok(StatusCode::SERVICE_UNAVAILABLE) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("publish answered {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let away = Instant::now();
    match kind {
        Outage::Killed => cluster.redis.kill(),
        Outage::Hung => cluster.redis.pause(),
    }
    let health = eventually(
        || async {
            let response = Client::new()
                .get(cluster.node(0).url("/healthz"))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        },
        |(status, reason)| {
            *status == StatusCode::SERVICE_UNAVAILABLE && reason.contains("unreachable")
        },
    )
    .await;
    assert_eq!(
        health.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "{kind:?}: {health:?}"
    );
    assert!(health.1.contains("unreachable"), "{kind:?}: {health:?}");
    tokio::time::sleep(outage.saturating_sub(away.elapsed())).await;
    match kind {
        Outage::Killed => cluster.redis.restart(),
        Outage::Hung => cluster.redis.resume(),
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let acknowledged = acknowledged.lock().clone();
    let refused = refused.load(Ordering::Relaxed);
    assert!(refused > 0, "publishes were refused while Redis was away");
    eprintln!(
        "{kind:?}: {} acknowledged, {refused} refused with 503",
        acknowledged.len()
    );

    // The streams stayed open through the outage and now carry everything acknowledged.
    let wanted: HashSet<&String> = acknowledged.iter().collect();
    for reader in &mut readers {
        receive_all(reader, &wanted).await;
    }
    // Each node tells the others its subscribers again (Redis may have restarted without the
    // roster's script).
    let listed = eventually(
        || listed_subscribers(cluster.node(1), "/outage"),
        |ids| ids.len() == 2,
    )
    .await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let health = eventually(
        || async {
            Client::new()
                .get(cluster.node(1).url("/healthz"))
                .send()
                .await
                .unwrap()
                .status()
        },
        |status| *status == StatusCode::OK,
    )
    .await;
    assert_eq!(health, StatusCode::OK);
}

/// The subscriptions API's list of `topic`'s subscriber ids, asked of `node`.
async fn listed_subscribers(node: &ChildServer, topic: &str) -> Vec<String> {
    let token = subscriber_token(&["/.well-known/mercure/subscriptions{/topic}{/subscriber}"]);
    let response = Client::new()
        .get(node.url(&format!("{HUB}/subscriptions/{}", urlencode(topic))))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let list: serde_json::Value = response.json().await.unwrap();
    let mut ids: Vec<String> = list["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscriber"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Waits (up to 15 s) until `check` holds of what `read` returns; the last value otherwise.
async fn eventually<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    mut read: impl FnMut() -> F,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = read().await;
        if check(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_subscriptions_api_and_presence_cover_every_node() {
    let cluster = Cluster::start(3).await;
    let mut watcher = subscribe(cluster.node(2), "/chat/lobby/presence", None).await;
    let a = subscribe(cluster.node(0), "/chat/lobby", None).await;
    let b = subscribe(cluster.node(1), "/chat/lobby", None).await;

    // Node 3 lists the subscribers of nodes 1 and 2.
    let listed = eventually(
        || listed_subscribers(cluster.node(2), "/chat/lobby"),
        |ids| ids.len() == 2,
    )
    .await;
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Presence counts both.
    while next_presence(&mut watcher).await != 2 {}

    // A subscriber leaving counts, once: one node publishes presence.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(b);
    while next_presence(&mut watcher).await != 1 {}
    let more = tokio::time::timeout(Duration::from_millis(1500), watcher.next()).await;
    assert!(more.is_err(), "one presence event per change: {more:?}");

    // A node dying (kill -9, no goodbye) counts too, once its roster entry expires.
    cluster.node(0).signal("-KILL");
    drop(a);
    let listed = eventually(
        || listed_subscribers(cluster.node(2), "/chat/lobby"),
        Vec::is_empty,
    )
    .await;
    assert!(listed.is_empty(), "{listed:?}");
    while next_presence(&mut watcher).await != 0 {}
}

/// Row 15 of issue 20. Presence needs the chat rooms' counts, on the node that publishes it:
/// 100 idle anonymous subscriptions of 100 topics each on one node must not make the other
/// nodes read that node's 10,000 topic counts four times a second. Measured by Redis's own
/// count of the bytes it sent over an idle window (a full read each time is about 1 MB/s).
#[tokio::test]
async fn presence_reads_only_the_rooms_counts_on_the_node_that_publishes_it() {
    // 103 subscriptions from one address, at once.
    let cluster = Cluster::start_with(
        2,
        &[
            "--max-subscribers-per-address",
            "1000",
            "--subscribe-burst",
            "1000",
        ],
    )
    .await;
    let mut watcher = subscribe(cluster.node(0), "/chat/lobby/presence", None).await;
    let _in_the_room = subscribe(cluster.node(0), "/chat/lobby", None).await;
    while next_presence(&mut watcher).await != 1 {}

    let mut idle = Vec::new();
    for i in 0..100 {
        let topics: Vec<(&str, String)> = (0..100)
            .map(|j| ("topic", format!("/idle/{i}/{j}")))
            .collect();
        let response = Client::new()
            .get(cluster.node(1).url(HUB))
            .query(&topics)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        idle.push(SseReader::new(response));
    }
    // Every node knows of them (the roster published them).
    let listed = eventually(
        || listed_subscribers(cluster.node(0), "/idle/99/99"),
        |ids| ids.len() == 1,
    )
    .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sent = || cluster.redis.info_number("stats", "total_net_output_bytes");
    let before = sent();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = sent() - before;
    eprintln!("Redis sent {spent} bytes in 2 idle seconds");
    assert!(
        spent < 200_000,
        "idle nodes made Redis send {spent} bytes in 2 s"
    );

    // Presence still counts every node.
    let _also = subscribe(cluster.node(1), "/chat/lobby", None).await;
    while next_presence(&mut watcher).await != 2 {}
}

#[tokio::test]
async fn a_redis_that_lost_everything_is_followed_afresh_and_old_ids_get_the_gap_event() {
    let cluster = Cluster::start(2).await;
    let client = Client::new();
    let mut before = subscribe(cluster.node(1), "/lost", None).await;
    for i in 0..5 {
        let status = publish(&client, &cluster.node(0).base, "/lost", &format!("old{i}"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(ids(&mut before, 5).await.len(), 5);

    let _: String = cluster.redis.command(&["FLUSHALL"]);
    // Positions are handed out again from 1: the nodes notice, and end the streams that were
    // built on the lost history, whose clients then resume.
    let ended = tokio::time::timeout(Duration::from_secs(15), before.next())
        .await
        .expect("the old stream ends");
    assert!(ended.is_none(), "{ended:?}");
    let mut fresh = subscribe(cluster.node(1), "/lost", None).await;
    let status = publish(&client, &cluster.node(0).base, "/lost", "new")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&mut fresh, 1).await, ["new"]);
    // A client resuming from a lost id learns that history is gone.
    let mut resumed = subscribe(cluster.node(1), "/lost", Some("old4")).await;
    let first = resumed.expect_next().await;
    assert_eq!(first.event, "tidings-history-gap");
}

#[tokio::test]
async fn wait_for_replicas_acknowledges_only_what_a_replica_has() {
    let redis = RedisServer::start();
    let mut replica = RedisServer::start_replica_of(&redis);
    let node = ChildServer::spawn(&[
        "--redis-url",
        &redis.url(),
        "--redis-wait-replicas",
        "1",
        // Ample for a replica on a loaded machine (300 ms was not, once); the unconfirmed
        // publish below waits it out.
        "--redis-wait-timeout",
        "3s",
        "--market-interval-ms",
        "0",
        "--monitor-interval-ms",
        "0",
    ])
    .await;
    let client = Client::new();
    let status = publish(&client, &node.base, "/w", "replicated")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let on_replica: u64 = replica.command(&["XLEN", "tidings:stream"]);
    assert_eq!(on_replica, 1, "the replica has it");

    // No replica: the publish is not acknowledged (it is on the primary, but unconfirmed).
    replica.kill();
    let status = publish(&client, &node.base, "/w", "unconfirmed")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
