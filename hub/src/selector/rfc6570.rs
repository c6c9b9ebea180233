//! RFC 6570 URI templates: the grammar (section 2) and the compiler from a template to the
//! regular expression of all its expansions.
//!
//! Templates become regular expressions of the `regex` crate, whose matching time is linear in
//! the topic: a hostile template cannot make the hub backtrack. The regular expression accepts
//! exactly the strings the RFC's expansion algorithm (section 3.2.1 and appendix A) can produce,
//! with one exception that no regular expression can avoid: a variable used twice is matched
//! independently at each place (`/{x}/{x}` matches `/a/b`). The compiled size is bounded: a
//! template that would exceed the bound (a prefix longer than about 120 characters, or more than
//! 24 to 46 variables in one `?` expression, or in a simple, `+` or `#` one with exploded or
//! prefixed variables) is an exact selector, which fails closed for a claim.
//!
//! Kept apart from the selector: this is the long, self-contained part, and nothing outside it
//! needs more than [`pattern`].

/// The most a template may cost to compile, in units of regular-expression text with bounded
/// repetitions expanded (see [`Pattern`]). It bounds both the time spent compiling a hostile
/// template (tens of milliseconds unoptimised) and the compiled size (about a megabyte and a
/// half). A prefix modifier costs one character's pattern, about 500 units, per character of
/// its length, so prefixes up to about 120 fit; some expressions cost quadratic in their number
/// of variables (see [`expression_pattern`]), and 24 to 46 of those fit.
const MAX_PATTERN_COST: usize = 1 << 16;

/// The anchored regular expression of a template's expansions; `None` if `text` is not a
/// well-formed template with at least one expression, or if its pattern would exceed
/// [`MAX_PATTERN_COST`].
pub(super) fn pattern(text: &str) -> Option<String> {
    let parts = parse_template(text)?;
    template_pattern(&parts)
}

// ---------------------------------------------------------------------------------------------
// Parsing (RFC 6570 section 2).

/// One operator's expansion rules (RFC 6570 appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operator {
    first: &'static str,
    sep: &'static str,
    named: bool,
    ifemp: &'static str,
    /// Whether values may contain reserved characters unencoded (`+` and `#`).
    reserved: bool,
}

const fn op(first: &'static str, sep: &'static str, named: bool, ifemp: &'static str) -> Operator {
    Operator {
        first,
        sep,
        named,
        ifemp,
        reserved: false,
    }
}

const SIMPLE: Operator = op("", ",", false, "");
const RESERVED: Operator = Operator {
    reserved: true,
    ..SIMPLE
};
const FRAGMENT: Operator = Operator {
    reserved: true,
    ..op("#", ",", false, "")
};
const LABEL: Operator = op(".", ".", false, "");
const PATH: Operator = op("/", "/", false, "");
const PARAMS: Operator = op(";", ";", true, "");
const QUERY: Operator = op("?", "&", true, "=");
const CONTINUATION: Operator = op("&", "&", true, "=");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    None,
    /// `*`
    Explode,
    /// `:n`, 1 to 9999 characters.
    Prefix(u16),
}

#[derive(Debug)]
struct VarSpec<'a> {
    name: &'a str,
    modifier: Modifier,
}

#[derive(Debug)]
enum Part<'a> {
    Literal(&'a str),
    Expression(Operator, Vec<VarSpec<'a>>),
}

/// Splits a template into literals and expressions; `None` unless it follows the RFC's grammar
/// and has at least one expression.
fn parse_template(text: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let literal_end = rest.find('{').unwrap_or(rest.len());
        if literal_end > 0 {
            let literal = &rest[..literal_end];
            if !is_literal(literal) {
                return None;
            }
            parts.push(Part::Literal(literal));
        }
        rest = &rest[literal_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let close = after.find('}')?;
            let (op, vars) = parse_expression(&after[..close])?;
            parts.push(Part::Expression(op, vars));
            rest = &after[close + 1..];
        }
    }
    parts
        .iter()
        .any(|p| matches!(p, Part::Expression(..)))
        .then_some(parts)
}

/// RFC 6570 `literals`: characters allowed in a URI or IRI except `"`, `%` (other than in a
/// percent-encoded triplet), `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`. The grammar also leaves
/// out `'`, but the RFC's own examples (`'{var}'`) use it, so it is allowed here.
fn is_literal(literal: &str) -> bool {
    let bytes = literal.as_bytes();
    let mut chars = literal.char_indices();
    while let Some((i, c)) = chars.next() {
        let ok = match c {
            '%' => {
                let triplet = bytes.len() > i + 2
                    && bytes[i + 1].is_ascii_hexdigit()
                    && bytes[i + 2].is_ascii_hexdigit();
                chars.nth(1);
                triplet
            }
            '!'
            | '#'
            | '$'
            | '&'
            | '\''
            | '('..=';'
            | '='
            | '?'..='['
            | ']'
            | '_'
            | 'a'..='z'
            | '~' => true,
            c if c.is_ascii() => false,
            c => is_ucschar_or_iprivate(c),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// RFC 3987 `ucschar` and `iprivate`: the non-ASCII characters an IRI may hold.
fn is_ucschar_or_iprivate(c: char) -> bool {
    let c = u32::from(c);
    match c {
        0xA0..=0xD7FF | 0xE000..=0xFDCF | 0xFDF0..=0xFFEF => true,
        // Planes 1 to 16, less each plane's last two code points and the tags block.
        0x10000.. => c & 0xFFFF <= 0xFFFD && !(0xE0000..=0xE0FFF).contains(&c),
        _ => false,
    }
}

/// An expression's body (between the braces): operator, then comma-separated varspecs.
fn parse_expression(body: &str) -> Option<(Operator, Vec<VarSpec<'_>>)> {
    let (op, list) = match body.as_bytes().first()? {
        b'+' => (RESERVED, &body[1..]),
        b'#' => (FRAGMENT, &body[1..]),
        b'.' => (LABEL, &body[1..]),
        b'/' => (PATH, &body[1..]),
        b';' => (PARAMS, &body[1..]),
        b'?' => (QUERY, &body[1..]),
        b'&' => (CONTINUATION, &body[1..]),
        // Reserved for future extensions: not a template.
        b'=' | b',' | b'!' | b'@' | b'|' => return None,
        _ => (SIMPLE, body),
    };
    let vars = list.split(',').map(parse_varspec).collect::<Option<_>>()?;
    Some((op, vars))
}

/// `varname [ "*" / ":" max-length ]`, max-length 1 to 9999 without a leading zero.
fn parse_varspec(spec: &str) -> Option<VarSpec<'_>> {
    let (name, modifier) = if let Some(name) = spec.strip_suffix('*') {
        (name, Modifier::Explode)
    } else if let Some((name, len)) = spec.split_once(':') {
        let valid = (1..=4).contains(&len.len())
            && !len.starts_with('0')
            && len.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return None;
        }
        (name, Modifier::Prefix(len.parse().ok()?))
    } else {
        (spec, Modifier::None)
    };
    is_varname(name).then_some(VarSpec { name, modifier })
}

/// `varchar *( ["."] varchar )`, varchar being ALPHA / DIGIT / "_" / pct-encoded.
fn is_varname(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let bytes = part.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'%' if bytes.len() > i + 2
                        && bytes[i + 1].is_ascii_hexdigit()
                        && bytes[i + 2].is_ascii_hexdigit() =>
                    {
                        i += 3
                    }
                    b if b.is_ascii_alphanumeric() || b == b'_' => i += 1,
                    _ => return false,
                }
            }
            !bytes.is_empty()
        })
}

// ---------------------------------------------------------------------------------------------
// Compiling: the regular expression of all expansions.

/// A percent-encoded octet (either case of hex digit, as RFC 3986 allows).
const PCT: &str = "%[0-9A-Fa-f]{2}";
/// A continuation octet of UTF-8, percent-encoded.
const CONT: &str = "%[89ABab][0-9A-Fa-f]";

/// The value characters an operator leaves unencoded, as the inside of a character class.
fn allowed(op: Operator) -> &'static str {
    if op.reserved {
        r"A-Za-z0-9\-._\~:/?#\[\]@!$\&'()*+,;="
    } else {
        r"A-Za-z0-9\-._\~"
    }
}

/// Any encoded value: allowed characters and percent-encoded octets.
fn value(op: Operator) -> String {
    values(op, "")
}

/// Values joined by the single character `joint`: `v(?:,v)*` written as one repetition, which
/// compiles smaller and faster.
fn values(op: Operator, joint: &str) -> String {
    format!("(?:[{}{}]|{PCT})*", allowed(op), regex::escape(joint))
}

/// One character of a value, as a prefix modifier counts them: an allowed character, or the
/// percent-encoding of one UTF-8 character (a valid sequence of one to four octets), or a lone
/// percent-encoded octet that starts no valid sequence (reserved expansion passes such octets
/// through, one character each).
fn character(op: Operator) -> String {
    // After `%`, one branch per kind of lead octet, each optionally followed by the rest of its
    // sequence: a lead without its whole sequence is a lone octet, and what follows it counts
    // on its own.
    let h = "[0-9A-Fa-f]";
    let c = CONT;
    let lone = "[0-9A-Ba-b][0-9A-Fa-f]|[Cc][01]|[Ff][5-9A-Fa-f]";
    let two = format!("(?:[Cc][2-9A-Fa-f]|[Dd]{h})(?:{c})?");
    let three =
        format!("[Ee]0(?:%[ABab]{h}{c})?|[Ee][1-9A-Ca-cEeFf](?:{c}{c})?|[Ee][Dd](?:%[89]{h}{c})?");
    let four = format!("[Ff]0(?:%[9ABab]{h}{c}{c})?|[Ff][1-3](?:{c}{c}{c})?|[Ff]4(?:%8{h}{c}{c})?");
    format!("(?:[{}]|%(?:{lone}|{two}|{three}|{four}))", allowed(op))
}

/// Regular-expression text and its cost: its length, with a bounded repetition counted once per
/// copy the compiler makes of it. The compiled size grows with the cost (about 20 bytes per
/// unit), so [`MAX_PATTERN_COST`] refuses an oversized template before any compiling.
#[derive(Default)]
struct Pattern {
    text: String,
    cost: usize,
    /// For a variable's pattern: whether its language is closed under joining by the
    /// operator's separator (any values joined by `sep` are again one value of it), so that an
    /// expression of such variables needs no branch per first variable.
    closed: bool,
}

impl Pattern {
    fn push(&mut self, other: &Pattern) -> Option<()> {
        self.text.push_str(&other.text);
        self.cost += other.cost;
        (self.cost <= MAX_PATTERN_COST).then_some(())
    }

    fn push_str(&mut self, text: &str) -> Option<()> {
        self.text.push_str(text);
        self.cost += text.len();
        (self.cost <= MAX_PATTERN_COST).then_some(())
    }
}

impl From<String> for Pattern {
    fn from(text: String) -> Self {
        Pattern {
            cost: text.len(),
            text,
            closed: false,
        }
    }
}

/// The expansions of one defined variable, without the separator before it.
///
/// The variable may hold a string, a list or an associative array, so this is the union of
/// what each produces (appendix A). Named operators give `name=value`, or `name` + ifemp for an
/// empty value; for a list or map whose items are empty the RFC's "value is empty" is read both
/// ways (`;x` and `;x=`), since implementations differ and either is an expansion.
fn varspec_pattern(op: Operator, var: &VarSpec<'_>) -> Pattern {
    let v = value(op);
    let sep = regex::escape(op.sep);
    let ifemp = regex::escape(op.ifemp);
    let name = regex::escape(var.name);
    // Unions below leave out alternatives another one already covers, for a smaller program.
    let (text, closed) = match (op.named, var.modifier) {
        // A string's first n characters (prefixes apply to strings only).
        (named, Modifier::Prefix(n)) => {
            let c = character(op);
            let cost = c.len() * usize::from(n);
            let text = if named {
                format!("(?:{name}(?:{ifemp}|={c}{{1,{n}}}))")
            } else {
                format!("{c}{{0,{n}}}")
            };
            return Pattern {
                text,
                cost,
                closed: false,
            };
        }
        // A string, or a list or a map (k,v,k,v) joined by commas: `v(?:,v)*`.
        (false, Modifier::None) => (values(op, ","), op.sep == ","),
        (true, Modifier::None) => (format!("{name}(?:{ifemp}|={})", values(op, ",")), false),
        // A string or a list joined by sep (`v(?:sep v)*`), or a map's k=v pairs joined by sep,
        // which reserved expansion's values already cover (they may hold `=` and `,`).
        (false, Modifier::Explode) if op.reserved => (values(op, op.sep), true),
        (false, Modifier::Explode) => (
            format!("{}|{v}={v}(?:{sep}{v}={v})*", values(op, op.sep)),
            false,
        ),
        // Named: each list item `name=value` (`name` + ifemp when empty), or each map pair
        // `key=value`, the key in place of the name; a key can be any value, so the pairs cover
        // the items.
        (true, Modifier::Explode) => {
            let pair = format!("{v}(?:{ifemp}|={v})");
            (format!("{pair}(?:{sep}{pair})*"), false)
        }
    };
    Pattern {
        closed,
        ..format!("(?:{text})").into()
    }
}

/// The expansions of one expression: `""` when every variable is undefined, else `first` and
/// the defined variables' expansions, in template order, joined by `sep`.
///
/// When `first` equals `sep` this is each variable optionally preceded by `sep`. Otherwise the
/// first defined variable is preceded by `first` and the others by `sep`, which a regular
/// expression can only say by one branch per possible first variable: quadratic in the number
/// of variables, bounded by [`MAX_PATTERN_COST`].
fn expression_pattern(op: Operator, vars: &[VarSpec<'_>], out: &mut Pattern) -> Option<()> {
    let sep = regex::escape(op.sep);
    let mut items = Vec::with_capacity(vars.len());
    let mut optional = Vec::with_capacity(vars.len());
    for var in vars {
        let item = varspec_pattern(op, var);
        let mut opt = Pattern::from(format!("(?:{sep}"));
        opt.push(&item)?;
        opt.push_str(")?")?;
        items.push(item);
        optional.push(opt);
    }
    if op.first == op.sep {
        return optional.iter().try_for_each(|o| out.push(o));
    }
    // Values that join into one value of the same language: any defined subset is one value.
    if items.iter().all(|i| i.closed && i.text == items[0].text) {
        out.push_str("(?:")?;
        out.push_str(&regex::escape(op.first))?;
        out.push(&items[0])?;
        return out.push_str(")?");
    }
    out.push_str("(?:")?;
    out.push_str(&regex::escape(op.first))?;
    out.push_str("(?:")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("|")?;
        }
        out.push(item)?;
        optional[i + 1..].iter().try_for_each(|o| out.push(o))?;
    }
    out.push_str("))?")
}

/// The anchored regular expression of a whole template. Literals match themselves as written
/// (topics are IRIs, and a literal's characters are all allowed in one).
fn template_pattern(parts: &[Part<'_>]) -> Option<String> {
    let mut out = Pattern::default();
    out.push_str("^")?;
    for part in parts {
        match part {
            Part::Literal(literal) => out.push_str(&regex::escape(literal))?,
            Part::Expression(op, vars) => expression_pattern(*op, vars, &mut out)?,
        }
    }
    out.push_str("$")?;
    Some(out.text)
}

#[cfg(test)]
mod tests {
    use crate::selector::Selector;

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
}
