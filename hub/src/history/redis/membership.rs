//! Membership ([`Membership`]): what each node publishes about itself for the others (its
//! subscribers, its topic counts, that it is alive) and reads of theirs, with the scripts that
//! keep it. Apart from the following: it is the roster's, not the fan-out's.

use super::RedisHistory;
use crate::history::{Membership, NodeState, Result};
use std::time::Duration;

/// KEYS: nodes. ARGV: node (empty: none), ttl in ms. Marks the node alive until now + ttl by
/// Redis's clock (nodes' clocks may differ), forgets expired nodes, returns the alive ones.
pub(super) const ALIVE_LUA: &str = include_str!("alive.lua");

/// KEYS: a node's topic counts (see
/// [`Membership::other_counts`]). ARGV: pairs
/// (topic, change). Applies the changes, removing a topic whose count reaches 0, so the set holds
/// only topics with subscribers.
pub(super) const COUNTS_LUA: &str = include_str!("counts.lua");

impl Membership for RedisHistory {
    /// One pipeline: the changes, the keys' expiry, then the liveness script.
    fn publish_node(&self, node: &str, state: &NodeState, ttl: Duration) -> Result<Vec<String>> {
        let subs = self.node_key(node, "subs");
        let topics = self.node_key(node, "counts");
        let ttl_ms = ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        // All at once: other nodes never read a half-replaced state.
        pipe.atomic();
        if state.full {
            pipe.cmd("DEL").arg(&subs).arg(&topics).ignore();
        }
        for chunk in state.added.chunks(512) {
            pipe.cmd("HSET").arg(&subs);
            for (id, documents) in chunk {
                pipe.arg(id).arg(documents);
            }
            pipe.ignore();
        }
        for chunk in state.removed.chunks(512) {
            pipe.cmd("HDEL").arg(&subs).arg(chunk).ignore();
        }
        if state.full {
            let members: Vec<String> = state
                .counts
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(topic, count)| format!("{topic}\0{count}"))
                .collect();
            for chunk in members.chunks(512) {
                pipe.cmd("ZADD").arg(&topics);
                for member in chunk {
                    pipe.arg(0).arg(member);
                }
                pipe.ignore();
            }
        }
        pipe.cmd("PEXPIRE").arg(&subs).arg(ttl_ms).ignore();
        pipe.cmd("PEXPIRE").arg(&topics).arg(ttl_ms).ignore();
        self.with(|con| pipe.query::<()>(con))?;
        if !state.full && !state.counts.is_empty() {
            let mut counts = self.counts.prepare_invoke();
            counts.key(&topics);
            for (topic, change) in &state.counts {
                counts.arg(topic).arg(change);
            }
            self.with(|con| counts.invoke::<()>(con))?;
        }
        // Not in the pipeline: `invoke` loads the script when Redis lost it (a restart).
        let mut alive: Vec<String> = self.with(|con| {
            self.alive
                .key(&self.nodes)
                .arg(node)
                .arg(ttl_ms)
                .invoke(con)
        })?;
        alive.sort();
        Ok(alive)
    }

    fn leave(&self, node: &str) -> Result<()> {
        self.with(|con| {
            redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg(&self.nodes)
                .arg(node)
                .ignore()
                .cmd("DEL")
                .arg(self.node_key(node, "subs"))
                .arg(self.node_key(node, "counts"))
                .ignore()
                .query(con)
        })
    }

    fn other_subscriptions(&self, node: &str) -> Result<Vec<String>> {
        let found: Vec<Vec<String>> = self.read_others(node, "subs", |pipe, key| {
            pipe.cmd("HVALS").arg(key);
        })?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One `ZRANGEBYLEX` per other node: the members from `prefix` up to (not including)
    /// `prefix` followed by the byte 0xff, which no UTF-8 text holds, are exactly the topics
    /// that `prefix` starts.
    fn other_counts(&self, node: &str, prefix: &str) -> Result<Vec<(String, usize)>> {
        let from = [b"[", prefix.as_bytes()].concat();
        let to = [b"(", prefix.as_bytes(), b"\xff"].concat();
        let found: Vec<Vec<String>> = self.read_others(node, "counts", |pipe, key| {
            pipe.cmd("ZRANGEBYLEX").arg(key).arg(&from).arg(&to);
        })?;
        Ok(found
            .into_iter()
            .flatten()
            .filter_map(|member| {
                let (topic, n) = member.rsplit_once('\0')?;
                Some((topic.to_owned(), n.parse().ok()?))
            })
            .filter(|(_, n)| *n > 0)
            .collect())
    }
}

impl RedisHistory {
    fn node_key(&self, node: &str, what: &str) -> String {
        format!("{}node:{node}:{what}", self.prefix)
    }

    /// `read` (one command, added to a pipeline) of what each alive node other than `node`
    /// published under `what`.
    fn read_others<T: redis::FromRedisValue>(
        &self,
        node: &str,
        what: &str,
        read: impl Fn(&mut redis::Pipeline, String),
    ) -> Result<Vec<T>> {
        let mut others: Vec<String> =
            self.with(|con| self.alive.key(&self.nodes).arg("").arg(0).invoke(con))?;
        others.retain(|n| n != node);
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for other in &others {
            read(&mut pipe, self.node_key(other, what));
        }
        self.with(|con| pipe.query(con))
    }
}
