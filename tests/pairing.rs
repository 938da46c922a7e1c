//! Pairing, cards, provisioning, reconnection and discovery with real processes.

mod common;

use std::time::Duration;

use common::Peer;
use serde_json::{json, Value};

fn invite(node: &mut Peer, id: u64, ttl: u64) -> String {
    let r = node.ask(json!({"cmd":"invite","ttl_secs":ttl}), id);
    assert_eq!(r["event"], "invite", "{r}");
    r["code"].as_str().unwrap().to_string()
}

fn accept(client: &mut Peer, code: &str, id: u64) -> Value {
    client.ask(json!({"cmd":"accept","code":code}), id)
}

fn contact_state(p: &mut Peer, pid: &str, id: u64) -> Value {
    let r = p.ask(json!({"cmd":"contacts"}), id);
    r["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["person_id"] == pid)
        .cloned()
        .unwrap_or(Value::Null)
}

fn port_of(url: &str) -> String {
    url.rsplit(':').next().unwrap().to_string()
}

#[test]
fn pair_by_code_then_connected_and_reconnect_after_either_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let (nd, cd) = (tmp.path().join("node"), tmp.path().join("client"));
    let mut node = Peer::start("node", &nd, &["--name", "node-demo@lama.local"]);
    let mut client = Peer::start("client", &cd, &["--name", "demo@lama.local"]);
    let code = invite(&mut node, 1, 600);
    assert!(code.starts_with("LAMA1"));
    let r = accept(&mut client, &code, 2);
    assert_eq!(r["event"], "contact_added", "{r}");
    assert_eq!(r["person_id"], node.ready["person_id"]);
    assert_eq!(r["name"], "node-demo@lama.local");
    assert_eq!(r["via"], "invite");
    let n = node.event("contact_added");
    assert_eq!(n["person_id"], client.ready["person_id"]);
    assert_eq!(
        n["verification"], r["verification"],
        "both sides show the same string"
    );
    client.event("connected");
    node.event("connected");
    let (npid, cpid) = (node.person_id(), client.person_id());
    let c = contact_state(&mut client, &npid, 3);
    assert_eq!(c["state"], "connected");
    assert_eq!(c["endpoints"][0], node.endpoint());
    assert_eq!(contact_state(&mut node, &cpid, 4)["state"], "connected");
    // The 1:1 channel exists on both sides with the agreed id.
    let mut ids = [npid.clone(), cpid.clone()];
    ids.sort();
    let chan = format!("{}<->{}", ids[0], ids[1]);
    for p in [&mut node, &mut client] {
        let ch = p.ask(json!({"cmd":"channels"}), 5);
        assert_eq!(ch["channels"][0]["id"], chan, "{ch}");
    }
    // The invitation is used up.
    let inv = node.ask(json!({"cmd":"invites"}), 6);
    assert_eq!(inv["invites"][0]["status"], "used", "{inv}");

    // Restart the client: it dials its contact by itself.
    assert!(client.quit().success());
    node.event("disconnected");
    let mut client = Peer::start("client", &cd, &[]);
    client.event("connected");
    node.event("connected");

    // Restart the node on the same port: the client reconnects with backoff.
    let port = port_of(&node.endpoint());
    assert!(node.quit().success());
    client.event("disconnected");
    let mut node = Peer::start("node", &nd, &["--listen", &format!("127.0.0.1:{port}")]);
    client.event("connected");
    node.event("connected");
    assert_eq!(contact_state(&mut client, &npid, 7)["state"], "connected");
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn every_pairing_error_kind_from_a_real_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let nd = tmp.path().join("node");
    let mut node = Peer::start("node", &nd, &[]);
    let mut a = Peer::start("client", &tmp.path().join("a"), &[]);
    let mut b = Peer::start("client", &tmp.path().join("b"), &[]);

    // invalid_code: one mistyped character, caught before any traffic.
    let code = invite(&mut node, 1, 600);
    let mut typo = code.clone().into_bytes();
    let i = typo.len() / 2;
    typo[i] = if typo[i] == b'A' { b'B' } else { b'A' };
    let r = accept(&mut a, &String::from_utf8(typo).unwrap(), 2);
    assert_eq!(r["kind"], "invalid_code", "{r}");
    assert!(r["message"].as_str().unwrap().contains("typo"), "{r}");
    let r = accept(&mut a, &code[..code.len() - 7], 3);
    assert_eq!(r["kind"], "invalid_code", "{r}");

    // invite_used: a pairs, then b tries the same code.
    assert_eq!(accept(&mut a, &code, 4)["event"], "contact_added");
    let r = accept(&mut b, &code, 5);
    assert_eq!(r["kind"], "invite_used", "{r}");

    // invite_revoked.
    let code2 = invite(&mut node, 6, 600);
    let rv = node.ask(json!({"cmd":"revoke_invite","code":code2}), 7);
    assert_eq!(rv["event"], "invite_revoked", "{rv}");
    assert_eq!(rv["status"], "revoked");
    let r = accept(&mut b, &code2, 8);
    assert_eq!(r["kind"], "invite_revoked", "{r}");

    // invite_expired.
    let code3 = invite(&mut node, 9, 1);
    std::thread::sleep(Duration::from_millis(2100));
    let r = accept(&mut b, &code3, 10);
    assert_eq!(r["kind"], "invite_expired", "{r}");

    // A failed attempt left nothing behind: b has no contact, the node has only a.
    let c = b.ask(json!({"cmd":"contacts"}), 11);
    assert_eq!(c["contacts"], json!([]));
    let c = node.ask(json!({"cmd":"contacts"}), 12);
    assert_eq!(c["contacts"].as_array().unwrap().len(), 1, "{c}");

    // key_mismatch: another node answers at the invited address.
    let code4 = invite(&mut node, 13, 600);
    let listen = format!("127.0.0.1:{}", port_of(&node.endpoint()));
    assert!(node.quit().success());
    let mut impostor = Peer::start("node", &tmp.path().join("impostor"), &["--listen", &listen]);
    let r = accept(&mut b, &code4, 14);
    assert_eq!(r["kind"], "key_mismatch", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("man-in-the-middle"),
        "{r}"
    );
    let c = impostor.ask(json!({"cmd":"contacts"}), 15);
    assert_eq!(c["contacts"], json!([]));
    assert!(impostor.quit().success());

    // unreachable: nothing listens there any more.
    let r = accept(&mut b, &code4, 16);
    assert_eq!(r["kind"], "unreachable", "{r}");

    // no_home_node: a client invites through its home node, and b has none.
    let r = b.ask(json!({"cmd":"invite"}), 17);
    assert_eq!(r["kind"], "no_home_node", "{r}");
    assert!(a.quit().success());
    assert!(b.quit().success());
}

#[test]
fn an_invite_survives_a_node_restart_and_works_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let nd = tmp.path().join("node");
    let mut node = Peer::start("node", &nd, &[]);
    let code = invite(&mut node, 1, 600);
    let listen = format!("127.0.0.1:{}", port_of(&node.endpoint()));
    assert!(node.quit().success());
    let mut node = Peer::start("node", &nd, &["--listen", &listen]);
    let inv = node.ask(json!({"cmd":"invites"}), 2);
    assert_eq!(inv["invites"][0]["code"], code.as_str());
    assert_eq!(inv["invites"][0]["status"], "open");
    let mut client = Peer::start("client", &tmp.path().join("c"), &[]);
    let r = accept(&mut client, &code, 3);
    assert_eq!(r["event"], "contact_added", "{r}");
    // Accepting again by the same person is answered the same way (idempotent).
    let again = accept(&mut client, &code, 4);
    assert_eq!(again["event"], "contact_added", "{again}");
    assert_eq!(again["verification"], r["verification"]);
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn card_exchange_connects_only_once_both_sides_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &[]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &[]);
    let ncard = node.ask(json!({"cmd":"card"}), 1)["card"]
        .as_str()
        .unwrap()
        .to_string();
    let ccard = client.ask(json!({"cmd":"card"}), 2)["card"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ncard.starts_with("LAMA1"));
    // An invitation is not a card, and vice versa.
    let r = client.ask(json!({"cmd":"accept","code":ncard}), 3);
    assert_eq!(r["kind"], "bad_argument", "{r}");
    // One-sided: the client knows the node, the node refuses the client.
    let r = client.ask(json!({"cmd":"add_contact","card":ncard}), 4);
    assert_eq!(r["event"], "contact_added", "{r}");
    assert_eq!(r["via"], "card");
    let npid = node.person_id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = contact_state(&mut client, &npid, 5);
        if c["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a contact"))
        {
            // Said as what it is: a card they have not imported, not a network fault.
            assert!(
                c["waiting_for_them"]
                    .as_str()
                    .is_some_and(|w| !w.is_empty()),
                "{c}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no refusal seen: {c}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The node imports the client's card: the client's next dial gets in.
    let r = node.ask(json!({"cmd":"add_contact","card":ccard}), 6);
    assert_eq!(r["event"], "contact_added", "{r}");
    client.event("connected");
    node.event("connected");
    let c = contact_state(&mut client, &npid, 7);
    assert_eq!(c["waiting_for_them"], Value::Null, "{c}");
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn provision_node_ends_paired_and_connected_with_no_input() {
    let tmp = tempfile::tempdir().unwrap();
    let cd = tmp.path().join("client");
    let mut client = Peer::start("client", &cd, &["--provision-node"]);
    let added = client.event("contact_added");
    assert_eq!(added["via"], "provision");
    let p = client.event("provisioned");
    assert_eq!(p["reused"], false);
    client.event("connected");
    let c = contact_state(&mut client, p["person_id"].as_str().unwrap(), 1);
    assert_eq!(c["state"], "connected");
    assert_eq!(c["replica"], true);
    assert!(cd.join("node").join("identity.key").exists());
    assert!(client.quit().success());
    // The child stopped with us: its store is free again, and a second start re-pairs
    // nothing but reconnects to the same node.
    let mut client = Peer::start("client", &cd, &["--provision-node"]);
    let p2 = client.event("provisioned");
    assert_eq!(p2["person_id"], p["person_id"]);
    client.event("connected");
    let c = client.ask(json!({"cmd":"contacts"}), 2);
    assert_eq!(c["contacts"].as_array().unwrap().len(), 1, "{c}");
    assert!(client.quit().success());
}

#[test]
fn node_on_a_new_port_is_found_by_discovery_and_forgeries_are_ignored() {
    // Own discovery port range, so other tests' announcements never reach these peers.
    let env = [("LAMA_DISCOVERY_PORT", "48870")];
    let tmp = tempfile::tempdir().unwrap();
    let (nd, cd) = (tmp.path().join("node"), tmp.path().join("client"));
    let mut node = Peer::start_env("node", &nd, &[], &env);
    let mut client = Peer::start_env("client", &cd, &[], &env);
    let code = invite(&mut node, 1, 600);
    assert_eq!(accept(&mut client, &code, 2)["event"], "contact_added");
    client.event("connected");
    let npid = node.person_id();
    let ninst = node.ready["instance_id"].as_str().unwrap().to_string();

    // A forged announcement: the node's ids, a bogus URL, signed by another key.
    let fake = lama_tui::domain::identity::LocalIdentity::from_secrets(
        "node@lama.local",
        "node@lama.local/node",
        lama_tui::domain::identity::Secrets::generate(),
    );
    let mut forged = lama_tui::net::discovery::Announcement::signed(
        &fake,
        "ws://127.0.0.1:9",
        lama_tui::app::runtime::now_ms(),
    );
    forged.person_id = npid.clone();
    forged.instance_id = ninst.clone();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in 48870..48886u16 {
        let _ = sock.send_to(&forged.encode(), ("127.0.0.1", p));
    }
    std::thread::sleep(Duration::from_millis(500));
    let c = contact_state(&mut client, &npid, 3);
    assert_eq!(
        c["endpoints"],
        json!([node.endpoint()]),
        "forgery accepted: {c}"
    );

    // The node moves to a new port; the client finds it by its signed announcements.
    let old = node.endpoint();
    assert!(node.quit().success());
    client.event("disconnected");
    let node = Peer::start_env("node", &nd, &[], &env);
    assert_ne!(node.endpoint(), old);
    let ch = client.event("endpoints_changed");
    assert_eq!(ch["urls"][0], node.endpoint());
    client.event("connected");
    let c = contact_state(&mut client, &npid, 4);
    assert_eq!(c["state"], "connected");
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn profile_changes_reach_a_connected_contact() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &[]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &[]);
    let code = invite(&mut node, 1, 600);
    assert_eq!(accept(&mut client, &code, 2)["event"], "contact_added");
    client.event("connected");
    let r = node.ask(json!({"cmd":"set_display_name","name":"Lama Node"}), 3);
    assert_eq!(r["event"], "profile_updated", "{r}");
    let npid = node.person_id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = contact_state(&mut client, &npid, 4);
        if c["display_name"] == "Lama Node" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "profile not updated: {c}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn accept_reads_the_code_from_a_screenshot_of_the_qr() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &[]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &[]);
    let code = invite(&mut node, 1, 600);
    // A "screenshot": the QR drawn 6 pixels per module with a quiet zone, as PNG.
    let (w, m) = lama_tui::ui::qr::qr_modules(&code).unwrap();
    let (scale, quiet) = (6u32, 4u32);
    let size = (w as u32 + 2 * quiet) * scale;
    let img = image::GrayImage::from_fn(size, size, |x, y| {
        let (mx, my) = (
            (x / scale) as i64 - quiet as i64,
            (y / scale) as i64 - quiet as i64,
        );
        let dark = mx >= 0
            && my >= 0
            && (mx as usize) < w
            && (my as usize) < w
            && m[my as usize * w + mx as usize];
        image::Luma([if dark { 0 } else { 255 }])
    });
    let png = tmp.path().join("qr.png");
    img.save(&png).unwrap();
    let r = client.ask(
        json!({"cmd":"accept","qr_image":png.display().to_string()}),
        2,
    );
    assert_eq!(r["event"], "contact_added", "{r}");
    assert_eq!(r["person_id"], node.ready["person_id"]);
    // Not an image, and an image without a code: each named.
    let txt = tmp.path().join("note.txt");
    std::fs::write(&txt, "hello").unwrap();
    let r = client.ask(
        json!({"cmd":"accept","qr_image":txt.display().to_string()}),
        3,
    );
    assert_eq!(r["kind"], "qr_unreadable", "{r}");
    let blank = tmp.path().join("blank.png");
    image::GrayImage::from_pixel(64, 64, image::Luma([255]))
        .save(&blank)
        .unwrap();
    let r = client.ask(
        json!({"cmd":"accept","qr_image":blank.display().to_string()}),
        4,
    );
    assert_eq!(r["kind"], "qr_not_found", "{r}");
    // Removing the contact closes the link; the node is told why.
    let npid = node.person_id();
    let r = client.ask(json!({"cmd":"remove_contact","person_id":npid}), 5);
    assert_eq!(r["event"], "contact_removed", "{r}");
    let c = client.ask(json!({"cmd":"contacts"}), 6);
    assert_eq!(c["contacts"], json!([]));
    node.wait_for("disconnected", |v| v["event"] == "disconnected");
    assert!(client.quit().success());
    assert!(node.quit().success());
}

fn pids_of(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_crash_of_either_side_of_provisioning_is_reported_not_hung_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cd = tmp.path().join("client");
    let node_dir = cd.join("node").display().to_string();
    // The node crashes: the client says so.
    let mut client = Peer::start("client", &cd, &["--provision-node"]);
    client.event("provisioned");
    let pids = pids_of(&node_dir);
    assert_eq!(pids.len(), 1, "one provisioned node: {pids:?}");
    std::process::Command::new("kill")
        .args(["-9", &pids[0]])
        .status()
        .unwrap();
    let e = client.wait_for("node_exited", |v| v["kind"] == "node_exited");
    assert!(e["message"].as_str().unwrap().contains("exited"), "{e}");
    assert!(client.quit().success());
    // The client crashes: the node sees its stdin close and stops by itself.
    let mut client = Peer::start("client", &cd, &["--provision-node"]);
    client.event("provisioned");
    assert_eq!(pids_of(&node_dir).len(), 1);
    client.child.kill().unwrap(); // SIGKILL: no cleanup on the client side
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pids_of(&node_dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned node kept running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_detached_node_keeps_serving_with_stdin_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let nd = tmp.path().join("n");
    let mut node = Peer::start("node", &nd, &["--detach"]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &[]);
    let code = invite(&mut node, 1, 600);
    node.close_stdin();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "detached node quit on EOF"
    );
    assert_eq!(accept(&mut client, &code, 2)["event"], "contact_added");
    client.event("connected");
    std::process::Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(node.wait_exit().success());
    assert!(client.quit().success());
}
