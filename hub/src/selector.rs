//! Topic selectors: which topics a subscription (or a JWT claim) covers.
//!
//! A selector is `*` (every topic), or a string that matches a topic equal to it, or, when it is
//! an RFC 6570 URI template, any topic the template could expand to. This follows the reference
//! (Go) Mercure hub: equality is tried first, then the template; matching is anchored at both
//! ends; `{var}` matches unreserved characters and percent-escapes, so it never crosses `/`;
//! `{+var}` and `{#var}` also allow reserved characters; the other operators (`.`, `/`, `;`, `?`,
//! `&`) add their prefix and separator (`{?x}` matches `?x=…`).
//!
//! Templates become regular expressions of the `regex` crate, whose matching time is linear in
//! the topic: a hostile template cannot make the hub backtrack forever. Compiling is the costly
//! part, so the hub compiles each distinct template once and shares it ([`Selector`] is cheap to
//! clone).

use regex::Regex;
use std::{fmt, sync::Arc};

/// The longest selector accepted, in bytes. Longer ones are refused at the edge.
pub const MAX_SELECTOR_LEN: usize = 2048;

/// A parsed selector.
#[derive(Clone)]
pub enum Selector {
    /// `*`: every topic.
    Any,
    /// A plain string: the topic equal to it.
    Exact(Arc<str>),
    /// A URI template (which also matches the topic equal to its own text).
    Template(Arc<Template>),
}

/// A compiled URI template.
pub struct Template {
    source: String,
    regex: Regex,
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

impl Selector {
    /// Parses a selector. A string that is not a well-formed template (an unclosed `{`, say) is
    /// an exact selector: it still matches the topic equal to it.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.is_empty() {
            return Err(SelectorError::Empty);
        }
        if text.len() > MAX_SELECTOR_LEN {
            return Err(SelectorError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(SelectorError::Control);
        }
        if text == "*" {
            return Ok(Selector::Any);
        }
        if text.contains('{')
            && let Some(regex) = template_regex(text)
        {
            return Ok(Selector::Template(Arc::new(Template {
                source: text.to_owned(),
                regex,
            })));
        }
        Ok(Selector::Exact(text.into()))
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(s) => s,
            Selector::Template(t) => &t.source,
        }
    }

    /// Whether `topic` is covered.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(s) => &**s == topic,
            Selector::Template(t) => t.source == topic || t.regex.is_match(topic),
        }
    }

    /// Whether any of `topics` is covered.
    pub fn matches_any<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        topics.into_iter().any(|topic| self.matches(topic))
    }
}

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

const UNRESERVED: &str = r"A-Za-z0-9\-._~";
const RESERVED: &str = r":/?#\[\]@!$&'()*+,;=";

/// Translates an RFC 6570 template into an anchored regex; `None` if it is not a template.
fn template_regex(template: &str) -> Option<Regex> {
    let mut pattern = String::from("^");
    let mut rest = template;
    let mut expressions = 0;
    while let Some(open) = rest.find('{') {
        pattern.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..].find('}')? + open;
        pattern.push_str(&expression_regex(&rest[open + 1..close])?);
        expressions += 1;
        rest = &rest[close + 1..];
    }
    if rest.contains('}') || expressions == 0 {
        return None;
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    regex::RegexBuilder::new(&pattern)
        .size_limit(1 << 20)
        .build()
        .ok()
}

/// The regex for one `{…}` expression: operator, then a comma-separated list of variables.
fn expression_regex(body: &str) -> Option<String> {
    let (op, vars) = match body.chars().next()? {
        c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&') => (Some(c), &body[1..]),
        _ => (None, body),
    };
    // (prefix before the first value, separator between values, reserved allowed, named)
    let (first, sep, reserved, named) = match op {
        None => ("", ",", false, false),
        Some('+') => ("", ",", true, false),
        Some('#') => ("#", ",", true, false),
        Some('.') => (".", ".", false, false),
        Some('/') => ("/", "/", false, false),
        Some(';') => (";", ";", false, true),
        Some('?') => ("?", "&", false, true),
        Some('&') => ("&", "&", false, true),
        Some(_) => return None,
    };
    let mut names = Vec::new();
    for spec in vars.split(',') {
        let name = spec.strip_suffix('*').unwrap_or(spec);
        let name = match name.split_once(':') {
            Some((name, len)) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => name,
        };
        let valid = !name.is_empty()
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '%')
            });
        if !valid {
            return None;
        }
        names.push(regex::escape(name));
    }
    let chars = if reserved {
        format!("{UNRESERVED}{RESERVED}")
    } else {
        UNRESERVED.to_owned()
    };
    // A value: allowed characters and percent-escapes. Lists (and exploded values) are joined
    // with the separator, which a value therefore may contain.
    let value = format!("(?:[{chars}]|%[0-9A-Fa-f]{{2}})*");
    let names = names.join("|");
    let item = match op {
        // `;x` omits the `=` of an empty value; `?x=` and `&x=` always have it.
        Some(';') => format!("(?:{names})(?:={value})?"),
        _ if named => format!("(?:{names})={value}"),
        _ => value,
    };
    let sep = regex::escape(sep);
    Some(format!(
        "(?:{}{item}(?:{sep}{item})*)?",
        regex::escape(first)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(selector: &str, topic: &str) -> bool {
        Selector::parse(selector).unwrap().matches(topic)
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            // exact
            (
                "https://example.com/books/1",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/1",
                "https://example.com/books/12",
                false,
            ),
            (
                "https://example.com/books/1",
                "https://example.com/books",
                false,
            ),
            (
                "https://example.com/Books/1",
                "https://example.com/books/1",
                false,
            ),
            ("chat", "chat", true),
            // any
            ("*", "https://example.com/anything", true),
            ("*", "x", true),
            // {var}: one path segment, anchored
            (
                "https://example.com/books/{id}",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/abc-_.~%20",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/1/reviews",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/authors/1",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "xhttps://example.com/books/1",
                false,
            ),
            ("/chat/{room}", "/chat/general", true),
            ("/chat/{room}", "/chat/a b", false),
            // the template's own text matches too (equality first)
            (
                "https://example.com/books/{id}",
                "https://example.com/books/{id}",
                true,
            ),
            // {+var}: reserved characters, crosses '/'
            (
                "https://example.com/{+path}",
                "https://example.com/books/1/reviews?x=1",
                true,
            ),
            ("{+base}/books", "https://example.com/books", true),
            // {#var}: fragment
            (
                "https://example.com/page{#section}",
                "https://example.com/page#intro/a",
                true,
            ),
            (
                "https://example.com/page{#section}",
                "https://example.com/page",
                true,
            ),
            (
                "https://example.com/page{#section}",
                "https://example.com/pagex",
                false,
            ),
            // {?x}: query
            (
                "https://example.com/search{?q}",
                "https://example.com/search?q=rust",
                true,
            ),
            (
                "https://example.com/search{?q}",
                "https://example.com/search",
                true,
            ),
            (
                "https://example.com/search{?q}",
                "https://example.com/search?p=rust",
                false,
            ),
            (
                "https://example.com/s{?q,lang}",
                "https://example.com/s?q=a&lang=fr",
                true,
            ),
            (
                "https://example.com/s{?q}{&page}",
                "https://example.com/s?q=a&page=2",
                true,
            ),
            // {/var} and {.var}
            ("https://example.com{/seg}", "https://example.com/a", true),
            (
                "https://example.com{/seg*}",
                "https://example.com/a/b",
                true,
            ),
            ("file{.ext}", "file.txt", true),
            ("file{.ext}", "file-txt", false),
            // {;x}
            ("/map{;x,y}", "/map;x=1;y=2", true),
            ("/map{;x,y}", "/map;z=1", false),
            // several expressions
            ("/users/{user}/posts/{post}", "/users/ann/posts/7", true),
            (
                "/users/{user}/posts/{post}",
                "/users/ann/posts/7/edit",
                false,
            ),
            // not a template: exact only
            ("/broken/{id", "/broken/{id", true),
            ("/broken/{id", "/broken/1", false),
            ("/odd}/x", "/odd}/x", true),
        ];
        for &(selector, topic, expected) in cases {
            assert_eq!(m(selector, topic), expected, "{selector:?} vs {topic:?}");
        }
    }

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
}
