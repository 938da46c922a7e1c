//! The declared `rust-version` is the true minimum: it equals the highest `rust-version`
//! among the locked dependencies that are built for this platform (normal and build
//! dependencies, not dev ones). A dependency update that needs a newer compiler fails here
//! until Cargo.toml says so, instead of failing for a user on an older toolchain.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

fn try_cargo(args: &[&str]) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs: the test is run by cargo");
    if !out.status.success() {
        return Err(format!(
            "cargo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8(out.stdout).expect("cargo prints UTF-8"))
}

fn cargo(args: &[&str]) -> String {
    try_cargo(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The platform the tests run on, as rustc names it.
fn host_triple() -> String {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc runs: cargo is here");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host")
}

/// "1.88" or "1.88.0" as (1, 88, 0).
fn version(v: &str) -> (u32, u32, u32) {
    let mut parts = v
        .split('.')
        .map(|p| p.parse::<u32>().expect("numeric rust-version"));
    let major = parts.next().expect("a major version");
    (major, parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn declared_rust_version_is_the_highest_needed_by_built_dependencies() {
    // Packages that are compiled for the app on this platform ("name version" lines).
    let built: HashSet<String> = cargo(&[
        "tree",
        "--locked",
        "--offline",
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "--format",
        "{p}",
        "--no-dedupe",
    ])
    .lines()
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        Some(format!(
            "{} {}",
            w.next()?,
            w.next()?.trim_start_matches('v')
        ))
    })
    .collect();
    // Only this platform's packages: the others (windows-only crates) are never
    // downloaded here, and `--offline` would fail on them on a fresh machine.
    let host = host_triple();
    let args = [
        "metadata",
        "--locked",
        "--format-version",
        "1",
        "--filter-platform",
        host.as_str(),
    ];
    let mut offline = args.to_vec();
    offline.push("--offline");
    // Offline first (everything built is cached); online if something is missing.
    let text = try_cargo(&offline).unwrap_or_else(|_| cargo(&args));
    let meta: serde_json::Value = serde_json::from_str(&text).expect("cargo metadata prints JSON");
    let packages = meta["packages"].as_array().expect("packages array");
    let mut needs: BTreeMap<(u32, u32, u32), Vec<String>> = BTreeMap::new();
    let mut declared = None;
    for p in packages {
        let id = format!(
            "{} {}",
            p["name"].as_str().unwrap_or(""),
            p["version"].as_str().unwrap_or("")
        );
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        if p["name"] == "lama-tui" {
            declared = Some(version(rv));
        } else if built.contains(&id) {
            needs.entry(version(rv)).or_default().push(id);
        }
    }
    let declared = declared.expect("Cargo.toml declares rust-version");
    let (highest, who) = needs
        .iter()
        .next_back()
        .expect("some dependency declares one");
    assert_eq!(
        declared, *highest,
        "Cargo.toml says rust-version {declared:?}, but the built dependencies need {highest:?} ({who:?}): \
         declare the true minimum"
    );
}
