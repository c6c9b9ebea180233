//! Catching up after a Redis outage: two nodes, [`SUBSCRIBERS`] subscribers on node 2, one
//! publisher on node 1 sending an update every [`TICK`] and retrying one answered 503 every
//! [`RETRY`]. Redis is killed (SIGKILL), and restarted [`OUTAGE`] later on the same port and
//! append-only file. The figure runs from Redis answering PING again until every subscriber of
//! node 2 holds every update acknowledged up to the first one acknowledged after the restart;
//! then the publisher goes on for a second, and nothing acknowledged may be missing.

use super::{Cluster, subscribe};
use crate::load::{Losses, Readers, payload};
use crate::{Table, median};
use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

const SUBSCRIBERS: usize = 200;
const TICK: Duration = Duration::from_millis(5);
const RETRY: Duration = Duration::from_millis(100);
const OUTAGE: Duration = Duration::from_secs(5);
const RUNS: usize = 3;
/// The longest wait for anything after the restart.
const LIMIT: Duration = Duration::from_secs(20);

/// One run's times, or why it failed.
struct Run {
    first_ack: Duration,
    caught_up: Duration,
    /// Deliveries of an update a lost reply made the publisher store again.
    stored_twice: u64,
}

pub async fn measure(table: &mut Table) -> io::Result<()> {
    let label = format!(
        "catch-up after a {} s Redis outage: Redis answers again → node 2's {SUBSCRIBERS} \
         subscribers hold every acknowledged update (median of {RUNS} runs)",
        OUTAGE.as_secs()
    );
    let (mut first_acks, mut catch_ups, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    let mut stored_twice = 0;
    for _ in 0..RUNS {
        match once().await? {
            Ok(run) => {
                first_acks.push(run.first_ack.as_secs_f64() * 1000.0);
                catch_ups.push(run.caught_up.as_secs_f64() * 1000.0);
                stored_twice += run.stored_twice;
            }
            Err(failure) => notes.push(failure),
        }
    }
    if let Some(failure) = notes.first() {
        table.row(
            label,
            format!("failed in {} of {RUNS} runs: {failure}", notes.len()),
        );
        return Ok(());
    }
    let mut value = format!(
        "{:.0} ms (the first publish acknowledged again after {:.0} ms); none missing",
        median(catch_ups),
        median(first_acks)
    );
    if stored_twice > 0 {
        value += &format!(
            "; {stored_twice} deliveries of updates stored twice by a retried publish \
             (docs/cluster.md)"
        );
    }
    table.row(label, value);
    Ok(())
}

/// One outage; `Ok(Err(…))` for a run that completed but lost or repeated updates.
async fn once() -> io::Result<Result<Run, String>> {
    let mut cluster = Cluster::start("everysec", 2).await?;
    let epoch = Instant::now();
    let mut readers = Readers::new();
    for stream in subscribe(cluster.node(2), SUBSCRIBERS).await? {
        readers.spawn(stream, drop);
    }
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut publisher = cluster.publisher(1).await?;
    let publishing = tokio::spawn({
        let (acked, stop) = (acked.clone(), stop.clone());
        async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for seq in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let mut attempt = 0;
                while publisher.publish(&payload(seq, attempt, epoch)).await? == 503 {
                    attempt += 1;
                    tokio::time::sleep(RETRY).await;
                }
                acked.store(seq + 1, Ordering::Relaxed);
            }
            io::Result::Ok(())
        }
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.redis.kill();
    tokio::time::sleep(OUTAGE).await;
    let before = acked.load(Ordering::Relaxed);
    tokio::task::block_in_place(|| cluster.redis.restart());
    let back = Instant::now();
    let mut first_ack = None;
    while back.elapsed() < LIMIT && !publishing.is_finished() {
        if acked.load(Ordering::Relaxed) > before {
            first_ack = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let target = acked.load(Ordering::Relaxed);
    let caught_up = match first_ack {
        Some(_) => readers
            .wait_for(target, LIMIT)
            .await
            .map(|_| back.elapsed()),
        None => None,
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    publishing.await.map_err(io::Error::other)??;
    let total = acked.load(Ordering::Relaxed);
    readers.wait_for(total, Duration::from_secs(5)).await;
    let acked: Vec<u64> = (0..total).collect();
    let losses = Losses::of(&readers.stop().await, &acked);
    cluster.log_problems("outage run; errors while Redis is down are expected");
    Ok(match (first_ack, caught_up) {
        (None, _) => Err(format!(
            "no publish acknowledged within {LIMIT:?} of the restart"
        )),
        (Some(_), None) => Err(format!(
            "node 2 never caught up within {LIMIT:?}: {}",
            losses.summary()
        )),
        (Some(_), Some(_)) if losses.failed() => Err(losses.summary()),
        (Some(first_ack), Some(caught_up)) => Ok(Run {
            first_ack,
            caught_up,
            stored_twice: losses.retried_twice,
        }),
    })
}
