//! The crate's layering, checked on the source text: the domain at the bottom imports
//! nothing else of the crate and no I/O, runtime or terminal crate; `net` and `store` import
//! only the domain; the core only the domain and `net`, and it is as pure as the domain; `ui` talks to `app` (and the domain) only; nothing below `ui` imports it.
//! A wrong `use` fails here with the file, the line and the rule it breaks.

use std::collections::BTreeMap;
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
    "sled",
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
