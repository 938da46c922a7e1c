//! The network view with real processes: `endpoints` names where each address came from
//! and what the dialer does with it, through a refusing address, a node that moves to a
//! new port (found by local discovery, the old address stale), and a provisioned home node.

mod common;

use std::time::{Duration, Instant};

use common::Peer;
use serde_json::{json, Value};

fn endpoints(p: &mut Peer, id: u64) -> Value {
    let r = p.ask(json!({"cmd":"endpoints"}), id);
    assert_eq!(r["event"], "endpoints", "{r}");
    r
}

/// Ask `endpoints` until `pred` holds for the contact `pid` (10 s).
fn wait_contact(p: &mut Peer, pid: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 1000;
    loop {
        id += 1;
        let r = endpoints(p, id);
        let c = r["contacts"]
            .as_array()
            .expect("contacts is a list")
            .iter()
            .find(|c| c["person_id"] == pid)
            .cloned()
            .unwrap_or(Value::Null);
        if pred(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "never {what}: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_secs() -> u64 {
    lama_tui::app::runtime::now_ms() / 1000
}

#[test]
fn a_refusing_address_shows_why_and_when_next_and_a_moved_node_is_found_by_discovery() {
    // Own discovery port range, so other tests' announcements never reach these peers.
    let env = [("LAMA_DISCOVERY_PORT", "48900")];
    let tmp = tempfile::tempdir().unwrap();
    let (nd, cd) = (tmp.path().join("node"), tmp.path().join("client"));
    let mut node = Peer::start_env("node", &nd, &[], &env);
    let mut client = Peer::start_env("client", &cd, &[], &env);
    let r = node.ask(json!({"cmd":"invite"}), 1);
    let code = r["code"].as_str().expect("an invite code").to_string();
    let r = client.ask(json!({"cmd":"accept","code":code}), 2);
    assert_eq!(r["event"], "contact_added", "{r}");
    client.event("connected");
    let npid = node.person_id();
    let old = node.endpoint();

    // Where each side can be reached.
    let n = endpoints(&mut node, 3);
    assert_eq!(n["self"]["role"], "node", "{n}");
    assert_eq!(
        n["self"]["urls"],
        json!([{"url": old, "reach": "this_machine"}])
    );
    let listening = n["self"]["listening"].as_str().expect("a node listens");
    assert!(old.ends_with(listening.rsplit(':').next().unwrap()), "{n}");
    assert_eq!(n["self"]["discovery"], "local");
    let c = endpoints(&mut client, 4);
    assert_eq!(c["self"]["role"], "client");
    assert_eq!(c["self"]["urls"], json!([]));
    assert_eq!(c["self"]["listening"], Value::Null);
    assert_eq!(
        c["self"]["home_node"],
        Value::Null,
        "accepted, not provisioned"
    );

    // Linked over the invitation's address, with the round trip of that dial.
    let e = wait_contact(&mut client, &npid, "connected", |c| {
        c["endpoints"][0]["state"] == "connected"
    });
    let ep = &e["endpoints"][0];
    assert_eq!(ep["url"], old);
    assert_eq!(ep["source"], "invitation");
    assert!(ep["learned_at"].as_u64().unwrap() <= now_secs());
    assert!(ep["last_ok"].as_u64().is_some(), "{e}");
    assert!(ep["rtt_ms"].as_u64().is_some(), "{e}");
    assert_eq!(ep["last_error"], Value::Null);
    assert_eq!(ep["next_retry_at"], Value::Null);

    // The node stops: its address refuses, in words, and the next dial is named.
    assert!(node.quit().success());
    client.event("disconnected");
    let e = wait_contact(&mut client, &npid, "refused with a retry time", |c| {
        c["endpoints"][0]["state"] == "waiting" && !c["endpoints"][0]["last_error"].is_null()
    });
    let ep = &e["endpoints"][0];
    let why = ep["last_error"].as_str().unwrap();
    assert!(why.contains("refused"), "{why}");
    let next = ep["next_retry_at"]
        .as_u64()
        .expect("a waiting address has a retry time");
    assert!(next + 1 >= now_secs() && next <= now_secs() + 31, "{e}");
    assert_eq!(e["state"], "offline");

    // It comes back on another port: the announcement names the new address, the old one
    // is kept as stale, and the client links over the new one.
    let node = Peer::start_env("node", &nd, &[], &env);
    let new = node.endpoint();
    assert_ne!(new, old);
    let e = wait_contact(&mut client, &npid, "moved and connected", |c| {
        c["endpoints"][0]["url"] == new.as_str() && c["endpoints"][0]["state"] == "connected"
    });
    let (now_ep, stale) = (&e["endpoints"][0], &e["endpoints"][1]);
    assert_eq!(now_ep["source"], "discovery", "{e}");
    assert_eq!(now_ep["last_error"], Value::Null);
    assert!(now_ep["rtt_ms"].as_u64().is_some());
    assert_eq!(stale["url"], old);
    assert_eq!(stale["state"], "stale", "{e}");
    assert_eq!(stale["source"], "invitation");
    assert!(stale["stale_since"].as_u64().is_some());
    assert_eq!(stale["next_retry_at"], Value::Null);
    assert_eq!(e["endpoints"].as_array().unwrap().len(), 2);
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn a_provisioned_client_names_its_home_node() {
    let tmp = tempfile::tempdir().unwrap();
    let cd = tmp.path().join("client");
    let mut client = Peer::start("client", &cd, &["--provision-node"]);
    let p = client.event("provisioned");
    client.event("connected");
    let r = endpoints(&mut client, 1);
    assert_eq!(r["self"]["home_node"]["person_id"], p["person_id"], "{r}");
    let c = &r["contacts"][0];
    assert_eq!(c["endpoints"][0]["url"], p["endpoint"], "{r}");
    assert_eq!(c["endpoints"][0]["source"], "provisioning", "{r}");
    assert!(client.quit().success());
}
