//! CHUM sync with real processes: live both ways, offline catch-up, relaying through a
//! node, node-to-node federation, access control checked in the store, and bulk catch-up.

mod common;

use std::path::Path;

use common::Peer;
use lama_tui::store::Store;
use serde_json::{json, Value};

fn pair(node: &mut Peer, client: &mut Peer, id: u64) {
    let code = node.ask(json!({"cmd":"invite"}), id)["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client.ask(json!({"cmd":"accept","code":code}), id + 1);
    assert_eq!(r["event"], "contact_added", "{r}");
    client.wait_for("connected", |v| {
        v["event"] == "connected" && v["person_id"] == node.ready["person_id"]
    });
}

fn direct(a: &Peer, b: &Peer) -> String {
    lama_tui::net::pairing::direct_channel_id(&a.person_id(), &b.person_id())
}

fn send(p: &mut Peer, ch: &str, text: &str, id: u64) -> Value {
    let r = p.ask(json!({"cmd":"send","channel":ch,"text":text}), id);
    assert_eq!(r["event"], "sent", "{r}");
    r
}

fn got(p: &mut Peer, text: &str) -> Value {
    let t = text.to_string();
    p.wait_for(&format!("message {text}"), move |v| {
        v["event"] == "message" && v["text"] == t.as_str()
    })
}

fn history(p: &mut Peer, ch: &str, limit: u64, id: u64) -> Vec<String> {
    let h = p.ask(json!({"cmd":"history","channel":ch,"limit":limit}), id);
    h["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{h}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// Wait until a peer has received a group channel (its create entry travels like any other).
fn wait_channel(p: &mut Peer, ch: &str, id: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let c = p.ask(json!({"cmd":"channels"}), id);
        if c.to_string().contains(ch) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "channel {ch} never arrived: {c}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn listen_of(p: &Peer) -> String {
    format!("127.0.0.1:{}", p.endpoint().rsplit(':').next().unwrap())
}

#[test]
fn client_and_node_live_both_ways_and_catch_up_after_either_was_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (nd, cd) = (tmp.path().join("n"), tmp.path().join("c"));
    let mut node = Peer::start("node", &nd, &["--name", "node-demo@lama.local"]);
    let mut client = Peer::start("client", &cd, &["--name", "demo@lama.local"]);
    pair(&mut node, &mut client, 1);
    let ch = direct(&node, &client);
    // Live, both ways.
    let s = send(&mut client, &ch, "hello node", 10);
    let m = got(&mut node, "hello node");
    assert_eq!(m["channel"], ch.as_str());
    assert_eq!(m["author"], client.ready["person_id"]);
    assert_eq!(m["author_name"], "demo@lama.local");
    assert_eq!(m["entry"], s["entry"]);
    // The node's disk has it: the client is told its entry was delivered.
    let entry = s["entry"].as_str().unwrap().to_string();
    client.wait_for("delivered", |v| {
        v["event"] == "delivered" && v["entries"].to_string().contains(&entry)
    });
    send(&mut node, &ch, "hello client", 11);
    got(&mut client, "hello client");
    let unread = client.ask(json!({"cmd":"channels"}), 12);
    assert_eq!(unread["channels"][0]["unread"], 1, "{unread}");

    // The node is offline while the client writes.
    let listen = listen_of(&node);
    assert!(node.quit().success());
    for i in 0..3 {
        send(&mut client, &ch, &format!("while node away {i}"), 20 + i);
    }
    let mut node = Peer::start("node", &nd, &["--listen", &listen]);
    for i in 0..3 {
        got(&mut node, &format!("while node away {i}"));
    }
    node.wait_for("synced", |v| v["event"] == "synced");

    // The client is offline while the node writes.
    assert!(client.quit().success());
    for i in 0..3 {
        send(&mut node, &ch, &format!("while client away {i}"), 30 + i);
    }
    let mut client = Peer::start("client", &cd, &[]);
    for i in 0..3 {
        got(&mut client, &format!("while client away {i}"));
    }
    // Both views are identical, in the same order.
    let hn = history(&mut node, &ch, 100, 40);
    let hc = history(&mut client, &ch, 100, 41);
    assert_eq!(hn, hc);
    assert_eq!(hn.len(), 8);
    assert_eq!(hn[0], "hello node");
    assert_eq!(history(&mut client, &ch, 2, 42).len(), 2);
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn two_clients_talk_through_a_node_also_when_one_was_offline_and_a_third_sees_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &[]);
    let mut a = Peer::start(
        "client",
        &tmp.path().join("a"),
        &["--name", "alice@lama.local"],
    );
    let bd = tmp.path().join("b");
    let mut b = Peer::start("client", &bd, &["--name", "bob@lama.local"]);
    let ed = tmp.path().join("e");
    let mut eve = Peer::start("client", &ed, &["--name", "eve@lama.local"]);
    pair(&mut node, &mut a, 1);
    pair(&mut node, &mut b, 3);
    pair(&mut node, &mut eve, 5);
    let r = node.ask(
        json!({"cmd":"create_channel","name":"team","members":[a.person_id(), b.person_id()]}),
        7,
    );
    assert_eq!(r["event"], "channel_created", "{r}");
    let g = r["channel"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    // The new group reaches its members before any message: they are told at once.
    let u = a.wait_for("channel_updated", |e| {
        e["event"] == "channel_updated" && e["channel"] == g.as_str()
    });
    assert_eq!(u["kind"], "create", "{u}");
    // Alice writes; Bob, who never connected to Alice, verifies and shows it.
    wait_channel(&mut a, &g, 100);
    send(&mut a, &g, "hi bob", 8);
    let m = got(&mut b, "hi bob");
    assert_eq!(m["author"], a.ready["person_id"]);
    assert_eq!(m["author_name"], "alice@lama.local");
    // Bob offline; Alice writes; Bob comes back and catches up from the node.
    assert!(b.quit().success());
    send(&mut a, &g, "while you were out", 9);
    got(&mut node, "while you were out");
    let mut b = Peer::start("client", &bd, &[]);
    got(&mut b, "while you were out");
    let ch = b.ask(json!({"cmd":"channels"}), 10);
    let team = ch["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == g.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{ch}"));
    assert_eq!(team["name"], "team");
    assert_eq!(team["members"].as_array().unwrap().len(), 3);
    // Eve is connected to the same node all along but is not a member.
    let st = eve.ask(json!({"cmd":"stats"}), 11);
    assert_eq!(st["invalid"], 0);
    let ech = eve.ask(json!({"cmd":"channels"}), 12);
    assert!(
        !ech.to_string().contains(&g),
        "eve lists the channel: {ech}"
    );
    assert!(eve.quit().success());
    // Her store, not only her UI, holds nothing of it.
    let store = Store::open(&ed).unwrap();
    assert!(store.all_entries(&g).is_empty());
    assert!(store.get_channel(&g).unwrap().is_none());
    drop(store);
    assert!(a.quit().success());
    assert!(b.quit().success());
    assert!(node.quit().success());
}

#[test]
fn two_federated_nodes_carry_a_group_channel_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n1 = Peer::start("node", &tmp.path().join("n1"), &["--name", "n1@lama.local"]);
    let mut n2 = Peer::start("node", &tmp.path().join("n2"), &["--name", "n2@lama.local"]);
    let mut c1 = Peer::start(
        "client",
        &tmp.path().join("c1"),
        &["--name", "c1@lama.local"],
    );
    let mut c2 = Peer::start(
        "client",
        &tmp.path().join("c2"),
        &["--name", "c2@lama.local"],
    );
    pair(&mut n1, &mut n2, 1); // n2 accepts n1's invite: the nodes are contacts
    pair(&mut n1, &mut c1, 3);
    pair(&mut n2, &mut c2, 5);
    let members = json!([n2.person_id(), c1.person_id(), c2.person_id()]);
    let r = n1.ask(
        json!({"cmd":"create_channel","name":"fed","members":members}),
        7,
    );
    let g = r["channel"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    wait_channel(&mut c1, &g, 100);
    wait_channel(&mut c2, &g, 101);
    send(&mut c1, &g, "from c1 via two nodes", 8);
    let m = got(&mut c2, "from c1 via two nodes");
    assert_eq!(m["author"], c1.ready["person_id"]);
    send(&mut c2, &g, "and back", 9);
    got(&mut c1, "and back");
    for p in [c1, c2, n1, n2] {
        assert!(p.quit().success());
    }
}

fn texts_in_store(dir: &Path, ch: &str) -> usize {
    Store::open(dir).unwrap().all_entries(ch).len()
}

#[test]
fn ten_thousand_messages_written_offline_arrive_complete_and_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (nd, cd) = (tmp.path().join("n"), tmp.path().join("c"));
    let mut node = Peer::start("node", &nd, &[]);
    let mut client = Peer::start("client", &cd, &[]);
    pair(&mut node, &mut client, 1);
    let ch = direct(&node, &client);
    let listen = listen_of(&node);
    assert!(node.quit().success());
    const N: usize = 10_000;
    for i in 0..N {
        client.send(json!({"cmd":"send","channel":ch,"text":format!("bulk {i:05}")}));
    }
    // Wait until every send is durable.
    let mut sent = 0;
    while sent < N {
        client.wait_for("sent", |v| v["event"] == "sent");
        sent += 1;
    }
    // The client has been backing off while the node was away (up to 30 s between dials,
    // longer than a test waits), so it is restarted after the node: a start dials at once.
    assert!(client.quit().success());
    let mut node = Peer::start("node", &nd, &["--listen", &listen]);
    let client = Peer::start("client", &cd, &[]);
    node.wait_for("connected", |v| v["event"] == "connected");
    // Catching up 10,000 entries takes seconds on a loaded CI machine: wait while it moves.
    node.wait_for_while(
        "synced",
        |v| v["event"] == "synced",
        |v| v["event"] == "message",
    );
    let h = history(&mut node, &ch, N as u64 + 10, 5);
    assert_eq!(h.len(), N);
    for (i, t) in h.iter().enumerate() {
        assert_eq!(t, &format!("bulk {i:05}"), "out of order at {i}");
    }
    let st = node.ask(json!({"cmd":"stats"}), 6);
    assert_eq!(st["received"], N as u64, "{st}");
    assert_eq!(st["duplicates"], 0, "{st}");
    // Reconnect with nothing new: the exchange is small and does not depend on history.
    assert!(client.quit().success());
    let before = node.ask(json!({"cmd":"stats"}), 7);
    let mut client = Peer::start("client", &cd, &[]);
    client.wait_for("synced", |v| v["event"] == "synced");
    let after = client.ask(json!({"cmd":"stats"}), 8);
    let total = after["bytes_in"].as_u64().unwrap() + after["bytes_out"].as_u64().unwrap();
    eprintln!("reconnect with {N} entries held: {total} bytes on the wire (client side)");
    // Issue 15's target, bytes not time: the short greeting (hello_known) makes it.
    assert!(total < 1024, "reconnect cost {total} bytes");
    assert_eq!(after["received"], 0);
    let _ = before;
    assert!(client.quit().success());
    assert!(node.quit().success());
    assert_eq!(texts_in_store(&nd, &ch), N);
}
