//! Checks the test vectors printed in docs/PROTOCOL.md against the code.
//! `LAMA_PRINT_VECTORS=1 cargo test --test vectors -- --nocapture` prints the block.

use std::collections::BTreeMap;

use lama_tui::domain::identity::{hello_signed_bytes, LocalIdentity, Secrets};
use lama_tui::net::handshake::Handshake;
use lama_tui::net::wire::WireMsg;

fn compute() -> Vec<(String, String)> {
    let a = LocalIdentity::from_secrets(
        "demo@lama.local",
        "demo@lama.local/client",
        Secrets {
            person: [0x01; 32],
            instance: [0x02; 32],
            transport: [0x03; 32],
        },
    );
    let b = LocalIdentity::from_secrets(
        "node-demo@lama.local",
        "node-demo@lama.local/node",
        Secrets {
            person: [0x11; 32],
            instance: [0x12; 32],
            transport: [0x13; 32],
        },
    );
    let mut v: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, val: String| v.push((k.to_string(), val));
    put("a.person_secret", lama_tui::domain::hex::encode([0x01; 32]));
    put(
        "a.instance_secret",
        lama_tui::domain::hex::encode([0x02; 32]),
    );
    put(
        "a.transport_secret",
        lama_tui::domain::hex::encode([0x03; 32]),
    );
    put(
        "a.person_canonical",
        String::from_utf8(a.person.canonical()).unwrap(),
    );
    put("a.person_id", a.person_id().to_string());
    put(
        "a.instance_canonical",
        String::from_utf8(a.instance.canonical()).unwrap(),
    );
    put("a.instance_id", a.instance_id().to_string());
    put("b.person_secret", lama_tui::domain::hex::encode([0x11; 32]));
    put(
        "b.instance_secret",
        lama_tui::domain::hex::encode([0x12; 32]),
    );
    put(
        "b.transport_secret",
        lama_tui::domain::hex::encode([0x13; 32]),
    );
    put("b.person_id", b.person_id().to_string());
    put("b.instance_id", b.instance_id().to_string());
    put("b.transport_public", b.instance.transport_key.clone());

    let (ea, eb) = ([0x41u8; 32], [0x42u8; 32]);
    put("a.ephemeral_secret", lama_tui::domain::hex::encode(ea));
    put("b.ephemeral_secret", lama_tui::domain::hex::encode(eb));
    let mut i = Handshake::initiator_with_ephemeral(&a.secrets.transport, None, Some(&ea)).unwrap();
    let mut r = Handshake::responder_with_ephemeral(&b.secrets.transport, Some(&eb)).unwrap();
    let m1 = i.write().unwrap();
    r.read(&m1).unwrap();
    let m2 = r.write().unwrap();
    i.read(&m2).unwrap();
    let m3 = i.write().unwrap();
    r.read(&m3).unwrap();
    let mut si = i.into_session().unwrap();
    let mut sr = r.into_session().unwrap();
    put("handshake.msg1", lama_tui::domain::hex::encode(&m1));
    put("handshake.msg2", lama_tui::domain::hex::encode(&m2));
    put("handshake.msg3", lama_tui::domain::hex::encode(&m3));
    put(
        "handshake.hash",
        lama_tui::domain::hex::encode(si.handshake_hash()),
    );
    let signed = hello_signed_bytes(si.handshake_hash(), &a.instance_id());
    put(
        "a.hello_signed_bytes",
        lama_tui::domain::hex::encode(&signed),
    );
    let hello = si.hello(&a, None);
    let WireMsg::Hello { sig, .. } = &hello else {
        unreachable!()
    };
    put("a.hello_sig", sig.clone());
    let plain = hello.encode().unwrap();
    put(
        "a.hello_plaintext_sha256",
        lama_tui::domain::identity::sha256_hex(&plain),
    );
    let frame = si.seal(&hello).unwrap();
    put(
        "a.hello_frame_sha256",
        lama_tui::domain::identity::sha256_hex(&frame),
    );
    put("a.hello_frame_len", frame.len().to_string());
    // The responder can open and verify it: the vector is a real, valid frame.
    let opened = sr.open(&frame).unwrap();
    assert_eq!(sr.verify_hello(&opened).unwrap().person_id, a.person_id());
    let ping = si.seal(&WireMsg::Ping { n: 1 }).unwrap();
    put("a.second_frame_ping1", lama_tui::domain::hex::encode(&ping));
    // A first entry of a's log in the 1:1 channel with b.
    let ch = lama_tui::net::pairing::direct_channel_id(&a.person_id(), &b.person_id());
    let e = lama_tui::domain::sign_entry(
        &a,
        &ch,
        1,
        None,
        lama_tui::domain::Hlc {
            ms: 1_800_000_000_000,
            c: 0,
        },
        lama_tui::domain::Body::Text {
            text: "hello".into(),
        },
    );
    put("entry.channel", ch.clone());
    put("entry.canonical", String::from_utf8(e.canonical()).unwrap());
    put("entry.id", e.id());
    // Its next text entry as the store keeps it (section 13): channel 0, author 0.
    let next = lama_tui::domain::sign_entry(
        &a,
        &ch,
        2,
        Some(e.id()),
        lama_tui::domain::Hlc {
            ms: 1_800_000_000_001,
            c: 2,
        },
        lama_tui::domain::Body::Text { text: "hi".into() },
    );
    use lama_tui::store::codec;
    let value = codec::encode(&next);
    assert_eq!(codec::decode(&ch, &next.author, 2, &value).unwrap(), next);
    put("store.text_value", lama_tui::domain::hex::encode(&value));
    put(
        "store.first_value_tag",
        format!("{:02x}", codec::encode(&e)[0]),
    );
    put(
        "store.entry_key",
        lama_tui::domain::hex::encode(codec::entry_key(0, 0, 2)),
    );
    put(
        "store.view_key",
        lama_tui::domain::hex::encode(codec::view_key(0, next.hlc, &next.author, 2)),
    );
    // A group made by a with b, then a members entry removing b with b's log head (3).
    let g = "g-000102030405060708090a0b0c0d0e0f";
    let hlc = |ms| lama_tui::domain::Hlc { ms, c: 0 };
    let create = lama_tui::domain::sign_entry(
        &a,
        g,
        1,
        None,
        hlc(1_800_000_000_000),
        lama_tui::domain::Body::Create {
            name: "team".into(),
            members: vec![a.person_id().to_string(), b.person_id().to_string()],
        },
    );
    let removal = lama_tui::domain::sign_entry(
        &a,
        g,
        2,
        Some(create.id()),
        hlc(1_800_000_000_001),
        lama_tui::domain::Body::Members {
            add: vec![],
            remove: vec![b.person_id().to_string()],
            heads: [(b.person_id().to_string(), 3)].into_iter().collect(),
        },
    );
    put("group.create_id", create.id());
    put(
        "group.members_canonical",
        String::from_utf8(removal.canonical()).unwrap(),
    );
    put("group.members_id", removal.id());
    // Its verdicts (section 12.2): b's seq 3 stands whatever its stamp; seq 4 does not,
    // even stamped before the removal.
    let roster = lama_tui::net::sync::Roster::from_entries(vec![create, removal]);
    let b_id = b.person_id().to_string();
    let at = |ms, seq| (hlc(ms), b_id.clone(), seq);
    assert!(roster.admits(&b_id, 3, &at(1_800_000_000_009, 3)));
    assert!(!roster.admits(&b_id, 4, &at(1_800_000_000_000, 4)));
    assert_eq!(roster.current(), [a.person_id().to_string()]);
    // Short-code pairing: a dials b. The SPAKE2 messages are random; everything around
    // them is fixed.
    use lama_tui::domain::ShortCode;
    use lama_tui::net::pake::{self, Side};
    let code = ShortCode::new(7, [0x00, 0x80, 0xff]);
    put("pake.short_code", code.reveal());
    put(
        "pake.short_code_password",
        lama_tui::domain::hex::encode(code.reveal()),
    );
    let (id_a, id_b) = pake::spake_identities(&a.instance_id(), &b.instance_id());
    put("pake.spake2_id_a", id_a);
    put("pake.spake2_id_b", id_b);
    let key = [0x55u8; 32];
    put(
        "pake.example_spake2_key",
        lama_tui::domain::hex::encode(key),
    );
    put(
        "pake.dialer_confirm",
        lama_tui::domain::hex::encode(pake::confirm_mac(&key, Side::Dialer, si.handshake_hash())),
    );
    put(
        "pake.listener_confirm",
        lama_tui::domain::hex::encode(pake::confirm_mac(&key, Side::Listener, si.handshake_hash())),
    );
    put("pake.trust_secret", "correct horse battery staple".into());
    put(
        "pake.trust_secret_password_for_b",
        lama_tui::domain::hex::encode(&*pake::stretch_secret(
            b"correct horse battery staple",
            &b.person_id(),
        )),
    );
    home_vectors(&a, &b, &mut put);
    // A real exchange with that code: the messages have the documented shape, and both
    // sides' confirmations verify.
    let pw = code.reveal();
    let (mut d, dm) = pake::PakeExchange::start(
        Side::Dialer,
        pw.as_bytes(),
        &a.instance_id(),
        &b.instance_id(),
        si.handshake_hash(),
    );
    let (mut l, lm) = pake::PakeExchange::start(
        Side::Listener,
        pw.as_bytes(),
        &a.instance_id(),
        &b.instance_id(),
        si.handshake_hash(),
    );
    assert_eq!((dm.len(), dm[0], lm.len(), lm[0]), (33, b'A', 33, b'B'));
    let (dmac, lmac) = (d.on_peer_msg(&lm).unwrap(), l.on_peer_msg(&dm).unwrap());
    assert!(l.check_confirm(&dmac).is_ok() && d.check_confirm(&lmac).is_ok());
    v
}

/// Section 6.5: client `a` invites with node `b` as its home node, and vouches for `b`'s
/// Person (an example of the signed bytes; an owner vouches for its contacts).
fn home_vectors(a: &LocalIdentity, b: &LocalIdentity, put: &mut impl FnMut(&str, String)) {
    use lama_tui::domain::identity::{
        parse_hex, vouch_end_signed_bytes, vouch_ids_hash, vouch_signed_bytes,
    };
    use lama_tui::domain::{Code, Invite};
    let hex = |b: &[u8]| lama_tui::domain::hex::encode(b);
    let code = Code::Invite(Invite {
        person_id: parse_hex::<32>(&a.person_id(), "a").unwrap(),
        home: Some(parse_hex::<32>(&b.person_id(), "b").unwrap()),
        transport_key: b.instance.transport_key_bytes().unwrap(),
        token: [0x77; 16],
        expires_at: 1_800_000_600,
        urls: vec!["ws://10.99.0.2:8765".into()],
    });
    put("home.invite_code", code.encode());
    let bytes = vouch_signed_bytes(&b.person, None);
    put("home.vouch_signed_bytes", hex(&bytes));
    put("home.vouch_sig", hex(&a.sign_as_person(&bytes).to_bytes()));
    let ids = vouch_ids_hash([b.person_id().as_str()]);
    put("home.vouch_ids", ids.clone());
    let end = a.sign_as_person(&vouch_end_signed_bytes(&ids));
    put("home.vouch_end_sig", hex(&end.to_bytes()));
}

fn from_doc() -> BTreeMap<String, String> {
    let doc = include_str!("../docs/PROTOCOL.md");
    let start = doc
        .find("<!-- vectors:begin -->")
        .expect("vectors begin marker");
    let end = doc
        .find("<!-- vectors:end -->")
        .expect("vectors end marker");
    doc[start..end]
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn protocol_md_vectors_match_the_code() {
    let computed = compute();
    if std::env::var("LAMA_PRINT_VECTORS").is_ok() {
        for (k, v) in &computed {
            println!("{k} = {v}");
        }
    }
    let doc = from_doc();
    for (k, v) in &computed {
        assert_eq!(doc.get(k), Some(v), "vector `{k}` in docs/PROTOCOL.md");
    }
    assert_eq!(
        doc.len(),
        computed.len(),
        "docs/PROTOCOL.md has extra vectors"
    );
}
