//! Durable publishes per second through one node: [`PUBLISHERS`] keep-alive HTTP connections,
//! each publishing as fast as it is answered; an update counts once the node has answered 200
//! (Redis has it, with the given `appendfsync`).

use super::Cluster;
use crate::load::{Publisher, payload};
use crate::{Table, median};
use std::{
    io,
    time::{Duration, Instant},
};

const PUBLISHERS: usize = 64;
const RUNS: usize = 3;
const RUN: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_millis(500);

pub async fn measure(table: &mut Table, fsync: &'static str) -> io::Result<()> {
    let cluster = Cluster::start(fsync, 1).await?;
    let mut publishers = Vec::with_capacity(PUBLISHERS);
    for _ in 0..PUBLISHERS {
        publishers.push(cluster.publisher(1).await?);
    }
    let epoch = Instant::now();
    publishers = run(publishers, WARM_UP, epoch).await?.0;
    let (mut rates, mut refused) = (Vec::new(), 0);
    for _ in 0..RUNS {
        let (back, acked, other, took) = run(publishers, RUN, epoch).await?;
        publishers = back;
        rates.push(acked as f64 / took.as_secs_f64());
        refused += other;
    }
    let mut value = format!("{:.0} /s", median(rates));
    if refused > 0 {
        value += &format!(" ({refused} publishes answered other than 200)");
    }
    table.row(
        format!(
            "durable publishes/s over HTTP, {PUBLISHERS} keep-alive publishers, one node, \
             appendfsync {fsync} (median of {RUNS} runs of {} s)",
            RUN.as_secs()
        ),
        value,
    );
    cluster.report_problems(table, &format!("(appendfsync {fsync})"));
    Ok(())
}

/// Every publisher publishes until `length` has passed; the publishers back, the updates
/// acknowledged, those answered otherwise, and how long it took (the last answer included).
async fn run(
    publishers: Vec<Publisher>,
    length: Duration,
    epoch: Instant,
) -> io::Result<(Vec<Publisher>, u64, u64, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> = publishers
        .into_iter()
        .map(|mut publisher| {
            tokio::spawn(async move {
                let (mut acked, mut other) = (0u64, 0u64);
                let mut seq = 0;
                while started.elapsed() < length {
                    match publisher.publish(&payload(seq, 0, epoch)).await? {
                        200 => acked += 1,
                        _ => other += 1,
                    }
                    seq += 1;
                }
                io::Result::Ok((publisher, acked, other))
            })
        })
        .collect();
    let (mut back, mut acked, mut other) = (Vec::new(), 0, 0);
    for task in tasks {
        let (publisher, a, o) = task.await.map_err(io::Error::other)??;
        back.push(publisher);
        acked += a;
        other += o;
    }
    Ok((back, acked, other, started.elapsed()))
}
