//! Mercure 1.0's `urlpattern` matcher: a WHATWG URL Pattern, resolved against the hub's URL,
//! tested against each topic resolved the same way.
//!
//! The `urlpattern` crate compiles each component to a `regex` (linear-time matching, as the
//! spec requires of a hub); the pattern's length is bounded at the edge ([`MAX_SELECTOR_LEN`]
//! (super::MAX_SELECTOR_LEN)) and the compiled size by the `regex` crate's own limit. A topic that
//! is not a URL reference, or an evaluation that fails, does not match.

use super::interner::Table;
use std::sync::{Arc, Weak};
use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

/// A compiled URL pattern.
///
/// One created through an [`Interner`](super::Interner) is registered there while it lives,
/// and removes its own entry when the last selector holding it is dropped.
pub struct UrlPatternMatcher {
    source: Arc<str>,
    pattern: UrlPattern,
    base: Url,
    pub(super) home: Option<Weak<Table>>,
}

impl UrlPatternMatcher {
    /// Compiles `text` against `base`; `None` if it is not a well-formed URL pattern.
    pub(super) fn compile(text: &str, base: &Url, home: Option<&Arc<Table>>) -> Option<Self> {
        let init =
            UrlPatternInit::parse_constructor_string::<regex::Regex>(text, Some(base.clone()))
                .ok()?;
        // Case-sensitive, as the spec requires (`ignoreCase` never enabled).
        let pattern = UrlPattern::parse(init, UrlPatternOptions::default()).ok()?;
        Some(UrlPatternMatcher {
            source: text.into(),
            pattern,
            base: base.clone(),
            home: home.map(Arc::downgrade),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `topic`, resolved against the hub's URL, matches.
    pub fn matches(&self, topic: &str) -> bool {
        let Ok(url) = Url::options().base_url(Some(&self.base)).parse(topic) else {
            return false;
        };
        self.pattern
            .test(UrlPatternMatchInput::Url(url))
            .unwrap_or(false)
    }

    pub(super) fn source(&self) -> &Arc<str> {
        &self.source
    }
}

impl std::fmt::Debug for UrlPatternMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UrlPattern({:?})", &*self.source)
    }
}

impl Drop for UrlPatternMatcher {
    fn drop(&mut self) {
        let Some(table) = self.home.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let mut entries = table.url_patterns.lock();
        if let Some(entry) = entries.get(&*self.source)
            && std::ptr::eq(entry.as_ptr(), self)
        {
            entries.remove(&*self.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(text: &str) -> UrlPatternMatcher {
        let base = Url::parse("https://example.com/.well-known/mercure").unwrap();
        UrlPatternMatcher::compile(text, &base, None).unwrap()
    }

    #[test]
    fn the_specs_examples_match_absolute_and_relative_topics() {
        // The spec's subscription example, and a relative pattern resolved against the hub.
        let books = matcher("https://example.com/bar/:id");
        assert!(books.matches("https://example.com/bar/1"));
        assert!(
            books.matches("/bar/2"),
            "a relative topic resolves against the hub's URL"
        );
        assert!(!books.matches("https://example.com/bar/1/2"));
        assert!(!books.matches("https://example.org/bar/1"));
        let events = matcher("/.well-known/mercure/subscriptions/exact/:topic/:subscriber");
        assert!(events.matches("/.well-known/mercure/subscriptions/exact/a/b"));
        assert!(events.matches("https://example.com/.well-known/mercure/subscriptions/exact/a/b"));
        assert!(!events.matches("/.well-known/mercure/subscriptions/urlpattern/a/b"));
    }

    #[test]
    fn matching_is_case_sensitive_but_hosts_are_not() {
        let m = matcher("https://example.com/Books/:id");
        assert!(!m.matches("https://example.com/books/1"));
        assert!(m.matches("https://EXAMPLE.com/Books/1"));
    }

    #[test]
    fn malformed_patterns_and_unparsable_topics() {
        let base = Url::parse("https://example.com/.well-known/mercure").unwrap();
        assert!(UrlPatternMatcher::compile("https://example.com/(", &base, None).is_none());
        assert!(UrlPatternMatcher::compile("/a/:", &base, None).is_none());
        assert!(!matcher("/a/*").matches("http://[::1"));
    }
}
