//! The hub core against a real SQLite file in a temporary folder (and, as two nodes, against a
//! real Redis).

use futures_util::StreamExt;
use std::{sync::Arc, time::Duration};
use tidings_hub::{
    EARLIEST, HISTORY_GAP_EVENT, History, Hub, HubConfig, LIVE_EVENT, NewUpdate, ROUTE_EVENT,
    RedisHistory, Selector, SqliteHistory, SubscribeRequest, SubscriptionStream, Update,
};

const WAIT: Duration = Duration::from_secs(20);

fn start(dir: &tempfile::TempDir, config: HubConfig) -> Hub {
    start_with_history(dir, config).0
}

/// A hub, and its history for the test to look at.
fn start_with_history(dir: &tempfile::TempDir, config: HubConfig) -> (Hub, Arc<SqliteHistory>) {
    let history = Arc::new(SqliteHistory::open(dir.path()).unwrap());
    let hub = Hub::start(
        history.clone(),
        HubConfig {
            subscription_events: false,
            ..config
        },
    )
    .unwrap();
    (hub, history)
}

fn new_update(topic: &str, id: &str, data: &str) -> NewUpdate {
    NewUpdate {
        id: Some(id.into()),
        ..NewUpdate::new(topic, data)
    }
}

fn update(topic: &str, id: &str, data: &str) -> Update {
    new_update(topic, id, data).parse().unwrap()
}

fn private_update(topic: &str, id: &str, data: &str) -> Update {
    NewUpdate {
        private: true,
        ..new_update(topic, id, data)
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

/// Reads SSE events as (event type, id, data), skipping comments.
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

    async fn next(&mut self) -> Option<(Option<String>, Option<String>, String)> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if block.starts_with(':') {
                    continue;
                }
                let (mut ty, mut id, mut data) = (None, None, Vec::new());
                for line in block.lines().filter(|l| !l.is_empty()) {
                    let (k, v) = line
                        .split_once(": ")
                        .unwrap_or((line.trim_end_matches(':'), ""));
                    match k {
                        "event" => ty = Some(v.to_owned()),
                        "id" => id = Some(v.to_owned()),
                        "data" => data.push(v.to_owned()),
                        _ => {}
                    }
                }
                return Some((ty, id, data.join("\n")));
            }
            let chunk = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("event in time")?;
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        while ids.len() < n {
            ids.push(self.next().await.expect("stream open").1.unwrap());
        }
        ids
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_reaches_matching_subscribers_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    // Both selectors match: the update must still arrive once.
    let sub = hub
        .subscribe(request(&["/books/{id}", "/books/1"], None))
        .await
        .unwrap();
    let other = hub
        .subscribe(request(&["/authors/{id}"], None))
        .await
        .unwrap();
    assert_eq!(sub.last_event_id, EARLIEST);
    let mut events = Events::new(sub.stream);
    let mut other = Events::new(other.stream);

    hub.publish(update("/books/1", "a", "x\ny")).await.unwrap();
    hub.publish(update("/authors/9", "b", "z")).await.unwrap();
    assert_eq!(
        events.next().await.unwrap(),
        (None, Some("a".into()), "x\ny".into())
    );
    assert_eq!(other.next().await.unwrap().1.as_deref(), Some("b"));
    hub.publish(update("/books/2", "c", "")).await.unwrap();
    assert_eq!(events.next().await.unwrap().1.as_deref(), Some("c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resumes_from_an_id_from_earliest_and_reports_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    for i in 1..=5 {
        hub.publish(update("/t", &format!("id{i}"), &i.to_string()))
            .await
            .unwrap();
    }
    let sub = hub.subscribe(request(&["/t"], Some("id2"))).await.unwrap();
    assert_eq!(sub.last_event_id, "id2");
    assert_eq!(Events::new(sub.stream).ids(3).await, ["id3", "id4", "id5"]);

    let sub = hub
        .subscribe(request(&["/t"], Some(EARLIEST)))
        .await
        .unwrap();
    assert_eq!(sub.last_event_id, EARLIEST);
    assert_eq!(
        Events::new(sub.stream).ids(5).await,
        ["id1", "id2", "id3", "id4", "id5"]
    );

    let sub = hub.subscribe(request(&["/t"], None)).await.unwrap();
    assert_eq!(
        sub.last_event_id, "id5",
        "the header names the last update before the stream"
    );

    let sub = hub
        .subscribe(request(&["/t"], Some("never-published")))
        .await
        .unwrap();
    assert!(sub.history_gap);
    assert_eq!(sub.last_event_id, "id5");
    let mut events = Events::new(sub.stream);
    let (ty, _, data) = events.next().await.unwrap();
    assert_eq!(ty.as_deref(), Some(HISTORY_GAP_EVENT));
    assert_eq!(data, "id5");
    hub.publish(update("/t", "id6", "6")).await.unwrap();
    assert_eq!(events.ids(1).await, ["id6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_survives_a_restart_and_pruned_ids_are_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        &dir,
        HubConfig {
            history_max_events: 3,
            ..HubConfig::default()
        },
    );
    for i in 1..=10 {
        hub.publish(update("/t", &format!("id{i}"), ""))
            .await
            .unwrap();
    }
    hub.shutdown().await;
    drop(hub);
    let (hub, history) = start_with_history(
        &dir,
        HubConfig {
            history_max_events: 3,
            ..HubConfig::default()
        },
    );
    let sub = hub.subscribe(request(&["/t"], Some("id8"))).await.unwrap();
    assert_eq!(Events::new(sub.stream).ids(2).await, ["id9", "id10"]);
    // The size the hub reports is kept without queries and matches the store once the writer
    // has pruned (it prunes the excess at start, beside this test, and after publishes).
    let counted = || history.read(0, u64::MAX, 1000).unwrap().len() as u64;
    let settled = || async {
        for _ in 0..100 {
            if hub.stats().history_updates == counted() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    };
    assert!(
        settled().await,
        "{} != {}",
        hub.stats().history_updates,
        counted()
    );
    hub.publish(update("/t", "id11", "")).await.unwrap();
    assert!(
        settled().await,
        "{} != {}",
        hub.stats().history_updates,
        counted()
    );
    let sub = hub.subscribe(request(&["/t"], Some("id1"))).await.unwrap();
    assert!(sub.history_gap, "id1 was pruned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_publishes_and_resumes_give_exact_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, history) = start_with_history(
        &dir,
        HubConfig {
            subscriber_buffer: 100_000,
            ..HubConfig::default()
        },
    );
    const TOTAL: usize = 3000;
    let ids: Vec<String> = (0..TOTAL).map(|i| format!("e{i}")).collect();

    // A publisher that runs flat out while subscribers join.
    let publisher = {
        let hub = hub.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            for (i, id) in ids.iter().enumerate() {
                // Alternate topics so the template subscribers skip none and exact ones do.
                hub.publish(update(&format!("/race/{}", i % 2), id, &i.to_string()))
                    .await
                    .unwrap();
            }
        })
    };

    let mut readers = Vec::new();
    for round in 0..12 {
        // Wait until at least some updates exist, then resume from one of them.
        tokio::time::sleep(Duration::from_millis(3 * round)).await;
        let known = history
            .heads()
            .unwrap()
            .last
            .map(|s| s.update.id().to_owned());
        let (start_id, start_index) = match (&known, round % 3) {
            (_, 0) => (Some(EARLIEST.to_owned()), 0),
            (Some(id), _) => {
                let i: usize = id[1..].parse().unwrap();
                // Resume a little before the newest: part history, part live.
                let back = i.saturating_sub(round as usize * 5);
                (Some(ids[back].clone()), back + 1)
            }
            (None, _) => (Some(EARLIEST.to_owned()), 0),
        };
        let sub = hub
            .subscribe(request(&["/race/{n}"], start_id.as_deref()))
            .await
            .unwrap();
        let expected: Vec<String> = ids[start_index..].to_vec();
        readers.push(tokio::spawn(async move {
            let got = Events::new(sub.stream).ids(expected.len()).await;
            assert_eq!(got, expected, "exact sequence, no gap, no duplicate");
        }));
    }
    publisher.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_updates_reach_only_authorized_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let scoped = |scope: &[&str]| SubscribeRequest {
        scope: Some(scope.iter().map(|s| Selector::parse(s).unwrap()).collect()),
        ..request(&["*"], None)
    };
    let anonymous = Events::new(hub.subscribe(request(&["*"], None)).await.unwrap().stream);
    let mut allowed = Events::new(
        hub.subscribe(scoped(&["/secret/{x}"]))
            .await
            .unwrap()
            .stream,
    );
    let mut other = Events::new(hub.subscribe(scoped(&["/elsewhere"])).await.unwrap().stream);
    let mut anonymous = anonymous;

    hub.publish(private_update("/secret/1", "p", "hidden"))
        .await
        .unwrap();
    hub.publish(update("/public", "q", "open")).await.unwrap();

    assert_eq!(allowed.ids(2).await, ["p", "q"]);
    assert_eq!(other.ids(1).await, ["q"]);
    assert_eq!(anonymous.ids(1).await, ["q"]);
    // And from history: the private one is skipped for the anonymous subscriber too.
    let replay = hub
        .subscribe(request(&["*"], Some(EARLIEST)))
        .await
        .unwrap();
    assert_eq!(Events::new(replay.stream).ids(1).await, ["q"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_subscriber_is_evicted_while_others_keep_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        &dir,
        HubConfig {
            subscriber_buffer: 4,
            ..HubConfig::default()
        },
    );
    let stalled = hub.subscribe(request(&["/t"], None)).await.unwrap();
    let mut healthy = Events::new(hub.subscribe(request(&["/t"], None)).await.unwrap().stream);
    // Lockstep: the next update is published once the healthy reader has the previous one, so
    // its queue never holds more than one event, while the stalled one's fills up.
    let (seen, mut receipts) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..20 {
            got.extend(healthy.ids(1).await);
            seen.send(()).await.unwrap();
        }
        got
    });
    for i in 0..20 {
        hub.publish(update("/t", &format!("id{i}"), ""))
            .await
            .unwrap();
        receipts.recv().await.unwrap();
    }
    let got = reader.await.unwrap();
    assert_eq!(got, (0..20).map(|i| format!("id{i}")).collect::<Vec<_>>());
    assert_eq!(hub.stats().subscribers_evicted, 1);

    // The evicted stream hands over what it had queued, then ends; its client would reconnect
    // with the last id and get the rest from history.
    let mut stalled = Events::new(stalled.stream);
    let mut last = None;
    while let Some((_, id, _)) = stalled.next().await {
        last = id;
    }
    let last = last.expect("the queued events were delivered");
    let resumed = hub.subscribe(request(&["/t"], Some(&last))).await.unwrap();
    let n: usize = last[2..].parse().unwrap();
    let rest = Events::new(resumed.stream).ids(19 - n).await;
    assert_eq!(
        rest,
        (n + 1..20).map(|i| format!("id{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_index_shares_selectors_and_frees_them_when_subscribers_leave() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let mut subs = Vec::new();
    for i in 0..50 {
        // 50 subscribers, but only 3 distinct selectors among them plus one exact each.
        let own = format!("/user/{i}");
        let selectors = ["/room/{id}", "*", "/lobby", own.as_str()];
        subs.push(hub.subscribe(request(&selectors, None)).await.unwrap());
    }
    assert_eq!(hub.stats().subscribers, 50);
    assert_eq!(hub.stats().distinct_selectors, 3 + 50);
    subs.truncate(10);
    assert_eq!(hub.stats().distinct_selectors, 3 + 10);
    drop(subs);
    assert_eq!(hub.stats().subscribers, 0);
    assert_eq!(hub.stats().distinct_selectors, 0, "nothing left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_updates_are_pruned_by_age_even_when_nothing_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let max_age = Some(Duration::from_millis(500));
    let hub = start(
        &dir,
        HubConfig {
            history_max_age: max_age,
            ..HubConfig::default()
        },
    );
    hub.publish(update("/t", "old", "")).await.unwrap();
    assert_eq!(hub.stats().history_updates, 1);
    // No further publish: the writer's once-a-second tick must do it.
    tokio::time::timeout(WAIT, async {
        while hub.stats().history_updates != 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("pruned by age");
    let sub = hub.subscribe(request(&["/t"], Some("old"))).await.unwrap();
    assert!(sub.history_gap, "a pruned id is a gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_then_a_subscription_from_it_miss_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    for i in 0..30 {
        hub.publish(update(&format!("/room/{}", i % 3), &format!("m{i}"), ""))
            .await
            .unwrap();
    }
    hub.publish(private_update("/room/0", "secret", ""))
        .await
        .unwrap();
    let snapshot = hub
        .snapshot(vec![Selector::parse("/room/0").unwrap()], 4, 10_000)
        .await
        .unwrap();
    let ids: Vec<&str> = snapshot.updates.iter().map(|u| u.id()).collect();
    assert_eq!(
        ids,
        ["m18", "m21", "m24", "m27"],
        "newest matching, oldest first, no private"
    );
    assert_eq!(
        snapshot.last_event_id, "m27",
        "the newest matching update: not the private one after it, nor another topic's"
    );

    hub.publish(update("/room/0", "after", "")).await.unwrap();
    let sub = hub
        .subscribe(request(&["/room/0"], Some(&snapshot.last_event_id)))
        .await
        .unwrap();
    assert_eq!(Events::new(sub.stream).ids(1).await, ["after"]);

    let empty = start(&tempfile::tempdir().unwrap(), HubConfig::default());
    let nothing = empty.snapshot(vec![Selector::Any], 10, 100).await.unwrap();
    assert!(nothing.updates.is_empty());
    assert_eq!(nothing.last_event_id, EARLIEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_events_are_live_only_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let history = Arc::new(SqliteHistory::open(dir.path()).unwrap());
    let hub = Hub::start(history.clone(), HubConfig::default()).unwrap();
    let watcher = SubscribeRequest {
        scope: Some(Arc::from([Selector::Any])),
        ..request(
            &[
                "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
                "/t",
            ],
            None,
        )
    };
    let mut events = Events::new(hub.subscribe(watcher).await.unwrap().stream);
    // Its own subscription event first.
    let (_, own, data) = events.next().await.unwrap();
    assert!(data.contains("\"active\":true"), "{data}");
    // Connections coming and going: each is announced, none is stored.
    for _ in 0..50 {
        drop(hub.subscribe(request(&["/t"], None)).await.unwrap());
    }
    let mut last = None;
    for _ in 0..100 {
        last = events.next().await.unwrap().1;
    }
    assert_eq!(
        hub.stats().history_updates,
        0,
        "the history holds only publishes"
    );
    assert!(history.is_empty());

    // Resuming from a live event's id misses no stored update published after it.
    hub.publish(update("/t", "stored", "")).await.unwrap();
    let resumed = hub
        .subscribe(request(&["/t"], Some(last.as_deref().unwrap())))
        .await
        .unwrap();
    assert!(!resumed.history_gap);
    assert_eq!(Events::new(resumed.stream).ids(1).await, ["stored"]);
    assert!(own.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_updates_keep_their_place_in_the_order_without_being_stored() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let mut events = Events::new(hub.subscribe(request(&["/t"], None)).await.unwrap().stream);
    hub.publish(update("/t", "a", "")).await.unwrap();
    hub.publish_live(update("/t", "live", "")).await.unwrap();
    hub.publish(update("/t", "b", "")).await.unwrap();
    let ids = events.ids(3).await;
    assert_eq!((ids[0].as_str(), ids[2].as_str()), ("a", "b"));
    assert!(
        ids[1].starts_with("urn:tidings:live:"),
        "a live event's id is the hub's, carrying its place: {}",
        ids[1]
    );
    assert_eq!(hub.stats().history_updates, 2);
    let replay = hub
        .subscribe(request(&["/t"], Some(EARLIEST)))
        .await
        .unwrap();
    assert_eq!(Events::new(replay.stream).ids(2).await, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pruning_that_overtakes_a_replay_sends_the_gap_event_before_the_hole() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        &dir,
        HubConfig {
            history_max_events: 1000,
            subscriber_buffer: 100_000,
            ..HubConfig::default()
        },
    );
    for i in 0..1000 {
        hub.publish(update("/t", &format!("id{i}"), ""))
            .await
            .unwrap();
    }
    let sub = hub.subscribe(request(&["/t"], Some("id0"))).await.unwrap();
    assert!(!sub.history_gap, "nothing is pruned yet");
    let mut events = Events::new(sub.stream);
    // The first chunk of the replay is read...
    let first = events.next().await.unwrap();
    assert_eq!(first.1.as_deref(), Some("id1"));
    // ...then a storm of publishes prunes far past where the replay stands.
    for i in 1000..3000 {
        hub.publish(update("/t", &format!("id{i}"), ""))
            .await
            .unwrap();
    }
    let mut seen = vec![first.1.unwrap()];
    loop {
        let (ty, id, data) = events.next().await.unwrap();
        if ty.as_deref() == Some(HISTORY_GAP_EVENT) {
            assert_eq!(data, "id999", "continues after the head at the handoff");
            break;
        }
        let id = id.unwrap();
        let n: usize = id[2..].parse().unwrap();
        assert_eq!(n, seen.len() + 1, "in order, nothing skipped silently");
        seen.push(id);
        assert!(n < 999, "the hole must be announced before the replay ends");
    }
    // Then live, from the handoff on.
    assert_eq!(events.ids(1).await, ["id1000"]);
    assert_eq!(hub.stats().history_gaps, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anonymous_subscriber_never_learns_a_private_id() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let scope =
        |s: &str| -> Option<Arc<[Selector]>> { Some(Arc::from([Selector::parse(s).unwrap()])) };
    // Nothing public yet.
    hub.publish(private_update("/secret", "p0", ""))
        .await
        .unwrap();
    let sub = hub.subscribe(request(&["*"], None)).await.unwrap();
    assert_eq!(sub.last_event_id, EARLIEST);
    hub.publish(update("/open", "q", "")).await.unwrap();
    hub.publish(private_update("/secret", "p1", ""))
        .await
        .unwrap();

    let sub = hub.subscribe(request(&["*"], None)).await.unwrap();
    assert_eq!(sub.last_event_id, "q", "the newest public id, not p1");
    let gap = hub
        .subscribe(request(&["*"], Some("unknown")))
        .await
        .unwrap();
    assert_eq!(gap.last_event_id, "q");
    let (ty, _, data) = Events::new(gap.stream).next().await.unwrap();
    assert_eq!(
        (ty.as_deref(), data.as_str()),
        (Some(HISTORY_GAP_EVENT), "q")
    );

    let allowed = SubscribeRequest {
        scope: scope("/secret"),
        ..request(&["*"], None)
    };
    assert_eq!(hub.subscribe(allowed).await.unwrap().last_event_id, "p1");
    let other = SubscribeRequest {
        scope: scope("/other"),
        ..request(&["*"], None)
    };
    assert_eq!(hub.subscribe(other).await.unwrap().last_event_id, "q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_tests_only_templates_whose_prefix_starts_its_topic() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let selectors: Vec<String> = (0..3000).map(|i| format!("/t/{i}/{{x}}")).collect();
    let mut subs = Vec::new();
    for chunk in selectors.chunks(100) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        subs.push(hub.subscribe(request(&chunk, None)).await.unwrap());
    }
    assert_eq!(hub.stats().distinct_selectors, 3000);
    let before = hub.stats().template_tests;
    hub.publish(update("/t/1234/x", "one", "")).await.unwrap();
    assert_eq!(
        hub.stats().template_tests - before,
        1,
        "one candidate, not 3000"
    );
    let mut events = Events::new(subs.remove(12).stream);
    assert_eq!(events.ids(1).await, ["one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_is_a_real_write() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    hub.health().await.unwrap();
    hub.publish(update("/t", "a", "")).await.unwrap();
    hub.health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_over_a_corrupt_history_gets_the_gap_event_not_a_silent_end() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let data = "x".repeat(1024);
    let publishes = (0..3000).map(|i| hub.publish(update("/t", &format!("id{i}"), &data)));
    for published in futures_util::future::join_all(publishes).await {
        published.unwrap();
    }
    // Everything into the main file, then garbage over its middle, as a failing disk would.
    let path = dir.path().join("history.sqlite3");
    rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(512 * 1024)).unwrap();
        file.write_all(&vec![0xA5; 2 * 1024 * 1024]).unwrap();
        file.sync_all().unwrap();
    }
    let sub = hub
        .subscribe(request(&["/t"], Some(EARLIEST)))
        .await
        .unwrap();
    let mut events = Events::new(sub.stream);
    loop {
        let (ty, _, _) = events
            .next()
            .await
            .expect("the stream must not end silently");
        if ty.as_deref() == Some(HISTORY_GAP_EVENT) {
            break;
        }
    }
    assert_eq!(hub.stats().history_gaps, 1);
}

/// Two hubs on one Redis, as two nodes: both deliver stored and live-only events in one
/// order, whichever hub they were sent on, and a client resumes on either from any event's id,
/// a live-only one's included, missing and repeating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hubs_on_one_redis_deliver_one_order_and_resume_on_either() {
    let redis = tidings_testkit::RedisServer::start();
    let open = || Arc::new(RedisHistory::open(&redis.url(), "t:").unwrap());
    let one = Hub::start(open(), HubConfig::default()).unwrap();
    let two = Hub::start(open(), HubConfig::default()).unwrap();
    let watcher = |last: Option<&str>| SubscribeRequest {
        scope: Some(Arc::from([Selector::Any])),
        ..request(
            &[
                "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
                "/t",
            ],
            last,
        )
    };
    let mut on_one = Events::new(one.subscribe(watcher(None)).await.unwrap().stream);
    let mut on_two = Events::new(two.subscribe(watcher(None)).await.unwrap().stream);
    one.publish(update("/t", "start", "")).await.unwrap();
    for i in 0..30 {
        let hub = if i % 2 == 0 { &one } else { &two };
        hub.publish(update("/t", &format!("s{i}"), ""))
            .await
            .unwrap();
        if i % 3 == 0 {
            // Announced (opened, then closed) through Redis, never stored.
            drop(two.subscribe(request(&["/x"], None)).await.unwrap());
        }
    }
    two.publish(update("/t", "end", "")).await.unwrap();

    let mut sequences = Vec::new();
    for events in [&mut on_one, &mut on_two] {
        let mut ids = Vec::new();
        let mut started = false;
        loop {
            let id = events.next().await.expect("stream open").1.unwrap();
            started |= id == "start";
            if started {
                ids.push(id.clone());
            }
            if id == "end" {
                break;
            }
        }
        sequences.push(ids);
    }
    assert_eq!(sequences[0], sequences[1], "both hubs deliver one order");
    let live = sequences[0].len() - 32;
    assert!(
        live >= 20,
        "ten subscribers opened and closed: {:?}",
        sequences[0]
    );

    // Resume on hub one from a live-only event that hub two delivered, mid-sequence.
    let at = sequences[1]
        .iter()
        .position(|id| id.starts_with("urn:"))
        .unwrap()
        + 4;
    let resumed = one
        .subscribe(watcher(Some(&sequences[1][at])))
        .await
        .unwrap();
    assert!(!resumed.history_gap);
    let mut events = Events::new(resumed.stream);
    let mut ids = Vec::new();
    while ids.last().map(String::as_str) != Some("end") {
        ids.push(events.next().await.expect("stream open").1.unwrap());
    }
    let expected: Vec<String> = sequences[1][at + 1..]
        .iter()
        .filter(|id| !id.starts_with("urn:"))
        .cloned()
        .collect();
    assert_eq!(ids, expected, "every stored update after it, once");
    one.shutdown().await;
    two.shutdown().await;
}

/// More live-only events than one read of Redis takes, then a stored update: every node
/// delivers them in the order they were sent, the stored update last.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_live_events_keeps_its_place_before_later_updates() {
    let redis = tidings_testkit::RedisServer::start();
    let open = || Arc::new(RedisHistory::open(&redis.url(), "t:").unwrap());
    let config = || HubConfig {
        subscription_events: false,
        ..HubConfig::default()
    };
    let one = Hub::start(open(), config()).unwrap();
    let two = Hub::start(open(), config()).unwrap();
    let mut on_two = Events::new(two.subscribe(request(&["/t"], None)).await.unwrap().stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..800 {
        one.publish_live(update("/t", "live", &format!("live{i}")))
            .await
            .unwrap();
    }
    one.publish(update("/t", "stored", "stored")).await.unwrap();
    let mut expected: Vec<String> = (0..800).map(|i| format!("live{i}")).collect();
    expected.push("stored".into());
    let mut got = Vec::new();
    for _ in 0..801 {
        got.push(on_two.next().await.expect("stream open").2);
    }
    assert_eq!(got, expected);
}

/// An entry the hub cannot read (another version wrote it, say) is skipped with a log line;
/// it does not stop the fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_entry_in_redis_is_skipped() {
    let redis = tidings_testkit::RedisServer::start();
    let history = Arc::new(RedisHistory::open(&redis.url(), "t:").unwrap());
    let hub = Hub::start(history, HubConfig::default()).unwrap();
    let mut events = Events::new(hub.subscribe(request(&["/t"], None)).await.unwrap().stream);
    hub.publish(update("/t", "before", "")).await.unwrap();
    assert_eq!(events.ids(1).await, ["before"]);
    // The next position, written by something else: no fields a Tidings update has.
    let _: u64 = redis.command(&["HINCRBY", "t:meta", "seq", "1"]);
    let _: String = redis.command(&["XADD", "t:stream", "2-0", "what", "ever"]);
    hub.publish(update("/t", "after", "")).await.unwrap();
    assert_eq!(events.ids(1).await, ["after"]);
}

/// Row 7 of issue 20: a subscriber that asks for the whole history and then never reads holds
/// one frame of it (what the stream handed to the socket), and that frame is small: replay
/// chunks are capped in bytes, and an update too large for a chunk is handed over as the
/// encoded bytes every replaying subscriber shares, never as a private copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaying_subscriber_that_never_reads_holds_little() {
    const SUBSCRIBERS: usize = 30;
    /// What one frame of small updates may hold.
    const FRAME: usize = 80 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    // 8 MiB of history in 48 KiB updates, then 2 MiB of 1 KiB ones.
    let large = "x".repeat(48 * 1024);
    let small = "y".repeat(1024);
    let publishes = (0..171)
        .map(|i| update("/big", &format!("big{i}"), &large))
        .chain((0..2048).map(|i| update("/small", &format!("small{i}"), &small)))
        .map(|u| hub.publish(u));
    for position in futures_util::future::join_all(publishes).await {
        position.unwrap();
    }

    // Each subscriber's stream is polled once, as a connection whose socket is full would: the
    // frame it yields is what it holds until its client reads.
    let held = |selector: &'static str| {
        let hub = hub.clone();
        async move {
            let mut frames = Vec::new();
            let mut streams = Vec::new();
            for _ in 0..SUBSCRIBERS {
                let mut sub = hub
                    .subscribe(request(&[selector], Some(EARLIEST)))
                    .await
                    .unwrap();
                let frame = tokio::time::timeout(WAIT, sub.stream.next())
                    .await
                    .unwrap()
                    .unwrap();
                frames.push(frame);
                streams.push(sub.stream);
            }
            frames
        }
    };
    let distinct = |frames: &[bytes::Bytes]| {
        let mut seen = std::collections::HashSet::new();
        frames
            .iter()
            .filter(|f| seen.insert(f.as_ptr()))
            .map(|f| f.len())
            .sum::<usize>()
    };

    let big = held("/big").await;
    let big_total = distinct(&big);
    eprintln!(
        "large updates: {SUBSCRIBERS} non-reading subscribers hold {big_total} distinct bytes \
         ({} per subscriber)",
        big_total / SUBSCRIBERS
    );
    for frame in &big {
        assert!(
            frame.len() <= large.len() + 128,
            "a frame holds one large update, not {} bytes",
            frame.len()
        );
    }
    assert!(
        big_total <= 2 * (large.len() + 128),
        "the subscribers share the encoded update: {big_total} bytes held"
    );

    let small_frames = held("/small").await;
    let small_total = distinct(&small_frames);
    eprintln!(
        "small updates: {SUBSCRIBERS} non-reading subscribers hold {small_total} distinct bytes \
         ({} per subscriber)",
        small_total / SUBSCRIBERS
    );
    for frame in &small_frames {
        assert!(
            frame.len() <= FRAME,
            "a frame is capped in bytes: {} bytes",
            frame.len()
        );
    }
}

/// Row 7, live: events queued for a subscriber that does not read are handed over as they
/// were fanned out (shared), and a frame coalescing small ones is capped in bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_subscriber_that_never_reads_holds_shared_bytes_and_capped_frames() {
    const FRAME: usize = 80 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let mut one = hub.subscribe(request(&["/t"], None)).await.unwrap();
    let mut two = hub.subscribe(request(&["/t"], None)).await.unwrap();
    let large = "x".repeat(48 * 1024);
    for i in 0..64 {
        hub.publish(update("/t", &format!("a{i}"), &large))
            .await
            .unwrap();
    }
    let first = one.stream.next().await.unwrap();
    let second = two.stream.next().await.unwrap();
    assert!(
        first.len() <= large.len() + 128,
        "one large event per frame, not {} bytes",
        first.len()
    );
    assert_eq!(
        first.as_ptr(),
        second.as_ptr(),
        "the fanned-out bytes are shared"
    );
    let small = "y".repeat(4 * 1024);
    let mut three = hub.subscribe(request(&["/s"], None)).await.unwrap();
    for i in 0..64 {
        hub.publish(update("/s", &format!("b{i}"), &small))
            .await
            .unwrap();
    }
    let frame = three.stream.next().await.unwrap();
    assert!(frame.len() <= FRAME, "frames are capped: {}", frame.len());
}

/// Row 8 of issue 20: resuming from a live-only event's id does not depend on a table anyone
/// can flush. Far more subscription events than the old table held (65,536) are announced
/// after a client's last live event; it still resumes exactly. A tampered id gets the gap
/// event. And the ids survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_id_resumes_exactly_however_many_announcements_follow() {
    let dir = tempfile::tempdir().unwrap();
    let history = Arc::new(SqliteHistory::open(dir.path()).unwrap());
    let hub = Hub::start(history, HubConfig::default()).unwrap();
    let watcher = |last: Option<&str>| SubscribeRequest {
        scope: Some(Arc::from([Selector::Any])),
        ..request(
            &[
                "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
                "/t",
            ],
            last,
        )
    };
    let (early, data) = {
        let mut events = Events::new(hub.subscribe(watcher(None)).await.unwrap().stream);
        let (_, id, data) = events.next().await.unwrap();
        (id.unwrap(), data)
    };
    assert!(data.contains("\"active\":true"), "{data}");

    // One client opening and closing subscriptions of 100 topics: 200 announcements a time,
    // 80,000 in all, with a stored update after every 2,000.
    let topics: Vec<String> = (0..100).map(|i| format!("/churn/{i}")).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut stored = Vec::new();
    for round in 0..400 {
        drop(hub.subscribe(request(&topics, None)).await.unwrap());
        if round % 10 == 9 {
            let id = format!("s{round}");
            hub.publish(update("/t", &id, "")).await.unwrap();
            stored.push(id);
        }
    }

    let resumed = hub.subscribe(request(&["/t"], Some(&early))).await.unwrap();
    assert!(
        !resumed.history_gap,
        "80,000 announcements later, the early live id still resumes"
    );
    assert_eq!(resumed.last_event_id, early);
    assert_eq!(Events::new(resumed.stream).ids(stored.len()).await, stored);

    // Tampered with (its last character changed) or garbled: the gap event, never a panic.
    let mut tampered = early.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        tampered.as_str(),
        "urn:tidings:live:",
        "urn:tidings:live:99999999999999999999999-1-AAAA",
        "urn:tidings:live:1-2-!!!!",
        "urn:tidings:live:\u{e9}-\u{e9}-\u{e9}",
    ] {
        let sub = hub.subscribe(request(&["/t"], Some(bad))).await.unwrap();
        assert!(sub.history_gap, "{bad} is not a live id the hub made");
        let (ty, _, _) = Events::new(sub.stream).next().await.unwrap();
        assert_eq!(ty.as_deref(), Some(HISTORY_GAP_EVENT));
    }

    // The last live event before a restart: its id resumes on the restarted hub, and a live
    // event sent after the restart (at the same history position) is not taken for one the
    // client has.
    let mut live = Events::new(hub.subscribe(request(&["/t"], None)).await.unwrap().stream);
    hub.publish_live(update("/t", "before-restart", "before"))
        .await
        .unwrap();
    let (_, last_live, data) = live.next().await.unwrap();
    assert_eq!(data, "before");
    drop(live);
    hub.shutdown().await;
    drop(hub);
    let history = Arc::new(SqliteHistory::open(dir.path()).unwrap());
    let hub = Hub::start(history, HubConfig::default()).unwrap();
    let resumed = hub
        .subscribe(request(&["/t"], last_live.as_deref()))
        .await
        .unwrap();
    assert!(!resumed.history_gap, "live ids survive a restart");
    let mut resumed = Events::new(resumed.stream);
    hub.publish_live(update("/t", "after-restart", "after"))
        .await
        .unwrap();
    assert_eq!(resumed.next().await.unwrap().2, "after");
    let early_again = hub.subscribe(request(&["/t"], Some(&early))).await.unwrap();
    assert!(!early_again.history_gap);
    assert_eq!(
        Events::new(early_again.stream).ids(stored.len()).await,
        stored
    );
}

/// One connection for several readers (a browser's tabs): each update comes after a route
/// event naming, by index, the selectors it matches, in the replay and live alike, and the end
/// of the replay is marked; the update's own bytes and id are unchanged, and other subscribers
/// see neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routed_subscription_names_the_selectors_each_update_matches() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir, HubConfig::default());
    let both = NewUpdate {
        id: Some("both".into()),
        topics: vec!["/chat/a".into(), "/ticker/x".into()],
        ..NewUpdate::new("", "2")
    };
    hub.publish(update("/chat/a", "first", "1")).await.unwrap();
    hub.publish(both.clone().parse().unwrap()).await.unwrap();
    hub.publish(update("/news", "skipped", "-")).await.unwrap();

    let selectors = ["/chat/a", "/ticker/{symbol}", "/chat/{room}"];
    let routed = |last: Option<&str>| SubscribeRequest {
        routed: true,
        ..request(&selectors, last)
    };
    let mut replayed = Events::new(hub.subscribe(routed(Some(EARLIEST))).await.unwrap().stream);
    let mut live = Events::new(hub.subscribe(routed(None)).await.unwrap().stream);
    let mut plain = Events::new(
        hub.subscribe(request(&selectors, None))
            .await
            .unwrap()
            .stream,
    );

    hub.publish(update("/ticker/y", "third", "3"))
        .await
        .unwrap();
    hub.publish(
        NewUpdate {
            id: Some("again".into()),
            ..both
        }
        .parse()
        .unwrap(),
    )
    .await
    .unwrap();

    let route = |indices: &str| (Some(ROUTE_EVENT.to_owned()), None, indices.to_owned());
    let event = |id: &str, data: &str| (None, Some(id.to_owned()), data.to_owned());
    // Where the stream stands: after the newest update when it subscribed.
    let caught_up = (Some(LIVE_EVENT.to_owned()), None, "skipped".to_owned());
    let mut expected = vec![
        route("0 2"),
        event("first", "1"),
        route("0 1 2"),
        event("both", "2"),
        caught_up.clone(),
    ];
    let live_part = [
        route("1"),
        event("third", "3"),
        route("0 1 2"),
        event("again", "2"),
    ];
    expected.extend(live_part.clone());
    for want in expected {
        assert_eq!(replayed.next().await.unwrap(), want);
    }
    assert_eq!(live.next().await.unwrap(), caught_up);
    for want in live_part {
        assert_eq!(live.next().await.unwrap(), want);
    }
    assert_eq!(plain.next().await.unwrap(), event("third", "3"));
    assert_eq!(plain.next().await.unwrap(), event("again", "2"));
}

/// `max_stream_lifetime`: a stream ends within its last tenth, with a lone `retry:` field, and
/// the client resumes from its last id with nothing missing; a token expiring first ends it
/// plainly (the token is no good for coming back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_at_its_maximum_lifetime_asking_the_client_back_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lifetime = Duration::from_millis(800);
    let hub = start(
        &dir,
        HubConfig {
            max_stream_lifetime: Some(lifetime),
            ..HubConfig::default()
        },
    );
    let opened = std::time::Instant::now();
    let mut stream = hub.subscribe(request(&["/l"], None)).await.unwrap().stream;
    hub.publish(update("/l", "l1", "")).await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let lived = opened.elapsed();
    assert!(
        lived >= lifetime.mul_f64(0.9) && lived < lifetime * 4,
        "lived {lived:?}"
    );
    assert!(text.starts_with("id: l1\n"), "{text:?}");
    assert!(
        text.ends_with(&format!(
            "\n\nretry: {}\n\n",
            tidings_hub::LIFETIME_RETRY_MS
        )),
        "{text:?}"
    );
    hub.publish(update("/l", "l2", "")).await.unwrap();
    let mut back = Events::new(
        hub.subscribe(request(&["/l"], Some("l1")))
            .await
            .unwrap()
            .stream,
    );
    assert_eq!(back.ids(1).await, ["l2"]);

    let token_first = SubscribeRequest {
        expires_at: Some(std::time::Instant::now() + Duration::from_millis(100)),
        ..request(&["/l"], None)
    };
    let mut stream = hub.subscribe(token_first).await.unwrap().stream;
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(!text.contains("retry:"), "{text:?}");
}

/// A replay does not outlive the token or the stream's lifetime: a reader that stops reading
/// in the middle of a long replay and comes back after its token's `exp` gets nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_ends_with_the_token_and_with_the_streams_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let lifetime = Duration::from_millis(600);
    let hub = start(
        &dir,
        HubConfig {
            max_stream_lifetime: Some(lifetime),
            ..HubConfig::default()
        },
    );
    hub.publish(update("/r", "start", "")).await.unwrap();
    // Far more than one read of the history (and one frame) holds.
    let data = "x".repeat(2_000);
    for i in 0..400 {
        hub.publish(update("/r", &format!("r{i}"), &data))
            .await
            .unwrap();
    }
    let read_after_a_pause = |request: SubscribeRequest| {
        let hub = hub.clone();
        async move {
            let mut stream = hub.subscribe(request).await.unwrap().stream;
            let first = tokio::time::timeout(WAIT, stream.next()).await.unwrap();
            assert!(first.is_some());
            // The reader stalls past the deadline, then reads on.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let mut rest = String::new();
            while let Some(chunk) = tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
                rest.push_str(std::str::from_utf8(&chunk).unwrap());
            }
            rest
        }
    };
    let expiring = SubscribeRequest {
        expires_at: Some(std::time::Instant::now() + Duration::from_millis(300)),
        ..request(&["/r"], Some("start"))
    };
    assert_eq!(read_after_a_pause(expiring).await, "");
    let rest = read_after_a_pause(request(&["/r"], Some("start"))).await;
    assert_eq!(
        rest,
        format!("retry: {}\n\n", tidings_hub::LIFETIME_RETRY_MS)
    );
}
