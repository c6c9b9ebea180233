//! Topic selectors against RFC 6570: the RFC's own examples, the grammar's edges, and property
//! tests with an independent expander (`iri-string`) as the reference.

use tidings_hub::{Interner, MAX_SELECTOR_LEN, Selector};

fn template(text: &str) -> Selector {
    let selector = Selector::parse(text).unwrap();
    assert!(selector.is_template(), "{text:?} should be a template");
    selector
}

/// Every example expansion of RFC 6570 (sections 1.2 and 3.2.1 to 3.2.9), with the RFC's
/// values: count = (one, two, three), dom = (example, com), dub = "me/too", hello = "Hello
/// World!", half = "50%", var = "value", who = "fred", base = "http://example.com/home/", path =
/// "/foo/bar", list = (red, green, blue), keys = [(semi, ";"), (dot, "."), (comma, ",")], v = "6",
/// x = "1024", y = "768", empty = "", empty_keys = [], undef undefined. Map expansions are listed
/// in the RFC's key order; `rfc_map_examples_in_any_key_order` tries the others.
const RFC_EXAMPLES: &[(&str, &str)] = &[
    // 1.2, level 1
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    // 1.2, level 2
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("X{#var}", "X#value"),
    ("X{#hello}", "X#Hello%20World!"),
    // 1.2, level 3
    ("map?{x,y}", "map?1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{+path,x}/here", "/foo/bar,1024/here"),
    ("{#x,hello,y}", "#1024,Hello%20World!,768"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("X{.var}", "X.value"),
    ("X{.x,y}", "X.1024.768"),
    ("{/var}", "/value"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{;x,y}", ";x=1024;y=768"),
    ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{?x,y}", "?x=1024&y=768"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{&x,y,empty}", "&x=1024&y=768&empty="),
    // 1.2, level 4
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list}", "red,green,blue"),
    ("{list*}", "red,green,blue"),
    ("{keys}", "semi,%3B,dot,.,comma,%2C"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{+list}", "red,green,blue"),
    ("{+list*}", "red,green,blue"),
    ("{+keys}", "semi,;,dot,.,comma,,"),
    ("{+keys*}", "semi=;,dot=.,comma=,"),
    ("{#path:6}/here", "#/foo/b/here"),
    ("{#list}", "#red,green,blue"),
    ("{#list*}", "#red,green,blue"),
    ("{#keys}", "#semi,;,dot,.,comma,,"),
    ("{#keys*}", "#semi=;,dot=.,comma=,"),
    ("X{.var:3}", "X.val"),
    ("X{.list}", "X.red,green,blue"),
    ("X{.list*}", "X.red.green.blue"),
    ("X{.keys}", "X.semi,%3B,dot,.,comma,%2C"),
    ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
    ("{/var:1,var}", "/v/value"),
    ("{/list}", "/red,green,blue"),
    ("{/list*}", "/red/green/blue"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{/keys}", "/semi,%3B,dot,.,comma,%2C"),
    ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
    ("{;hello:5}", ";hello=Hello"),
    ("{;list}", ";list=red,green,blue"),
    ("{;list*}", ";list=red;list=green;list=blue"),
    ("{;keys}", ";keys=semi,%3B,dot,.,comma,%2C"),
    ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
    ("{?var:3}", "?var=val"),
    ("{?list}", "?list=red,green,blue"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys}", "?keys=semi,%3B,dot,.,comma,%2C"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
    ("{&var:3}", "&var=val"),
    ("{&list}", "&list=red,green,blue"),
    ("{&list*}", "&list=red&list=green&list=blue"),
    ("{&keys}", "&keys=semi,%3B,dot,.,comma,%2C"),
    ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
    // 2.1 (the RFC's literal example uses an apostrophe, which its grammar leaves out)
    ("'{count}'", "'one,two,three'"),
    // 3.2.1
    ("{count}", "one,two,three"),
    ("{count*}", "one,two,three"),
    ("{/count}", "/one,two,three"),
    ("{/count*}", "/one/two/three"),
    ("{;count}", ";count=one,two,three"),
    ("{;count*}", ";count=one;count=two;count=three"),
    ("{?count}", "?count=one,two,three"),
    ("{?count*}", "?count=one&count=two&count=three"),
    ("{&count*}", "&count=one&count=two&count=three"),
    // 3.2.2
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    ("{half}", "50%25"),
    ("O{empty}X", "OX"),
    ("O{undef}X", "OX"),
    ("{x,y}", "1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("?{x,empty}", "?1024,"),
    ("?{x,undef}", "?1024"),
    ("?{undef,y}", "?768"),
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list}", "red,green,blue"),
    ("{list*}", "red,green,blue"),
    ("{keys}", "semi,%3B,dot,.,comma,%2C"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    // 3.2.3
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+half}", "50%25"),
    ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
    ("{+base}index", "http://example.com/home/index"),
    ("O{+empty}X", "OX"),
    ("O{+undef}X", "OX"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("up{+path}{var}/here", "up/foo/barvalue/here"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{+path,x}/here", "/foo/bar,1024/here"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{+list}", "red,green,blue"),
    ("{+list*}", "red,green,blue"),
    ("{+keys}", "semi,;,dot,.,comma,,"),
    ("{+keys*}", "semi=;,dot=.,comma=,"),
    // 3.2.4
    ("{#var}", "#value"),
    ("{#hello}", "#Hello%20World!"),
    ("{#half}", "#50%25"),
    ("foo{#empty}", "foo#"),
    ("foo{#undef}", "foo"),
    ("{#x,hello,y}", "#1024,Hello%20World!,768"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("{#path:6}/here", "#/foo/b/here"),
    ("{#list}", "#red,green,blue"),
    ("{#list*}", "#red,green,blue"),
    ("{#keys}", "#semi,;,dot,.,comma,,"),
    ("{#keys*}", "#semi=;,dot=.,comma=,"),
    // 3.2.5
    ("{.who}", ".fred"),
    ("{.who,who}", ".fred.fred"),
    ("{.half,who}", ".50%25.fred"),
    ("www{.dom*}", "www.example.com"),
    ("X{.var}", "X.value"),
    ("X{.empty}", "X."),
    ("X{.undef}", "X"),
    ("X{.var:3}", "X.val"),
    ("X{.list}", "X.red,green,blue"),
    ("X{.list*}", "X.red.green.blue"),
    ("X{.keys}", "X.semi,%3B,dot,.,comma,%2C"),
    ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
    ("X{.empty_keys}", "X"),
    ("X{.empty_keys*}", "X"),
    // 3.2.6
    ("{/who}", "/fred"),
    ("{/who,who}", "/fred/fred"),
    ("{/half,who}", "/50%25/fred"),
    ("{/who,dub}", "/fred/me%2Ftoo"),
    ("{/var}", "/value"),
    ("{/var,empty}", "/value/"),
    ("{/var,undef}", "/value"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{/var:1,var}", "/v/value"),
    ("{/list}", "/red,green,blue"),
    ("{/list*}", "/red/green/blue"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{/keys}", "/semi,%3B,dot,.,comma,%2C"),
    ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
    // 3.2.7
    ("{;who}", ";who=fred"),
    ("{;half}", ";half=50%25"),
    ("{;empty}", ";empty"),
    ("{;v,empty,who}", ";v=6;empty;who=fred"),
    ("{;v,bar,who}", ";v=6;who=fred"),
    ("{;x,y}", ";x=1024;y=768"),
    ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{;x,y,undef}", ";x=1024;y=768"),
    ("{;hello:5}", ";hello=Hello"),
    ("{;list}", ";list=red,green,blue"),
    ("{;list*}", ";list=red;list=green;list=blue"),
    ("{;keys}", ";keys=semi,%3B,dot,.,comma,%2C"),
    ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
    // 3.2.8
    ("{?who}", "?who=fred"),
    ("{?half}", "?half=50%25"),
    ("{?x,y}", "?x=1024&y=768"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("{?x,y,undef}", "?x=1024&y=768"),
    ("{?var:3}", "?var=val"),
    ("{?list}", "?list=red,green,blue"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys}", "?keys=semi,%3B,dot,.,comma,%2C"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
    // 3.2.9
    ("{&who}", "&who=fred"),
    ("{&half}", "&half=50%25"),
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{&x,y,empty}", "&x=1024&y=768&empty="),
    ("{&x,y,undef}", "&x=1024&y=768"),
    ("{&var:3}", "&var=val"),
    ("{&list}", "&list=red,green,blue"),
    ("{&list*}", "&list=red&list=green&list=blue"),
    ("{&keys}", "&keys=semi,%3B,dot,.,comma,%2C"),
    ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
];

#[test]
fn rfc_examples_match() {
    for &(text, expansion) in RFC_EXAMPLES {
        assert!(
            template(text).matches(expansion),
            "{text:?} should match {expansion:?}"
        );
    }
}

#[test]
fn rfc_map_examples_in_any_key_order() {
    // The RFC's keys map ordered every way: (key, value encoded without and with reserved).
    let pairs = [
        ("semi", "%3B", ";"),
        ("dot", ".", "."),
        ("comma", "%2C", ","),
    ];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    // (template, first, separator between pairs, key-value joint, reserved)
    let forms = [
        ("{keys}", "", ",", ",", false),
        ("{keys*}", "", ",", "=", false),
        ("{+keys}", "", ",", ",", true),
        ("{+keys*}", "", ",", "=", true),
        ("{#keys}", "#", ",", ",", true),
        ("{#keys*}", "#", ",", "=", true),
        ("X{.keys}", "X.", ",", ",", false),
        ("X{.keys*}", "X.", ".", "=", false),
        ("{/keys}", "/", ",", ",", false),
        ("{/keys*}", "/", "/", "=", false),
        ("{;keys}", ";keys=", ",", ",", false),
        ("{;keys*}", ";", ";", "=", false),
        ("{?keys}", "?keys=", ",", ",", false),
        ("{?keys*}", "?", "&", "=", false),
        ("{&keys}", "&keys=", ",", ",", false),
        ("{&keys*}", "&", "&", "=", false),
    ];
    for (text, first, sep, joint, reserved) in forms {
        let selector = template(text);
        for order in orders {
            let body: Vec<String> = order
                .iter()
                .map(|&i| {
                    let (key, encoded, raw) = pairs[i];
                    format!("{key}{joint}{}", if reserved { raw } else { encoded })
                })
                .collect();
            let expansion = format!("{first}{}", body.join(sep));
            assert!(selector.matches(&expansion), "{text:?} vs {expansion:?}");
        }
    }
}

/// Topics that are no expansion of the template, including what the previous compiler let
/// through.
#[test]
fn non_expansions_do_not_match() {
    let cases: &[(&str, &str)] = &[
        // `{/id}` values cannot contain `/`.
        ("/u{/id}", "/u/alice/private/x"),
        ("/u{/id}", "/u/alice/"),
        ("/u{/id}", "/u//"),
        ("/u/{id}", "/u/a/b"),
        // A prefix bounds the length.
        ("/p/{id:1}", "/p/ab"),
        ("/p/{id:3}", "/p/abcd"),
        ("/p/{?id:2}", "/p/?id=abc"),
        ("/p/{;id:2}", "/p/;id="),
        // One variable, one name, each at most once.
        ("/s{?q}", "/s?q=a&q=b"),
        ("/s{?q}", "/s?r=a"),
        ("/s{?q}", "/s?q"),
        ("/s{?q,lang}", "/s?lang=fr&q=a"),
        ("/s{?q,lang}", "/s?q=a&q=b"),
        ("/s{?q}", "/s?q=a/b"),
        ("/s{&q}", "/s?q=a"),
        ("file{.ext}", "file.a/b"),
        ("file{.ext}", "file-txt"),
        ("file{.ext}", "file.a,b/c"),
        ("/m{;x,y}", "/m;y=1;x=2"),
        ("/m{;x}", "/m;x=1;x=2"),
        ("/m{;x}", "/m;z"),
        // Simple expansion encodes reserved characters.
        ("/c/{room}", "/c/a b"),
        ("/c/{room}", "/c/a?b"),
        ("/c/{room}", "/c/a%2"),
        ("/c/{room}", "/c/a%zz"),
        // `first` comes once, before the first defined variable only.
        ("/f{?a,b}", "/f?a=1?b=2"),
        ("/f{?a,b}", "/f&a=1"),
        // Anchored at both ends.
        ("/b/{id}", "x/b/1"),
        ("/b/{id}", "/b/1/"),
    ];
    for &(text, topic) in cases {
        assert!(!template(text).matches(topic), "{text:?} vs {topic:?}");
    }
}

#[test]
fn expansions_the_previous_compiler_missed_now_match() {
    let cases: &[(&str, &str)] = &[
        ("/u{/id}", "/u"),
        ("/u{/id}", "/u/alice"),
        ("/u{/id}", "/u/a,b,c"),
        ("/u{/id}", "/u/"),
        ("/t{?list}", "/t?list=red,green,blue"),
        ("/t{?list}", "/t?list="),
        ("/t{&list}", "/t&list=a,b"),
        ("X{.list}", "X.red,green,blue"),
        ("{/list}", "/red,green,blue"),
        ("{;list}", ";list=red,green,blue"),
        ("{?keys}", "?keys=semi,%3B,dot,.,comma,%2C"),
        ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
        ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
        // A named list whose only item is empty: `;x=` (and `;x`, the empty string).
        ("/m{;x}", "/m;x="),
        ("/m{;x}", "/m;x"),
        // A map explodes into any keys.
        ("/m{;x*}", "/m;a=1;b;c="),
        ("/q{?x*}", "/q?a=1&b=&c=%2F"),
    ];
    for &(text, topic) in cases {
        assert!(template(text).matches(topic), "{text:?} vs {topic:?}");
    }
}

/// A prefix counts characters: one allowed character, or the percent-encoding of one UTF-8
/// character (a valid sequence of up to four octets), or a lone octet.
#[test]
fn prefixes_count_utf8_characters() {
    let one = template("/{x:1}");
    for topic in [
        "/",
        "/a",
        "/%41",
        "/%C3%A9",
        "/%c3%a9",
        "/%E2%82%AC",
        "/%F0%9F%98%80",
        "/%F4%8F%BF%BF",
        "/%C3",
        "/%A9",
        "/%FF",
    ] {
        assert!(one.matches(topic), "{topic:?}");
    }
    for topic in [
        "/ab",
        "/a%41",
        "/%C3%A9%A9", // é, then a lone continuation
        "/%C3%C3",
        "/%C0%80",       // overlong
        "/%E0%80%80",    // overlong
        "/%ED%A0%80",    // a surrogate
        "/%F4%90%80%80", // beyond U+10FFFF
        "/%F0%9F%98",    // cut short
        "/%E2%82%AC%E2%82%AC",
        "/é",
    ] {
        assert!(!one.matches(topic), "{topic:?}");
    }
    let two = template("/{x:2}");
    assert!(two.matches("/%E2%82%AC%E2%82%AC"));
    assert!(two.matches("/%C3%A9%A9"));
    // A sequence cut short is three lone octets.
    assert!(!two.matches("/%F0%9F%98"));
    assert!(template("/{x:3}").matches("/%F0%9F%98"));
    assert!(!two.matches("/%E2%82%AC%E2%82%ACa"));
    // Reserved expansion: reserved characters count one each.
    let reserved = template("/{+x:3}");
    assert!(reserved.matches("//a/"));
    assert!(!reserved.matches("//a/b"));
}

#[test]
fn the_template_grammar_is_enforced() {
    // Not well-formed per RFC 6570: exact selectors.
    for text in [
        "/a/{}",
        "/a/{b",
        "/a/b}",
        "/a/{b}}",
        "/a/{{b}}",
        "/a/{=b}",
        "/a/{,b}",
        "/a/{!b}",
        "/a/{@b}",
        "/a/{|b}",
        "/a/{b,}",
        "/a/{b,,c}",
        "/a/{b:0}",
        "/a/{b:01}",
        "/a/{b:10000}",
        "/a/{b:}",
        "/a/{b:3*}",
        "/a/{b*:3}",
        "/a/{b**}",
        "/a/{b-c}",
        "/a/{b c}",
        "/a/{.b.}",
        "/a/{b..c}",
        "/a/{.b}.{%}",
        "/a/{b%2}",
        "/a/{b%zz}",
        "/a b/{c}",
        "/a/{c}\"",
        "/a%/{c}",
        "/a%2/{c}",
        "/a/{c}<",
        "/a\\{c}",
        "/a^/{c}",
        "/a`/{c}",
        "/a|/{c}",
        "/é/{é}",
    ] {
        let selector = Selector::parse(text).unwrap();
        assert!(
            matches!(selector, Selector::Exact(_)),
            "{text:?} is not a template"
        );
        assert!(selector.matches(text));
    }
    // Well-formed.
    for text in [
        "{a}",
        "/a/{b_c.d}",
        "/a/{B9,_}",
        "/a/{%41b}",
        "/a/{b:1,c*,d}",
        "/a%20b/{c}",
        "/café/{c}",
        "/a'/{c}",
        "/a/{c}[x]!$&()*+,;=:@?#~",
    ] {
        assert!(Selector::parse(text).unwrap().is_template(), "{text:?}");
    }
}

#[test]
fn literals_match_as_written() {
    let selector = template("/café/%20/{c}");
    assert!(selector.matches("/café/%20/x"));
    assert!(!selector.matches("/caf%C3%A9/%20/x"));
    assert!(!selector.matches("/café/ /x"));
}

#[test]
fn literal_prefix_is_a_prefix_of_every_match() {
    let cases: &[(&str, &str)] = &[
        ("*", ""),
        ("/exact/x", "/exact/x"),
        ("/a/{b}", "/a/"),
        ("{b}/c", ""),
        (
            "https://example.com/books/{id}{?q}",
            "https://example.com/books/",
        ),
        ("/broken/{id", "/broken/{id"),
    ];
    for &(text, prefix) in cases {
        let selector = Selector::parse(text).unwrap();
        assert_eq!(selector.literal_prefix(), prefix, "{text:?}");
        assert!(text.starts_with(prefix));
    }
}

#[test]
fn repeated_variables_are_matched_independently() {
    // The one over-approximation: a regular expression cannot require equal parts.
    let selector = template("/{x}/{x}");
    assert!(selector.matches("/a/a"));
    assert!(selector.matches("/a/b"));
}

#[test]
fn oversized_templates_fall_back_to_exact() {
    // Bounded compiled size: these compile to nothing and match only themselves.
    let many_vars = format!(
        "{{?{}}}",
        (0..200)
            .map(|i| format!("v{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    for text in ["/x/{y:9999}".to_owned(), many_vars] {
        assert!(text.len() <= MAX_SELECTOR_LEN);
        let selector = Selector::parse(&text).unwrap();
        assert!(matches!(selector, Selector::Exact(_)), "{text:?}");
    }
    // A prefix of 100 characters still compiles.
    let selector = template("/x/{y:100}");
    assert!(selector.matches(&format!("/x/{}", "a".repeat(100))));
    assert!(!selector.matches(&format!("/x/{}", "a".repeat(101))));
    let interner = Interner::new();
    assert!(!interner.parse("/x/{y:9999}").unwrap().is_template());
}

// ---------------------------------------------------------------------------------------------
// Property tests: iri-string's RFC 6570 expander is the reference.

mod properties {
    use super::*;
    use iri_string::{
        spec::UriSpec,
        template::{
            UriTemplateStr,
            simple_context::{SimpleContext, Value},
        },
    };
    use proptest::{collection::vec, prelude::*, sample::select};

    const OPERATORS: &[&str] = &["", "+", "#", ".", "/", ";", "?", "&"];
    const NAMES: &[&str] = &["a", "b", "c", "d.e", "f_1"];
    /// Value characters: unreserved, reserved, `%`, a space and non-ASCII (one to four bytes).
    const VALUE_CHARS: &[char] = &[
        'a', 'Z', '0', '-', '.', '_', '~', '/', '%', '2', 'F', ',', '=', '&', ';', '?', '#', ':',
        '@', '!', '+', '*', '[', ']', '(', ')', '$', '\'', ' ', 'é', '€', '😀',
    ];

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Modifier {
        None,
        Explode,
        Prefix(u16),
    }

    #[derive(Debug, Clone)]
    struct Expression {
        op: &'static str,
        vars: Vec<(&'static str, Modifier)>,
    }

    /// Literals and expressions, alternating: `literals.len() == expressions.len() + 1`.
    #[derive(Debug, Clone)]
    struct Template {
        literals: Vec<String>,
        expressions: Vec<Expression>,
    }

    impl Template {
        fn render(&self) -> String {
            let mut out = self.literals[0].clone();
            for (expression, literal) in self.expressions.iter().zip(&self.literals[1..]) {
                out.push('{');
                out.push_str(expression.op);
                let specs: Vec<String> = expression
                    .vars
                    .iter()
                    .map(|(name, modifier)| match modifier {
                        Modifier::None => name.to_string(),
                        Modifier::Explode => format!("{name}*"),
                        Modifier::Prefix(n) => format!("{name}:{n}"),
                    })
                    .collect();
                out.push_str(&specs.join(","));
                out.push('}');
                out.push_str(literal);
            }
            out
        }

        fn uses(&self, name: &str, what: impl Fn(&str, Modifier) -> bool) -> bool {
            self.expressions.iter().any(|e| {
                e.vars
                    .iter()
                    .any(|&(n, modifier)| n == name && what(e.op, modifier))
            })
        }

        /// Whether an expansion can hold a `/` that is not in a literal.
        fn may_add_slashes(&self) -> bool {
            self.expressions
                .iter()
                .any(|e| matches!(e.op, "+" | "#" | "/"))
        }
    }

    fn literal() -> impl Strategy<Value = String> {
        "([a-zA-Z0-9/._~:?#@!$&()*+,;=\\[\\]-]|%2[0-9A-F]){0,4}"
    }

    fn modifier() -> impl Strategy<Value = Modifier> {
        prop_oneof![
            3 => Just(Modifier::None),
            2 => Just(Modifier::Explode),
            1 => (1u16..=5).prop_map(Modifier::Prefix),
        ]
    }

    fn expression() -> impl Strategy<Value = Expression> {
        (select(OPERATORS), vec((select(NAMES), modifier()), 1..=3))
            .prop_map(|(op, vars)| Expression { op, vars })
    }

    fn template() -> impl Strategy<Value = Template> {
        vec(expression(), 1..=3).prop_flat_map(|expressions| {
            let n = expressions.len() + 1;
            vec(literal(), n).prop_map(move |literals| Template {
                literals,
                expressions: expressions.clone(),
            })
        })
    }

    fn string() -> impl Strategy<Value = String> {
        vec(select(VALUE_CHARS), 0..6).prop_map(|chars| chars.into_iter().collect())
    }

    #[derive(Debug, Clone)]
    enum Val {
        Undefined,
        String(String),
        List(Vec<String>),
        Map(Vec<(String, String)>),
    }

    impl Val {
        fn map(self, f: impl Fn(String) -> String) -> Val {
            match self {
                Val::Undefined => Val::Undefined,
                Val::String(s) => Val::String(f(s)),
                Val::List(items) => Val::List(items.into_iter().map(f).collect()),
                Val::Map(pairs) => Val::Map(pairs.into_iter().map(|(k, v)| (f(k), f(v))).collect()),
            }
        }
    }

    /// Percent-encodes a value's non-ASCII characters, for a variable that reserved expansion
    /// uses: iri-string 0.7 panics on some non-ASCII values there (a value starting with `é`,
    /// say). Reserved expansion passes the triplets through, so the expansion is the one the
    /// raw characters would give; elsewhere the value is simply another string.
    fn encode_non_ascii(value: String) -> String {
        let mut out = String::new();
        for c in value.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut utf8 = [0; 4];
                for byte in c.encode_utf8(&mut utf8).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        out
    }

    fn val() -> impl Strategy<Value = Val> {
        prop_oneof![
            1 => Just(Val::Undefined),
            3 => string().prop_map(Val::String),
            2 => vec(string(), 0..4).prop_map(Val::List),
            2 => vec((string(), string()), 0..4).prop_map(Val::Map),
        ]
    }

    /// The context for a template: a prefix applies to strings only, so a variable used with
    /// one is a string or undefined. Such a string is ASCII, and under `+` and `#` has no `%`:
    /// iri-string 0.7 counts a prefix in bytes where it means characters (it overflows on
    /// non-ASCII values), and under `+` and `#` miscounts across a percent-encoded triplet.
    /// `prefixes_count_characters_as_the_rfc_does` covers those values with its own truncation.
    fn context(template: &Template, values: &[Val]) -> (SimpleContext, Vec<(String, Val)>) {
        let mut context = SimpleContext::new();
        let mut shown = Vec::new();
        for (&name, value) in NAMES.iter().zip(values) {
            let mut value = value.clone();
            if template.uses(name, |_, m| matches!(m, Modifier::Prefix(_))) {
                let reserved = template.uses(name, |op, m| {
                    matches!(m, Modifier::Prefix(_)) && matches!(op, "+" | "#")
                });
                let ascii = |s: String| -> String {
                    s.chars()
                        .map(|c| match c {
                            '%' if reserved => 'x',
                            c if !c.is_ascii() => 'u',
                            c => c,
                        })
                        .collect()
                };
                value = match value {
                    Val::String(s) => Val::String(ascii(s)),
                    Val::List(items) => Val::String(ascii(items.concat())),
                    Val::Map(pairs) => {
                        Val::String(ascii(pairs.into_iter().map(|(k, v)| k + &v).collect()))
                    }
                    Val::Undefined => Val::Undefined,
                };
            }
            if template.uses(name, |op, _| matches!(op, "+" | "#")) {
                value = value.map(encode_non_ascii);
            }
            let reference = match &value {
                Val::Undefined => Value::Undefined,
                Val::String(s) => Value::String(s.clone()),
                Val::List(items) => Value::List(items.clone()),
                Val::Map(pairs) => Value::Assoc(pairs.clone()),
            };
            context.insert(name, reference);
            shown.push((name.to_owned(), value));
        }
        (context, shown)
    }

    fn expand(text: &str, context: &SimpleContext) -> String {
        UriTemplateStr::new(text)
            .unwrap_or_else(|e| panic!("iri-string refuses {text:?}: {e}"))
            .expand::<UriSpec, _>(context)
            .unwrap_or_else(|e| panic!("iri-string cannot expand {text:?}: {e}"))
            .to_string()
    }

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            // No regression files in the source tree; a failure prints its minimal case.
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Random templates, and random values for each: `TEMPLATES` × `ASSIGNMENTS` expansions.
    /// Several assignments share one template because compiling dominates the time.
    const TEMPLATES: u32 = 2_500;
    const ASSIGNMENTS: usize = 4;

    proptest! {
        #![proptest_config(config(TEMPLATES))]

        /// Every expansion matches; and near misses that provably are no expansion do not.
        #[test]
        fn expansions_match_and_near_misses_do_not(
            template in template(),
            assignments in vec(vec(val(), NAMES.len()), ASSIGNMENTS),
        ) {
            let text = template.render();
            let selector = Selector::parse(&text).unwrap();
            prop_assert!(selector.is_template(), "{text:?} should compile");
            for values in &assignments {
                let (context, shown) = context(&template, values);
                let expansion = expand(&text, &context);
                prop_assert!(
                    selector.matches(&expansion),
                    "{text:?} should match {expansion:?} ({shown:?})"
                );
                prop_assert!(expansion.starts_with(selector.literal_prefix()));
                // Without `+`, `#` and `/` expressions, every `/` of an expansion is a
                // literal's: one more `/` is no expansion (nor, having no `{`, the template's
                // own text).
                if !template.may_add_slashes() {
                    let extra_segment = format!("{expansion}/x");
                    prop_assert!(
                        !selector.matches(&extra_segment),
                        "{text:?} should not match {extra_segment:?} ({shown:?})"
                    );
                    if let Some(at) = expansion.find("%2F") {
                        let raw_slash = format!("{}/{}", &expansion[..at], &expansion[at + 3..]);
                        prop_assert!(
                            !selector.matches(&raw_slash),
                            "{text:?} should not match {raw_slash:?} ({shown:?})"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(config(2_500))]

        /// A prefix keeps the first n characters of a value, a character being encoded as one
        /// allowed character or the percent-encoding of its UTF-8 octets. The value is cut here
        /// (iri-string's own prefix code overflows on non-ASCII values) and expanded by
        /// iri-string without the prefix. One character more is no expansion: with one
        /// expression between two literals the middle of the topic is determined, and encoded
        /// characters cannot be counted as fewer.
        #[test]
        fn prefixes_count_characters_as_the_rfc_does(
            before in literal(),
            op in select(OPERATORS),
            n in 1u16..=12,
            value in vec(select(VALUE_CHARS), 13..20),
            after in literal(),
        ) {
            let mut value: String = value.into_iter().collect();
            if matches!(op, "+" | "#") {
                // Reserved expansion passes a value's percent-encoded triplets through, and
                // counts one as a character: cutting by `char`s would not be the RFC's prefix.
                value = value.replace('%', "x");
            }
            let cut = |len: u16| -> String { value.chars().take(len.into()).collect() };
            let expand_with = |mut value: String| {
                if matches!(op, "+" | "#") {
                    value = encode_non_ascii(value);
                }
                let mut context = SimpleContext::new();
                context.insert("x", value);
                expand(&format!("{before}{{{op}x}}{after}"), &context)
            };
            let text = format!("{before}{{{op}x:{n}}}{after}");
            let fits = expand_with(cut(n));
            let too_long = expand_with(cut(n + 1));
            if value.is_ascii() {
                let mut context = SimpleContext::new();
                context.insert("x", value.as_str());
                prop_assert_eq!(&fits, &expand(&text, &context));
            }
            let selector = Selector::parse(&text).unwrap();
            prop_assert!(selector.matches(&fits), "{text:?} should match {fits:?}");
            prop_assert!(
                !selector.matches(&too_long),
                "{text:?} should not match {too_long:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: nothing panics, parsing always finishes, and the selector's invariants hold.

mod fuzz {
    use super::*;
    use proptest::{collection::vec, prelude::*, sample::select};
    use tidings_hub::SelectorError;

    /// Pieces of templates, well- and ill-formed.
    const FRAGMENTS: &[&str] = &[
        "{", "}", "{x}", "+", "#", ".", "/", ";", "?", "&", "=", ",", "!", "@", "|", ":", "*", "0",
        "1", "9", "12", "999", "9999", "10000", "a", "b.c", "_", "%", "%2F", "%zz", "é", " ", "'",
        "\"", "\\", "x=", "~", "-",
    ];

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// What must hold for any text and topic.
    fn check(text: &str, topic: &str) -> Result<(), TestCaseError> {
        let parsed = Selector::parse(text);
        let interned = Interner::new().parse(text);
        prop_assert_eq!(&parsed, &interned);
        let selector = match parsed {
            Ok(selector) => selector,
            Err(error) => {
                let expected = match error {
                    SelectorError::Empty => text.is_empty(),
                    SelectorError::TooLong => text.len() > MAX_SELECTOR_LEN,
                    SelectorError::Control => text.chars().any(char::is_control),
                };
                prop_assert!(expected, "{text:?}: {error}");
                return Ok(());
            }
        };
        let interned = interned.unwrap();
        prop_assert_eq!(selector.is_template(), interned.is_template());
        prop_assert_eq!(selector.as_str(), text);
        prop_assert!(selector.matches(text), "a selector matches its own text");
        prop_assert!(text.starts_with(selector.literal_prefix()));
        let matched = selector.matches(topic);
        prop_assert_eq!(matched, interned.matches(topic));
        if matched {
            prop_assert!(topic.starts_with(selector.literal_prefix()));
        }
        if !selector.is_template() && text != "*" {
            prop_assert_eq!(matched, text == topic);
        }
        Ok(())
    }

    /// Any characters (`any::<String>()` is several times slower to generate).
    fn arbitrary_string() -> impl Strategy<Value = String> {
        vec(any::<char>(), 0..48).prop_map(|chars| chars.into_iter().collect())
    }

    fn template_like(max: usize) -> impl Strategy<Value = String> {
        vec(select(FRAGMENTS), 0..max).prop_map(|f| f.concat())
    }

    proptest! {
        #![proptest_config(config(60_000))]
        #[test]
        fn arbitrary_strings(text in arbitrary_string(), topic in arbitrary_string()) {
            check(&text, &topic)?;
        }
    }

    proptest! {
        #![proptest_config(config(35_000))]
        #[test]
        fn template_like_strings(text in template_like(24), topic in template_like(24)) {
            check(&text, &topic)?;
            // Braces around the whole thing make more of them templates.
            check(&format!("/{{{text}}}"), &topic)?;
        }
    }

    proptest! {
        #![proptest_config(config(5_000))]
        #[test]
        fn long_strings(text in template_like(400), topic in template_like(100)) {
            check(&text, &topic)?;
        }
    }

    /// The costliest templates that fit in [`MAX_SELECTOR_LEN`] still parse quickly: their
    /// cost is bounded before anything is compiled.
    #[test]
    fn hostile_templates_parse_in_bounded_time() {
        let fill = |unit: &dyn Fn(usize) -> String, open: &str, close: &str| {
            let mut text = open.to_owned();
            let mut i = 0;
            while text.len() + unit(i).len() + close.len() <= MAX_SELECTOR_LEN {
                text.push_str(&unit(i));
                i += 1;
            }
            text + close
        };
        let texts = [
            fill(
                &|i| format!("{}v{i}", if i > 0 { "," } else { "" }),
                "{?",
                "}",
            ),
            fill(
                &|i| format!("{}v{i}", if i > 0 { "," } else { "" }),
                "{",
                "}",
            ),
            fill(
                &|i| format!("{}v{i}:9", if i > 0 { "," } else { "" }),
                "{+",
                "}",
            ),
            fill(&|_| "{a:99}".to_owned(), "", ""),
            fill(&|_| "{a:9999}".to_owned(), "", ""),
            fill(&|_| "{x}".to_owned(), "", ""),
            fill(&|_| "{;a*,b*}".to_owned(), "", ""),
            fill(&|_| "%C3%A9".to_owned(), "{x}", ""),
        ];
        let started = std::time::Instant::now();
        for text in &texts {
            assert!(text.len() <= MAX_SELECTOR_LEN);
            let selector = Selector::parse(text).unwrap();
            selector.matches(&"a".repeat(4096));
            selector.matches(text);
        }
        // Generous for an unoptimised build on a busy machine; tens of milliseconds optimised.
        let elapsed = started.elapsed();
        assert!(elapsed.as_secs() < 20, "{elapsed:?}");
    }
}
