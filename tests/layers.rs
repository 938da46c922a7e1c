//! The crate's layering, checked on the source text: the domain at the bottom imports
//! nothing else of the crate and no I/O, runtime or terminal crate; `net` and `store` import
//! only the domain; the core only the domain and `net`, and it is as pure as the domain; `ui` talks to `app` (and the domain) only; nothing below `ui` imports it.
//! A wrong `use` fails here with the file, the line and the rule it breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules each top-level module may use, besides itself.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("net", &["domain"]),
    ("store", &["domain"]),
    ("core", &["domain", "net"]),
    ("app", &["domain", "net", "store", "core"]),
    ("ui", &["domain", "app"]),
    ("bench", &["domain", "net", "store", "core", "app", "ui"]),
    ("fuzzing", &["domain", "net", "store", "core", "app", "ui"]),
];

/// External crates and std modules that mean I/O, a runtime or a terminal.
const IO_PATHS: &[&str] = &[
    "tokio",
    "redb",
    "ratatui",
    "crossterm",
    "tungstenite",
    "std::fs",
    "std::net",
    "std::process",
    "std::time::SystemTime",
    "std::time::Instant",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src is readable") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None` for lib.rs, main.rs, bin/).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!["lib", "main", "bin"].contains(&name.as_str())).then_some(name)
}

/// Code lines only: comments and doc comments dropped.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let code = l.split("//").next().unwrap_or("");
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

fn violations() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut bad = Vec::new();
    for f in &files {
        let Some(me) = top_module(&src, f) else {
            continue;
        };
        let ok = allowed
            .get(me.as_str())
            .unwrap_or_else(|| panic!("{}: module `{me}` has no rule in ALLOWED", f.display()));
        let text = std::fs::read_to_string(f).expect("readable source");
        for (n, line) in code_lines(&text) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let known = allowed.contains_key(target.as_str());
                if known && target != me && !ok.contains(&target.as_str()) {
                    bad.push(format!(
                        "{}:{n}: `{me}` may not use `{target}` (allowed: {ok:?})",
                        f.display()
                    ));
                }
            }
            if me == "domain" || me == "core" {
                for io in IO_PATHS {
                    if line.contains(io) {
                        bad.push(format!("{}:{n}: `{me}` is pure: no `{io}`", f.display()));
                    }
                }
            }
        }
    }
    bad
}

#[test]
fn every_module_imports_only_what_its_layer_allows() {
    let bad = violations();
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_sees_a_wrong_use() {
    // The checker itself must be able to fail: a line as the rules would meet it.
    let line = "use crate::app::runtime::now_ms;";
    let target: String = line["use crate::".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    assert_eq!(target, "app");
    assert!(!allowed["net"].contains(&target.as_str()));
    assert!(code_lines("// use crate::app;\n/// crate::ui\n")
        .next()
        .is_none());
}

/// The module path of a file under `src/` (`app::actor` for `src/app/actor.rs`; `app` for
/// `src/app/mod.rs`; `app::control` for both `control.rs` and `control/mod.rs`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b::...` path a file names, as the longest prefix that is a module.
fn module_refs(text: &str, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for (_, line) in code_lines(text) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let path: Vec<String> = rest
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| !seg.is_empty())
                .collect();
            let longest = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p));
            out.extend(longest);
        }
    }
    out
}

/// Edges between modules that are not ancestor and descendant (a child using its
/// parent's items, or a parent declaring its children, is no circle).
fn module_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let paths: Vec<(PathBuf, Vec<String>)> = files
        .iter()
        .filter(|f| !f.ends_with("tests.rs"))
        .map(|f| (f.clone(), module_path(&src, f)))
        .collect();
    let modules: BTreeSet<Vec<String>> = paths.iter().map(|(_, m)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (f, me) in &paths {
        let text = std::fs::read_to_string(f).expect("readable source");
        let related = |o: &Vec<String>| o.starts_with(me) || me.starts_with(o);
        let refs = module_refs(&text, &modules);
        let edges: BTreeSet<Vec<String>> = refs.into_iter().filter(|o| !related(o)).collect();
        graph.insert(me.clone(), edges);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            return Some(stack[i..].iter().chain([n]).map(|p| p.join("::")).collect());
        }
        if !done.insert(n.clone()) {
            return None;
        }
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph = module_graph();
    assert!(graph.contains_key(&vec!["app".to_string(), "actor".to_string()]));
    if let Some(c) = find_cycle(&graph) {
        panic!("modules import each other in a circle: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
    let mut g = BTreeMap::new();
    g.insert(m("app::a"), BTreeSet::from([m("app::b")]));
    g.insert(m("app::b"), BTreeSet::from([m("app::c")]));
    g.insert(m("app::c"), BTreeSet::from([m("app::a")]));
    assert!(find_cycle(&g).is_some());
    g.insert(m("app::c"), BTreeSet::new());
    assert!(find_cycle(&g).is_none());
}
