//! Entry points that feed untrusted bytes to every decoder a peer or a user can reach. The
//! `cargo fuzz` targets in `fuzz/` and the property tests in `tests/props.rs` call these same
//! functions, so a crash found by one is a regression test in the other. Each must return
//! normally for any input: an error value is fine, a panic is a bug.

use std::cell::RefCell;

use crate::domain::identity::{LocalIdentity, Secrets};
use crate::domain::Channel;
use crate::domain::Code;
use crate::domain::ShortCode;
use crate::net::handshake::{Handshake, Session};
use crate::net::sync::{Engine, MemLog, PeerInfo, SyncMsg};
use crate::net::wire::WireMsg;

fn identity(seed: u8, name: &str) -> LocalIdentity {
    LocalIdentity::from_secrets(
        name,
        &format!("{name}/fuzz"),
        Secrets {
            person: [seed; 32],
            instance: [seed.wrapping_add(1); 32],
            transport: [seed.wrapping_add(2); 32],
        },
    )
}

/// A finished Noise session (the responder's end), with fixed keys.
fn session() -> Session {
    let (a, b) = (identity(1, "a@fuzz"), identity(10, "b@fuzz"));
    let mut i = Handshake::initiator(&a.secrets.transport, None)
        .expect("invariant: a fixed key builds a handshake");
    let mut r = Handshake::responder(&b.secrets.transport)
        .expect("invariant: a fixed key builds a handshake");
    let step = |from: &mut Handshake, to: &mut Handshake| {
        let m = from.write().expect("invariant: an honest handshake writes");
        to.read(&m).expect("invariant: an honest handshake reads");
    };
    step(&mut i, &mut r);
    step(&mut r, &mut i);
    step(&mut i, &mut r);
    r.into_session()
        .expect("invariant: a finished handshake has a session")
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// A frame from the network after the handshake: decrypted, then decoded; and the same
/// bytes as a plaintext message, then checked as a Hello.
pub fn frame(data: &[u8]) {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let session = s.get_or_insert_with(session);
        let _ = session.open(data);
        if let Ok(m) = WireMsg::decode(data) {
            let _ = session.verify_hello(&m);
            let _ = m.encode();
        }
    });
}

/// Handshake messages: as the first message to a responder, as the second to an initiator,
/// and as the third after an honest first exchange.
pub fn handshake(data: &[u8]) {
    let (a, b) = (identity(1, "a@fuzz"), identity(10, "b@fuzz"));
    if let Ok(mut r) = Handshake::responder(&b.secrets.transport) {
        let _ = r.read(data);
    }
    if let (Ok(mut i), Ok(mut r)) = (
        Handshake::initiator(&a.secrets.transport, None),
        Handshake::responder(&b.secrets.transport),
    ) {
        if let Ok(m1) = i.write() {
            let _ = i.read(data);
            if r.read(&m1).is_ok() && r.write().is_ok() {
                let _ = r.read(data);
            }
        }
    }
}

/// What a person pastes or types: invitation and card codes, short codes.
pub fn codes(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(c) = Code::decode(&s) {
        let again = Code::decode(&c.encode()).expect("invariant: an encoded code decodes");
        assert_eq!(again, c, "a code must survive encode/decode");
    }
    if let Ok(c) = ShortCode::parse(&s) {
        assert_eq!(
            ShortCode::parse(&c.reveal()),
            Ok(c),
            "a short code must survive reveal/parse"
        );
    }
    let _ = ShortCode::looks_like(&s);
    let _ = crate::ui::state::check_code(&s);
}

/// A sync message from a connected peer, decoded and handed to a sync engine that holds a
/// channel the peer shares.
pub fn sync(data: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<SyncMsg>(data) else {
        return;
    };
    let (me, peer) = (identity(1, "a@fuzz"), identity(10, "b@fuzz"));
    let mut log = MemLog::default();
    log.add_channel(Channel {
        id: "g-fuzz".into(),
        name: "fuzz".into(),
        members: vec![me.person_id().to_string(), peer.person_id().to_string()],
        created_at: 0,
    });
    let mut engine = Engine::new(me.person_id().to_string());
    let _ = engine.open(
        &log,
        1,
        PeerInfo {
            person_id: peer.person_id().to_string(),
            is_my_replica: false,
            replica_of: Default::default(),
        },
    );
    let _ = engine.handle(&mut log, 1, msg, 1_800_000_000_000);
}

/// A line on the headless control channel.
pub fn headless(data: &[u8]) {
    let _ = crate::app::control::parse_line(&String::from_utf8_lossy(data));
}

/// An entry value read from the store (a damaged or hand-edited data dir): decoding must
/// not panic, and what decodes must encode to a value that decodes to the same entry.
pub fn store_value(data: &[u8]) {
    use crate::store::codec;
    // The channel and author of the group vectors in docs/PROTOCOL.md, so the seeds decode.
    let channel = "g-000102030405060708090a0b0c0d0e0f";
    let author = "8fe5dc13875dbb14a2048b6148161be7fd980093502e62973c4ff09c0192d0be";
    let seq = u64::from(data.first().copied().unwrap_or(0));
    let value = data.get(1..).unwrap_or_default();
    if let Ok(e) = codec::decode(channel, author, seq, value) {
        let again = codec::encode(&e);
        let back = codec::decode(&e.channel, &e.author, e.seq, &again);
        assert_eq!(
            back.as_ref(),
            Ok(&e),
            "a decoded entry must survive re-encoding"
        );
    }
}
