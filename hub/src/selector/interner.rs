//! The [`Interner`]: compiled templates shared between the selectors that use them.
//!
//! Compiling a template is the costly part of a selector (see `rfc6570`), and many
//! subscriptions and claims name the same few templates, so the hub compiles each distinct text
//! once and shares it while it is in use. Kept apart from the selector itself: this is about
//! ownership and concurrency (weak entries, a lock, a race between drop and lookup), not about
//! what a selector matches.

use super::{
    MatchKind, MatcherError, Selector, SelectorError, Template, UrlPatternMatcher, check,
    is_format, parse_simple,
};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

/// Shares compiled templates: one [`Template`] per distinct text while any selector holds it.
///
/// The table holds weak references, so it never keeps a template alive; a template removes its
/// entry when dropped. Compiling happens outside the lock, so a slow compilation does not stall
/// lookups of other templates (two threads racing on the same new text may both compile it; the
/// first one stored wins).
#[derive(Default)]
pub struct Interner {
    table: Arc<Table>,
}

#[derive(Default)]
pub(super) struct Table {
    pub(super) entries: Mutex<HashMap<Arc<str>, Weak<Template>>>,
    /// Mercure 1.0's URL patterns, likewise (one hub URL, so the text is the key).
    pub(super) url_patterns: Mutex<HashMap<Arc<str>, Weak<UrlPatternMatcher>>>,
    /// Compilations started, for tests and metrics.
    pub(super) compiled: AtomicU64,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Like [`Selector::parse`], but a template already in use is shared instead of compiled.
    pub fn parse(&self, text: &str) -> Result<Selector, SelectorError> {
        if let Some(simple) = parse_simple(text)? {
            return Ok(simple);
        }
        if let Some(template) = self.lookup(text) {
            return Ok(Selector::Template(template));
        }
        let Some(compiled) = Template::compile(text, Some(&self.table)) else {
            return Ok(Selector::Exact(text.into()));
        };
        let mut compiled = Arc::new(compiled);
        let ours = {
            let mut entries = self.table.entries.lock();
            match entries.get(text).and_then(Weak::upgrade) {
                Some(theirs) => Some(std::mem::replace(&mut compiled, theirs)),
                None => {
                    entries.insert(compiled.source.clone(), Arc::downgrade(&compiled));
                    None
                }
            }
        };
        // Dropped outside the lock: a template's `Drop` takes it.
        drop(ours);
        Ok(Selector::Template(compiled))
    }

    /// Parses a Mercure 1.0 matcher of type `kind`: `*` is the wildcard whatever the type; an
    /// `exact` matcher is the text itself, byte for byte (braces included); a URL pattern is
    /// compiled against `base` (the hub's URL), or shared if already in use. Refused: what
    /// every selector is refused for, and Unicode format characters.
    pub fn parse_matcher(
        &self,
        kind: MatchKind,
        text: &str,
        base: &url::Url,
    ) -> Result<Selector, MatcherError> {
        check(text)?;
        if text.chars().any(is_format) {
            return Err(MatcherError::Format);
        }
        if text == "*" {
            return Ok(Selector::Any);
        }
        if kind == MatchKind::Exact {
            return Ok(Selector::Exact(text.into()));
        }
        if let Some(held) = self.lookup_url_pattern(text) {
            return Ok(Selector::UrlPattern(held));
        }
        self.table.compiled.fetch_add(1, Ordering::Relaxed);
        let compiled = UrlPatternMatcher::compile(text, base, Some(&self.table))
            .ok_or(MatcherError::InvalidUrlPattern)?;
        let mut compiled = Arc::new(compiled);
        let ours = {
            let mut entries = self.table.url_patterns.lock();
            match entries.get(text).and_then(Weak::upgrade) {
                Some(theirs) => Some(std::mem::replace(&mut compiled, theirs)),
                None => {
                    entries.insert(compiled.source().clone(), Arc::downgrade(&compiled));
                    None
                }
            }
        };
        // Dropped outside the lock: its `Drop` takes it.
        drop(ours);
        Ok(Selector::UrlPattern(compiled))
    }

    fn lookup_url_pattern(&self, text: &str) -> Option<Arc<UrlPatternMatcher>> {
        self.table
            .url_patterns
            .lock()
            .get(text)
            .and_then(Weak::upgrade)
    }

    /// Whether `text` is a URL pattern already in the table (using it costs no compilation).
    pub fn contains_url_pattern(&self, text: &str) -> bool {
        self.lookup_url_pattern(text).is_some()
    }

    /// Whether parsing `text` (as a draft-07 selector, or a 1.0 matcher of `kind`) would add a
    /// template or URL pattern to a table that holds `max` already: what a hub refuses.
    pub fn would_exceed(&self, kind: Option<MatchKind>, text: &str, max: usize) -> bool {
        let new = match kind {
            None => text.contains('{') && !self.contains(text),
            Some(MatchKind::UrlPattern) => text != "*" && !self.contains_url_pattern(text),
            Some(MatchKind::Exact) => false,
        };
        new && self.len() >= max
    }

    fn lookup(&self, text: &str) -> Option<Arc<Template>> {
        self.table.entries.lock().get(text).and_then(Weak::upgrade)
    }

    /// How many distinct templates and URL patterns the table holds: the live ones, give or
    /// take one being dropped right now. Cheap, unlike [`live_templates`](Self::live_templates).
    pub fn len(&self) -> usize {
        self.table.entries.lock().len() + self.table.url_patterns.lock().len()
    }

    /// Whether `text` is a template already in the table (using it costs no compilation).
    pub fn contains(&self, text: &str) -> bool {
        self.lookup(text).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many distinct compiled templates are alive.
    pub fn live_templates(&self) -> usize {
        let entries = self.table.entries.lock();
        entries.values().filter(|t| t.strong_count() > 0).count()
    }

    /// How many compilations were started (a refused or repeated request should start none).
    pub fn compiled_total(&self) -> u64 {
        self.table.compiled.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Interner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interner")
            .field("live_templates", &self.live_templates())
            .field("compiled_total", &self.compiled_total())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_arc(selector: &Selector) -> &Arc<Template> {
        match selector {
            Selector::Template(t) => t,
            other => panic!("{other:?} is not a template"),
        }
    }

    #[test]
    fn the_interner_compiles_each_template_once() {
        let interner = Interner::new();
        let first = interner.parse("/books/{id}").unwrap();
        let held: Vec<Selector> = (0..1000)
            .map(|_| interner.parse("/books/{id}").unwrap())
            .collect();
        assert!(
            held.iter()
                .all(|s| Arc::ptr_eq(template_arc(s), template_arc(&first)))
        );
        assert_eq!(interner.compiled_total(), 1);
        assert_eq!(interner.live_templates(), 1);
        // Exact selectors, `*` and non-templates compile nothing and are not kept.
        for text in ["*", "/books/1", "/broken/{id"] {
            assert!(!interner.parse(text).unwrap().is_template());
        }
        assert_eq!(interner.parse(""), Err(SelectorError::Empty));
        assert_eq!(interner.compiled_total(), 1);
        let other = interner.parse("/authors/{id}").unwrap();
        assert_eq!(interner.live_templates(), 2);
        assert!(!Arc::ptr_eq(template_arc(&other), template_arc(&first)));
        assert!(first.matches("/books/1") && !other.matches("/books/1"));
    }

    #[test]
    fn the_last_holder_removes_the_entry() {
        let interner = Interner::new();
        let a = interner.parse("/a/{x}").unwrap();
        let a2 = a.clone();
        drop(a);
        assert_eq!(interner.live_templates(), 1);
        drop(a2);
        assert_eq!(interner.live_templates(), 0);
        assert!(interner.table.entries.lock().is_empty());
        // Compiled afresh once nobody holds it.
        let again = interner.parse("/a/{x}").unwrap();
        assert_eq!(interner.compiled_total(), 2);
        assert_eq!(interner.live_templates(), 1);
        // Dropping the interner first is fine: the template outlives it.
        drop(interner);
        assert!(again.matches("/a/1"));
    }

    #[test]
    fn a_stale_template_leaves_its_successor_alone() {
        let interner = Interner::new();
        let old = interner.parse("/s/{x}").unwrap();
        let old_template = template_arc(&old).clone();
        drop(old);
        // Still alive through `old_template`: the entry is its own.
        assert_eq!(interner.live_templates(), 1);
        // Simulate the race: a new compilation takes the entry while the old one lives on.
        let new = Selector::Template(Arc::new(
            Template::compile("/s/{x}", Some(&interner.table)).unwrap(),
        ));
        interner
            .table
            .entries
            .lock()
            .insert("/s/{x}".into(), Arc::downgrade(template_arc(&new)));
        drop(old_template);
        assert_eq!(interner.live_templates(), 1);
        let shared = interner.parse("/s/{x}").unwrap();
        assert!(Arc::ptr_eq(template_arc(&shared), template_arc(&new)));
        drop((new, shared));
        assert_eq!(interner.live_templates(), 0);
        assert!(interner.table.entries.lock().is_empty());
    }

    #[test]
    fn the_interner_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Interner>();
        assert_send_sync::<Selector>();

        let interner = Arc::new(Interner::new());
        let texts: Vec<String> = (0..8).map(|i| format!("/t{i}/{{x}}{{?q}}")).collect();
        let held = Arc::new(Mutex::new(Vec::new()));
        std::thread::scope(|scope| {
            for worker in 0..4 {
                let (interner, texts, held) = (&interner, &texts, &held);
                scope.spawn(move || {
                    for round in 0..300 {
                        let text = &texts[(round + worker) % texts.len()];
                        let selector = interner.parse(text).unwrap();
                        assert!(selector.matches(&text.replace("{x}{?q}", "1?q=2")));
                        // Keep one of each for a while; drop the rest at once, racing the
                        // other threads' lookups of the same text.
                        if round % 50 == worker {
                            held.lock().push(selector);
                        }
                    }
                });
            }
        });
        // Everything held shares one template per text.
        let held = std::mem::take(&mut *held.lock());
        for a in &held {
            for b in &held {
                assert_eq!(
                    a.as_str() == b.as_str(),
                    Arc::ptr_eq(template_arc(a), template_arc(b))
                );
            }
        }
        assert!(interner.live_templates() <= texts.len());
        drop(held);
        assert_eq!(interner.live_templates(), 0);
        assert!(interner.table.entries.lock().is_empty());
        assert!(interner.compiled_total() >= texts.len() as u64);
    }
}
