//! Cluster mode: release nodes (`tidings --redis-url …`, children as in [`crate::server`]) on a
//! `redis-server` of the bench's own ([`tidings_testkit::RedisServer`]), over loopback HTTP:
//!
//! - [`rate`]: durable publishes per second through one node, `appendfsync everysec` and
//!   `always`;
//! - [`latency`]: publish→receive latency across three nodes, with up to 2,000 subscribers on
//!   each;
//! - [`outage`]: how long node 2's subscribers take to catch up after a 5 s Redis outage.
//!
//! The bench process, the nodes and Redis share this machine's cores, so every figure here
//! includes the load generator's own cost.
//!
//! The clients are the load generator's ([`crate::load`]): keep-alive publishers, and
//! subscribers whose every update says its number, its try and when it was sent.

mod latency;
mod outage;
mod rate;

use crate::{
    Table,
    load::{self, Publisher, token},
    server::{self, Child, random_key},
};
use std::{io, net::SocketAddr, sync::Arc};
use tidings_testkit::RedisServer;

/// The topic every figure publishes and subscribes to.
const TOPIC: &str = "/bench";
const SUBSCRIBE: &[u8] = b"GET /.well-known/mercure?topic=/bench HTTP/1.1\r\nHost: x\r\n\r\n";

/// The section; `open_files` is this process's limit, which bounds the subscribers it holds.
pub async fn section(table: &mut Table, open_files: u64) {
    for fsync in ["everysec", "always"] {
        if let Err(error) = rate::measure(table, fsync).await {
            table.row(
                format!("durable publishes/s, appendfsync {fsync}"),
                format!("not measured: {error}"),
            );
        }
    }
    if let Err(error) = latency::measure(table, open_files).await {
        table.row("cross-node latency", format!("not measured: {error}"));
    }
    if let Err(error) = outage::measure(table).await {
        table.row(
            "catch-up after a Redis outage",
            format!("not measured: {error}"),
        );
    }
}

/// Nodes on one Redis; dropped in this order: nodes, Redis, their folders.
struct Cluster {
    nodes: Vec<Child>,
    redis: RedisServer,
    token: String,
    _data: tempfile::TempDir,
}

impl Cluster {
    async fn start(fsync: &'static str, nodes: usize) -> io::Result<Self> {
        let binary = server::binary()?;
        let redis = tokio::task::spawn_blocking(move || RedisServer::start_with_fsync(fsync))
            .await
            .map_err(|_| io::Error::other("redis-server did not start (is it installed?)"))?;
        let key = random_key()?;
        let data = tempfile::tempdir()?;
        let args = ["--redis-url".to_owned(), redis.url()];
        let nodes = (1..=nodes)
            .map(|n| {
                let dir = data.path().join(n.to_string());
                std::fs::create_dir(&dir)?;
                Child::spawn_with(&binary, &dir, &key, &args, None)
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            nodes,
            redis,
            token: token(&key)?,
            _data: data,
        })
    }

    fn node(&self, n: usize) -> SocketAddr {
        self.nodes[n - 1].addr
    }

    /// A publisher on [`TOPIC`] through node `n`.
    async fn publisher(&self, n: usize) -> io::Result<Publisher> {
        Publisher::mercure(self.node(n), &self.token, TOPIC).await
    }

    /// A row per node that logged WARN or ERROR lines, with the first of them.
    fn report_problems(&self, table: &mut Table, during: &str) {
        for (n, node) in self.nodes.iter().enumerate() {
            let problems = node.take_problems();
            if let Some(first) = problems.first.first() {
                table.row(
                    format!(
                        "  node {n} logged {} WARN/ERROR lines {during}",
                        problems.count,
                        n = n + 1
                    ),
                    format!("first: {}", first.trim()),
                );
            }
        }
    }

    /// The nodes' WARN and ERROR lines (the first few of each), on stderr: not figures.
    fn log_problems(&self, during: &str) {
        for (n, node) in self.nodes.iter().enumerate() {
            let problems = node.take_problems();
            if problems.count > 0 {
                eprintln!(
                    "   node {} logged {} WARN/ERROR lines ({during}):",
                    n + 1,
                    problems.count
                );
                for line in &problems.first {
                    eprintln!("     {}", line.trim());
                }
            }
        }
    }
}

/// Opens `n` subscriptions to [`TOPIC`] on `node`; an error unless all of them open.
async fn subscribe(node: SocketAddr, n: usize) -> io::Result<Vec<load::Stream>> {
    let request: Arc<[u8]> = Arc::from(SUBSCRIBE);
    load::open(node, vec![request; n])
        .await
        .all()
        .map_err(|e| io::Error::other(format!("subscribing on {node}: {e}")))
}
