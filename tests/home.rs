//! Home nodes with real processes (issue 16, parts 1 to 3): a client invites through its
//! home node, which carries the pairing to it; contacts reach each other's channels
//! through the home nodes, with the people never online together; a client without a home
//! node pairs through someone else's; a removed group member's home node gets nothing new.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Peer;
use serde_json::{json, Value};

const OFF: [&str; 2] = ["--discovery", "off"];

/// A person: a client and (when `home`) an always-on node paired as its home node.
struct Person {
    client: Peer,
    home: Option<Peer>,
    dir: std::path::PathBuf,
}

impl Person {
    fn new(root: &Path, name: &str, home: bool) -> Person {
        Self::with_home_at(root, name, home, "127.0.0.1:0")
    }

    /// `listen`: where the home node listens (a fixed port survives its restart).
    fn with_home_at(root: &Path, name: &str, home: bool, listen: &str) -> Person {
        let dir = root.join(name);
        let client_args = ["--discovery", "off", "--name", name];
        let mut client = Peer::start("client", &dir.join("client"), &client_args);
        let home = home.then(|| {
            let node_name = format!("{name}-home");
            let args = [
                "--discovery",
                "off",
                "--name",
                node_name.as_str(),
                "--listen",
                listen,
            ];
            let mut node = Peer::start("node", &dir.join("node"), &args);
            let code = node.ask(json!({"cmd":"invite"}), 1)["code"].clone();
            let r = client.ask(json!({"cmd":"accept","code":code,"replica":true}), 1);
            assert_eq!(r["event"], "contact_added", "{r}");
            node
        });
        Person { client, home, dir }
    }

    fn id(&self) -> String {
        self.client.person_id()
    }

    /// Quit the client (its home node stays up).
    fn leave(self) -> (Option<Peer>, std::path::PathBuf) {
        assert!(self.client.quit().success());
        (self.home, self.dir)
    }

    /// Start the client again.
    fn back(home: Option<Peer>, dir: std::path::PathBuf) -> Person {
        let client = Peer::start("client", &dir.join("client"), &OFF);
        Person { client, home, dir }
    }
}

/// `p` makes an invitation, and its home node holds it before anyone uses it.
fn invite(p: &mut Person, id: u64) -> Value {
    let inv = p.client.ask(json!({"cmd":"invite"}), id);
    assert_eq!(inv["event"], "invite", "{inv}");
    let home = p.home.as_mut().expect("a home node");
    let deadline = Instant::now() + Duration::from_secs(10);
    // The code goes to the node over the open link: wait until it is there, as a person
    // reading the code out would.
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

/// `from` accepts `to`'s code; both see each other, with one verification string.
fn pair(to: &mut Person, from: &mut Person, id: u64) {
    let inv = invite(to, id);
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

fn direct(a: &Person, b: &Person) -> String {
    lama_tui::net::pairing::direct_channel_id(&a.id(), &b.id())
}

fn send(p: &mut Person, ch: &str, text: &str, id: u64) {
    let r = p
        .client
        .ask(json!({"cmd":"send","channel":ch,"text":text}), id);
    assert_eq!(r["event"], "sent", "{r}");
}

fn got(p: &mut Person, text: &str) {
    p.client
        .wait_for(text, |v| v["event"] == "message" && v["text"] == text);
}

/// The texts of `ch` on `p`, waiting until there are `n`.
fn texts(p: &mut Peer, ch: &str, n: usize, id: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = p.ask(json!({"cmd":"history","channel":ch,"limit":500}), id);
        let v: Vec<String> = h["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["text"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_without_a_home_node_is_told_how_to_get_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lone = Peer::start("client", &tmp.path().join("c"), &OFF);
    let r = lone.ask(json!({"cmd":"invite"}), 1);
    assert_eq!(r["kind"], "no_home_node", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("--provision-node"),
        "{r}"
    );
    lone.quit();
}

#[test]
fn two_people_with_home_nodes_pair_through_a_clients_code_and_chat() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Person::new(tmp.path(), "alice", true);
    let mut bob = Person::new(tmp.path(), "bob", true);
    pair(&mut alice, &mut bob, 10);
    let ch = direct(&alice, &bob);
    send(&mut bob, &ch, "hello alice", 20);
    got(&mut alice, "hello alice");
    send(&mut alice, &ch, "hello bob", 21);
    got(&mut bob, "hello bob");
}

#[test]
fn fifty_messages_cross_while_the_two_clients_are_never_online_together() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Person::new(tmp.path(), "alice", true);
    let mut bob = Person::new(tmp.path(), "bob", true);
    pair(&mut alice, &mut bob, 10);
    let ch = direct(&alice, &bob);
    // Bob's home node holds Bob's channels: wait until it reaches Alice's home node, so
    // the path through the two nodes is up before the clients come and go.
    let (a_home, a_dir) = alice.leave();
    for i in 0..50 {
        send(&mut bob, &ch, &format!("bob {i:02}"), 100 + i);
    }
    // Acknowledged by Bob's home node (stored there) before Bob goes.
    let bob_home = bob.home.as_mut().unwrap();
    assert_eq!(texts(bob_home, &ch, 50, 200).len(), 50);
    let (b_home, b_dir) = bob.leave();
    let mut alice = Person::back(a_home, a_dir);
    let want: Vec<String> = (0..50).map(|i| format!("bob {i:02}")).collect();
    assert_eq!(texts(&mut alice.client, &ch, 50, 300), want);
    send(&mut alice, &ch, "alice back", 301);
    let alice_home = alice.home.as_mut().unwrap();
    assert_eq!(texts(alice_home, &ch, 51, 302).len(), 51);
    let (_a_home, _a_dir) = alice.leave();
    let mut bob = Person::back(b_home, b_dir);
    let seen = texts(&mut bob.client, &ch, 51, 400);
    assert_eq!(
        seen.last().map(String::as_str),
        Some("alice back"),
        "{seen:?}"
    );
}

/// A free loopback port for a node that restarts on it.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Wait for `node` to link with the node `other`.
fn linked(node: &mut Peer, other: &str) {
    node.wait_for("the link between the home nodes", |v| {
        v["event"] == "connected" && v["person_id"] == other
    });
}

#[test]
fn the_two_home_nodes_carry_messages_with_no_client_between_them() {
    let tmp = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut alice = Person::with_home_at(tmp.path(), "alice", true, &listen);
    let mut bob = Person::new(tmp.path(), "bob", true);
    pair(&mut alice, &mut bob, 10);
    let ch = direct(&alice, &bob);
    let hb = bob.home.as_ref().unwrap().person_id();
    linked(alice.home.as_mut().unwrap(), &hb);
    // Alice and her home node go away; Bob writes; only Bob's home node holds it.
    let (a_home, a_dir) = alice.leave();
    assert!(a_home.unwrap().quit().success());
    for i in 0..5 {
        send(&mut bob, &ch, &format!("via the nodes {i}"), 100 + i);
    }
    assert_eq!(texts(bob.home.as_mut().unwrap(), &ch, 5, 110).len(), 5);
    let (b_home, _b_dir) = bob.leave();
    // Alice's home node returns: Bob's carries the messages over, then Alice gets them.
    let args = ["--discovery", "off", "--listen", listen.as_str()];
    let mut a_home = Peer::start("node", &a_dir.join("node"), &args);
    linked(&mut a_home, &hb);
    assert_eq!(texts(&mut a_home, &ch, 5, 120).len(), 5);
    let mut alice = Person::back(Some(a_home), a_dir);
    let want: Vec<String> = (0..5).map(|i| format!("via the nodes {i}")).collect();
    assert_eq!(texts(&mut alice.client, &ch, 5, 130), want);
    drop(b_home);
}

#[test]
fn a_person_without_a_home_node_pairs_through_anothers_and_chats() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Person::new(tmp.path(), "alice", true);
    let mut carol = Person::new(tmp.path(), "carol", false);
    pair(&mut alice, &mut carol, 10);
    let ch = direct(&alice, &carol);
    send(&mut carol, &ch, "hi from carol", 20);
    got(&mut alice, "hi from carol");
    send(&mut alice, &ch, "hi carol", 21);
    got(&mut carol, "hi carol");
}

#[test]
fn a_removed_group_members_home_node_receives_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Person::new(tmp.path(), "alice", true);
    let mut bob = Person::new(tmp.path(), "bob", true);
    let mut carol = Person::new(tmp.path(), "carol", true);
    pair(&mut alice, &mut bob, 10);
    pair(&mut alice, &mut carol, 20);
    let members = json!([bob.id(), carol.id()]);
    let r = alice.client.ask(
        json!({"cmd":"create_channel","name":"trio","members":members}),
        30,
    );
    let g = r["channel"].as_str().unwrap().to_string();
    send(&mut alice, &g, "to all three", 31);
    got(&mut bob, "to all three");
    got(&mut carol, "to all three");
    let carol_home = carol.home.as_mut().unwrap();
    assert_eq!(texts(carol_home, &g, 1, 32), ["to all three"]);
    let r = alice.client.ask(
        json!({"cmd":"remove_member","channel":g,"person_id":carol.id()}),
        33,
    );
    assert_eq!(r["event"], "members_changed", "{r}");
    send(&mut alice, &g, "after carol left", 34);
    got(&mut bob, "after carol left");
    let bob_home = bob.home.as_mut().unwrap();
    assert_eq!(texts(bob_home, &g, 2, 35).len(), 2);
    // Bob's node has it; Carol's node never gets it (nor Carol): a link carries a new
    // entry in milliseconds, so a second is plenty for one that was going to.
    std::thread::sleep(Duration::from_secs(1));
    let carol_home = carol.home.as_mut().unwrap();
    let held = texts(carol_home, &g, 1, 36);
    assert!(!held.contains(&"after carol left".to_string()), "{held:?}");
}
