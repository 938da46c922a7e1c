//! Crash safety: SIGKILL a node and a client at random points (from a seed) during live chat
//! and during a catch-up. After every restart the store opens, every message the killed
//! instance had reported `sent` is still there, and in the end both hold the same history.
//!
//! Replay a failure with `LAMA_CRASH_SEED=<seed printed by the failing run>`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Peer;
use serde_json::{json, Value};

const KILLS: usize = 24;

struct Pair {
    tmp: tempfile::TempDir,
    node: Option<Peer>,
    client: Option<Peer>,
    listen: String,
    ch: String,
    /// Entry ids each side reported `sent`: (node's, client's).
    sent: (HashSet<String>, HashSet<String>),
    next: u64,
    text_no: u64,
}

fn sent_ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|v| v["event"] == "sent")
        .map(|v| v["entry"].as_str().unwrap().to_string())
        .collect()
}

impl Pair {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn start_node(&mut self) {
        let dir = self.tmp.path().join("node");
        self.node = Some(Peer::start(
            "node",
            &dir,
            &["--listen", &self.listen, "--discovery", "off"],
        ));
    }

    fn start_client(&mut self) {
        let dir = self.tmp.path().join("client");
        self.client = Some(Peer::start("client", &dir, &["--discovery", "off"]));
    }

    fn peer(&mut self, node: bool) -> &mut Peer {
        if node {
            self.node.as_mut().unwrap()
        } else {
            self.client.as_mut().unwrap()
        }
    }

    /// Queue `n` sends on one side without waiting for the answers.
    fn fire(&mut self, node: bool, n: usize) {
        let ch = self.ch.clone();
        for _ in 0..n {
            self.text_no += 1;
            let t = format!("m{}", self.text_no);
            let id = self.id();
            self.peer(node)
                .send(json!({"cmd":"send","channel":ch,"text":t,"id":id}));
        }
    }

    /// Collect the `sent` answers that have arrived (without killing).
    fn collect(&mut self, node: bool) {
        let lines = self.peer(node).drain();
        let ids = sent_ids(&lines);
        self.record(node, ids);
    }

    fn record(&mut self, node: bool, ids: Vec<String>) {
        let set = if node {
            &mut self.sent.0
        } else {
            &mut self.sent.1
        };
        set.extend(ids);
    }

    fn kill(&mut self, node: bool) {
        let lines = self.peer(node).kill9();
        let ids = sent_ids(&lines);
        self.record(node, ids);
        if node {
            self.node = None;
        } else {
            self.client = None;
        }
    }

    fn history(&mut self, node: bool) -> Vec<String> {
        let ch = self.ch.clone();
        let id = self.id();
        common::history_ids(self.peer(node), &ch, id)
    }

    /// After a restart: everything this side reported sent is in its own store.
    fn check_kept(&mut self, node: bool, seed: u64, kill: usize) {
        let have: HashSet<String> = self.history(node).into_iter().collect();
        let sent = if node { &self.sent.0 } else { &self.sent.1 };
        let lost: Vec<&String> = sent.iter().filter(|e| !have.contains(*e)).collect();
        assert!(
            lost.is_empty(),
            "kill {kill} (seed {seed}): the {} lost {} message(s) it had reported sent",
            if node { "node" } else { "client" },
            lost.len()
        );
    }
}

#[test]
fn kill_9_at_random_points_loses_nothing_that_was_reported_sent() {
    let seed = common::seed_from_env("LAMA_CRASH_SEED");
    let mut rng = common::Rng::new(seed);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut p = Pair {
        tmp: tempfile::tempdir().unwrap(),
        node: None,
        client: None,
        listen: format!("127.0.0.1:{port}"),
        ch: String::new(),
        sent: Default::default(),
        next: 10,
        text_no: 0,
    };
    p.start_node();
    p.start_client();
    let inv = p.peer(true).ask(json!({"cmd":"invite"}), 1);
    let r = p
        .peer(false)
        .ask(json!({"cmd":"accept","code":inv["code"]}), 2);
    assert_eq!(r["event"], "contact_added", "{r}");
    p.ch = lama_tui::net::pairing::direct_channel_id(
        &p.peer(true).person_id(),
        &p.peer(false).person_id(),
    );

    let started = Instant::now();
    let (mut live_kills, mut catchup_kills) = (0, 0);
    for kill in 1..=KILLS {
        let victim_is_node = rng.below(2) == 0;
        let other = !victim_is_node;
        if rng.below(2) == 0 {
            // Live chat: both sides write; the victim dies mid-stream.
            let (a, b) = (5 + rng.below(40) as usize, 5 + rng.below(40) as usize);
            p.fire(victim_is_node, a);
            p.fire(other, b);
            std::thread::sleep(Duration::from_millis(rng.below(150)));
            p.kill(victim_is_node);
            live_kills += 1;
        } else {
            // Catch-up: the victim is down while the other writes, then dies while
            // catching up.
            p.kill(victim_is_node);
            let n = 50 + rng.below(250) as usize;
            let before = if other {
                p.sent.0.len()
            } else {
                p.sent.1.len()
            };
            p.fire(other, n);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                p.collect(other);
                let now = if other {
                    p.sent.0.len()
                } else {
                    p.sent.1.len()
                };
                if now >= before + n {
                    break;
                }
                assert!(Instant::now() < deadline, "the survivor stopped answering");
                std::thread::sleep(Duration::from_millis(20));
            }
            if victim_is_node {
                p.start_node();
            } else {
                p.start_client();
            }
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            p.kill(victim_is_node);
            catchup_kills += 1;
        }
        // Restart: the store opens and holds everything reported sent.
        if victim_is_node {
            p.start_node();
        } else {
            p.start_client();
        }
        p.check_kept(victim_is_node, seed, kill);
        p.collect(other);
    }
    // Both converge on everything either side reported sent.
    let want: HashSet<String> = p.sent.0.union(&p.sent.1).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (n, c) = (p.history(true), p.history(false));
        let (ns, cs): (HashSet<String>, HashSet<String>) =
            (n.iter().cloned().collect(), c.iter().cloned().collect());
        assert_eq!(ns.len(), n.len(), "duplicate on the node (seed {seed})");
        assert_eq!(cs.len(), c.len(), "duplicate on the client (seed {seed})");
        if n == c && want.is_subset(&ns) {
            eprintln!(
                "{KILLS} kills ({live_kills} live, {catchup_kills} in catch-up) in {:?}; {} messages, {} reported sent, identical on both sides",
                started.elapsed(),
                n.len(),
                want.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence (seed {seed}): node {} client {} wanted {}",
            n.len(),
            c.len(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
