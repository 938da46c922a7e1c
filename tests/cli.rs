//! The command line as a user meets it: a bare start, -h and --help, --version, the config
//! file and its precedence, `paths`, `doctor` against a healthy and a broken data dir, and
//! the generated completions and man page. Real processes; HOME and XDG dirs point into a
//! temporary directory so the machine's own config never leaks in.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{bin, Peer};

/// Run the binary with `args` in a sandboxed home; stdin closed.
fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env_remove("LAMA_CONFIG")
        .env_remove("LAMA_PASSPHRASE")
        .env_remove("LAMA_TRUST_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("run lama-tui")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_bare_start_prints_the_quick_start_and_help_comes_short_and_long() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = text(&o);
    assert!(
        out.contains("lama-tui --role client --provision-node"),
        "{out}"
    );
    assert!(out.contains("lama-tui --role node"), "{out}");

    let short = text(&run(tmp.path(), &["-h"]));
    let long = text(&run(tmp.path(), &["--help"]));
    assert!(
        short.lines().count() * 2 < long.lines().count(),
        "-h:\n{short}\n--help:\n{long}"
    );
    for needle in [
        "LAMA_PASSPHRASE",
        "LAMA_TRUST_SECRET",
        "RUST_LOG",
        "lama-tui.YYYY-MM-DD.log",
        "config.toml",
    ] {
        assert!(long.contains(needle), "--help lacks {needle}:\n{long}");
        assert!(
            !short.contains(needle),
            "-h should stay short, has {needle}"
        );
    }
    let v = text(&run(tmp.path(), &["--version"]));
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("protocol 1"),
        "{v}"
    );
}

#[test]
fn flags_win_over_the_config_file_and_the_file_over_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let from_file = tmp.path().join("from-file");
    let cfg = tmp.path().join("lama.toml");
    std::fs::write(
        &cfg,
        format!(
            "role = \"node\"\nname = \"filed@lama.local\"\nlisten = \"127.0.0.1:0\"\ndiscovery = \"off\"\ndata_dir = \"{}\"\n",
            from_file.display()
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    // The file gives the role and the data dir.
    let out = text(&run(tmp.path(), &["--config", cfg_s, "paths"]));
    assert!(out.contains("role      node"), "{out}");
    assert!(
        out.contains(&format!("data dir  {}", from_file.display())),
        "{out}"
    );
    // A flag wins.
    let flag_dir = tmp.path().join("from-flag");
    let out = text(&run(
        tmp.path(),
        &[
            "--config",
            cfg_s,
            "--role",
            "client",
            "--data-dir",
            flag_dir.to_str().unwrap(),
            "paths",
        ],
    ));
    assert!(out.contains("role      client"), "{out}");
    assert!(
        out.contains(&format!("data dir  {}", flag_dir.display())),
        "{out}"
    );
    // The chat itself: no --role, no --name on the command line; the file's are used.
    let node = Peer::start_raw(&["--config", cfg_s, "--headless"], &from_file);
    assert_eq!(node.ready["role"], "node", "{}", node.ready);
    assert_eq!(node.ready["name"], "filed@lama.local", "{}", node.ready);
    node.quit();
    // The config file in the platform directory is read without --config.
    let xdg = tmp.path().join("config/lama-tui");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::copy(&cfg, xdg.join("config.toml")).unwrap();
    let out = text(&run(tmp.path(), &["paths"]));
    assert!(out.contains("role      node"), "{out}");
    // A broken file is an error naming the key and the example; a missing --config too.
    std::fs::write(&cfg, "rol = \"node\"\n").unwrap();
    let o = run(tmp.path(), &["--config", cfg_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown field `rol`") && err.contains("config.example.toml"),
        "{err}"
    );
    let o = run(tmp.path(), &["--config", "/nonexistent/lama.toml", "paths"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot read the config file"),
        "{o:?}"
    );
}

#[test]
fn doctor_passes_on_a_healthy_dir_and_names_each_fault_with_its_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let node = Peer::start("client", &dir, &["--discovery", "off"]);
    node.quit();
    let d = dir.to_str().unwrap();
    let o = run(
        tmp.path(),
        &[
            "--role",
            "client",
            "--data-dir",
            d,
            "--discovery",
            "off",
            "doctor",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("ok    store") && out.contains("all checks passed"),
        "{out}"
    );

    // Break it: everyone may write the dir, others may read the key, the store is garbage.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let key = dir.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = dir.join("store");
    for f in std::fs::read_dir(&store).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::write(f.path(), b"not a store").unwrap();
        }
    }
    let o = run(
        tmp.path(),
        &[
            "--role",
            "client",
            "--data-dir",
            d,
            "--discovery",
            "off",
            "doctor",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  data dir") && out.contains("chmod 700"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  key file") && out.contains("chmod 600"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  store") && out.contains("restore a backup"),
        "{out}"
    );
    assert!(out.contains("check(s) failed"), "{out}");

    // A node whose port is taken is told so.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let nd = tmp.path().join("n");
    let o = run(
        tmp.path(),
        &[
            "--role",
            "node",
            "--data-dir",
            nd.to_str().unwrap(),
            "--listen",
            &port,
            "--discovery",
            "off",
            "doctor",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  listen port") && out.contains("--listen"),
        "{out}"
    );
    assert!(!nd.exists(), "doctor must not create the data dir");
}

#[test]
fn completions_and_the_man_page_are_generated_from_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = run(tmp.path(), &["completions", shell]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{shell}: {o:?}");
        for needle in ["doctor", "provision-node", "discovery"] {
            assert!(out.contains(needle), "{shell} completion lacks {needle}");
        }
    }
    let o = run(tmp.path(), &["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    let man = text(&run(tmp.path(), &["man"]));
    assert!(
        man.starts_with(".ie") || man.contains(".TH lama-tui"),
        "{man}"
    );
    assert!(man.contains("provision\\-node"), "{man}");
}
