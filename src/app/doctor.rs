//! `lama-tui doctor` and `lama-tui paths`: what a user runs when something does not work.
//! Each check is a [`Check`] with a verdict and, when it fails, the fix in words. Doctor
//! only reads: it never creates the data dir, a key or a store.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::cli::Settings;
use crate::app::logging;
use crate::app::runtime::Role;
use crate::domain::log::Log;
use crate::net::discovery::{self, Scope};
use crate::store::keyfile::{self, KeyfileError, KEYFILE_NAME};
use crate::store::{Store, StoreError, DB_DIR};

/// How long a contact's endpoint may take to accept a TCP connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Below this, the main screen does not fit (the UI is laid out for 80x24).
const MIN_TERMINAL: (u16, u16) = (80, 24);
/// 2024-01-01 in unix ms: a clock before this is certainly wrong.
const CLOCK_FLOOR_MS: u64 = 1_704_067_200_000;

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, with a limit worth knowing.
    Warn,
    /// Does not work; the detail says how to fix it.
    Fail,
}

/// One line of the report.
#[derive(Debug)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The outcome.
    pub verdict: Verdict,
    /// What was found, and for a failure the fix.
    pub detail: String,
}

fn check(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict,
        detail: detail.into(),
    }
}

/// Run every check for the instance `settings` describe.
pub fn run_checks(settings: &Settings, log_dir: &Path) -> Vec<Check> {
    let cfg = &settings.config;
    let mut out = vec![config_file(settings)];
    let dir = &cfg.data_dir;
    out.push(data_dir(dir));
    out.push(key_file(dir, cfg.passphrase.as_deref()));
    let store = store_opens(dir, &mut out);
    if cfg.role == Role::Node {
        out.push(listen_port(cfg.listen));
    }
    if let Some(store) = &store {
        endpoints(store, &mut out);
    }
    out.push(local_discovery(cfg.discovery));
    out.push(clock(store.as_ref()));
    out.push(log_dir_writable(log_dir));
    out.push(clipboard());
    out.push(terminal());
    out
}

/// Print the report; `true` when nothing failed.
pub fn print(checks: &[Check], out: &mut impl std::io::Write) -> std::io::Result<bool> {
    for c in checks {
        let tag = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        writeln!(out, "{tag}  {:<18} {}", c.name, c.detail)?;
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed == 0 {
        writeln!(out, "all checks passed")?;
    } else {
        writeln!(out, "{failed} check(s) failed: see FAIL above for the fix")?;
    }
    Ok(failed == 0)
}

fn config_file(s: &Settings) -> Check {
    match &s.file_path {
        Some(p) => check(
            "config file",
            Verdict::Ok,
            format!("{} (valid)", p.display()),
        ),
        None => check(
            "config file",
            Verdict::Ok,
            "none (defaults; see docs/config.example.toml to make one)",
        ),
    }
}

fn data_dir(dir: &Path) -> Check {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                "data dir",
                Verdict::Warn,
                format!(
                    "{} does not exist yet; the first start creates it",
                    dir.display()
                ),
            )
        }
        Err(e) => {
            return check(
                "data dir",
                Verdict::Fail,
                format!(
                    "cannot read {}: {e}; fix its permissions or pick another --data-dir",
                    dir.display()
                ),
            )
        }
    };
    if !meta.is_dir() {
        return check(
            "data dir",
            Verdict::Fail,
            format!(
                "{} is a file, not a directory; move it away or pick another --data-dir",
                dir.display()
            ),
        );
    }
    let probe = dir.join(".lama-doctor-probe");
    let writable = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
    if let Err(e) = writable {
        return check(
            "data dir",
            Verdict::Fail,
            format!(
                "{} is not writable ({e}); `chmod u+rwx {}` or pick another --data-dir",
                dir.display(),
                dir.display()
            ),
        );
    }
    let mode = unix_mode(&meta);
    if mode & 0o002 != 0 {
        return check(
            "data dir",
            Verdict::Fail,
            format!(
                "{} is writable by everyone (mode {mode:o}); `chmod 700 {}`",
                dir.display(),
                dir.display()
            ),
        );
    }
    check(
        "data dir",
        Verdict::Ok,
        format!("{} (writable, mode {mode:o})", dir.display()),
    )
}

fn key_file(dir: &Path, passphrase: Option<&str>) -> Check {
    let path = dir.join(KEYFILE_NAME);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                "key file",
                Verdict::Warn,
                "no identity yet; the first start makes one",
            )
        }
        Err(e) => {
            return check(
                "key file",
                Verdict::Fail,
                format!("cannot read {}: {e}", path.display()),
            )
        }
    };
    let mode = unix_mode(&meta);
    if mode & 0o077 != 0 {
        return check(
            "key file",
            Verdict::Fail,
            format!(
                "{} is readable by others (mode {mode:o}); `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        );
    }
    match keyfile::read(dir, passphrase) {
        Ok(_) => {
            let sealed = if passphrase.is_some() {
                "sealed, LAMA_PASSPHRASE opens it"
            } else {
                "not sealed (set LAMA_PASSPHRASE at creation to seal)"
            };
            check(
                "key file",
                Verdict::Ok,
                format!("{} (mode {mode:o}, {sealed})", path.display()),
            )
        }
        Err(e @ KeyfileError::PassphraseRequired(_))
        | Err(e @ KeyfileError::WrongPassphrase(_)) => {
            check("passphrase", Verdict::Fail, e.to_string())
        }
        Err(e) => check("key file", Verdict::Fail, e.to_string()),
    }
}

fn store_opens(dir: &Path, out: &mut Vec<Check>) -> Option<Store> {
    let store_dir = dir.join(DB_DIR);
    if !store_dir.exists() {
        out.push(check(
            "store",
            Verdict::Warn,
            "no store yet; the first start creates it",
        ));
        return None;
    }
    let size = dir_size(&store_dir);
    // A check changes nothing: an old-format store is upgraded by the next start, not here.
    if crate::store::migrate::pending(&store_dir) && crate::store::migrate::helper().is_none() {
        out.push(check(
            "store",
            Verdict::Fail,
            crate::store::StoreError::UpgradeNeedsHelper(store_dir.clone()).to_string(),
        ));
        return None;
    }
    if crate::store::migrate::pending(&store_dir) {
        out.push(check(
            "store",
            Verdict::Warn,
            format!(
                "an old-format (sled) store, {} on disk: the next start of lama-tui upgrades it and keeps the old files in {}",
                human(size),
                dir.join(crate::store::migrate::BACKUP_DIR).display()
            ),
        ));
        return None;
    }
    match Store::open(dir) {
        Ok(s) => {
            let contacts = s.contacts().map(|c| c.len()).unwrap_or(0);
            let channels = s.channels().map(|c| c.len()).unwrap_or(0);
            out.push(check(
                "store",
                Verdict::Ok,
                format!(
                    "opens: {contacts} contact(s), {channels} channel(s), {} on disk",
                    human(size)
                ),
            ));
            Some(s)
        }
        Err(e @ StoreError::Locked(_)) => {
            out.push(check(
                "store",
                Verdict::Warn,
                format!("{e} (fine while it runs; contacts are not checked)"),
            ));
            None
        }
        Err(e) => {
            out.push(check("store", Verdict::Fail, e.to_string()));
            None
        }
    }
}

fn listen_port(addr: SocketAddr) -> Check {
    if addr.port() == 0 {
        return check(
            "listen port",
            Verdict::Ok,
            format!("{addr}: port 0 picks a free port"),
        );
    }
    match TcpListener::bind(addr) {
        Ok(_) => check("listen port", Verdict::Ok, format!("{addr} is free")),
        Err(e) => check(
            "listen port",
            Verdict::Fail,
            format!("cannot listen on {addr} ({e}): another program (or a running node) has it; stop it or pass --listen with another port"),
        ),
    }
}

fn endpoints(store: &Store, out: &mut Vec<Check>) {
    let contacts = match store.contacts() {
        Ok(c) => c,
        Err(e) => return out.push(check("contacts", Verdict::Fail, e.to_string())),
    };
    if contacts.is_empty() {
        return out.push(check(
            "contacts",
            Verdict::Ok,
            "none yet (press p or a in the UI to pair)",
        ));
    }
    for c in contacts {
        let name = crate::domain::text::printable(&c.person.name);
        if c.endpoints.is_empty() {
            out.push(check(
                "contact",
                Verdict::Ok,
                format!("{name}: no endpoints (a client; it dials us)"),
            ));
            continue;
        }
        for e in &c.endpoints {
            let url = crate::domain::text::printable(&e.url);
            let (verdict, how) = match dial(&e.url) {
                Ok(()) => (Verdict::Ok, "reachable".to_string()),
                Err(why) => (
                    Verdict::Warn,
                    format!("not reachable now ({why}); it is retried while lama-tui runs"),
                ),
            };
            out.push(check(
                "contact endpoint",
                verdict,
                format!("{name}: {url} {how}"),
            ));
        }
    }
}

/// TCP connect to the host and port of a `ws://` / `wss://` URL.
fn dial(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or("not a ws:// URL")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .collect();
    let mut last = "no address".to_string();
    for a in addrs {
        match TcpStream::connect_timeout(&a, DIAL_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn local_discovery(scope: Scope) -> Check {
    if scope == Scope::Off {
        return check("local discovery", Verdict::Ok, "off (--discovery off)");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return check(
                "local discovery",
                Verdict::Fail,
                format!("cannot start a runtime: {e}"),
            )
        }
    };
    match rt.block_on(discovery::bind_listener(scope)) {
        Some(s) => {
            let at = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            check("local discovery", Verdict::Ok, format!("{scope:?}: can listen on {at}"))
        }
        None => check(
            "local discovery",
            Verdict::Warn,
            format!("{scope:?}: no discovery port free (ports {}..+{}); peers that move are found only through their profile", discovery::base_port(), discovery::DISCOVERY_PORTS),
        ),
    }
}

fn clock(store: Option<&Store>) -> Check {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if now < CLOCK_FLOOR_MS {
        return check("clock", Verdict::Fail, "the system clock is before 2024; set the date (e.g. enable NTP: `timedatectl set-ntp true`)");
    }
    let newest = store.and_then(|s| s.latest_hlc().ok().flatten());
    match newest {
        Some(h) if h.ms > now + discovery::MAX_SKEW_MS => check(
            "clock",
            Verdict::Fail,
            format!("the newest stored message is {} s ahead of this clock: the clock went back; set the date (NTP)", (h.ms - now) / 1000),
        ),
        _ => check("clock", Verdict::Ok, "not behind the newest stored message"),
    }
}

fn log_dir_writable(dir: &Path) -> Check {
    let shown = format!(
        "{}/{}.YYYY-MM-DD.{}",
        dir.display(),
        logging::LOG_FILE,
        logging::LOG_SUFFIX
    );
    // The directory, or the nearest existing parent the first start will create it in.
    let Some(existing) = dir.ancestors().find(|p| p.is_dir()) else {
        return check(
            "logs",
            Verdict::Fail,
            format!("no existing parent of {}; pick a --data-dir", dir.display()),
        );
    };
    let probe = existing.join(".lama-doctor-probe");
    match std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => check("logs", Verdict::Ok, shown),
        Err(e) => check(
            "logs",
            Verdict::Fail,
            format!("cannot write in {} ({e}); fix its permissions or pick a --data-dir (logs then go there)", existing.display()),
        ),
    }
}

fn clipboard() -> Check {
    match arboard::Clipboard::new() {
        Ok(_) => check("clipboard", Verdict::Ok, "system clipboard available"),
        Err(e) => check("clipboard", Verdict::Warn, format!("no system clipboard ({e}); copying uses OSC 52, which most terminals (and tmux with set-clipboard on) accept")),
    }
}

fn terminal() -> Check {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return check(
            "terminal",
            Verdict::Warn,
            "stdout is not a terminal (the UI needs one; --headless does not)",
        );
    }
    let colours = match std::env::var("COLORTERM").as_deref() {
        Ok("truecolor") | Ok("24bit") => "24-bit colour",
        _ if std::env::var("TERM").is_ok_and(|t| t.contains("256")) => "256 colours",
        _ => "basic colours",
    };
    match crossterm::terminal::size() {
        Ok((w, h)) if w < MIN_TERMINAL.0 || h < MIN_TERMINAL.1 => check(
            "terminal",
            Verdict::Warn,
            format!(
                "{w}x{h}, {colours}; the UI is laid out for at least {}x{}: enlarge the window",
                MIN_TERMINAL.0, MIN_TERMINAL.1
            ),
        ),
        Ok((w, h)) => check("terminal", Verdict::Ok, format!("{w}x{h}, {colours}")),
        Err(e) => check("terminal", Verdict::Warn, format!("size unknown ({e})")),
    }
}

/// `lama-tui paths`: every file and directory, one per line.
pub fn print_paths(
    settings: &Settings,
    log_dir: &Path,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let cfg = &settings.config;
    let config = settings
        .file_path
        .clone()
        .or_else(crate::app::config::default_path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no home directory)".into());
    let exists = |p: &Path| {
        if p.exists() {
            ""
        } else {
            "  (not created yet)"
        }
    };
    let rows: [(&str, PathBuf); 4] = [
        ("data dir", cfg.data_dir.clone()),
        ("key file", cfg.data_dir.join(KEYFILE_NAME)),
        ("store", cfg.data_dir.join(DB_DIR)),
        ("logs", log_dir.to_path_buf()),
    ];
    writeln!(out, "role      {}", cfg.role.as_str())?;
    writeln!(out, "config    {config}{}", exists(Path::new(&config)))?;
    for (name, p) in rows {
        writeln!(out, "{name:<9} {}{}", p.display(), exists(&p))?;
    }
    Ok(())
}

fn unix_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
