//! Test harness: real `lama-tui` processes in headless mode, driven over stdin/stdout.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lama_tui::domain::identity::{LocalIdentity, Secrets};
use serde_json::{json, Value};

pub mod netns;
pub mod people;

/// The text code printed beneath a QR: the screen rows from the one starting with `LAMA1`
/// while they hold only code characters (rows already stripped of borders and spaces).
pub fn code_beneath<S: AsRef<str>>(rows: &[S]) -> String {
    rows.iter()
        .map(AsRef::as_ref)
        .skip_while(|r| !r.starts_with("LAMA1"))
        .take_while(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
        .collect()
}

/// A deterministic identity for in-memory tests: secrets from `seed`.
pub fn ident(seed: u8, name: &str) -> LocalIdentity {
    LocalIdentity::from_secrets(
        name,
        &format!("{name}/test"),
        Secrets {
            person: [seed; 32],
            instance: [seed.wrapping_add(1); 32],
            transport: [seed.wrapping_add(2); 32],
        },
    )
}

/// How long any single expected event may take.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The binary under test: this build's, or `LAMA_TEST_BIN` (to run the process tests
/// against another build, e.g. to see a new attack test fail on an older release).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("LAMA_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lama-tui").into())
    })
}

/// `lama-sled-export` (tools/sled-export, a workspace of its own so sled stays out of
/// lama-tui's lock file), built once per test binary: the upgrade from a sled store runs it.
pub fn sled_export() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/sled-export");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--locked", "--quiet", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("target"))
            .output()
            .expect("run cargo to build tools/sled-export");
        assert!(
            out.status.success(),
            "building tools/sled-export failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root.join("target/debug/lama-sled-export")
    })
}

/// A PATH on which `lama-sled-export` is found, as `cargo install` puts it on a user's PATH.
pub fn path_with_sled_export() -> String {
    let dir = sled_export()
        .parent()
        .expect("the helper is in a directory");
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", dir.display())
}

/// A running headless instance.
pub struct Peer {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    pub ready: Value,
    pub dir: PathBuf,
    /// Events read while waiting for another one, in arrival order.
    pub seen: Vec<Value>,
}

/// Arguments for a peer.
pub fn args(role: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--role".to_string(),
        role.to_string(),
        "--headless".into(),
        "--data-dir".into(),
        dir.display().to_string(),
    ];
    if role == "node" && !extra.contains(&"--listen") {
        v.push("--listen".into());
        v.push("127.0.0.1:0".into());
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

impl Peer {
    pub fn start(role: &str, dir: &Path, extra: &[&str]) -> Peer {
        Self::start_env(role, dir, extra, &[])
    }

    pub fn start_env(role: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Peer {
        // A restart on a fixed port may find it briefly taken (another test's process got
        // it from the kernel meanwhile, or a socket is still closing): retry a little.
        let fixed_port = extra
            .iter()
            .position(|a| *a == "--listen")
            .and_then(|i| extra.get(i + 1))
            .is_some_and(|a| !a.ends_with(":0"));
        let attempts = if fixed_port { 25 } else { 1 };
        for attempt in 1..=attempts {
            match Self::try_start(role, dir, extra, env) {
                Ok(p) => return p,
                Err(e) if attempt < attempts => {
                    eprintln!("start attempt {attempt} failed ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Start with exactly `full_args` (no role or data dir added); `dir` is the data dir
    /// the arguments (or the config file they name) choose.
    #[allow(dead_code)]
    pub fn start_raw(full_args: &[&str], dir: &Path) -> Peer {
        let full: Vec<String> = full_args.iter().map(|a| a.to_string()).collect();
        Self::try_start_args(full, "instance", dir, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start inside network namespace `ns` (a "machine" of the test's own; see `netns`).
    pub fn start_in(ns: &str, role: &str, dir: &Path, extra: &[&str]) -> Peer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, bin()]);
        Self::spawn(cmd, args(role, dir, extra), role, dir, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(
        role: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Peer, String> {
        Self::try_start_args(args(role, dir, extra), role, dir, env)
    }

    fn try_start_args(
        full_args: Vec<String>,
        role: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Peer, String> {
        Self::spawn(Command::new(bin()), full_args, role, dir, env)
    }

    /// `cmd` (the binary, or a wrapper that execs it) with `full_args`, until `ready`.
    fn spawn(
        mut cmd: Command,
        full_args: Vec<String>,
        role: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Peer, String> {
        cmd.args(full_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_remove("LAMA_PASSPHRASE")
            .env_remove("LAMA_TRUST_SECRET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lama-tui");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let Ok(ready) = rx.recv_timeout(EVENT_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no ready line from {role} in {}", dir.display()));
        };
        assert_eq!(ready["event"], "ready", "first line must be ready: {ready}");
        Ok(Peer {
            child,
            stdin,
            lines: rx,
            ready,
            dir: dir.to_path_buf(),
            seen: Vec::new(),
        })
    }

    pub fn person_id(&self) -> String {
        self.ready["person_id"].as_str().unwrap().to_string()
    }

    pub fn endpoint(&self) -> String {
        self.ready["endpoint"].as_str().unwrap().to_string()
    }

    pub fn send(&mut self, v: Value) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{v}").expect("write to child stdin");
        s.flush().unwrap();
    }

    pub fn send_raw(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    /// Write raw bytes and a newline to the child's stdin (not necessarily UTF-8).
    pub fn send_bytes(&mut self, line: &[u8]) {
        let s = self.stdin.as_mut().expect("stdin open");
        s.write_all(line).expect("write to child stdin");
        s.write_all(b"\n").expect("write to child stdin");
        s.flush().unwrap();
    }

    /// Wait for the first event matching `pred`; others are kept in `seen`.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "timed out waiting for {what} from {}; {} other events seen, the last: {:?}",
                    self.dir.display(),
                    self.seen.len(),
                    &self.seen[self.seen.len().saturating_sub(20)..]
                ),
            }
        }
    }

    /// Like `wait_for`, for a long job that reports progress: the deadline is reset by each
    /// event matching `progress`, so a slow machine fails only when the job stalls.
    pub fn wait_for_while(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        progress: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let mut deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => {
                    if progress(&v) {
                        deadline = Instant::now() + EVENT_TIMEOUT;
                    }
                    self.seen.push(v);
                }
                Err(_) => panic!(
                    "timed out waiting for {what} from {}; {} other events seen, the last: {:?}",
                    self.dir.display(),
                    self.seen.len(),
                    &self.seen[self.seen.len().saturating_sub(20)..]
                ),
            }
        }
    }

    /// Send a command with an id and wait for the answer carrying that id.
    pub fn ask(&mut self, mut cmd: Value, id: u64) -> Value {
        cmd["id"] = json!(id);
        self.send(cmd.clone());
        self.wait_for(&format!("answer to {cmd}"), |v| v["id"] == json!(id))
    }

    pub fn event(&mut self, name: &str) -> Value {
        self.wait_for(name, |v| v["event"] == name)
    }

    /// `quit` and wait for a clean exit.
    pub fn quit(mut self) -> ExitStatus {
        self.send(json!({"cmd":"quit"}));
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not exit", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line that has arrived so far, without waiting (including those kept in `seen`).
    pub fn drain(&mut self) -> Vec<Value> {
        let mut v = std::mem::take(&mut self.seen);
        while let Ok(l) = self.lines.try_recv() {
            v.push(l);
        }
        v
    }

    /// SIGKILL, no goodbye: the crash the store must survive. Returns what arrived before.
    pub fn kill9(&mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread forwards what was already written before it sees the end.
        std::thread::sleep(Duration::from_millis(50));
        self.drain()
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run the binary to completion expecting failure; returns (exit code, stderr).
pub fn run_fail(role: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args(role, dir, extra))
        .stdin(Stdio::null())
        .env_remove("LAMA_PASSPHRASE")
        .env_remove("LAMA_TRUST_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run lama-tui");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small deterministic generator (xorshift64*) for seeded fault and crash schedules.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The seed in `var`, or a fresh one; printed so that a failing run can be replayed.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed: {seed} (replay with {var}={seed})");
    seed
}

/// The entry ids of a channel's whole history on `p`, in view order.
pub fn history_ids(p: &mut Peer, ch: &str, id: u64) -> Vec<String> {
    let h = p.ask(json!({"cmd":"history","channel":ch,"limit":1_000_000}), id);
    h["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{h}"))
        .iter()
        .map(|m| m["entry"].as_str().unwrap().to_string())
        .collect()
}
