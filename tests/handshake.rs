//! The handshake and identity proof in memory, without sockets: both directions, wrong
//! keys, truncated and replayed messages. Keys and ephemerals are fixed, so every run is
//! the same run.

mod common;

use lama_tui::domain::identity::LocalIdentity;
use lama_tui::net::handshake::{Handshake, HandshakeError, Session};
use lama_tui::net::wire::WireMsg;

use common::ident;

fn pub_key(id: &LocalIdentity) -> [u8; 32] {
    id.instance.transport_key_bytes().unwrap()
}

/// Run XX between two sides, returning the transcript and both sessions.
fn run(
    a: &LocalIdentity,
    b: &LocalIdentity,
    expect_b: Option<[u8; 32]>,
    eph: Option<([u8; 32], [u8; 32])>,
) -> Result<(Vec<Vec<u8>>, Session, Session), HandshakeError> {
    let (ea, eb) = match &eph {
        Some((x, y)) => (Some(x), Some(y)),
        None => (None, None),
    };
    let mut i = Handshake::initiator_with_ephemeral(&a.secrets.transport, expect_b, ea)?;
    let mut r = Handshake::responder_with_ephemeral(&b.secrets.transport, eb)?;
    let m1 = i.write()?;
    r.read(&m1)?;
    let m2 = r.write()?;
    i.read(&m2)?;
    let m3 = i.write()?;
    r.read(&m3)?;
    Ok((vec![m1, m2, m3], i.into_session()?, r.into_session()?))
}

#[test]
fn both_directions_authenticate_and_carry_messages() {
    let a = ident(1, "a@lama.local");
    let b = ident(10, "b@lama.local");
    for (x, y) in [(&a, &b), (&b, &a)] {
        let (_, mut si, mut sr) = run(x, y, Some(pub_key(y)), None).unwrap();
        assert_eq!(si.handshake_hash(), sr.handshake_hash());
        assert_eq!(si.remote_static(), pub_key(y));
        assert_eq!(sr.remote_static(), pub_key(x));
        // Each side proves its Person for this session, and the other verifies it.
        let hi = si.hello(x, None);
        let hr = sr.hello(y, None);
        let got_by_r = sr.open(&si.seal(&hi).unwrap()).unwrap();
        let got_by_i = si.open(&sr.seal(&hr).unwrap()).unwrap();
        let peer_of_r = sr.verify_hello(&got_by_r).unwrap();
        let peer_of_i = si.verify_hello(&got_by_i).unwrap();
        assert_eq!(peer_of_r.person_id, x.person_id());
        assert_eq!(peer_of_i.person_id, y.person_id());
        assert_eq!(peer_of_i.instance_id, y.instance_id());
        // Transport both ways.
        let ping = WireMsg::Ping { n: 42 };
        assert_eq!(sr.open(&si.seal(&ping).unwrap()).unwrap(), ping);
        assert_eq!(si.open(&sr.seal(&ping).unwrap()).unwrap(), ping);
    }
}

#[test]
fn wrong_responder_key_is_a_key_mismatch_before_our_static_is_sent() {
    let a = ident(1, "a@lama.local");
    let b = ident(10, "b@lama.local");
    let other = ident(20, "b@lama.local");
    let err = run(&a, &b, Some(pub_key(&other)), None).unwrap_err();
    assert!(matches!(err, HandshakeError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("man-in-the-middle"));
}

#[test]
fn hello_from_another_session_or_with_foreign_keys_is_rejected() {
    let a = ident(1, "a@lama.local");
    let b = ident(10, "b@lama.local");
    let (_, mut s1i, _s1r) = run(&a, &b, None, None).unwrap();
    let (_, _s2i, s2r) = run(&a, &b, None, None).unwrap();
    // A Hello signed for session 1, replayed into session 2: the signature binds the hash.
    let hello1 = s1i.hello(&a, None);
    let err = s2r.verify_hello(&hello1).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    let _ = s1i.seal(&hello1).unwrap();

    // Same name, other keys (the ONE.core clash): a different Person id, and the proof
    // fails because the transport key is not the one in the handshake.
    let mallory = ident(30, "a@lama.local");
    assert_ne!(mallory.person_id(), a.person_id());
    let forged = s2r.hello(&mallory, None);
    let err = s2r.verify_hello(&forged).unwrap_err();
    assert!(err.to_string().contains("transport key"), "{err}");
}

#[test]
fn truncated_handshake_messages_are_rejected() {
    let a = ident(1, "a@lama.local");
    let b = ident(10, "b@lama.local");
    let mut i = Handshake::initiator(&a.secrets.transport, None).unwrap();
    let mut r = Handshake::responder(&b.secrets.transport).unwrap();
    let m1 = i.write().unwrap();
    assert!(r.read(&m1[..m1.len() - 1]).is_err(), "short message 1");
    let mut r = Handshake::responder(&b.secrets.transport).unwrap();
    r.read(&m1).unwrap();
    let m2 = r.write().unwrap();
    for cut in [0, 1, 31, 32, m2.len() - 1] {
        let mut i2 = Handshake::initiator(&a.secrets.transport, None).unwrap();
        let _ = i2.write().unwrap();
        assert!(i2.read(&m2[..cut]).is_err(), "message 2 cut at {cut}");
    }
    i.read(&m2).unwrap();
    let m3 = i.write().unwrap();
    assert!(r.read(&m3[..m3.len() - 1]).is_err(), "short message 3");
}

#[test]
fn replayed_and_tampered_messages_are_rejected() {
    let a = ident(1, "a@lama.local");
    let b = ident(10, "b@lama.local");
    let (t, mut si, mut sr) = run(&a, &b, None, None).unwrap();
    // Message 2 of that session replayed to a fresh initiator: its ephemeral differs.
    let mut i2 = Handshake::initiator(&a.secrets.transport, None).unwrap();
    let _ = i2.write().unwrap();
    assert!(i2.read(&t[1]).is_err());
    // Message 3 replayed to a fresh responder that saw the same message 1.
    let mut r2 = Handshake::responder(&b.secrets.transport).unwrap();
    r2.read(&t[0]).unwrap();
    let _ = r2.write().unwrap();
    assert!(r2.read(&t[2]).is_err());
    // Transport replay: the nonce has moved on.
    let f = si.seal(&WireMsg::Ping { n: 1 }).unwrap();
    sr.open(&f).unwrap();
    assert!(sr.open(&f).is_err(), "replayed frame");
    // Bit flip.
    let mut g = si.seal(&WireMsg::Ping { n: 2 }).unwrap();
    g[3] ^= 1;
    assert!(sr.open(&g).is_err(), "tampered frame");
    // Out of turn.
    let mut r3 = Handshake::responder(&b.secrets.transport).unwrap();
    assert!(r3.write().is_err());
}

#[test]
fn fixed_ephemerals_give_a_reproducible_transcript() {
    let a = ident(1, "a@lama.local");
    let b = ident(10, "b@lama.local");
    let eph = Some(([0x41; 32], [0x42; 32]));
    let (t1, s1, _) = run(&a, &b, None, eph).unwrap();
    let (t2, s2, _) = run(&a, &b, None, eph).unwrap();
    assert_eq!(t1, t2);
    assert_eq!(s1.handshake_hash(), s2.handshake_hash());
}
