//! The pure pairing state machines, the duplicate-link rule and backoff, in memory and
//! deterministic (fixed keys, fixed clock).

mod common;

use lama_tui::domain::identity::{verification_string, LocalIdentity, Profile};
use lama_tui::domain::invitation::PairingCommit;
use lama_tui::domain::Invite;
use lama_tui::domain::InviteStatus;
use lama_tui::domain::PeerIdentity;
use lama_tui::domain::Via;
use lama_tui::net::handshake::{Handshake, HandshakeError};
use lama_tui::net::manager::{backoff_delay, keep_new_link, LinkMeta, Manager, BACKOFF_CAP_MS};
use lama_tui::net::pairing::{
    check_invite, new_invite_record, node_on_confirm, Admission, ClientPairing, PairError,
};
use lama_tui::net::wire::WireMsg;
use lama_tui::store::Store;

const NOW: u64 = 1_800_000_000;

use common::ident;

fn peer(i: &LocalIdentity) -> PeerIdentity {
    PeerIdentity {
        person: i.person.clone(),
        instance: i.instance.clone(),
        person_id: i.person_id(),
        instance_id: i.instance_id(),
    }
}

fn invite_for(node: &LocalIdentity, token: [u8; 16], expires_at: u64) -> Invite {
    Invite {
        person_id: lama_tui::domain::identity::parse_hex::<32>(&node.person_id(), "p").unwrap(),
        home: None,
        transport_key: node.instance.transport_key_bytes().unwrap(),
        token,
        expires_at,
        urls: vec!["ws://localhost:8765".into()],
    }
}

#[test]
fn success_on_both_sides_gives_matching_contacts_and_verification() {
    let node = ident(1, "node@lama.local");
    let client = ident(10, "demo@lama.local");
    let token = [7u8; 16];
    let rec = new_invite_record(token, "code".into(), NOW, 600);
    assert_eq!(rec.expires_at, NOW + 600);
    let node_profile = Profile::signed(&node, vec![], 1);
    let client_profile = Profile::signed(&client, vec![], 1);

    let mut cp = ClientPairing::start(invite_for(&node, token, rec.expires_at), NOW).unwrap();
    assert_eq!(cp.token_hex(), Some(lama_tui::domain::hex::encode(token)));
    // Node admits the token (read-only).
    assert_eq!(
        check_invite(Some(&rec), &client.person_id(), NOW),
        Ok(Admission::Fresh)
    );
    cp.on_node_hello(peer(&node)).unwrap();
    let confirm = cp
        .on_offer(
            WireMsg::PairOffer {
                profile: node_profile,
                person: None,
            },
            &client_profile,
            true,
        )
        .unwrap();
    let nc = node_on_confirm(
        &node.person,
        &peer(&client),
        Some(&rec.token),
        Via::Invite,
        confirm,
        NOW,
    )
    .unwrap();
    assert_eq!(nc.contact.person_id(), client.person_id());
    assert!(
        nc.contact.replica_for,
        "the client asked the node to be its replica"
    );
    let cc = cp
        .on_done(
            WireMsg::PairDone {
                verification: nc.verification.clone(),
            },
            &client.person,
            NOW,
        )
        .unwrap();
    assert_eq!(cc.contact.person_id(), node.person_id());
    assert_eq!(cc.verification, nc.verification);
    assert_eq!(
        cc.verification,
        verification_string(&node.person, &client.person)
    );
    assert_eq!(cc.channel.id, nc.channel.id);
    assert!(cc.channel.id.contains("<->"));
}

#[test]
fn wrong_expired_reused_and_revoked_tokens_are_refused_with_their_reason() {
    let rec = new_invite_record([1; 16], String::new(), NOW, 60);
    assert_eq!(check_invite(None, "p", NOW), Err(PairError::Unknown));
    assert_eq!(
        check_invite(Some(&rec), "p", NOW + 60),
        Err(PairError::Expired(Some(NOW + 60)))
    );
    let mut used = rec.clone();
    used.status = InviteStatus::Used {
        by: "alice".into(),
        at: NOW,
    };
    assert_eq!(check_invite(Some(&used), "bob", NOW), Err(PairError::Used));
    assert_eq!(
        check_invite(Some(&used), "alice", NOW),
        Ok(Admission::Repeat)
    );
    let mut rev = rec.clone();
    rev.status = InviteStatus::Revoked { at: NOW };
    assert_eq!(check_invite(Some(&rev), "p", NOW), Err(PairError::Revoked));
    for e in [
        PairError::Unknown,
        PairError::Expired(None),
        PairError::Used,
        PairError::Revoked,
    ] {
        assert_eq!(PairError::from_close(e.close_code(), ""), Some(e.clone()));
        assert!(e.to_string().contains("new code"), "{e}");
    }
    // The client refuses an expired code without dialing.
    let node = ident(1, "n@x");
    let err = ClientPairing::start(invite_for(&node, [1; 16], NOW), NOW).unwrap_err();
    assert_eq!(err.kind().as_str(), "invite_expired");
}

#[test]
fn key_mismatch_and_wrong_person_are_caught() {
    let node = ident(1, "node@lama.local");
    let impostor = ident(20, "node@lama.local");
    let client = ident(10, "demo@lama.local");
    let cp = ClientPairing::start(invite_for(&node, [1; 16], NOW + 60), NOW).unwrap();
    // The handshake with the impostor fails on the invite's key.
    let mut i = Handshake::initiator(&client.secrets.transport, cp.expected_key()).unwrap();
    let mut r = Handshake::responder(&impostor.secrets.transport).unwrap();
    r.read(&i.write().unwrap()).unwrap();
    let err = i.read(&r.write().unwrap()).unwrap_err();
    assert!(matches!(err, HandshakeError::KeyMismatch { .. }));
    // A node with the right key but another Person (key reuse) is refused too.
    let mut cp = cp;
    let err = cp.on_node_hello(peer(&impostor)).unwrap_err();
    assert_eq!(err.kind().as_str(), "key_mismatch");
}

#[test]
fn an_abort_at_any_step_commits_nothing() {
    let node = ident(1, "node@lama.local");
    let client = ident(10, "demo@lama.local");
    let mallory = ident(30, "mallory@lama.local");
    let node_profile = Profile::signed(&node, vec![], 1);
    let client_profile = Profile::signed(&client, vec![], 1);

    // Client: steps out of order or with the wrong message never yield a commit.
    let mut cp = ClientPairing::start(invite_for(&node, [1; 16], NOW + 60), NOW).unwrap();
    assert!(cp
        .on_done(
            WireMsg::PairDone {
                verification: "x".into()
            },
            &client.person,
            NOW
        )
        .is_err());
    cp.on_node_hello(peer(&node)).unwrap();
    // A profile signed by someone else is rejected.
    let forged = Profile::signed(&mallory, vec![], 1);
    assert!(cp
        .on_offer(
            WireMsg::PairOffer {
                profile: forged,
                person: None,
            },
            &client_profile,
            false
        )
        .is_err());
    let mut cp = ClientPairing::start(invite_for(&node, [1; 16], NOW + 60), NOW).unwrap();
    cp.on_node_hello(peer(&node)).unwrap();
    cp.on_offer(
        WireMsg::PairOffer {
            profile: node_profile,
            person: None,
        },
        &client_profile,
        false,
    )
    .unwrap();
    // A node that reports a different verification string: no commit.
    assert!(cp
        .on_done(
            WireMsg::PairDone {
                verification: "0000 0000 0000".into()
            },
            &client.person,
            NOW
        )
        .is_err());

    // Node: a confirm with a foreign profile, or another message, yields no commit.
    let bad = WireMsg::PairConfirm {
        profile: Profile::signed(&mallory, vec![], 1),
        replica: false,
    };
    assert!(node_on_confirm(
        &node.person,
        &peer(&client),
        Some("t"),
        Via::Invite,
        bad,
        NOW
    )
    .is_err());
    assert!(node_on_confirm(
        &node.person,
        &peer(&client),
        Some("t"),
        Via::Invite,
        WireMsg::Ping { n: 1 },
        NOW
    )
    .is_err());

    // Store: the commit is atomic; an invite revoked meanwhile writes nothing at all.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let mut rec = new_invite_record([9; 16], "c".into(), NOW, 600);
    rec.status = InviteStatus::Revoked { at: NOW };
    store.put_invite(&rec).unwrap();
    let nc = node_on_confirm(
        &node.person,
        &peer(&client),
        Some(&rec.token),
        Via::Invite,
        WireMsg::PairConfirm {
            profile: client_profile.clone(),
            replica: false,
        },
        NOW,
    )
    .unwrap();
    let r = store
        .commit_pairing(Some(&rec.token), &nc.contact, &nc.channel, NOW)
        .unwrap();
    assert!(matches!(
        r,
        PairingCommit::InviteGone(Some(lama_tui::domain::invitation::Refusal::Revoked))
    ));
    assert!(store.contacts().unwrap().is_empty());
    assert!(store.channels().unwrap().is_empty());
    // An open one commits contact, channel and consumption together.
    let rec2 = new_invite_record([8; 16], "c".into(), NOW, 600);
    store.put_invite(&rec2).unwrap();
    let r = store
        .commit_pairing(Some(&rec2.token), &nc.contact, &nc.channel, NOW)
        .unwrap();
    assert_eq!(r, PairingCommit::Committed);
    assert_eq!(store.contacts().unwrap().len(), 1);
    assert_eq!(store.channels().unwrap().len(), 1);
    assert!(matches!(
        store.invite(&rec2.token).unwrap().unwrap().status,
        InviteStatus::Used { .. }
    ));
}

#[test]
fn both_ends_keep_the_same_link_when_both_dial_at_once() {
    let (a, b) = ("aaaa".to_string(), "bbbb".to_string());
    // a sees its own dial first, then b's; b sees them the other way round.
    let a_dial = LinkMeta {
        dialer_instance: a.clone(),
        up_at_ms: 1000,
    };
    let b_dial = LinkMeta {
        dialer_instance: b.clone(),
        up_at_ms: 1010,
    };
    let at_a = keep_new_link(&a_dial, &b_dial, 1010); // existing a's dial, new b's
    let b_first = LinkMeta {
        dialer_instance: b,
        up_at_ms: 1000,
    };
    let a_second = LinkMeta {
        dialer_instance: a,
        up_at_ms: 1012,
    };
    let at_b = keep_new_link(&b_first, &a_second, 1012);
    // Both keep the link dialed by the smaller instance id ("aaaa").
    assert!(!at_a, "a keeps its own dial");
    assert!(at_b, "b switches to a's dial");
    // Long after, a new link replaces a stale one whoever dialed.
    assert!(keep_new_link(&a_dial, &b_dial, 60_000));
}

#[test]
fn backoff_grows_with_jitter_caps_and_resets() {
    for attempt in 0..12 {
        let lo = backoff_delay(attempt, 0.0);
        let hi = backoff_delay(attempt, 0.999);
        assert!(lo <= hi && hi <= BACKOFF_CAP_MS);
        assert!(lo >= hi / 2 - 1);
    }
    assert_eq!(backoff_delay(30, 0.0), BACKOFF_CAP_MS / 2);
    let mut m = Manager::new(42);
    m.set_endpoints("p", vec![("ws://a".into(), [1; 32])], 0);
    assert_eq!(m.poll(0).len(), 1);
    assert!(
        m.poll(0).is_empty(),
        "no second dial while one is in flight"
    );
    let mut last = 0;
    for _ in 0..10 {
        let d = m.dial_failed("p", 0).unwrap();
        assert!(d >= last / 2, "delays grow: {d} after {last}");
        last = d;
        assert!(m.poll(d.saturating_sub(1)).is_empty() || d == 0);
        assert_eq!(m.poll(d).len(), 1);
    }
    assert!(last > 10_000 && last <= BACKOFF_CAP_MS, "{last}");
    // Success resets; new endpoints dial at once.
    m.link_up("p");
    m.link_down("p", 100);
    let due = m.next_due().unwrap();
    assert!(due <= 100 + 500, "{due}");
    m.set_endpoints("p", vec![("ws://b".into(), [1; 32])], 200);
    assert_eq!(m.poll(200)[0].url, "ws://b");
}

#[test]
fn two_links_dialed_by_the_same_instance_are_ordered_the_same_on_both_ends() {
    // Links x and y both dialed by "aaaa" (say a manual connect racing the manager); the
    // dialer sees x first, the listener sees y first.
    let x = "aaaa/11".to_string();
    let y = "aaaa/22".to_string();
    let at = |first: &str, second: &str| {
        keep_new_link(
            &LinkMeta {
                dialer_instance: first.into(),
                up_at_ms: 0,
            },
            &LinkMeta {
                dialer_instance: second.into(),
                up_at_ms: 3,
            },
            3,
        )
    };
    // Dialer: existing x, new y -> keeps x. Listener: existing y, new x -> switches to x.
    assert!(!at(&x, &y));
    assert!(at(&y, &x));
}
