//! People for the home-node tests: a client, and optionally a home node paired with it as
//! its replica, each on this machine or inside a network namespace of the test's own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Peer;

/// Where a process runs: this machine's namespace, or one made by the test.
#[derive(Clone, Debug, Default)]
pub struct At {
    /// The namespace (`None`: this machine).
    pub ns: Option<String>,
}

impl At {
    pub fn here() -> At {
        At { ns: None }
    }

    pub fn ns(name: String) -> At {
        At { ns: Some(name) }
    }

    pub fn start(&self, role: &str, dir: &Path, extra: &[&str]) -> Peer {
        match &self.ns {
            None => Peer::start(role, dir, extra),
            Some(ns) => Peer::start_in(ns, role, dir, extra),
        }
    }
}

/// A person: a client, and (maybe) an always-on home node.
pub struct Person {
    pub client: Peer,
    pub home: Option<Peer>,
    pub dir: PathBuf,
    pub at: At,
}

impl Person {
    /// A client at `at`; with `home = Some((where, listen))`, a node there listening on
    /// `listen`, paired as the client's home node (`"replica":true`).
    pub fn new(root: &Path, name: &str, at: At, home: Option<(At, &str)>) -> Person {
        let dir = root.join(name);
        let args = ["--discovery", "off", "--name", name];
        let mut client = at.start("client", &dir.join("client"), &args);
        let home = home.map(|(where_, listen)| {
            let node_name = format!("{name}-home");
            let args = [
                "--discovery",
                "off",
                "--name",
                node_name.as_str(),
                "--listen",
                listen,
            ];
            let mut node = where_.start("node", &dir.join("node"), &args);
            let code = node.ask(json!({"cmd":"invite"}), 1)["code"].clone();
            let r = client.ask(json!({"cmd":"accept","code":code,"replica":true}), 1);
            assert_eq!(r["event"], "contact_added", "{r}");
            node
        });
        Person {
            client,
            home,
            dir,
            at,
        }
    }

    pub fn id(&self) -> String {
        self.client.person_id()
    }

    pub fn home(&mut self) -> &mut Peer {
        self.home.as_mut().expect("a person with a home node")
    }

    /// Quit the client; its home node stays up. [`Away::back`] starts it again.
    pub fn leave(self) -> Away {
        assert!(self.client.quit().success());
        Away {
            home: self.home,
            dir: self.dir,
            at: self.at,
        }
    }

    /// Make an invitation; wait until the home node holds it (it goes over the open link,
    /// as fast as a person reads the code out).
    pub fn invite(&mut self, id: u64) -> Value {
        let inv = self.client.ask(json!({"cmd":"invite"}), id);
        assert_eq!(inv["event"], "invite", "{inv}");
        let home = self.home();
        let deadline = Instant::now() + Duration::from_secs(10);
        while home.ask(json!({"cmd":"invites"}), id)["invites"]
            .as_array()
            .map_or(0, Vec::len)
            < 2
        {
            assert!(
                Instant::now() < deadline,
                "the home node never got the code"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        inv
    }

    /// The 1:1 channel with `other`.
    pub fn direct(&self, other: &Person) -> String {
        lama_tui::net::pairing::direct_channel_id(&self.id(), &other.id())
    }

    pub fn send(&mut self, ch: &str, text: &str, id: u64) {
        let r = self
            .client
            .ask(json!({"cmd":"send","channel":ch,"text":text}), id);
        assert_eq!(r["event"], "sent", "{r}");
    }

    pub fn got(&mut self, text: &str) {
        self.client
            .wait_for(text, |v| v["event"] == "message" && v["text"] == text);
    }
}

/// A person whose client is off.
pub struct Away {
    pub home: Option<Peer>,
    pub dir: PathBuf,
    pub at: At,
}

impl Away {
    pub fn home(&mut self) -> &mut Peer {
        self.home.as_mut().expect("a person with a home node")
    }

    pub fn back(self) -> Person {
        let args = ["--discovery", "off"];
        let client = self.at.start("client", &self.dir.join("client"), &args);
        Person {
            client,
            home: self.home,
            dir: self.dir,
            at: self.at,
        }
    }
}

/// `from` accepts `to`'s code; both see each other, with one verification string.
pub fn pair(to: &mut Person, from: &mut Person, id: u64) {
    let inv = to.invite(id);
    let r = from
        .client
        .ask(json!({"cmd":"accept","code":inv["code"]}), id + 1);
    assert_eq!(r["event"], "contact_added", "{r}");
    assert_eq!(r["person_id"], to.id(), "{r}");
    let pid = from.id();
    let added = to.client.wait_for("the relayed pairing", |v| {
        v["event"] == "contact_added" && v["person_id"] == pid.as_str()
    });
    assert_eq!(added["verification"], r["verification"], "{added} / {r}");
}

/// The texts of `ch` on `p`, waiting (up to 20 s) until there are at least `n`.
pub fn texts(p: &mut Peer, ch: &str, n: usize, id: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = p.ask(json!({"cmd":"history","channel":ch,"limit":500}), id);
        let v: Vec<String> = h["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["text"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alice makes a group with Bob and Carol, then removes Carol: Bob's home node gets what
/// follows, Carol's does not.
pub fn group_with_a_removal(alice: &mut Person, bob: &mut Person, carol: &mut Person) {
    pair(alice, bob, 10);
    pair(alice, carol, 20);
    let members = json!([bob.id(), carol.id()]);
    let r = alice.client.ask(
        json!({"cmd":"create_channel","name":"trio","members":members}),
        30,
    );
    let g = r["channel"].as_str().unwrap().to_string();
    alice.send(&g, "to all three", 31);
    bob.got("to all three");
    carol.got("to all three");
    assert_eq!(texts(carol.home(), &g, 1, 32), ["to all three"]);
    let r = alice.client.ask(
        json!({"cmd":"remove_member","channel":g,"person_id":carol.id()}),
        33,
    );
    assert_eq!(r["event"], "members_changed", "{r}");
    alice.send(&g, "after carol left", 34);
    bob.got("after carol left");
    assert_eq!(texts(bob.home(), &g, 2, 35).len(), 2);
    // Carol's node never gets it (nor Carol): a link carries a new entry in milliseconds,
    // so a second is plenty for one that was going to.
    std::thread::sleep(Duration::from_secs(1));
    let held = texts(carol.home(), &g, 1, 36);
    assert!(!held.contains(&"after carol left".to_string()), "{held:?}");
}

/// `from` pairs with `to` through `to`'s code, then a message each way.
pub fn pair_and_chat(to: &mut Person, from: &mut Person) {
    pair(to, from, 10);
    let ch = to.direct(from);
    from.send(&ch, "hello from the acceptor", 20);
    to.got("hello from the acceptor");
    to.send(&ch, "hello from the inviter", 21);
    from.got("hello from the inviter");
}

/// Bob writes 50 messages while Alice is away, and leaves; Alice comes back, gets all 50 in
/// order, replies, and leaves; Bob comes back and gets the reply: the two clients are never
/// online together.
pub fn never_online_together(mut alice: Person, mut bob: Person) {
    pair(&mut alice, &mut bob, 10);
    let ch = alice.direct(&bob);
    let alice_away = alice.leave();
    for i in 0..50 {
        bob.send(&ch, &format!("bob {i:02}"), 100 + i);
    }
    // Acknowledged by Bob's home node (stored there) before Bob goes.
    assert_eq!(texts(bob.home(), &ch, 50, 200).len(), 50);
    let bob_away = bob.leave();
    let mut alice = alice_away.back();
    let want: Vec<String> = (0..50).map(|i| format!("bob {i:02}")).collect();
    assert_eq!(texts(&mut alice.client, &ch, 50, 300), want);
    alice.send(&ch, "alice back", 301);
    assert_eq!(texts(alice.home(), &ch, 51, 302).len(), 51);
    let _alice_away = alice.leave();
    let mut bob = bob_away.back();
    let seen = texts(&mut bob.client, &ch, 51, 400);
    assert_eq!(
        seen.last().map(String::as_str),
        Some("alice back"),
        "{seen:?}"
    );
}
