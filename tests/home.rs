//! Home nodes with real processes on this machine (issue 16, parts 1 to 3): a client
//! invites through its home node, which carries the pairing to it; contacts reach each
//! other's channels through the home nodes, with the people never online together; the
//! two home nodes carry messages with no client between them; a client without a home node
//! pairs through someone else's; a removed group member's home node gets nothing new.
//! `tests/machines.rs` runs the same people on separate network namespaces behind NAT.

mod common;

use std::path::Path;
use std::time::Duration;

use common::people::{
    group_with_a_removal, never_online_together, pair, pair_and_chat, texts, At, Person,
};
use common::Peer;
use serde_json::json;

const OFF: [&str; 2] = ["--discovery", "off"];

fn with_home(root: &Path, name: &str) -> Person {
    Person::new(root, name, At::here(), Some((At::here(), "127.0.0.1:0")))
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
    let mut alice = with_home(tmp.path(), "alice");
    let mut bob = with_home(tmp.path(), "bob");
    pair_and_chat(&mut alice, &mut bob);
    // Alice's client never listens: Bob reaches her through her home node, and says so.
    let c = bob.client.ask(json!({"cmd":"contacts"}), 22);
    let list = c["contacts"].as_array().unwrap();
    let a = list.iter().find(|x| x["person_id"] == alice.id().as_str());
    assert_eq!(a.map(|a| &a["state"]), Some(&json!("via_home")), "{c}");
}

#[test]
fn fifty_messages_cross_while_the_two_clients_are_never_online_together() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = with_home(tmp.path(), "alice");
    let bob = with_home(tmp.path(), "bob");
    never_online_together(alice, bob);
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
    let home_at = Some((At::here(), listen.as_str()));
    let mut alice = Person::new(tmp.path(), "alice", At::here(), home_at);
    let mut bob = with_home(tmp.path(), "bob");
    pair(&mut alice, &mut bob, 10);
    let ch = alice.direct(&bob);
    let hb = bob.home().person_id();
    linked(alice.home(), &hb);
    // Alice and her home node go away; Bob writes; only Bob's home node holds it.
    let mut away = alice.leave();
    assert!(away.home.take().unwrap().quit().success());
    for i in 0..5 {
        bob.send(&ch, &format!("via the nodes {i}"), 100 + i);
    }
    assert_eq!(texts(bob.home(), &ch, 5, 110).len(), 5);
    let _bob_away = bob.leave();
    // Alice's home node returns: Bob's carries the messages over, then Alice gets them.
    let args = ["--discovery", "off", "--listen", listen.as_str()];
    let mut a_home = Peer::start("node", &away.dir.join("node"), &args);
    linked(&mut a_home, &hb);
    assert_eq!(texts(&mut a_home, &ch, 5, 120).len(), 5);
    away.home = Some(a_home);
    let mut alice = away.back();
    let want: Vec<String> = (0..5).map(|i| format!("via the nodes {i}")).collect();
    assert_eq!(texts(&mut alice.client, &ch, 5, 130), want);
}

#[test]
fn a_person_without_a_home_node_pairs_through_anothers_and_chats() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = with_home(tmp.path(), "alice");
    let mut carol = Person::new(tmp.path(), "carol", At::here(), None);
    pair_and_chat(&mut alice, &mut carol);
}

#[test]
fn a_removed_group_members_home_node_receives_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = with_home(tmp.path(), "alice");
    let mut bob = with_home(tmp.path(), "bob");
    let mut carol = with_home(tmp.path(), "carol");
    group_with_a_removal(&mut alice, &mut bob, &mut carol);
}

#[test]
fn a_contact_the_owner_removes_loses_access_to_the_home_node() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = with_home(tmp.path(), "alice");
    let mut carol = Person::new(tmp.path(), "carol", At::here(), None);
    pair(&mut alice, &mut carol, 10);
    let ch = alice.direct(&carol);
    carol.send(&ch, "before", 20);
    alice.got("before");
    let cid = carol.id();
    let listed = |home: &mut Peer, id: u64| {
        home.ask(json!({"cmd":"contacts"}), id)["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["person_id"] == cid.as_str() && c["via"] == "vouched")
    };
    assert!(
        listed(alice.home(), 21),
        "the home node admits Alice's contact"
    );
    let r = alice
        .client
        .ask(json!({"cmd":"remove_contact","person_id":carol.id()}), 22);
    assert_eq!(r["event"], "contact_removed", "{r}");
    // The home node drops her (Alice's next vouch round) and closes her link.
    let ha = alice.home().person_id();
    carol
        .client
        .wait_for("the home node closing her link", |v| {
            v["event"] == "disconnected" && v["person_id"] == ha.as_str()
        });
    assert!(!listed(alice.home(), 23), "still admitted after removal");
    carol.send(&ch, "after removal", 24);
    std::thread::sleep(Duration::from_secs(1));
    let held = texts(alice.home(), &ch, 1, 25);
    assert_eq!(
        held,
        ["before"],
        "the home node took a removed contact's message"
    );
}

#[test]
fn a_clients_open_invitation_follows_its_home_node_to_a_new_port() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = with_home(tmp.path(), "alice");
    let mut carol = Person::new(tmp.path(), "carol", At::here(), None);
    let old = alice.invite(10)["code"].as_str().unwrap().to_string();
    // Alice's home node restarts on another port: her code names a dead address.
    assert!(alice.home.take().unwrap().quit().success());
    let args = ["--discovery", "off", "--listen", "127.0.0.1:0"];
    let home = Peer::start("node", &alice.dir.join("node"), &args);
    let url = home.endpoint();
    alice.home = Some(home);
    // Alice reaches it at its new address (as discovery would find it on a LAN): its new
    // profile arrives, and her open invitation is re-issued to name it.
    let r = alice.client.ask(json!({"cmd":"connect","url":url}), 20);
    assert_eq!(r["event"], "connect_ok", "{r}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let code = loop {
        let list = alice.client.ask(json!({"cmd":"invites"}), 21);
        let inv = &list["invites"][0];
        assert_eq!(inv["status"], "open", "{list}");
        if inv["code"] != old.as_str() {
            break inv["code"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the invitation still names the old address: {list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let port = url.rsplit(':').next().unwrap();
    let decoded = lama_tui::domain::codes::Code::decode(&code).unwrap();
    let lama_tui::domain::codes::Code::Invite(inv) = decoded else {
        panic!("not an invitation: {code}");
    };
    assert!(inv.urls.iter().any(|u| u.ends_with(port)), "{:?}", inv.urls);
    // The re-issued code works: Carol pairs with Alice through the moved home node.
    let r = carol.client.ask(json!({"cmd":"accept","code":code}), 22);
    assert_eq!(r["event"], "contact_added", "{r}");
    assert_eq!(r["person_id"], alice.id(), "{r}");
    let cid = carol.id();
    alice.client.wait_for("the relayed pairing", |v| {
        v["event"] == "contact_added" && v["person_id"] == cid.as_str()
    });
}

/// The same short code with its last word replaced by another list word.
fn wrong_words(code: &str) -> String {
    let (head, last) = code.rsplit_once('-').unwrap();
    let other = if last == "zebra" { "acorn" } else { "zebra" };
    format!("{head}-{other}")
}

#[test]
fn a_clients_short_code_is_made_and_checked_by_its_home_node() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = with_home(tmp.path(), "alice");
    let mut carol = Person::new(tmp.path(), "carol", At::here(), None);
    let sc = alice.client.ask(json!({"cmd":"short_code"}), 30);
    assert_eq!(sc["event"], "short_code", "{sc}");
    let (code, url) = (sc["code"].as_str().unwrap(), sc["url"].as_str().unwrap());
    assert_eq!(url, alice.home().endpoint(), "{sc}");
    // Wrong words: the home node refuses, and nothing is made on either side.
    let ask = |code: &str| json!({"cmd":"accept_short","code":code,"url":url});
    let r = carol.client.ask(ask(&wrong_words(code)), 31);
    assert_eq!(r["kind"], "code_mismatch", "{r}");
    let none = carol.client.ask(json!({"cmd":"contacts"}), 32);
    assert_eq!(none["contacts"], json!([]), "{none}");
    // The right words pair Carol with Alice (not with her node), same digits on both sides.
    let r = carol.client.ask(ask(code), 33);
    assert_eq!(r["event"], "contact_added", "{r}");
    assert_eq!(r["person_id"], alice.id(), "{r}");
    assert_eq!(r["via"], "short_code", "{r}");
    let cid = carol.id();
    let added = alice.client.wait_for("the pairing by short code", |v| {
        v["event"] == "contact_added" && v["person_id"] == cid.as_str()
    });
    assert_eq!(added["via"], "short_code", "{added}");
    assert_eq!(added["verification"], r["verification"]);
    let list = alice.client.ask(json!({"cmd":"invites"}), 34);
    assert!(
        list["invites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["code"] == code && i["status"] == "used"),
        "{list}"
    );
    let ch = alice.direct(&carol);
    carol.send(&ch, "hello by short code", 35);
    alice.got("hello by short code");
    // A code Alice revokes is refused by her node.
    let sc = alice.client.ask(json!({"cmd":"short_code"}), 36);
    let second = sc["code"].as_str().unwrap().to_string();
    let r = alice
        .client
        .ask(json!({"cmd":"revoke_invite","code":second}), 37);
    assert_eq!(r["event"], "invite_revoked", "{r}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !alice.home().ask(json!({"cmd":"invites"}), 38)["invites"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["code"] == second.as_str() && i["status"] == "revoked")
    {
        assert!(std::time::Instant::now() < deadline, "never revoked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut dave = Person::new(tmp.path(), "dave", At::here(), None);
    let r = dave.client.ask(ask(&second), 39);
    assert_eq!(r["kind"], "invite_revoked", "{r}");
    let none = dave.client.ask(json!({"cmd":"contacts"}), 41);
    assert_eq!(none["contacts"], json!([]), "{none}");
    // With her home node away, Alice is told why she gets no short code.
    assert!(alice.home.take().unwrap().quit().success());
    alice
        .client
        .wait_for("the home node gone", |v| v["event"] == "disconnected");
    let r = alice.client.ask(json!({"cmd":"short_code"}), 40);
    assert_eq!(r["kind"], "home_node_offline", "{r}");
}
