//! Topic selectors against RFC 6570: the RFC's own examples, the grammar's edges, and property
//! tests with an independent expander (`iri-string`) as the reference.

use tidings_hub::selector::{Interner, MAX_SELECTOR_LEN, Selector};

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
