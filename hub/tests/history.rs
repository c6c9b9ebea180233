//! One behaviour suite for every [`History`]: SQLite in a temporary folder, and Redis in a
//! `redis-server` each test starts on a free port and kills when it ends.
//!
//! A store is opened through a [`Store`], which can open it again on the same data: that is
//! what "reopening" means for either (a new connection on the same keys, for Redis).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tidings_hub::{History, Horizon, NewUpdate, RedisHistory, Retention, SqliteHistory, Update};
use tidings_testkit::RedisServer;

trait Store {
    fn open(&self) -> Arc<dyn History>;
}

struct Sqlite(tempfile::TempDir);

impl Sqlite {
    fn new() -> Self {
        Sqlite(tempfile::tempdir().unwrap())
    }
}

impl Store for Sqlite {
    fn open(&self) -> Arc<dyn History> {
        Arc::new(SqliteHistory::open(self.0.path()).unwrap())
    }
}

struct Redis(RedisServer);

impl Redis {
    fn new() -> Self {
        Redis(RedisServer::start())
    }
}

impl Store for Redis {
    fn open(&self) -> Arc<dyn History> {
        Arc::new(RedisHistory::open(&self.0.url(), "tidings:").unwrap())
    }
}

fn update(id: &str) -> Arc<Update> {
    on(id, "https://example.com/a")
}

fn on(id: &str, topic: &str) -> Arc<Update> {
    Arc::new(
        NewUpdate {
            id: Some(id.into()),
            topics: vec![topic.into(), "/alt".into()],
            data: "line 1\n\n  line 3".into(),
            private: true,
            event_type: Some("kind".into()),
            retry: Some(10),
        }
        .parse()
        .unwrap(),
    )
}

fn public(id: &str) -> Arc<Update> {
    Arc::new(
        NewUpdate {
            id: Some(id.into()),
            ..NewUpdate::new("/news", "")
        }
        .parse()
        .unwrap(),
    )
}

fn keep(max_events: u64) -> Retention {
    Retention {
        max_events,
        ..Retention::default()
    }
}

fn canonical(history: &dyn History) -> Vec<String> {
    history
        .read(0, u64::MAX, 100)
        .unwrap()
        .iter()
        .map(|s| s.update.topic().to_owned())
        .collect()
}

fn appends_reads_and_survives_reopening(store: &dyn Store) {
    let history = store.open();
    assert!(history.is_empty());
    let positions = history
        .append(&[update("a"), update("b"), update("a")])
        .unwrap();
    assert_eq!(positions.len(), 3);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    drop(history);

    let history = store.open();
    assert_eq!(history.len(), 3);
    // Duplicate ids resolve to the earliest.
    assert_eq!(history.position_of("a").unwrap(), Some(positions[0]));
    assert_eq!(history.position_of("nope").unwrap(), None);
    let read = history.read(positions[0], u64::MAX, 10).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(*read[0].update, *update("b"));
    assert_eq!(read[1].position, positions[2]);
    assert_eq!(
        history.read(0, positions[1], 1).unwrap()[0].position,
        positions[0]
    );
    assert!(
        history
            .read(positions[0], positions[0], 10)
            .unwrap()
            .is_empty()
    );
    let back = history.read_back(positions[2], 10).unwrap();
    let back: Vec<u64> = back.iter().map(|s| s.position).collect();
    assert_eq!(back, [positions[1], positions[0]], "newest first");
    assert!(history.read_back(positions[0], 10).unwrap().is_empty());
    assert_eq!(
        history.read_back(u64::MAX, 1).unwrap()[0].position,
        positions[2]
    );
}

fn an_update_reads_back_as_it_was_written(store: &dyn Store) {
    let history = store.open();
    let bare = Arc::new(NewUpdate::new("/t", "").parse().unwrap());
    let full = on("full", "/u");
    history.append(&[bare.clone(), full.clone()]).unwrap();
    let read = store.open().read(0, u64::MAX, 10).unwrap();
    assert_eq!(
        *read[0].update, *bare,
        "no type, no retry, empty data, public"
    );
    assert_eq!(*read[1].update, *full);
}

fn heads_are_the_newest_and_the_newest_public(store: &dyn Store) {
    let history = store.open();
    let heads = history.heads().unwrap();
    assert!(heads.last.is_none() && heads.last_public.is_none());
    let first = history.append(&[public("p1"), update("x")]).unwrap();
    let heads = history.heads().unwrap();
    assert_eq!(heads.last.unwrap().position, first[1]);
    assert_eq!(heads.last_public.unwrap().position, first[0]);
    // Far more private updates than one read brings back.
    let private: Vec<_> = (0..1200).map(|i| update(&format!("x{i}"))).collect();
    let last = history.append(&private).unwrap();
    let heads = store.open().heads().unwrap();
    assert_eq!(heads.last.unwrap().position, *last.last().unwrap());
    assert_eq!(heads.last_public.unwrap().update.id(), "p1");
}

fn duplicates_resolve_to_the_earliest_retained(store: &dyn Store) {
    let history = store.open();
    let positions = history
        .append(&[update("a"), update("b"), update("a")])
        .unwrap();
    assert_eq!(history.position_of("a").unwrap(), Some(positions[0]));
    history.prune(&keep(2)).unwrap();
    assert_eq!(history.position_of("a").unwrap(), Some(positions[2]));
    history.prune(&keep(0)).unwrap();
    assert_eq!(history.position_of("a").unwrap(), None);
    assert_eq!(history.position_of("b").unwrap(), None);
}

fn positions_keep_growing_and_the_horizon_follows_pruning_across_reopening(store: &dyn Store) {
    let history = store.open();
    assert_eq!(history.horizon(), Horizon::default());
    let first = history
        .append(&[update("1"), update("2"), update("3")])
        .unwrap();
    assert_eq!(history.prune(&keep(1)).unwrap(), 2);
    assert_eq!(history.len(), 1);
    assert_eq!(history.horizon().through, first[1]);
    assert_eq!(history.position_of("1").unwrap(), None);
    assert_eq!(history.prune(&keep(0)).unwrap(), 1);
    assert_eq!(history.horizon().through, first[2]);
    drop(history);
    let history = store.open();
    assert_eq!(history.horizon().through, first[2], "kept in the store");
    assert!(history.is_empty());
    let next = history.append(&[update("4")]).unwrap();
    assert!(next[0] > first[2], "a position is never reused");
}

fn retention_counts_rows_not_positions(store: &dyn Store) {
    // Volatile updates pruned from between durable ones leave holes in the positions; the
    // durable ones must still be kept up to max_events of them.
    let history = store.open();
    for i in 0..5 {
        history.append(&[on(&format!("m{i}"), "/monitor")]).unwrap();
        history.append(&[on(&format!("c{i}"), "/chat/x")]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let retention = Retention {
        max_events: 5,
        max_age: None,
        volatile: vec![("/monitor".into(), Duration::from_millis(10))],
    };
    history.prune(&retention).unwrap();
    assert_eq!(
        canonical(&*history),
        ["/chat/x"; 5],
        "every chat update stays"
    );
    assert_eq!(history.len(), 5);
    assert_eq!(store.open().len(), 5);
}

fn prunes_by_age(store: &dyn Store) {
    let history = store.open();
    let old = history.append(&[update("old")]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let retention = Retention {
        max_events: 1000,
        max_age: Some(Duration::from_millis(10)),
        volatile: vec![],
    };
    assert_eq!(history.prune(&retention).unwrap(), 1);
    assert!(history.is_empty());
    assert_eq!(history.horizon().through, old[0]);
    assert_eq!(history.position_of("old").unwrap(), None);
}

fn volatile_topics_expire_sooner_and_alone(store: &dyn Store) {
    let history = store.open();
    let first = history
        .append(&[
            on("1", "/ticker/ACME"),
            on("2", "/chat/general"),
            on("3", "/monitor"),
        ])
        .unwrap();
    // Margins wide enough for a loaded machine: the first three are 400 ms old, the last
    // one has 200 ms before it would count as old.
    std::thread::sleep(Duration::from_millis(400));
    history.append(&[on("4", "/ticker/HOOLI")]).unwrap();
    let short = Duration::from_millis(200);
    let retention = Retention {
        max_events: 1000,
        max_age: None,
        volatile: vec![("/ticker/".into(), short), ("/monitor".into(), short)],
    };
    assert_eq!(
        history.prune(&retention).unwrap(),
        2,
        "the old ticker and monitor updates"
    );
    assert_eq!(canonical(&*history), ["/chat/general", "/ticker/HOOLI"]);
    assert_eq!(history.position_of("1").unwrap(), None);
    assert_eq!(history.position_of("2").unwrap(), Some(first[1]));
    let horizon = history.horizon();
    assert_eq!(horizon.through, 0, "nothing went by count or age");
    assert!(horizon.volatile.contains(&("/ticker/".into(), first[0])));
    assert!(horizon.volatile.contains(&("/monitor".into(), first[2])));
    assert!(horizon.hides_after(first[0] - 1, ["/ticker/{s}"].into_iter()));
    assert!(horizon.hides_after(first[0] - 1, [""].into_iter()), "`*`");
    assert!(!horizon.hides_after(first[0] - 1, ["/chat/"].into_iter()));
    let mut reopened = store.open().horizon().volatile;
    reopened.sort();
    let mut expected = horizon.volatile;
    expected.sort();
    assert_eq!(reopened, expected, "kept in the store");
}

/// A reader that reads and then checks the horizon never sees a hole the horizon does not
/// cover, however its read interleaves with pruning: the horizon moves before the deletion.
fn the_horizon_moves_before_anything_is_deleted(store: &dyn Store) {
    let history = store.open();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (history, stop) = (history.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                history.append(&[update(&i.to_string())]).unwrap();
                history.prune(&keep(3)).unwrap();
                i += 1;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut checks = 0;
    while Instant::now() < deadline {
        // Positions here are consecutive (one writer, nothing volatile): after reading from
        // `after`, a first position past `after + 1` is a hole, which the horizon must cover.
        let after = history.horizon().through.saturating_sub(1);
        let read = history.read(after, u64::MAX, 10).unwrap();
        let horizon = history.horizon();
        if let Some(first) = read.first()
            && first.position > after + 1
        {
            assert!(
                horizon.through >= first.position - 1,
                "a hole below {} with the horizon at {}",
                first.position,
                horizon.through
            );
        }
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(checks > 10);
}

fn the_probe_writes(store: &dyn Store) {
    store.open().probe().unwrap();
}

/// A capped read stops before the update that would take it past the cap (data and ids
/// counted), but always reads one; within the rows limit and the range, as `read`.
fn a_capped_read_stops_at_its_size(store: &dyn Store) {
    let history = store.open();
    let sized = |id: &str, len: usize| {
        Arc::new(
            NewUpdate {
                id: Some(id.into()),
                ..NewUpdate::new("/t", "x".repeat(len))
            }
            .parse()
            .unwrap(),
        )
    };
    let positions = history
        .append(&[
            sized("a", 999),
            sized("b", 999),
            sized("c", 4999),
            sized("d", 9),
        ])
        .unwrap();
    let ids = |after: u64, limit: usize, max_bytes: usize| -> Vec<String> {
        history
            .read_capped(after, u64::MAX, limit, max_bytes)
            .unwrap()
            .iter()
            .map(|s| s.update.id().to_owned())
            .collect()
    };
    assert_eq!(ids(0, 10, 2000), ["a", "b"]);
    assert_eq!(ids(0, 10, 1999), ["a"]);
    assert_eq!(ids(0, 10, 0), ["a"], "the first whatever its size");
    assert_eq!(ids(positions[1], 10, 100), ["c"]);
    assert_eq!(ids(positions[1], 10, 5010), ["c", "d"]);
    assert_eq!(ids(0, 3, usize::MAX), ["a", "b", "c"]);
    assert_eq!(ids(positions[3], 10, usize::MAX), Vec::<String>::new());
    let until = history
        .read_capped(0, positions[1], 10, usize::MAX)
        .unwrap();
    assert_eq!(until.len(), 2);
    assert_eq!(until[1].position, positions[1]);
}

/// Each behaviour, once per store.
macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod with_sqlite {
            $(#[test]
            fn $test() {
                super::$test(&super::Sqlite::new());
            })*
        }
        mod with_redis {
            $(#[test]
            fn $test() {
                super::$test(&super::Redis::new());
            })*
        }
    };
}

suite!(
    appends_reads_and_survives_reopening,
    an_update_reads_back_as_it_was_written,
    heads_are_the_newest_and_the_newest_public,
    duplicates_resolve_to_the_earliest_retained,
    positions_keep_growing_and_the_horizon_follows_pruning_across_reopening,
    retention_counts_rows_not_positions,
    prunes_by_age,
    volatile_topics_expire_sooner_and_alone,
    the_horizon_moves_before_anything_is_deleted,
    the_probe_writes,
    a_capped_read_stops_at_its_size,
);

#[test]
fn a_corrupt_sqlite_file_is_refused_at_open_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("history.sqlite3"), vec![0x5a; 8192]).unwrap();
    let error = SqliteHistory::open(dir.path()).err().expect("refused");
    assert!(error.to_string().contains("cannot be used"), "{error}");
}

#[test]
fn an_unreachable_redis_is_a_clear_error() {
    // A port nothing listens on: bound, then released.
    let port = tidings_testkit::free_port();
    let error = RedisHistory::open(&format!("redis://127.0.0.1:{port}/"), "tidings:")
        .err()
        .expect("refused");
    assert!(error.to_string().contains("unreachable"), "{error}");
}

#[test]
fn redis_stores_under_their_prefix_apart() {
    let server = RedisServer::start();
    let a = RedisHistory::open(&server.url(), "a:").unwrap();
    let b = RedisHistory::open(&server.url(), "b:").unwrap();
    a.append(&[update("x")]).unwrap();
    assert_eq!(a.len(), 1);
    assert!(b.is_empty());
    assert_eq!(b.position_of("x").unwrap(), None);
}
