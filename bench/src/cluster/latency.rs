//! Publish→receive latency across nodes: [`NODES`] nodes on one Redis (`appendfsync
//! everysec`), subscribers on each, updates published through node 1 at a steady rate on
//! [`CONNECTIONS`] keep-alive connections (on a thread of their own), each update sent at its
//! own tick, for each of [`LOADS`]. Every subscriber notes, for every update, the time from just
//! before its publish request was written to its arrival; node 1's subscribers and the others'
//! are counted apart. A run whose publisher falls behind its schedule, or with any update
//! missing or repeated, is reported as failed, its latencies on stderr only.

use super::{Cluster, TOPIC, subscribe};
use crate::Table;
use crate::load::{Histogram, Losses, Publisher, Readers, micros_since, payload};
use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

const NODES: usize = 3;
/// (subscribers on each node, updates per second, seconds): the load (6 million
/// deliveries a second), then lighter ones that a small machine, running the nodes, Redis and
/// every subscriber at once, may sustain: every subscriber at a low rate, and the rate
/// with fewer subscribers (down to the cross-node path alone).
const LOADS: [(usize, u64, u64); 4] = [
    (2000, 1000, 10),
    (2000, 10, 5),
    (100, 1000, 5),
    (10, 1000, 5),
];
const CONNECTIONS: u64 = 8;
/// A publisher behind its schedule stops this long after its last update was due.
const PACE_SLACK: Duration = Duration::from_secs(5);
/// How long the subscribers may take to receive the last updates.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn measure(table: &mut Table, open_files: u64) -> io::Result<()> {
    for (subscribers, rate, seconds) in LOADS {
        // Each subscriber is one open file here; keep 1000 for everything else.
        let per_node = subscribers.min(open_files.saturating_sub(1000) as usize / NODES);
        once(table, per_node, rate, seconds).await?;
    }
    Ok(())
}

async fn once(table: &mut Table, per_node: usize, rate: u64, seconds: u64) -> io::Result<()> {
    let cluster = Cluster::start("everysec", NODES).await?;
    let epoch = Instant::now();
    let (same, cross) = (Arc::new(Histogram::new()), Arc::new(Histogram::new()));
    let mut readers = Readers::new();
    for n in 1..=NODES {
        let histogram = if n == 1 { &same } else { &cross };
        for (i, stream) in subscribe(cluster.node(n), per_node)
            .await?
            .into_iter()
            .enumerate()
        {
            let histogram = histogram.clone();
            readers.spawn(stream, move |sent| {
                histogram.record(i, micros_since(epoch).saturating_sub(sent));
            });
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let updates = rate * seconds;
    let (acked, took) = publish_paced(&cluster, updates, rate, epoch).await?;
    let drained = readers.wait_for(updates, DRAIN).await;
    let losses = Losses::of(&readers.stop().await, &acked);

    let label = format!(
        "publish→receive via node 1, {rate} updates/s for {seconds} s, {per_node} subscribers \
         on each of {NODES} nodes (once)"
    );
    let sent = format!(
        "{}/{updates} publishes acknowledged in {:.1} s ({:.0}/s)",
        acked.len(),
        took.as_secs_f64(),
        acked.len() as f64 / took.as_secs_f64()
    );
    if losses.failed() || acked.len() < updates as usize || drained.is_none() {
        table.row(label, format!("failed: {sent}; {}", losses.summary()));
        for (name, histogram) in [("same node", &same), ("cross-node", &cross)] {
            eprintln!("   (failed run, {name}: {})", latencies(histogram));
        }
    } else {
        table.row(label, format!("{sent}; {}", losses.summary()));
        table.row(
            format!(
                "  cross-node: at the {} subscribers of nodes 2-{NODES}",
                per_node * 2
            ),
            latencies(&cross),
        );
        table.row(
            format!("  same node: at the {per_node} subscribers of node 1"),
            latencies(&same),
        );
    }
    cluster.report_problems(table, "(latency run)");
    Ok(())
}

fn latencies(histogram: &Histogram) -> String {
    let (q, max) = histogram.quantiles_ms(&[0.5, 0.99]);
    format!("p50 {:.2} ms, p99 {:.2} ms, max {max:.1} ms", q[0], q[1])
}

/// Publishes updates `0..updates` through node 1, update `seq` due at `seq / rate` s, over
/// [`CONNECTIONS`] connections, on a thread of its own (never queued behind the subscribers'
/// tasks); the updates acknowledged, and how long that took.
async fn publish_paced(
    cluster: &Cluster,
    updates: u64,
    rate: u64,
    epoch: Instant,
) -> io::Result<(Vec<u64>, Duration)> {
    let (node, token) = (cluster.node(1), cluster.token.clone());
    let publish = async move {
        let start = tokio::time::Instant::now() + Duration::from_millis(10);
        let give_up = start + Duration::from_secs(updates / rate) + PACE_SLACK;
        let mut tasks = Vec::new();
        for c in 0..CONNECTIONS {
            let mut publisher = Publisher::mercure(node, &token, TOPIC).await?;
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for seq in (c..updates).step_by(CONNECTIONS as usize) {
                    let due = start + Duration::from_micros(seq * 1_000_000 / rate);
                    tokio::time::sleep_until(due).await;
                    if tokio::time::Instant::now() > give_up {
                        break;
                    }
                    if publisher.publish(&payload(seq, 0, epoch)).await? == 200 {
                        acked.push(seq);
                    }
                }
                io::Result::Ok(acked)
            }));
        }
        let mut acked = Vec::new();
        for task in tasks {
            acked.extend(task.await.map_err(io::Error::other)??);
        }
        Ok((acked, start.elapsed()))
    };
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(publish)
    })
    .await
    .map_err(io::Error::other)?
}
