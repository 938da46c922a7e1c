//! The short-code PAKE in memory: success, mismatch, a relaying man in the middle, transcript
//! binding, the code format and the attempt rules. Real Noise sessions provide the
//! handshake hashes the exchange is bound to.

mod common;

use lama_tui::domain::identity::LocalIdentity;
use lama_tui::domain::short_code::{code_entropy_bits, wordlist};
use lama_tui::domain::{InviteRecord, InviteStatus};
use lama_tui::domain::{ShortCode, ShortCodeError};
use lama_tui::net::handshake::{Handshake, Session};
use lama_tui::net::pairing::{check_short_code, code_guess_counted, Admission, PairError};
use lama_tui::net::pake::{stretch_secret, PakeError, PakeExchange, Side, MAX_ATTEMPTS};

use common::ident;

/// A Noise XX session between `a` (initiator) and `b`: the two ends.
fn noise(a: &LocalIdentity, b: &LocalIdentity) -> (Session, Session) {
    let mut i = Handshake::initiator(&a.secrets.transport, None).unwrap();
    let mut r = Handshake::responder(&b.secrets.transport).unwrap();
    r.read(&i.write().unwrap()).unwrap();
    i.read(&r.write().unwrap()).unwrap();
    r.read(&i.write().unwrap()).unwrap();
    (i.into_session().unwrap(), r.into_session().unwrap())
}

/// Both ends of an exchange over one session, after both SPAKE2 messages: each side's
/// confirmation MAC, and the exchanges to check the other's with.
struct Ends {
    dialer: PakeExchange,
    listener: PakeExchange,
    dialer_mac: Vec<u8>,
    listener_mac: Vec<u8>,
}

fn exchange(
    pw_dialer: &str,
    pw_listener: &str,
    dialer: &LocalIdentity,
    listener: &LocalIdentity,
    hh: &[u8],
) -> Ends {
    let (mut d, dm) = PakeExchange::start(
        Side::Dialer,
        pw_dialer.as_bytes(),
        &dialer.instance_id(),
        &listener.instance_id(),
        hh,
    );
    let (mut l, lm) = PakeExchange::start(
        Side::Listener,
        pw_listener.as_bytes(),
        &dialer.instance_id(),
        &listener.instance_id(),
        hh,
    );
    let dialer_mac = d.on_peer_msg(&lm).unwrap();
    let listener_mac = l.on_peer_msg(&dm).unwrap();
    Ends {
        dialer: d,
        listener: l,
        dialer_mac,
        listener_mac,
    }
}

#[test]
fn the_same_code_confirms_on_both_sides() {
    let (c, n) = (ident(1, "c@x"), ident(10, "n@x"));
    let (sc, _) = noise(&c, &n);
    let e = exchange(
        "7-lunar-pepper-canal",
        "7-lunar-pepper-canal",
        &c,
        &n,
        sc.handshake_hash(),
    );
    assert_eq!(e.listener.check_confirm(&e.dialer_mac), Ok(()));
    assert_eq!(e.dialer.check_confirm(&e.listener_mac), Ok(()));
    // Each side's MAC is its own: a reflected MAC does not verify.
    assert_eq!(
        e.listener.check_confirm(&e.listener_mac),
        Err(PakeError::Mismatch)
    );
    assert_eq!(
        e.dialer.check_confirm(&e.dialer_mac),
        Err(PakeError::Mismatch)
    );
}

#[test]
fn a_different_code_fails_on_both_sides() {
    let (c, n) = (ident(1, "c@x"), ident(10, "n@x"));
    let (sc, _) = noise(&c, &n);
    let e = exchange(
        "7-lunar-pepper-canal",
        "7-lunar-pepper-cabin",
        &c,
        &n,
        sc.handshake_hash(),
    );
    assert_eq!(
        e.listener.check_confirm(&e.dialer_mac),
        Err(PakeError::Mismatch)
    );
    assert_eq!(
        e.dialer.check_confirm(&e.listener_mac),
        Err(PakeError::Mismatch)
    );
    // A truncated or empty MAC is a mismatch too, not a panic.
    assert_eq!(
        e.listener.check_confirm(&e.dialer_mac[..16]),
        Err(PakeError::Mismatch)
    );
    assert_eq!(e.listener.check_confirm(&[]), Err(PakeError::Mismatch));
}

/// Mallory sits between client and node with a Noise session to each (she cannot do
/// otherwise: the client does not know the node's key). She relays every PAKE message and
/// MAC unchanged. Whether the two sides typed different codes or the same one, neither
/// confirmation verifies: the keys or the bound handshake hashes differ.
#[test]
fn a_relaying_man_in_the_middle_fails_on_both_sides() {
    let (c, n, m) = (ident(1, "c@x"), ident(10, "n@x"), ident(20, "m@x"));
    let (c_to_m, _) = noise(&c, &m);
    let (m_to_n, _) = noise(&m, &n);
    assert_ne!(c_to_m.handshake_hash(), m_to_n.handshake_hash());
    for (code_c, code_n) in [
        ("7-lunar-pepper-canal", "7-lunar-pepper-cabin"),
        ("7-lunar-pepper-canal", "7-lunar-pepper-canal"),
    ] {
        // The client believes it talks to m (the instance in its session); the node sees m
        // dialing.
        let (mut client, cm) = PakeExchange::start(
            Side::Dialer,
            code_c.as_bytes(),
            &c.instance_id(),
            &m.instance_id(),
            c_to_m.handshake_hash(),
        );
        let (mut node, nm) = PakeExchange::start(
            Side::Listener,
            code_n.as_bytes(),
            &m.instance_id(),
            &n.instance_id(),
            m_to_n.handshake_hash(),
        );
        // Relay: each side gets the other's SPAKE2 message and MAC unchanged.
        let node_mac = node.on_peer_msg(&cm).unwrap();
        let client_mac = client.on_peer_msg(&nm).unwrap();
        assert_eq!(
            node.check_confirm(&client_mac),
            Err(PakeError::Mismatch),
            "node accepted a relayed confirmation ({code_c} / {code_n})"
        );
        assert_eq!(
            client.check_confirm(&node_mac),
            Err(PakeError::Mismatch),
            "client accepted a relayed confirmation ({code_c} / {code_n})"
        );
    }
}

#[test]
fn a_message_from_another_session_does_not_confirm() {
    let (c, n) = (ident(1, "c@x"), ident(10, "n@x"));
    let code = "7-lunar-pepper-canal";
    let (s1, _) = noise(&c, &n);
    let (s2, _) = noise(&c, &n);
    assert_ne!(s1.handshake_hash(), s2.handshake_hash(), "fresh ephemerals");
    let one = exchange(code, code, &c, &n, s1.handshake_hash());
    let two = exchange(code, code, &c, &n, s2.handshake_hash());
    // A MAC made in session two, replayed into session one.
    assert_eq!(
        one.listener.check_confirm(&two.dialer_mac),
        Err(PakeError::Mismatch)
    );
    assert_eq!(
        one.dialer.check_confirm(&two.listener_mac),
        Err(PakeError::Mismatch)
    );
    // A SPAKE2 message from session two spliced into session one: the keys differ.
    let (mut d, _) = PakeExchange::start(
        Side::Dialer,
        code.as_bytes(),
        &c.instance_id(),
        &n.instance_id(),
        s1.handshake_hash(),
    );
    let (_, foreign) = PakeExchange::start(
        Side::Listener,
        code.as_bytes(),
        &c.instance_id(),
        &n.instance_id(),
        s2.handshake_hash(),
    );
    let mac = d.on_peer_msg(&foreign).unwrap();
    assert_eq!(one.listener.check_confirm(&mac), Err(PakeError::Mismatch));
    // Garbage and a second message are errors, not panics.
    let (mut d, _) = PakeExchange::start(Side::Dialer, b"x", "a", "b", b"h");
    assert!(matches!(
        d.on_peer_msg(b"not a point"),
        Err(PakeError::Malformed(_))
    ));
    assert!(matches!(
        d.on_peer_msg(&[0; 33]),
        Err(PakeError::Malformed(_))
    ));
}

#[test]
fn codes_read_back_and_typos_are_named() {
    let list = wordlist();
    assert_eq!(list.len(), 256);
    let mut sorted = list.to_vec();
    sorted.dedup();
    assert_eq!(sorted.len(), 256, "no word twice");
    assert!(list
        .iter()
        .all(|w| w.chars().all(|c| c.is_ascii_lowercase())));
    assert_eq!(code_entropy_bits(), 24);
    for (slot, r) in [(1u16, [0u8, 1, 2]), (999, [255, 128, 7]), (42, [9, 9, 9])] {
        let c = ShortCode::new(slot, r);
        let text = c.reveal();
        assert_eq!(ShortCode::parse(&text).unwrap(), c);
        assert_eq!(
            ShortCode::parse(&format!("  {} ", text.replace('-', " ").to_uppercase())).unwrap(),
            c
        );
        assert!(ShortCode::looks_like(&text));
        // Debug output (and so any log line) never holds the words.
        let dbg = format!("{c:?}");
        for w in text.split('-').skip(1) {
            assert!(!dbg.contains(w), "{dbg}");
        }
    }
    assert!(!ShortCode::looks_like("LAMA1ABCDEF"));
    assert_eq!(ShortCode::parse(""), Err(ShortCodeError::Empty));
    assert!(matches!(
        ShortCode::parse("0-lunar-pepper-canal"),
        Err(ShortCodeError::BadNumber(_))
    ));
    assert!(matches!(
        ShortCode::parse("lunar-pepper-canal"),
        Err(ShortCodeError::BadNumber(_))
    ));
    assert_eq!(
        ShortCode::parse("7-lunar-pepper"),
        Err(ShortCodeError::WordCount(2))
    );
    let e = ShortCode::parse("7-lunar-peper-canal").unwrap_err();
    assert_eq!(
        e,
        ShortCodeError::UnknownWord {
            word: "peper".into(),
            hint: vec!["paper".into(), "pepper".into()]
        }
    );
    assert!(
        e.to_string()
            .contains("did you mean \"paper\" or \"pepper\""),
        "{e}"
    );
    let e = ShortCode::parse("7-lunar-pepper-zebrra").unwrap_err();
    assert!(e.to_string().contains("did you mean \"zebra\"?"), "{e}");
}

fn open_code(attempts: u32) -> InviteRecord {
    InviteRecord {
        token: "short:7".into(),
        code: "7-lunar-pepper-canal".into(),
        created_at: 100,
        expires_at: 400,
        status: InviteStatus::Open,
        attempts,
        owner: None,
        relayed: false,
    }
}

#[test]
fn attempts_are_bounded_and_states_are_named() {
    assert_eq!(
        check_short_code(None, 7, "p", 200),
        Err(PairError::CodeUnknown(Some(7)))
    );
    assert_eq!(
        check_short_code(Some(&open_code(0)), 7, "p", 200),
        Ok(Admission::Fresh)
    );
    assert_eq!(
        check_short_code(Some(&open_code(0)), 7, "p", 400),
        Err(PairError::CodeExpired(Some(400)))
    );
    // Each confirmation is counted before it is checked; after MAX_ATTEMPTS the code takes
    // no more guesses, whether they failed or are still being checked elsewhere.
    let mut rec = open_code(0);
    for i in 1..=MAX_ATTEMPTS {
        assert!(
            check_short_code(Some(&rec), 7, "p", 200).is_ok(),
            "attempt {i}"
        );
        rec = code_guess_counted(Some(rec), 7, "p", 200).unwrap();
    }
    assert_eq!(rec.attempts, MAX_ATTEMPTS);
    assert_eq!(rec.status_at(200).as_str(), "exhausted");
    let e = check_short_code(Some(&rec), 7, "p", 200).unwrap_err();
    assert_eq!(e.kind().as_str(), "code_exhausted");
    let e = code_guess_counted(Some(rec.clone()), 7, "p", 200).unwrap_err();
    assert_eq!(
        e.kind().as_str(),
        "code_exhausted",
        "a fourth confirmation is not checked"
    );
    // A connection that never confirms costs nothing: admission does not count.
    let fresh = open_code(MAX_ATTEMPTS - 1);
    for _ in 0..10 {
        assert!(check_short_code(Some(&fresh), 7, "p", 200).is_ok());
    }
    assert_eq!(
        code_guess_counted(None, 7, "p", 200),
        Err(PairError::CodeUnknown(Some(7)))
    );
    // Used: once by its pairer again (a lost pair_done), never by another.
    let mut used = open_code(1);
    used.status = InviteStatus::Used {
        by: "p".into(),
        at: 150,
    };
    assert_eq!(
        check_short_code(Some(&used), 7, "p", 200),
        Ok(Admission::Repeat)
    );
    assert_eq!(
        check_short_code(Some(&used), 7, "q", 200),
        Err(PairError::Used)
    );
    // Every refusal maps to its own close code and back.
    for e in [
        PairError::CodeMismatch("x".into()),
        PairError::CodeExpired(None),
        PairError::CodeExhausted("x".into()),
        PairError::CodeUnknown(None),
        PairError::NoTrustSecret,
    ] {
        assert_eq!(
            PairError::from_close(e.close_code(), "x"),
            Some(e.clone()),
            "{e:?}"
        );
    }
}

#[test]
fn a_stretched_secret_is_salted_per_node() {
    let a = stretch_secret(b"correct horse", "node-a");
    assert_eq!(a.len(), 32);
    assert_eq!(*a, *stretch_secret(b"correct horse", "node-a"));
    assert_ne!(*a, *stretch_secret(b"correct horse", "node-b"));
    assert_ne!(*a, *stretch_secret(b"correct horsf", "node-a"));
}
