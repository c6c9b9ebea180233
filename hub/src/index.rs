//! Which templates could match a topic, found from the topic's bytes without testing each one.
//!
//! Every topic a template matches starts with the template's literal prefix (the text before
//! its first `{`), so only templates whose prefix is a prefix of the topic are worth testing.
//! The index keeps the distinct prefixes in a hash map keyed by (length, rolling hash): walking
//! a topic once computes the hash of each of its prefixes in turn, and each length that some
//! template prefix has costs one lookup. The cost of finding the candidates is linear in the
//! topic, whatever the number of templates.
//!
//! The rolling hash is polynomial modulo the Mersenne prime 2^61 − 1 with a base chosen at random
//! per index, so a client cannot craft prefixes that collide on purpose; a collision would only
//! cost a string comparison anyway.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, Hash},
};

const MODULUS: u64 = (1 << 61) - 1;

/// Values (template names) grouped by literal prefix.
pub(crate) struct PrefixIndex<V> {
    base: u64,
    groups: HashMap<(usize, u64), Vec<Group<V>>>,
    /// How many distinct prefixes have each length: lengths with none are skipped.
    lengths: Vec<u32>,
}

struct Group<V> {
    prefix: Box<str>,
    values: HashSet<V>,
}

impl<V: Eq + Hash> PrefixIndex<V> {
    pub(crate) fn new() -> Self {
        let random = std::collections::hash_map::RandomState::new().hash_one(0x7469_6469_6e67_u64);
        Self {
            base: random % (MODULUS - 256) + 256,
            groups: HashMap::new(),
            lengths: Vec::new(),
        }
    }

    fn step(&self, hash: u64, byte: u8) -> u64 {
        ((u128::from(hash) * u128::from(self.base) + u128::from(byte) + 1) % u128::from(MODULUS))
            as u64
    }

    fn hash(&self, text: &str) -> u64 {
        text.bytes().fold(0, |hash, byte| self.step(hash, byte))
    }

    pub(crate) fn insert(&mut self, prefix: &str, value: V) {
        let key = (prefix.len(), self.hash(prefix));
        let groups = self.groups.entry(key).or_default();
        match groups.iter_mut().find(|g| &*g.prefix == prefix) {
            Some(group) => {
                group.values.insert(value);
            }
            None => {
                groups.push(Group {
                    prefix: prefix.into(),
                    values: HashSet::from([value]),
                });
                if self.lengths.len() <= prefix.len() {
                    self.lengths.resize(prefix.len() + 1, 0);
                }
                self.lengths[prefix.len()] += 1;
            }
        }
    }

    pub(crate) fn remove(&mut self, prefix: &str, value: &V) {
        let key = (prefix.len(), self.hash(prefix));
        let Some(groups) = self.groups.get_mut(&key) else {
            return;
        };
        let Some(at) = groups.iter().position(|g| &*g.prefix == prefix) else {
            return;
        };
        groups[at].values.remove(value);
        if groups[at].values.is_empty() {
            groups.swap_remove(at);
            if groups.is_empty() {
                self.groups.remove(&key);
            }
            self.lengths[prefix.len()] -= 1;
            while self.lengths.last() == Some(&0) {
                self.lengths.pop();
            }
        }
    }

    /// Calls `f` with every value whose prefix is a prefix of `topic`.
    pub(crate) fn candidates(&self, topic: &str, mut f: impl FnMut(&V)) {
        let bytes = topic.as_bytes();
        let mut hash = 0;
        for len in 0..self.lengths.len().min(bytes.len() + 1) {
            if len > 0 {
                hash = self.step(hash, bytes[len - 1]);
            }
            if self.lengths[len] == 0 {
                continue;
            }
            if let Some(groups) = self.groups.get(&(len, hash)) {
                for group in groups {
                    if group.prefix.as_bytes() == &bytes[..len] {
                        group.values.iter().for_each(&mut f);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(index: &PrefixIndex<&'static str>, topic: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        index.candidates(topic, |v| out.push(*v));
        out.sort();
        out
    }

    #[test]
    fn finds_exactly_the_values_whose_prefix_starts_the_topic() {
        let mut index = PrefixIndex::new();
        index.insert("", "any");
        index.insert("/books/", "book");
        index.insert("/books/", "book2");
        index.insert("/books/1", "one");
        index.insert("/authors/", "author");
        index.insert("/books/é", "accent");
        assert_eq!(found(&index, "/books/12"), ["any", "book", "book2", "one"]);
        assert_eq!(found(&index, "/books"), ["any"]);
        assert_eq!(found(&index, "/authors/x"), ["any", "author"]);
        assert_eq!(
            found(&index, "/books/é/x"),
            ["accent", "any", "book", "book2"]
        );
        assert_eq!(found(&index, ""), ["any"]);

        index.remove("/books/", &"book");
        index.remove("/books/1", &"one");
        index.remove("/books/1", &"missing");
        index.remove("/nowhere/", &"missing");
        assert_eq!(found(&index, "/books/12"), ["any", "book2"]);
        index.remove("/books/", &"book2");
        index.remove("", &"any");
        index.remove("/authors/", &"author");
        index.remove("/books/é", &"accent");
        assert!(index.is_empty());
        assert!(index.lengths.is_empty(), "lengths are forgotten too");
    }

    #[test]
    fn many_distinct_prefixes_cost_one_walk() {
        let mut index = PrefixIndex::new();
        let names: Vec<String> = (0..30_000).map(|i| format!("/t/{i}/")).collect();
        for name in &names {
            index.insert(name, name.clone());
        }
        let mut hits = Vec::new();
        index.candidates("/t/12345/x", |v| hits.push(v.clone()));
        assert_eq!(hits, ["/t/12345/"]);
    }
}
