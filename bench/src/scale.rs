//! The hub core at the scale issue 9 asks about, in this process: publishing with 30,000 URI
//! templates registered, subscribing with 1000 selectors, replaying a long history.

use crate::{RUNS, Table, hub, median, percentile};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tidings_hub::{Hub, HubConfig, Selector, SubscribeRequest, SubscriptionStream, Update};

/// Subscriptions, and distinct templates in each: 30,000 in all.
const CLIENTS: usize = 30;
const TEMPLATES_EACH: usize = 1000;
/// Timed publishes of each kind in one run.
const PUBLISHES: usize = 200;
/// Runs of the (cheap) subscribe-time figure.
const SUBSCRIBE_RUNS: usize = 11;
const SELECTORS: usize = 1000;
const REPLAY_UPDATES: usize = 100_000;

fn request(selectors: Vec<Selector>, last_event_id: Option<String>) -> SubscribeRequest {
    SubscribeRequest {
        selectors,
        scope: None,
        payload: None,
        last_event_id,
        expires_at: None,
        routed: false,
    }
}

/// Reads a stream until it ends (the hub's shutdown), returning the bytes read.
async fn drain(mut stream: SubscriptionStream) -> usize {
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.len();
    }
    bytes
}

/// Publish latencies, in microseconds: (p50, p99), and template tests per publish.
struct Latencies {
    p50: f64,
    p99: f64,
    tests: f64,
}

impl Latencies {
    fn of(mut micros: Vec<f64>, tests: u64) -> Self {
        micros.sort_by(f64::total_cmp);
        Self {
            p50: percentile(&micros, 0.5),
            p99: percentile(&micros, 0.99),
            tests: tests as f64 / micros.len() as f64,
        }
    }
}

/// Publishes one update and times it until it is acknowledged (durable and handed to its
/// subscribers); returns the microseconds and the template tests it cost.
async fn timed_publish(hub: &Hub, topic: String) -> (f64, u64) {
    let update = Update::public(topic, "{\"v\":1}").unwrap();
    let tests = hub.stats().template_tests;
    let started = Instant::now();
    hub.publish(update).await.unwrap();
    let micros = started.elapsed().as_secs_f64() * 1e6;
    (micros, hub.stats().template_tests - tests)
}

/// What one run measured.
struct LatencyRun {
    /// Publishes to topics that match one template.
    hit: (Vec<f64>, u64),
    /// Publishes to topics that share a template's literal prefix but match none.
    miss: (Vec<f64>, u64),
}

/// One run: a fresh hub, with 30 subscriptions of 1000 distinct templates (`/t/{c}/{i}/{x}`)
/// if `templates`, then [`PUBLISHES`] publishes to topics that match one template
/// (`/t/{c}/{i}/v{k}`), interleaved with as many to topics that match none
/// (`/t/{c}/{i}/v{k}/none`, which do start with a template's literal prefix).
async fn latency_run(templates: bool) -> LatencyRun {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(
        &dir,
        HubConfig {
            max_templates: CLIENTS * TEMPLATES_EACH,
            ..HubConfig::default()
        },
    );
    let mut readers = Vec::new();
    if templates {
        for c in 0..CLIENTS {
            let selectors = (0..TEMPLATES_EACH)
                .map(|i| hub.parse_selector(&format!("/t/{c}/{i}/{{x}}")).unwrap())
                .collect();
            let subscription = hub.subscribe(request(selectors, None)).await.unwrap();
            readers.push(tokio::spawn(drain(subscription.stream)));
        }
        let stats = hub.stats();
        assert_eq!(
            (stats.templates, stats.distinct_selectors),
            (
                (CLIENTS * TEMPLATES_EACH) as u64,
                (CLIENTS * TEMPLATES_EACH) as u64
            ),
            "every template registered"
        );
    }
    // The first commits create the history's pages and the WAL: not what is measured.
    for k in 0..20 {
        hub.publish(Update::public(format!("/warm/{k}"), "{}").unwrap())
            .await
            .unwrap();
    }
    let mut run = LatencyRun {
        hit: (Vec::new(), 0),
        miss: (Vec::new(), 0),
    };
    for k in 0..PUBLISHES {
        let topic = format!("/t/{}/{}/v{k}", k % CLIENTS, k * 7 % TEMPLATES_EACH);
        for (kind, topic) in [
            (&mut run.hit, topic.clone()),
            (&mut run.miss, topic + "/none"),
        ] {
            let (micros, tests) = timed_publish(&hub, topic).await;
            kind.0.push(micros);
            kind.1 += tests;
        }
    }
    hub.shutdown().await;
    let delivered: usize = futures_util::future::join_all(readers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert!(
        !templates || delivered > 0,
        "the matching publishes reached their subscribers"
    );
    run
}

/// "p50 …, p99 …": the medians over runs of each run's percentiles.
fn summary(runs: &[Latencies]) -> String {
    format!(
        "p50 {:.0} µs, p99 {:.0} µs",
        median(runs.iter().map(|l| l.p50).collect()),
        median(runs.iter().map(|l| l.p99).collect())
    )
}

/// Publish latency with 30,000 templates registered, and with no subscriber.
pub async fn publish_latency(table: &mut Table) {
    let (mut hits, mut misses, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let run = latency_run(true).await;
        hits.push(Latencies::of(run.hit.0, run.hit.1));
        misses.push(Latencies::of(run.miss.0, run.miss.1));
        // With no subscriber the two kinds of topic are alike: one set of figures.
        let run = latency_run(false).await;
        let mut all = run.hit.0;
        all.extend(run.miss.0);
        bare.push(Latencies::of(all, run.hit.1 + run.miss.1));
    }
    table.row(
        format!("publish latency, 30,000 templates, topic matching one ({PUBLISHES} publishes)"),
        summary(&hits),
    );
    table.row(
        format!("publish latency, 30,000 templates, topic matching none ({PUBLISHES} publishes)"),
        summary(&misses),
    );
    let tests = |runs: &[Latencies]| median(runs.iter().map(|l| l.tests).collect());
    table.row(
        "template tests per publish, 30,000 templates (matching one / none)",
        format!("{:.2} / {:.2}", tests(&hits), tests(&misses)),
    );
    table.row(
        format!(
            "publish latency, no subscriber (the same {} publishes)",
            2 * PUBLISHES
        ),
        summary(&bare),
    );
}

/// Milliseconds to parse `texts` with the hub's interner and subscribe with them.
async fn subscribe_once(hub: &Hub, texts: &[String]) -> f64 {
    let started = Instant::now();
    let selectors = texts
        .iter()
        .map(|t| hub.parse_selector(t).unwrap())
        .collect();
    let subscription = hub.subscribe(request(selectors, None)).await.unwrap();
    let elapsed = started.elapsed();
    drop(subscription);
    elapsed.as_secs_f64() * 1e3
}

/// The time to subscribe with 1000 exact selectors, and with 1000 distinct templates (new to
/// the hub each run, so each is compiled).
pub async fn subscribe_time(table: &mut Table) {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(
        &dir,
        HubConfig {
            max_templates: 100_000,
            ..HubConfig::default()
        },
    );
    let (mut exact, mut templates) = (Vec::new(), Vec::new());
    for run in 0..SUBSCRIBE_RUNS {
        let texts: Vec<String> = (0..SELECTORS).map(|i| format!("/e/{run}/{i}")).collect();
        exact.push(subscribe_once(&hub, &texts).await);
        let texts: Vec<String> = (0..SELECTORS)
            .map(|i| format!("/u/{run}/{i}/{{x}}"))
            .collect();
        templates.push(subscribe_once(&hub, &texts).await);
    }
    hub.shutdown().await;
    table.row(
        format!("subscribe with {SELECTORS} exact selectors (median of {SUBSCRIBE_RUNS})"),
        format!("{:.2} ms", median(exact)),
    );
    table.row(
        format!("subscribe with {SELECTORS} distinct templates (median of {SUBSCRIBE_RUNS})"),
        format!("{:.2} ms", median(templates)),
    );
}

/// History replay: [`REPLAY_UPDATES`] small updates published, then a subscription from
/// `earliest` to `*` timed from subscribing until its stream has sent the last one.
pub async fn replay(table: &mut Table) {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(
        &dir,
        HubConfig {
            history_max_events: REPLAY_UPDATES as u64 * 2,
            ..HubConfig::default()
        },
    );
    // Equal topic lengths and data, and fixed-size ids: every event has the same length, so the
    // reader knows it is done by counting bytes.
    let data = "{\"symbol\":\"ACME\",\"price\":101.25}";
    let publishers = 16;
    let per_publisher = REPLAY_UPDATES / publishers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for _ in 0..per_publisher {
                    hub.publish(Update::public(format!("/replay/{p:02}"), data).unwrap())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // The last one, published alone: the replay ends with exactly these bytes.
    let last = Update::public("/replay/zz", data).unwrap();
    let tail = last.encode();
    hub.publish(last).await.unwrap();
    let updates = publishers * per_publisher + 1;
    let filled = started.elapsed();
    let expected = updates * tail.len();

    let mut seconds = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let subscription = hub
            .subscribe(request(
                vec![hub.parse_selector("*").unwrap()],
                Some("earliest".into()),
            ))
            .await
            .unwrap();
        let mut stream = subscription.stream;
        let read = tokio::time::timeout(Duration::from_secs(120), async {
            let mut bytes = 0;
            let mut last_chunk = None;
            while bytes < expected {
                let chunk = stream.next().await.expect("the stream goes on");
                bytes += chunk.len();
                last_chunk = Some(chunk);
            }
            (bytes, last_chunk)
        })
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let (bytes, last_chunk) = read.expect("the replay ends within 120 s");
        assert_eq!(bytes, expected, "nothing more than the history");
        assert!(
            last_chunk.is_some_and(|c| c.ends_with(&tail)),
            "the replay ends with the last update"
        );
        seconds.push(elapsed);
    }
    hub.shutdown().await;
    let seconds = median(seconds);
    table.row(
        format!(
            "replay from earliest, {updates} updates of {} bytes",
            tail.len()
        ),
        format!(
            "{:.0} updates/s, {:.1} MB/s ({:.0} ms)",
            updates as f64 / seconds,
            expected as f64 / seconds / 1e6,
            seconds * 1e3
        ),
    );
    table.row(
        format!("  (filling that history: {publishers} concurrent publishers, one run)"),
        format!(
            "{:.0} publishes/s ({:.1} s)",
            updates as f64 / filled.as_secs_f64(),
            filled.as_secs_f64()
        ),
    );
}
