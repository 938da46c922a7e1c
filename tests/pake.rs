//! Short-code and trust-secret pairing between real processes over real sockets.

mod common;

use common::Peer;
use serde_json::{json, Value};

fn short_code(node: &mut Peer, id: u64, ttl: u64) -> Value {
    let r = node.ask(json!({"cmd":"short_code","ttl_secs":ttl}), id);
    assert_eq!(r["event"], "short_code", "{r}");
    r
}

fn accept_short(client: &mut Peer, code: &str, url: &str, id: u64) -> Value {
    client.ask(json!({"cmd":"accept_short","code":code,"url":url}), id)
}

/// The same code with its last word replaced by another list word.
fn wrong_words(code: &str) -> String {
    let mut parts: Vec<&str> = code.split('-').collect();
    let last = parts.pop().unwrap();
    let other = if last == "zebra" { "acorn" } else { "zebra" };
    parts.push(other);
    parts.join("-")
}

fn direct(a: &Peer, b: &Peer) -> String {
    lama_tui::net::pairing::direct_channel_id(&a.person_id(), &b.person_id())
}

fn chat_both_ways(node: &mut Peer, client: &mut Peer, id: u64) {
    let ch = direct(node, client);
    let r = client.ask(
        json!({"cmd":"send","channel":ch,"text":"hello over a short code"}),
        id,
    );
    assert_eq!(r["event"], "sent", "{r}");
    node.wait_for("the client's message", |v| {
        v["event"] == "message" && v["text"] == "hello over a short code"
    });
    let r = node.ask(
        json!({"cmd":"send","channel":ch,"text":"hello back"}),
        id + 1,
    );
    assert_eq!(r["event"], "sent", "{r}");
    client.wait_for("the node's message", |v| {
        v["event"] == "message" && v["text"] == "hello back"
    });
}

#[test]
fn short_code_pairs_then_chats_and_the_code_is_spent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &["--name", "n@lama.local"]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &["--name", "c@lama.local"]);
    let sc = short_code(&mut node, 1, 120);
    let code = sc["code"].as_str().unwrap().to_string();
    let parts: Vec<&str> = code.split('-').collect();
    assert_eq!(parts.len(), 4, "a number and three words: {code}");
    assert!(parts[0].parse::<u16>().is_ok(), "{code}");
    assert!(sc["expires_at"].as_u64().unwrap() > 0);

    // Strangers that ask for the code's number and then say nothing cost it no guess.
    let slot: u16 = parts[0].parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in 0..5u8 {
        let stranger = common::ident(100 + i, "idle@lama.local");
        let extras = lama_tui::net::handshake::HelloExtras {
            pake: Some(lama_tui::net::pake::PakeRequest::Code { slot }),
            ..Default::default()
        };
        let link = rt
            .block_on(lama_tui::net::conn::dial(
                &node.endpoint(),
                &stranger,
                None,
                extras,
            ))
            .expect("admitted to try the code");
        drop(link);
    }
    // Typed the way people type: capitals, spaces instead of dashes.
    let typed = code.replace('-', " ").to_uppercase();
    let r = accept_short(&mut client, &typed, &node.endpoint(), 2);
    assert_eq!(r["event"], "contact_added", "{r}");
    assert_eq!(r["via"], "short_code");
    assert_eq!(r["person_id"], node.ready["person_id"]);
    let n = node.event("contact_added");
    assert_eq!(n["via"], "short_code");
    assert_eq!(n["person_id"], client.ready["person_id"]);
    assert_eq!(n["verification"], r["verification"]);
    client.event("connected");
    node.event("connected");
    chat_both_ways(&mut node, &mut client, 3);

    // The code paired once; a stranger with the same code is refused, not paired.
    let mut other = Peer::start("client", &tmp.path().join("o"), &["--name", "o@lama.local"]);
    let r = accept_short(&mut other, &code, &node.endpoint(), 5);
    assert_eq!(r["event"], "error", "{r}");
    assert_eq!(r["kind"], "invite_used", "{r}");
    let c = other.ask(json!({"cmd":"contacts"}), 6);
    assert_eq!(c["contacts"], json!([]), "no half-made contact: {c}");
}

#[test]
fn three_wrong_attempts_destroy_a_code_and_both_sides_hear_of_each() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &[]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &[]);
    let code = short_code(&mut node, 1, 120)["code"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = wrong_words(&code);
    for attempt in 1..=3u64 {
        let r = accept_short(&mut client, &bad, &node.endpoint(), 10 + attempt);
        assert_eq!(r["event"], "error", "{r}");
        assert_eq!(r["kind"], "code_mismatch", "attempt {attempt}: {r}");
        assert!(
            r["message"].as_str().unwrap().contains("did not match"),
            "{r}"
        );
        let n = node.wait_for("the node's own report", |v| {
            v["event"] == "error" && v["kind"] == "code_mismatch"
        });
        let msg = n["message"].as_str().unwrap();
        assert!(msg.contains("wrong words"), "{n}");
        // The words are the secret: neither the right nor the wrong ones are echoed.
        for w in code.split('-').skip(1).chain(bad.split('-').skip(1)) {
            assert!(!msg.contains(w), "secret word {w} in {n}");
        }
    }
    // Now even the right code is refused: the code is gone.
    let r = accept_short(&mut client, &code, &node.endpoint(), 20);
    assert_eq!(r["kind"], "code_exhausted", "{r}");
    let c = client.ask(json!({"cmd":"contacts"}), 21);
    assert_eq!(c["contacts"], json!([]), "{c}");
    let c = node.ask(json!({"cmd":"contacts"}), 22);
    assert_eq!(c["contacts"], json!([]), "{c}");
    // The attempt count is on disk: a restart does not hand out fresh guesses.
    let endpoint_port = node.endpoint().rsplit(':').next().unwrap().to_string();
    assert!(node.quit().success());
    let listen = format!("127.0.0.1:{endpoint_port}");
    let mut node = Peer::start("node", &tmp.path().join("n"), &["--listen", &listen]);
    let r = accept_short(&mut client, &code, &node.endpoint(), 23);
    assert_eq!(r["kind"], "code_exhausted", "{r}");
    let list = node.ask(json!({"cmd":"invites"}), 24);
    assert!(list.to_string().contains("exhausted"), "{list}");
}

#[test]
fn expired_unknown_mistyped_and_unreachable_codes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &[]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &[]);
    let code = short_code(&mut node, 1, 1)["code"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = accept_short(&mut client, &code, &node.endpoint(), 2);
    assert_eq!(r["kind"], "code_expired", "{r}");
    // A number the node never handed out.
    let slot: u16 = code.split('-').next().unwrap().parse().unwrap();
    let other = format!("{}-{}", slot % 999 + 1, code.split_once('-').unwrap().1);
    let r = accept_short(&mut client, &other, &node.endpoint(), 3);
    assert_eq!(r["kind"], "code_unknown", "{r}");
    // A typo is caught before any network traffic, with a suggestion.
    let typo = code.replacen(code.split('-').nth(1).unwrap(), "zebrra", 1);
    let r = accept_short(&mut client, &typo, &node.endpoint(), 4);
    assert_eq!(r["kind"], "invalid_code", "{r}");
    assert!(r["message"].as_str().unwrap().contains("zebra"), "{r}");
    // Nobody listening.
    let fresh = short_code(&mut node, 5, 60)["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = accept_short(&mut client, &fresh, "ws://127.0.0.1:1", 6);
    assert_eq!(r["kind"], "unreachable", "{r}");
    // A client makes short codes only through a home node, and this one has none.
    let r = client.ask(json!({"cmd":"short_code"}), 7);
    assert_eq!(r["kind"], "no_home_node", "{r}");
}

#[test]
fn the_same_trust_secret_pairs_and_a_different_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = [("LAMA_TRUST_SECRET", "correct horse battery staple")];
    let mut node = Peer::start_env("node", &tmp.path().join("n"), &[], &secret);
    let url = node.endpoint();
    // A client with another secret pairs with nothing: both sides say why.
    let mut wrong = Peer::start_env(
        "client",
        &tmp.path().join("w"),
        &["--node-url", &url],
        &[("LAMA_TRUST_SECRET", "correct horse battery stapler")],
    );
    let e = wrong.wait_for("the failed start-up pairing", |v| v["event"] == "error");
    assert_eq!(e["kind"], "code_mismatch", "{e}");
    let n = node.wait_for("the node's report", |v| {
        v["event"] == "error" && v["kind"] == "code_mismatch"
    });
    assert!(
        n["message"].as_str().unwrap().contains("trust secret"),
        "{n}"
    );
    assert!(!n.to_string().contains("staple"), "the secret leaked: {n}");
    let c = wrong.ask(json!({"cmd":"contacts"}), 1);
    assert_eq!(c["contacts"], json!([]), "{c}");

    // The same secret: pairs on start with no command, then connects and chats.
    let mut client = Peer::start_env(
        "client",
        &tmp.path().join("c"),
        &["--node-url", &url],
        &secret,
    );
    let a = client.event("contact_added");
    assert_eq!(a["via"], "trust_secret", "{a}");
    assert_eq!(a["person_id"], node.ready["person_id"]);
    let n = node.event("contact_added");
    assert_eq!(n["via"], "trust_secret");
    assert_eq!(n["verification"], a["verification"]);
    client.event("connected");
    chat_both_ways(&mut node, &mut client, 10);

    // A node without a secret says so.
    let mut plain = Peer::start("node", &tmp.path().join("p"), &[]);
    let r = client.ask(json!({"cmd":"pair_secret","url":plain.endpoint()}), 20);
    assert_eq!(r["kind"], "no_trust_secret", "{r}");
    let c = plain.ask(json!({"cmd":"contacts"}), 21);
    assert_eq!(c["contacts"], json!([]), "{c}");
}

#[test]
fn wrong_trust_secrets_lock_the_secret_after_three() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start_env(
        "node",
        &tmp.path().join("n"),
        &[],
        &[("LAMA_TRUST_SECRET", "s1")],
    );
    let mut guesser = Peer::start_env(
        "client",
        &tmp.path().join("g"),
        &["--node-url", "ws://127.0.0.1:1"],
        &[("LAMA_TRUST_SECRET", "s2")],
    );
    // Its start-up attempt goes nowhere (nobody on port 1).
    let e = guesser.wait_for("start-up pairing", |v| v["event"] == "error");
    assert_eq!(e["kind"], "unreachable", "{e}");
    for i in 0..3 {
        let r = guesser.ask(json!({"cmd":"pair_secret","url":node.endpoint()}), 10 + i);
        assert_eq!(r["kind"], "code_mismatch", "{r}");
    }
    let r = guesser.ask(json!({"cmd":"pair_secret","url":node.endpoint()}), 20);
    assert_eq!(r["kind"], "code_exhausted", "{r}");
    let _ = node.ask(json!({"cmd":"identity"}), 21);
}
