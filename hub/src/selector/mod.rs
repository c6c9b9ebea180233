//! Topic selectors: which topics a subscription (or a JWT claim) covers.
//!
//! A selector is `*` (every topic), or a string that matches the topic equal to it, or, when it
//! is a well-formed RFC 6570 URI template, any topic that is an expansion of the template for
//! some values of its variables (each undefined, a string, a list or an associative array), and
//! also the topic equal to the template's own text (as the reference Go hub does, equality is
//! tried first). A string that is not a well-formed template is an exact selector.
//!
//! This module holds what callers use: [`Selector`], its [`Template`], [`SelectorError`] and the
//! checks every selector goes through. The two other concerns live apart, each in its own file:
//!
//! - `rfc6570`: the RFC 6570 grammar and the compiler from a template to a regular expression
//!   (linear-time matching, bounded size); the long, self-contained part.
//! - `interner`: compiling is the costly part, so an [`Interner`] compiles each distinct
//!   template (and URL pattern) once and shares it while it is in use ([`Selector`] is cheap to
//!   clone).
//! - `urlpattern`: Mercure 1.0's URL Pattern matcher ([`MatchKind::UrlPattern`]).
//!
//! Mercure 1.0 names the matcher type instead of guessing it from the text ([`MatchKind`]):
//! its `exact` matcher is byte-exact even when the text has braces, and `*` is the wildcard
//! whatever the type.

mod interner;
mod rfc6570;
mod urlpattern;

pub use interner::Interner;
pub use urlpattern::UrlPatternMatcher;

use interner::Table;
use regex::{Regex, RegexBuilder};
use std::{
    fmt,
    sync::{Arc, Weak, atomic::Ordering},
};

/// The longest selector accepted, in bytes. Longer ones are refused at the edge.
pub const MAX_SELECTOR_LEN: usize = 2048;

/// The `regex` crate's own bound on the compiled size, a backstop above what
/// `rfc6570::MAX_PATTERN_COST` lets through.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// A parsed selector.
#[derive(Clone)]
pub enum Selector {
    /// `*`: every topic.
    Any,
    /// A plain string: the topic equal to it.
    Exact(Arc<str>),
    /// A URI template (which also matches the topic equal to its own text).
    Template(Arc<Template>),
    /// A Mercure 1.0 URL pattern, resolved against the hub's URL.
    UrlPattern(Arc<UrlPatternMatcher>),
}

/// A Mercure 1.0 matcher type: what a `match_<type>` parameter (or a grant's `match_type`)
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// `match`, `match_exact`: byte-for-byte.
    Exact,
    /// `match_urlpattern`: a WHATWG URL Pattern.
    UrlPattern,
}

impl MatchKind {
    /// The canonical name (`exact`, `urlpattern`).
    pub fn name(self) -> &'static str {
        match self {
            MatchKind::Exact => "exact",
            MatchKind::UrlPattern => "urlpattern",
        }
    }

    /// The matcher type named by a `match_type` value or a `match_…` suffix; `None` for a type
    /// the hub does not support.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "exact" => Some(MatchKind::Exact),
            "urlpattern" => Some(MatchKind::UrlPattern),
            _ => None,
        }
    }
}

/// A compiled URI template.
///
/// A template created through an [`Interner`] is registered there while it lives, and removes
/// its own entry when the last selector holding it is dropped.
pub struct Template {
    source: Arc<str>,
    regex: Regex,
    /// Length of the literal text before the first `{`.
    prefix_len: usize,
    /// The interner's table, if it came from one.
    home: Option<Weak<Table>>,
}

/// Why a string cannot be a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("a selector must not be empty")]
    Empty,
    #[error("a selector is limited to {MAX_SELECTOR_LEN} bytes")]
    TooLong,
    #[error("a selector must not contain control characters")]
    Control,
}

/// Why a string cannot be a Mercure 1.0 matcher: what no selector may be, and more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error("a matcher must not contain Unicode format characters (category Cf)")]
    Format,
    #[error("not a well-formed URL pattern")]
    InvalidUrlPattern,
}

impl Selector {
    /// Parses a selector, compiling a template afresh. A string that is not a well-formed
    /// template (an unclosed `{`, say) is an exact selector: it still matches the topic equal
    /// to it. Use an [`Interner`] to share compiled templates.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if let Some(simple) = parse_simple(text)? {
            return Ok(simple);
        }
        Ok(match Template::compile(text, None) {
            Some(template) => Selector::Template(Arc::new(template)),
            None => Selector::Exact(text.into()),
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(s) => s,
            Selector::Template(t) => t.as_str(),
            Selector::UrlPattern(p) => p.as_str(),
        }
    }

    /// The matcher type, in Mercure 1.0's terms (`*` and draft-07's templates have none).
    pub fn kind(&self) -> Option<MatchKind> {
        match self {
            Selector::Exact(_) => Some(MatchKind::Exact),
            Selector::UrlPattern(_) => Some(MatchKind::UrlPattern),
            Selector::Any | Selector::Template(_) => None,
        }
    }

    /// What an index keys a non-exact selector by: its text, set apart for a URL pattern (whose
    /// text could also be a template's) by a control character no parsed text contains.
    pub(crate) fn index_key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Selector::UrlPattern(p) => format!("\u{1}{}", p.as_str()).into(),
            other => other.as_str().into(),
        }
    }

    /// Whether this is a URI template (rather than `*` or an exact topic).
    pub fn is_template(&self) -> bool {
        matches!(self, Selector::Template(_))
    }

    /// A string that every topic this selector matches starts with, so that an index can skip
    /// selectors cheaply: `""` for `*`, the whole text for an exact selector, and a template's
    /// literal text before its first `{` (literals match only themselves); `""` for a URL
    /// pattern (it matches topics resolved against the hub's URL, absolute or relative).
    pub fn literal_prefix(&self) -> &str {
        match self {
            Selector::Any | Selector::UrlPattern(_) => "",
            Selector::Exact(s) => s,
            Selector::Template(t) => t.literal_prefix(),
        }
    }

    /// Whether `topic` is covered.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(s) => &**s == topic,
            Selector::Template(t) => t.matches(topic),
            Selector::UrlPattern(p) => p.matches(topic),
        }
    }

    /// Whether any of `topics` is covered.
    pub fn matches_any<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        topics.into_iter().any(|topic| self.matches(topic))
    }
}

/// The checks every selector goes through, and the selectors that need no compiling: `Some` for
/// `*` and for a text without `{` (which cannot be a template with an expression).
fn parse_simple(text: &str) -> Result<Option<Selector>, SelectorError> {
    check(text)?;
    if text == "*" {
        return Ok(Some(Selector::Any));
    }
    if !text.contains('{') {
        return Ok(Some(Selector::Exact(text.into())));
    }
    Ok(None)
}

/// The checks every selector and matcher goes through: not empty, bounded, no control
/// character (C0, DEL, C1).
fn check(text: &str) -> Result<(), SelectorError> {
    if text.is_empty() {
        return Err(SelectorError::Empty);
    }
    if text.len() > MAX_SELECTOR_LEN {
        return Err(SelectorError::TooLong);
    }
    if text.chars().any(char::is_control) {
        return Err(SelectorError::Control);
    }
    Ok(())
}

/// Whether `c` is of general category Cf (Unicode 16.0; 17.0, which Mercure 1.0 cites, adds
/// none): invisible, these let one name pass for another, so Mercure 1.0 refuses them in matchers,
/// topics, ids and types.
pub(crate) fn is_format(c: char) -> bool {
    FORMAT
        .binary_search_by(|&(low, high)| {
            if high < c {
                std::cmp::Ordering::Less
            } else if low > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The characters of general category Cf, as ranges in order.
const FORMAT: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{180e}', '\u{180e}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{fff9}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0001}', '\u{e0001}'),
    ('\u{e0020}', '\u{e007f}'),
];

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({:?})", self.as_str())
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Selector {}

impl Template {
    /// Compiles `text`; `None` if it is not a well-formed template with at least one expression,
    /// or if its expression would exceed the size bounds.
    fn compile(text: &str, home: Option<&Arc<Table>>) -> Option<Self> {
        let pattern = rfc6570::pattern(text)?;
        if let Some(table) = home {
            table.compiled.fetch_add(1, Ordering::Relaxed);
        }
        let regex = RegexBuilder::new(&pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .ok()?;
        Some(Template {
            source: text.into(),
            regex,
            prefix_len: text.find('{').unwrap_or(text.len()),
            home: home.map(Arc::downgrade),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal text before the first `{`.
    pub fn literal_prefix(&self) -> &str {
        &self.source[..self.prefix_len]
    }

    /// Whether `topic` is the template's own text or one of its expansions.
    pub fn matches(&self, topic: &str) -> bool {
        *self.source == *topic || self.regex.is_match(topic)
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", &*self.source)
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        let Some(table) = self.home.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let mut entries = table.entries.lock();
        // The entry may already belong to a newer compilation of the same text (made after our
        // last holder let go and before we got the lock): leave that one alone.
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

    #[test]
    fn templates_are_recognised() {
        assert!(matches!(
            Selector::parse("/a/{b}").unwrap(),
            Selector::Template(_)
        ));
        assert!(matches!(
            Selector::parse("/a/{b").unwrap(),
            Selector::Exact(_)
        ));
        assert!(matches!(
            Selector::parse("/a/{}").unwrap(),
            Selector::Exact(_)
        ));
        assert!(matches!(Selector::parse("*").unwrap(), Selector::Any));
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert_eq!(Selector::parse(""), Err(SelectorError::Empty));
        assert_eq!(Selector::parse("a\nb"), Err(SelectorError::Control));
        assert_eq!(
            Selector::parse(&"x".repeat(MAX_SELECTOR_LEN + 1)),
            Err(SelectorError::TooLong)
        );
    }

    #[test]
    fn literal_prefix_and_is_template() {
        let t = Selector::parse("/a/{b}/c").unwrap();
        assert!(t.is_template());
        assert_eq!(t.literal_prefix(), "/a/");
        assert_eq!(Selector::parse("*").unwrap().literal_prefix(), "");
        assert_eq!(Selector::parse("/x").unwrap().literal_prefix(), "/x");
        assert!(!Selector::parse("/x").unwrap().is_template());
    }

    /// The table of format characters is the regex crate's `\p{Cf}`, range for range.
    #[test]
    fn the_format_table_is_general_category_cf() {
        let cf = regex::Regex::new(r"^\p{Cf}$").unwrap();
        let mut buf = [0; 4];
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(is_format(c), cf.is_match(c.encode_utf8(&mut buf)), "{c:?}");
        }
    }
}
