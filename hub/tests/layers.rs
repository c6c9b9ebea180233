//! The hub's modules are layered: a module may use only modules of lower layers, and the modules
//! of one layer do not use each other, so there is no cycle. The layers are the table in
//! `src/lib.rs`'s crate docs (`//! | 0 | `sse`, `update` | … |`, one row per layer, layer 0 the
//! leaves). This test reads that table and every `.rs` file under `src/`, and lists every
//! reference that goes sideways or up, and every cycle.
//!
//! A file's module is its first path component under `src/`. What counts as a reference to a
//! module, parsed with `syn` (so comments, doc comments and string literals never count):
//! `use crate::…` (nested groups too), paths such as `crate::a::f()` anywhere in the code,
//! `super::…` paths that climb to the crate root, `crate::…`/`super::…`/`$crate::…` paths in
//! macro bodies (`format!`, `macro_rules!`), and root names that `lib.rs` re-exports from a
//! module (`crate::Event` is `sse`'s). `#[cfg(test)]` code counts like any other.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    fs,
    path::Path,
};
use syn::{
    UseTree,
    visit::{self, Visit},
};

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_rs = fs::read_to_string(src.join("lib.rs")).expect("hub/src/lib.rs");
    let modules = top_level_modules(&src);
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    let problems = check(&lib_rs, &modules, &files);
    assert!(
        problems.is_empty(),
        "the hub's modules and the layer table in hub/src/lib.rs disagree ({} problems); a \
         module may use only modules of lower layers:\n{}\n",
        problems.len(),
        problems.join("\n")
    );
}

/// Each `src/X.rs` (but `lib.rs`) and each `src/X/` directory.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for entry in fs::read_dir(src).expect("hub/src") {
        let path = entry.expect("hub/src entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            modules.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs")
            && stem != "lib"
        {
            modules.insert(stem.to_owned());
        }
    }
    modules
}

/// Every `.rs` file under `dir`, as (its path relative to `src`, with `/`; its text).
fn read_sources(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("hub/src directory")
        .map(|entry| entry.expect("hub/src entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(src, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(src).unwrap();
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let text = fs::read_to_string(&path).expect("a source file");
            out.push((relative, text));
        }
    }
}

/// Everything wrong, one line each: the table (a module missing from it, a name in it that is no
/// module), each reference to a module of the same or a higher layer, each cycle. `files` are
/// (path relative to `src`, text); `lib.rs` among them is skipped (it is the root, above all).
fn check(lib_rs: &str, modules: &BTreeSet<String>, files: &[(String, String)]) -> Vec<String> {
    let (layer_of, mut problems) = parse_table(lib_rs);
    for module in modules {
        if !layer_of.contains_key(module) {
            problems.push(format!(
                "hub/src/lib.rs: module `{module}` is in no layer of the table"
            ));
        }
    }
    for name in layer_of.keys() {
        if !modules.contains(name) {
            problems.push(format!(
                "hub/src/lib.rs: the layer table names `{name}`, which is no module of hub/src"
            ));
        }
    }
    let krate = match Crate::new(lib_rs, modules) {
        Ok(krate) => krate,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };

    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        if path == "lib.rs" {
            continue;
        }
        let here = module_path(path);
        let from = &here[0];
        let refs = match krate.references(&here, text) {
            Ok(refs) => refs,
            Err(e) => {
                problems.push(format!("hub/src/{path}: does not parse: {e}"));
                continue;
            }
        };
        for target in refs {
            let to = match target {
                Ok(to) => to,
                Err(what) => {
                    problems.push(format!("hub/src/{path}: {what}"));
                    continue;
                }
            };
            if &to == from {
                continue;
            }
            if let (Some(&i), Some(&j)) = (layer_of.get(from), layer_of.get(&to))
                && j >= i
            {
                problems.push(format!(
                    "hub/src/{path}: {from} (layer {i}) -> {to} (layer {j})"
                ));
            }
            graph.entry(from.clone()).or_default().insert(to);
        }
    }
    problems.extend(cycles(&graph));
    problems
}

/// The layer table: each module's layer, and what is wrong with the table. Rows are the doc lines
/// `//! | n | `a`, `b` | …`; the header and the `|---|` line have no number and are skipped.
fn parse_table(lib_rs: &str) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut layer_of = BTreeMap::new();
    let mut problems = Vec::new();
    let mut layers = BTreeSet::new();
    for line in lib_rs.lines() {
        let Some(row) = line.trim_start().strip_prefix("//! |") else {
            continue;
        };
        let mut cells = row.split('|').map(str::trim);
        let Some(Ok(layer)) = cells.next().map(str::parse::<usize>) else {
            continue;
        };
        if !layers.insert(layer) {
            problems.push(format!(
                "hub/src/lib.rs: layer {layer} has more than one row in the table"
            ));
        }
        // The names are what is between backticks: `a`, `b`.
        let cell = cells.next().unwrap_or("");
        let names: Vec<&str> = cell.split('`').skip(1).step_by(2).map(str::trim).collect();
        if names.is_empty() {
            problems.push(format!(
                "hub/src/lib.rs: layer {layer} of the table names no module (in backticks)"
            ));
        }
        for name in names {
            if let Some(other) = layer_of.insert(name.to_owned(), layer) {
                problems.push(format!(
                    "hub/src/lib.rs: `{name}` is in the table twice (layers {other} and {layer})"
                ));
            }
        }
    }
    if layers.is_empty() {
        problems.push(
            "hub/src/lib.rs: no layer table in the crate docs (`//! | 0 | `module`, … | … |`)"
                .to_owned(),
        );
    }
    (layer_of, problems)
}

/// A file's module path: `x.rs` and `x/mod.rs` are `[x]`, `x/y.rs` is `[x, y]`.
fn module_path(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.len() > 1 && parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The crate's top-level modules, and the names `lib.rs` re-exports from them.
struct Crate {
    modules: BTreeSet<String>,
    reexports: HashMap<String, String>,
}

impl Crate {
    fn new(lib_rs: &str, modules: &BTreeSet<String>) -> Result<Self, String> {
        let file =
            syn::parse_file(lib_rs).map_err(|e| format!("hub/src/lib.rs: does not parse: {e}"))?;
        let mut reexports = HashMap::new();
        for item in &file.items {
            let syn::Item::Use(item) = item else { continue };
            let mut uses = Vec::new();
            flatten(&item.tree, &mut Vec::new(), &mut uses);
            for (path, name) in uses {
                let path: Vec<&str> = path
                    .iter()
                    .map(String::as_str)
                    .skip_while(|s| *s == "crate" || *s == "self")
                    .collect();
                if let (Some(first), Some(name)) = (path.first(), name)
                    && modules.contains(*first)
                {
                    reexports.insert(name, (*first).to_owned());
                }
            }
        }
        Ok(Self {
            modules: modules.clone(),
            reexports,
        })
    }

    /// The modules the code of a file (whose module path is `here`) refers to, each once; an
    /// `Err` for a path to the crate root that names neither a module nor one of its re-exports.
    fn references(
        &self,
        here: &[String],
        text: &str,
    ) -> syn::Result<BTreeSet<Result<String, String>>> {
        let file = syn::parse_file(text)?;
        let mut refs = Refs {
            krate: self,
            here: here.to_vec(),
            found: BTreeSet::new(),
        };
        refs.visit_file(&file);
        Ok(refs.found)
    }

    /// The top-level module a path refers to, if it starts with `crate`, `self` or `super`
    /// (`None` for any other path, or one that stops at the root, such as `pub(crate)`).
    fn resolve(&self, here: &[String], path: &[String]) -> Option<Result<String, String>> {
        let shown = || path.join("::");
        let (base, rest) = match path.first()?.as_str() {
            "crate" => (&here[..0], &path[1..]),
            "self" | "super" => {
                let mut depth = here.len();
                let mut i = usize::from(path[0] == "self");
                while path.get(i).is_some_and(|s| s == "super") {
                    if depth == 0 {
                        return Some(Err(format!("`{}` climbs above the crate root", shown())));
                    }
                    depth -= 1;
                    i += 1;
                }
                (&here[..depth], &path[i..])
            }
            _ => return None,
        };
        if let Some(module) = base.first() {
            return Some(Ok(module.clone()));
        }
        let name = rest.first()?;
        if self.modules.contains(name) {
            Some(Ok(name.clone()))
        } else if let Some(module) = self.reexports.get(name) {
            Some(Ok(module.clone()))
        } else if name == "*" {
            Some(Err(format!(
                "`{}` imports all of the crate root, which this check cannot follow",
                shown()
            )))
        } else {
            Some(Err(format!(
                "`{}` names neither a module nor a name lib.rs re-exports from one",
                shown()
            )))
        }
    }
}

/// Each leaf of a use tree: its full path (`self` leaves stop at their prefix; a glob ends in
/// `*`), and the name it binds (none for a glob).
fn flatten(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    let leaf = |prefix: &[String], ident: &syn::Ident, binds: &syn::Ident| {
        let mut path = prefix.to_vec();
        if ident != "self" {
            path.push(ident.to_string());
        }
        let binds = if binds == "self" {
            path.last().cloned()
        } else {
            Some(binds.to_string())
        };
        (path, binds)
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => out.push(leaf(prefix, &n.ident, &n.ident)),
        UseTree::Rename(r) => out.push(leaf(prefix, &r.ident, &r.rename)),
        UseTree::Glob(_) => {
            let mut path = prefix.clone();
            path.push("*".to_owned());
            out.push((path, None));
        }
        UseTree::Group(g) => {
            for tree in &g.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

/// Walks a file, keeping the module path it is in (inline `mod`s included), and notes every
/// module its paths refer to.
struct Refs<'a> {
    krate: &'a Crate,
    here: Vec<String>,
    found: BTreeSet<Result<String, String>>,
}

impl Refs<'_> {
    fn note(&mut self, path: &[String]) {
        if let Some(found) = self.krate.resolve(&self.here, path) {
            self.found.insert(found);
        }
    }

    /// Macro bodies are tokens, not syntax: finds `crate::a::b`, `$crate::a`, `super::super::a`
    /// in them (string literals are single tokens, so never match).
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let is_sep = |i: usize| {
            matches!(
                (tokens.get(i), tokens.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
            )
        };
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.scan(group.stream()),
                TokenTree::Ident(ident)
                    if (ident == "crate" || ident == "super" || ident == "self")
                        && !(i >= 2 && is_sep(i - 2)) =>
                {
                    let mut path = vec![ident.to_string()];
                    let mut j = i + 1;
                    while is_sep(j) {
                        let Some(TokenTree::Ident(next)) = tokens.get(j + 2) else {
                            break;
                        };
                        path.push(next.to_string());
                        j += 3;
                    }
                    if path.len() > 1 {
                        self.note(&path);
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.here.push(item.ident.to_string());
        visit::visit_item_mod(self, item);
        self.here.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_none() {
            let mut uses = Vec::new();
            flatten(&item.tree, &mut Vec::new(), &mut uses);
            for (path, _) in uses {
                self.note(&path);
            }
        }
        visit::visit_item_use(self, item);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.note(&segments);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }

    fn visit_meta_list(&mut self, list: &'ast syn::MetaList) {
        self.scan(list.tokens.clone());
        visit::visit_meta_list(self, list);
    }
}

/// One line per group of modules that depend on each other in a circle (a strongly connected
/// component of `graph`), with a shortest cycle through its first module.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(node) = todo.pop() {
            for next in graph.get(node).into_iter().flatten() {
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<&String>> =
        graph.keys().map(|node| (node, reach(node))).collect();
    let mut done = BTreeSet::new();
    let mut lines = Vec::new();
    for (node, reached) in &reaches {
        if done.contains(node) || !reached.contains(node) {
            continue;
        }
        let group: BTreeSet<&String> = reached
            .iter()
            .copied()
            .filter(|other| reaches.get(other).is_some_and(|r| r.contains(node)))
            .collect();
        done.extend(group.iter().copied());
        // A shortest way back to `node`, breadth first, within the group.
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = VecDeque::from([*node]);
        'search: while let Some(at) = queue.pop_front() {
            for next in graph.get(at).into_iter().flatten() {
                if !group.contains(next) || came_from.contains_key(next) {
                    continue;
                }
                came_from.insert(next, at);
                if next == *node {
                    break 'search;
                }
                queue.push_back(next);
            }
        }
        let mut cycle = vec![node.as_str()];
        let mut at = came_from[node];
        while at != *node {
            cycle.push(at);
            at = came_from[at];
        }
        cycle.push(node);
        cycle.reverse();
        let members: Vec<&str> = group.iter().map(|s| s.as_str()).collect();
        lines.push(format!(
            "cycle among {} modules ({}), e.g. {}",
            members.len(),
            members.join(", "),
            cycle.join(" -> ")
        ));
    }
    lines
}

// The checker's own tests, on small inline crates.

fn modules(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn to(module: &str) -> Result<String, String> {
    Ok(module.to_owned())
}

/// What `check` finds in a crate of modules `a`, `b` (layer 0) and `c` (layer 1).
fn problems_in(list: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<(String, String)> = list
        .iter()
        .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect();
    check(TWO_LAYERS, &modules(&["a", "b", "c"]), &files)
}

/// The modules a file refers to, given the crate's modules and `lib.rs`.
fn refs_of(lib_rs: &str, names: &[&str], path: &str, text: &str) -> Vec<Result<String, String>> {
    let krate = Crate::new(lib_rs, &modules(names)).unwrap();
    krate
        .references(&module_path(path), text)
        .unwrap()
        .into_iter()
        .collect()
}

const TWO_LAYERS: &str = "//! The crate.
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | 0 | `a`, `b` | leaves | with a bar |
//! | 1 | `c` | above |
";

#[test]
fn the_table_is_read_from_the_doc_rows_with_a_number() {
    let (layer_of, problems) = parse_table(TWO_LAYERS);
    assert_eq!(problems, Vec::<String>::new());
    let expected: BTreeMap<String, usize> =
        [("a".into(), 0), ("b".into(), 0), ("c".into(), 1)].into();
    assert_eq!(layer_of, expected);

    let (_, problems) = parse_table("//! No table.\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let (_, problems) = parse_table("//! | 0 | `a`, `b` | |\n//! | 1 | `a` | |\n//! | 1 | | |\n");
    assert_eq!(
        problems,
        [
            "hub/src/lib.rs: `a` is in the table twice (layers 0 and 1)",
            "hub/src/lib.rs: layer 1 has more than one row in the table",
            "hub/src/lib.rs: layer 1 of the table names no module (in backticks)",
        ]
    );
}

#[test]
fn every_module_is_in_the_table_once_and_every_name_is_a_module() {
    let problems = check(TWO_LAYERS, &modules(&["a", "b", "d"]), &[]);
    assert_eq!(
        problems,
        [
            "hub/src/lib.rs: module `d` is in no layer of the table",
            "hub/src/lib.rs: the layer table names `c`, which is no module of hub/src",
        ]
    );
}

#[test]
fn a_cycle_fails_with_its_upward_edge_and_the_cycle() {
    let problems = problems_in(&[
        ("a.rs", "use crate::c::Thing;"),
        ("c.rs", "fn f() { crate::a::g(); }"),
        ("lib.rs", "mod a; mod b; mod c;"),
    ]);
    assert_eq!(
        problems,
        [
            "hub/src/a.rs: a (layer 0) -> c (layer 1)",
            "cycle among 2 modules (a, c), e.g. a -> c -> a",
        ]
    );
}

#[test]
fn a_module_may_not_use_one_of_its_own_layer() {
    let problems = problems_in(&[
        ("a.rs", "use crate::b::X;"),
        ("b/mod.rs", "mod inner;"),
        ("b/inner.rs", ""),
    ]);
    assert_eq!(problems, ["hub/src/a.rs: a (layer 0) -> b (layer 0)"]);
}

#[test]
fn every_edge_is_listed_not_just_the_first() {
    let problems = problems_in(&[
        ("a.rs", "use crate::{b, c};"),
        ("b.rs", "fn f() { super::c::g() }"),
    ]);
    assert_eq!(
        problems,
        [
            "hub/src/a.rs: a (layer 0) -> b (layer 0)",
            "hub/src/a.rs: a (layer 0) -> c (layer 1)",
            "hub/src/b.rs: b (layer 0) -> c (layer 1)",
        ]
    );
}

#[test]
fn nested_use_groups_are_followed() {
    let refs = refs_of(
        "",
        &["a", "b", "c", "d", "e", "f"],
        "a.rs",
        "use crate::{b::x, c::{d, e::{self, Y}}, d::{self}};
         use std::{collections::HashMap, fmt};
         use ::e::Z;",
    );
    assert_eq!(refs, [to("b"), to("c"), to("d")]);
}

#[test]
fn super_paths_climb_from_the_file_and_its_inline_modules() {
    let names = ["x", "z"];
    let refs = |path: &str, text: &str| refs_of("", &names, path, text);
    // In x.rs and x/mod.rs, `super` is the root; in x/y.rs it is `x` itself.
    assert_eq!(refs("x.rs", "use super::z::A;"), [to("z")]);
    assert_eq!(refs("x/mod.rs", "fn f() { super::z::g(); }"), [to("z")]);
    assert_eq!(refs("x/y.rs", "use super::A;"), [to("x")]);
    assert_eq!(refs("x/y.rs", "fn f() { super::super::z::g() }"), [to("z")]);
    // An inline module is one more level.
    assert_eq!(
        refs("x.rs", "#[cfg(test)] mod tests { use super::*; }"),
        [to("x")]
    );
    assert_eq!(
        refs("x.rs", "mod tests { fn t() { super::super::z::g(); } }"),
        [to("z")]
    );
    // `pub(super)` and `pub(crate)` stop at the root: no module.
    assert!(refs("x.rs", "pub(super) fn f() {} pub(crate) fn g() {}").is_empty());
    assert_eq!(
        refs("x.rs", "use super::super::z;"),
        [Err(String::from(
            "`super::super::z` climbs above the crate root"
        ))]
    );
}

#[test]
fn comments_and_strings_do_not_count_but_macro_bodies_do() {
    let names = ["x", "y", "z", "w", "v"];
    let refs = |text: &str| refs_of("", &names, "x.rs", text);
    let quiet = "//! See [`y`](crate::y).
        /// Like [`crate::z::f`].
        fn f() {
            // crate::z::g();
            /* crate::w::h() */
            let s = \"crate::v::x\";
            println!(\"crate::v {}\", s);
        }";
    assert!(refs(quiet).is_empty());
    assert_eq!(
        refs("fn f() -> String { format!(\"{}\", crate::z::id()) }"),
        [to("z")]
    );
    assert_eq!(
        refs("macro_rules! m { () => { $crate::w::f() }; }"),
        [to("w")]
    );
    assert_eq!(
        refs("mod t { fn f() { assert!(super::super::v::ok()); } }"),
        [to("v")]
    );
}

#[test]
fn root_names_are_traced_to_the_module_lib_rs_reexports_them_from() {
    let lib_rs = "mod y; mod z; pub use y::{Event as Renamed, other::Deep}; pub use z::{self};";
    let names = ["x", "y", "z"];
    let refs = |text: &str| refs_of(lib_rs, &names, "x.rs", text);
    assert_eq!(refs("use crate::Renamed;"), [to("y")]);
    assert_eq!(refs("fn f() { let _ = crate::Deep::new(); }"), [to("y")]);
    assert_eq!(refs("type T = <crate::z::A as Tr>::Out;"), [to("z")]);
    assert_eq!(
        refs("use crate::Missing;"),
        [Err(String::from(
            "`crate::Missing` names neither a module nor a name lib.rs re-exports from one"
        ))]
    );
    assert_eq!(
        refs("use super::*;"),
        [Err(String::from(
            "`super::*` imports all of the crate root, which this check cannot follow"
        ))]
    );
}
