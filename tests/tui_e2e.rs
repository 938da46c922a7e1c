//! End to end through the terminal UI: a real node and a real client in tmux, paired by
//! typing the code read off the node's screen, then a message typed each way and read on
//! the other screen. Needs tmux (`.ci/run` installs it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(session: &str, cmd: &str) -> Tmux {
        Tmux::start_sized(session, cmd, (120, 40))
    }

    fn start_sized(session: &str, cmd: &str, (w, h): (u16, u16)) -> Tmux {
        let (w, h) = (w.to_string(), h.to_string());
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", session])
            .status();
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", session, "-x", &w, "-y", &h, cmd])
            .status()
            .expect("tmux must be installed (.ci/run installs it)");
        assert!(ok.success(), "tmux new-session failed");
        Tmux {
            session: session.into(),
        }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let st = Command::new("tmux")
                .args(["send-keys", "-t", &self.session, k])
                .status()
                .unwrap();
            assert!(st.success());
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn literal(&self, text: &str) {
        let st = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, "-l", text])
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Paste `text` as a terminal does: tmux sends it bracketed (the UI asked for that),
    /// with CR between the lines.
    fn paste(&self, text: &str) {
        let buf = format!("{}-paste", self.session);
        let st = Command::new("tmux")
            .args(["set-buffer", "-b", &buf, text])
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("tmux")
            .args(["paste-buffer", "-p", "-d", "-b", &buf, "-t", &self.session])
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(100));
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "`{what}` never appeared on {}:\n{s}",
                self.session
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

/// The code printed beneath the QR: the rows from the one starting with LAMA1.
fn code_on(screen: &str) -> String {
    let rows: Vec<String> = screen
        .lines()
        .map(|l| {
            l.trim_matches(|c: char| c == '│' || c.is_whitespace())
                .to_string()
        })
        .collect();
    common::code_beneath(&rows)
}

#[test]
fn pair_and_chat_by_typing_in_two_real_terminal_uis() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::bin();
    let tag = std::process::id();
    let node = Tmux::start(
        &format!("lama-node-{tag}"),
        &format!(
            "{bin} --role node --name node-demo@lama.local --listen 127.0.0.1:0 --data-dir {}",
            tmp.path().join("n").display()
        ),
    );
    let client = Tmux::start(
        &format!("lama-client-{tag}"),
        &format!(
            "{bin} --role client --name demo@lama.local --data-dir {}",
            tmp.path().join("c").display()
        ),
    );
    node.wait_for("node-demo@lama.local");
    client.wait_for("demo@lama.local");

    // Node: as its screen says ("press p to pair"), p at once shows the QR and the code.
    node.wait_for("press p to"); // the hint wraps in the narrow pane
    node.keys(&["p"]);
    let screen = node.wait_for("expires in");
    assert!(
        screen.contains('█'),
        "no QR on the node's pairing screen:\n{screen}"
    );
    let code = code_on(&screen);
    assert!(
        code.len() > 100,
        "no code read from the node's screen:\n{screen}"
    );

    // Client: as its screen says, a opens the accept dialog; type the code.
    client.wait_for("press a to");
    client.keys(&["a"]);
    client.wait_for("accept an invitation");
    client.literal(&code);
    client.wait_for("code looks right");
    client.keys(&["Enter"]);
    let s = client.wait_for("paired with node-demo@lama.local");
    let digits = |s: &str| {
        s.lines()
            .find_map(|l| {
                l.split("verification ")
                    .nth(1)
                    .map(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).to_string())
            })
            .unwrap_or_default()
    };
    let v = digits(&s);
    assert_eq!(v.len(), 14, "no verification digits on the client:\n{s}");
    // The node's pairing screen gives way to the same confirmation and digits.
    let ns = node.wait_for("paired with demo@lama.local");
    assert_eq!(digits(&ns), v, "the two sides show different digits:\n{ns}");
    client.keys(&["Enter"]); // close the confirmation
                             // Open the 1:1 channel with the contact and write.
    client.keys(&["Enter"]);
    client.literal("hello from the client tui");
    client.keys(&["Enter"]);
    node.keys(&["Enter"]); // close the confirmation
    node.wait_for("hello from the client tui");

    // Node answers from its composer.
    node.keys(&["Enter"]); // contacts focus: open the 1:1 channel, focus the composer
    node.literal("hello back from the node tui");
    node.keys(&["Enter"]);
    client.wait_for("hello back from the node tui");

    // A long message and a three-line paste arrive whole and readable on the other side.
    let words: Vec<String> = (0..42).map(|i| format!("long{i:02}")).collect();
    let long = format!("{} end-of-long", words.join(" "));
    assert!(long.len() >= 300, "{}", long.len());
    client.literal(&long);
    client.keys(&["Enter"]);
    let s = node.wait_for("end-of-long");
    for w in &words {
        assert!(
            s.contains(w.as_str()),
            "{w} missing on the node's screen:\n{s}"
        );
    }
    client.paste("first pasted line\nsecond pasted line\nthird pasted line");
    client.wait_for("third pasted line");
    client.keys(&["Enter"]);
    let s = node.wait_for("third pasted line");
    let row_of = |what: &str| s.lines().position(|l| l.contains(what));
    let rows = [
        row_of("first pasted line"),
        row_of("second pasted line"),
        row_of("third pasted line"),
    ];
    assert!(
        matches!(rows, [Some(a), Some(b), Some(c)] if b == a + 1 && c == b + 1),
        "the pasted lines are not three rows: {rows:?}\n{s}"
    );

    // The client's network view (n, from the side panes) follows the dialer on its own:
    // the node goes away and the open view shows the refused address and its next retry.
    client.keys(&["Tab", "n"]);
    client.wait_for("this instance");
    client.wait_for("connected · rtt");
    // q quits both cleanly (from the side panes).
    node.keys(&["Tab", "q"]);
    client.wait_for("retry in");
    client.keys(&["Escape", "q"]);
}

#[test]
fn provision_node_from_the_tui_opens_a_client_already_paired_and_connected() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::bin();
    let tag = std::process::id();
    let client = Tmux::start(
        &format!("lama-prov-{tag}"),
        &format!(
            "{bin} --role client --provision-node --data-dir {}",
            tmp.path().join("c").display()
        ),
    );
    let s = client.wait_for("1/1 contacts connected");
    assert!(s.contains("node@lama.local"), "{s}");
    client.wait_for("caught up");
    client.keys(&["Tab", "q"]);
    // The child node stops with the client: its store lock is released.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lama_tui::store::Store::open(&tmp.path().join("c").join("node")).is_err() {
        assert!(
            Instant::now() < deadline,
            "the provisioned node did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_short_code_read_off_the_screen_and_a_prompted_trust_secret_pair_in_the_tuis() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::bin();
    let tag = std::process::id();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The node asks for its trust secret on the terminal, without echo.
    let node = Tmux::start(
        &format!("lama-sc-node-{tag}"),
        &format!(
            "{bin} --role node --trust-secret --name node-demo@lama.local --listen 127.0.0.1:{port} --discovery off --data-dir {}",
            tmp.path().join("n").display()
        ),
    );
    node.wait_for("trust secret (not shown)");
    node.literal("tuna sandwich");
    assert!(
        !node.screen().contains("tuna"),
        "the secret was echoed:\n{}",
        node.screen()
    );
    node.keys(&["Enter"]);
    node.wait_for("node-demo@lama.local");

    // Read the short code off the pairing screen, and type it (with the address) in the
    // client's accept dialog.
    node.keys(&["Tab", "p"]);
    let screen = node.wait_for("wrong tries destroy it");
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("or read this short code out"))
        .expect("the short code's caption");
    let code = lines[at + 1]
        .trim_matches(|c: char| c == '│' || c.is_whitespace())
        .to_string();
    assert_eq!(code.split('-').count(), 4, "{code:?} on\n{screen}");
    let client = Tmux::start(
        &format!("lama-sc-client-{tag}"),
        &format!(
            "{bin} --role client --name demo@lama.local --discovery off --data-dir {}",
            tmp.path().join("c").display()
        ),
    );
    client.wait_for("demo@lama.local");
    client.keys(&["Tab", "a"]);
    client.wait_for("accept an invitation");
    client.literal(&format!("{code} ws://127.0.0.1:{port}"));
    client.wait_for("short code looks right");
    client.keys(&["Enter"]);
    let s = client.wait_for("paired with node-demo@lama.local");
    assert!(s.contains("verification"), "{s}");
    node.keys(&["Escape"]);
    node.wait_for("1/1 contacts connected");

    // A client that knows the same secret pairs on its own at start.
    let mut other = common::Peer::start_env(
        "client",
        &tmp.path().join("o"),
        &[
            "--discovery",
            "off",
            "--node-url",
            &format!("ws://127.0.0.1:{port}"),
        ],
        &[("LAMA_TRUST_SECRET", "tuna sandwich")],
    );
    let e = other.event("contact_added");
    assert_eq!(e["via"], "trust_secret", "{e}");
    node.wait_for("2/2 contacts connected");
    node.keys(&["Tab", "q"]);
    client.keys(&["Tab", "q"]);
}

/// At the documented minimum size the pairing screen still shows the text code, the short
/// code and its keys (the QR gives way).
#[test]
fn at_80x24_the_pairing_screen_shows_the_text_code_and_the_short_code() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::bin();
    let tag = std::process::id();
    let node = Tmux::start_sized(
        &format!("lama-small-{tag}"),
        &format!(
            "{bin} --role node --name node-demo@lama.local --listen 127.0.0.1:0 --discovery off --data-dir {}",
            tmp.path().join("n").display()
        ),
        (80, 24),
    );
    node.wait_for("press p to");
    node.keys(&["p"]);
    let s = node.wait_for("wrong tries destroy it");
    let code = code_on(&s);
    assert!(code.len() > 100, "no whole text code at 80x24:\n{s}");
    lama_tui::domain::Code::decode(&code).expect("the code on screen decodes");
    let short = s
        .split_whitespace()
        .find(|w| w.matches('-').count() == 3 && w.starts_with(|c: char| c.is_ascii_digit()));
    assert!(short.is_some(), "no short code at 80x24:\n{s}");
    assert!(s.contains("r revoke"), "{s}");
    // Not on the default port: the screen says which address goes with the short code.
    assert!(s.contains("then ws://localhost:"), "{s}");
    node.keys(&["Escape", "q"]);
}
