//! Hubs on one real Redis, as the nodes of a cluster, where Redis misbehaves or where what the
//! nodes ask of it is measured: a Redis rolled back to an older state, and an idle node's cost
//! to Redis (its own counters, `INFO stats`, not timings).

use futures_util::{StreamExt, future::join_all};
use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};
use tidings_hub::{
    Hub, HubConfig, NewUpdate, PublishError, RedisHistory, Selector, SubscribeRequest,
    SubscriptionStream, Update,
};
use tidings_testkit::RedisServer;

const WAIT: Duration = Duration::from_secs(20);

fn update(topic: &str, id: &str, data: &str) -> Update {
    NewUpdate {
        id: Some(id.into()),
        ..NewUpdate::new(topic, data)
    }
    .parse()
    .unwrap()
}

fn request(selectors: &[&str], last_event_id: Option<&str>) -> SubscribeRequest {
    SubscribeRequest {
        selectors: selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        scope: None,
        payload: None,
        last_event_id: last_event_id.map(str::to_owned),
        expires_at: None,
        routed: false,
    }
}

fn config() -> HubConfig {
    HubConfig {
        subscription_events: false,
        ..HubConfig::default()
    }
}

/// The ids of a stream's events, skipping comments.
struct Events {
    stream: SubscriptionStream,
    text: String,
}

impl Events {
    fn new(stream: SubscriptionStream) -> Self {
        Self {
            stream,
            text: String::new(),
        }
    }

    /// The next event's id; `None` when the stream ends.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                    return Some(id.to_owned());
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("an event, or the end, in time")?;
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        while ids.len() < n {
            ids.push(self.next().await.expect("stream open"));
        }
        ids
    }
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// Row 13 of issue 20. Redis goes back to an older state that has the same epoch (a snapshot
/// taken after the history was created), and then takes more publishes than it lost, so that
/// its positions are past every node's again: each node must notice all the same, before it
/// delivers anything of the new timeline, end its streams, and let its clients resume: from an
/// id that Redis lost, with the gap event; from one it kept, with every acknowledged update
/// published since, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_rolled_back_to_an_older_state_is_noticed_whatever_was_published_since() {
    rolled_back(|redis| {
        let _: String = redis.command(&["DEBUG", "RELOAD", "NOSAVE"]);
    })
    .await;
}

/// As above, with Redis killed and started again from the snapshot: the nodes' connections
/// break and come back, and the same holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restarted_from_an_older_snapshot_is_noticed_whatever_was_published_since() {
    rolled_back(RedisServer::restart_from_snapshot).await;
}

/// Publishes 5, snapshots, publishes 10, lets `roll_back` take Redis back to the snapshot,
/// publishes 20 at once, then checks what the nodes did.
async fn rolled_back(roll_back: impl FnOnce(&mut RedisServer)) {
    let mut redis = RedisServer::start();
    let open = || Arc::new(RedisHistory::open(&redis.url(), "t:").unwrap());
    let one = Hub::start(open(), config()).unwrap();
    let two = Hub::start(open(), config()).unwrap();
    let mut streams = Vec::new();
    for hub in [&one, &two] {
        streams.push(Events::new(
            hub.subscribe(request(&["/r"], None)).await.unwrap().stream,
        ));
    }
    for id in names("old", 0..5) {
        one.publish(update("/r", &id, "")).await.unwrap();
    }
    for events in &mut streams {
        assert_eq!(events.ids(5).await, names("old", 0..5));
    }
    let _: String = redis.command(&["SAVE"]);
    for id in names("old", 5..15) {
        two.publish(update("/r", &id, "")).await.unwrap();
    }
    for events in &mut streams {
        assert_eq!(events.ids(10).await, names("old", 5..15));
    }

    // Back to the snapshot: old5..old14 are gone, and the next positions are theirs again.
    roll_back(&mut redis);
    let new = names("new", 0..20);
    let acknowledged = join_all(new.iter().enumerate().map(|(i, id)| {
        let hub = if i % 2 == 0 { &one } else { &two };
        async move {
            // A node that just found Redis gone answers 503 for a moment (nothing stored):
            // publishers retry.
            loop {
                match hub.publish(update("/r", id, "")).await {
                    Err(PublishError::Unavailable) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    done => return done,
                }
            }
        }
    }))
    .await;
    assert!(acknowledged.iter().all(Result::is_ok), "{acknowledged:?}");

    // Every stream ends, having delivered nothing of the new timeline: a client that got one
    // of its ids would resume after it, past updates it never had. (Heartbeats keep a stream
    // that never ends busy: hence a deadline for the end, not for each event.)
    for (i, events) in streams.iter_mut().enumerate() {
        let mut delivered = Vec::new();
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(id) = events.next().await {
                delivered.push(id);
            }
        })
        .await;
        assert!(
            ended.is_ok() && delivered.is_empty(),
            "node {i} delivered {delivered:?} after the rollback, and its stream {}",
            if ended.is_ok() {
                "ended"
            } else {
                "stayed open"
            }
        );
    }

    // Resuming from the last id each client got, which Redis lost: the gap event.
    for hub in [&one, &two] {
        let resumed = hub
            .subscribe(request(&["/r"], Some("old14")))
            .await
            .unwrap();
        assert!(resumed.history_gap, "a lost id must be reported as a gap");
    }
    // Resuming from an id Redis kept: every acknowledged update published since, exactly once.
    for hub in [&one, &two] {
        let resumed = hub.subscribe(request(&["/r"], Some("old4"))).await.unwrap();
        assert!(!resumed.history_gap);
        let mut events = Events::new(resumed.stream);
        let got = events.ids(20).await;
        assert_eq!(
            got.iter().collect::<HashSet<_>>(),
            new.iter().collect::<HashSet<_>>(),
            "{got:?}"
        );
    }
    one.shutdown().await;
    two.shutdown().await;
}

/// Polls `check` every 50 ms until it holds; fails after [`WAIT`]. (For state to settle, not
/// a timing assertion.)
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Row 14 of issue 20. An idle leading node with a large history (2,000 updates of 1 KiB)
/// and a volatile rule: pruning must cost Redis what is due, not a read of the whole history
/// every second. Measured by Redis's own count of the bytes it sent over an idle window: a
/// full read is 2 MB a second, what is due while idle is nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pruning_an_idle_history_costs_redis_what_is_due_not_the_history() {
    let redis = RedisServer::start();
    let hub = Hub::start(
        Arc::new(RedisHistory::open(&redis.url(), "t:").unwrap()),
        HubConfig {
            volatile_topics: vec![("/v/".into(), Duration::from_millis(500))],
            ..config()
        },
    )
    .unwrap();
    let data = "x".repeat(1024);
    for chunk in names("keep", 0..2000).chunks(100) {
        let published = join_all(
            chunk
                .iter()
                .map(|id| hub.publish(update("/keep", id, &data))),
        )
        .await;
        assert!(published.iter().all(Result::is_ok));
    }
    let stream_length = || redis.command::<u64>(&["XLEN", "t:stream"]);
    hub.publish(update("/v/tick", "tick0", "")).await.unwrap();
    assert_eq!(stream_length(), 2001);
    until("the volatile update is pruned", || stream_length() == 2000).await;
    // Every update is now older than the volatile rule's age, so pruning could look at all.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sent = || redis.info_number("stats", "total_net_output_bytes");
    let before = sent();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = sent() - before;
    eprintln!("Redis sent {idle} bytes in 3 idle seconds");
    assert!(
        idle < 200_000,
        "an idle node made Redis send {idle} bytes in 3 s (the history is 2 MB)"
    );

    // Pruning still works.
    hub.publish(update("/v/tick", "tick1", "")).await.unwrap();
    assert_eq!(stream_length(), 2001);
    until("the next volatile update is pruned", || {
        stream_length() == 2000
    })
    .await;
    hub.shutdown().await;
}

/// What the other nodes count, read by prefix: the topics under it, with their counts as
/// subscribers come and go, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_are_read_across_nodes_by_prefix() {
    let redis = RedisServer::start();
    let open = || Arc::new(RedisHistory::open(&redis.url(), "t:").unwrap());
    let one = Hub::start(open(), config()).unwrap();
    let two = Hub::start(open(), config()).unwrap();
    let a = two
        .subscribe(request(&["/chat/a", "/other"], None))
        .await
        .unwrap();
    let counts = || async {
        let mut counts = one.subscriber_counts("/chat/", |_| true).await.unwrap();
        counts.sort();
        counts
    };
    let expect = |n: usize| vec![("/chat/a".to_owned(), n)];
    let deadline = Instant::now() + WAIT;
    while counts().await != expect(1) {
        assert!(Instant::now() < deadline, "{:?}", counts().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = two.subscribe(request(&["/chat/a"], None)).await.unwrap();
    while counts().await != expect(2) {
        assert!(Instant::now() < deadline, "{:?}", counts().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    while !counts().await.is_empty() {
        assert!(Instant::now() < deadline, "{:?}", counts().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
