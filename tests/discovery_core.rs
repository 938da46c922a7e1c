//! Discovery announcements: only a fresh announcement signed by a known instance of a
//! contact is accepted.

mod common;

use lama_tui::domain::identity::LocalIdentity;
use lama_tui::domain::Contact;
use lama_tui::net::discovery::{Announcement, Ignored, MAX_SKEW_MS};

const NOW: u64 = 1_800_000_000_000;

fn ident(seed: u8) -> LocalIdentity {
    common::ident(seed, "node@lama.local")
}

fn contact_of(i: &LocalIdentity) -> Contact {
    Contact {
        person: i.person.clone(),
        instances: vec![i.instance.clone()],
        endpoints: vec![],
        profile: None,
        replica: false,
        replica_for: false,
        via: lama_tui::domain::Via::Invite,
        added_at: 0,
        endpoint_notes: vec![],
        vouched_by: vec![],
    }
}

#[test]
fn only_signed_fresh_announcements_of_known_instances_pass() {
    let node = ident(1);
    let other = ident(50);
    let c = contact_of(&node);
    let a = Announcement::signed(&node, "ws://localhost:9000", NOW);
    let round = Announcement::decode(&a.encode()).unwrap();
    assert_eq!(round, a);
    assert_eq!(a.verify(Some(&c), NOW, None), Ok(()));
    assert_eq!(a.verify(None, NOW, None), Err(Ignored::Stranger));
    assert_eq!(
        a.verify(Some(&contact_of(&other)), NOW, None),
        Err(Ignored::Stranger)
    );
    let mut no_inst = c.clone();
    no_inst.instances.clear();
    assert_eq!(
        a.verify(Some(&no_inst), NOW, None),
        Err(Ignored::UnknownInstance)
    );
    // Another key claims the node's ids.
    let mut forged = Announcement::signed(&other, "ws://evil:1", NOW);
    forged.person_id = node.person_id().to_string();
    forged.instance_id = node.instance_id().to_string();
    assert_eq!(
        forged.verify(Some(&c), NOW, None),
        Err(Ignored::BadSignature)
    );
    // Tampered URL.
    let mut t = a.clone();
    t.url = "ws://evil:1".into();
    assert_eq!(t.verify(Some(&c), NOW, None), Err(Ignored::BadSignature));
    // Replay and staleness.
    assert_eq!(a.verify(Some(&c), NOW, Some(NOW)), Err(Ignored::Stale));
    assert_eq!(
        a.verify(Some(&c), NOW + MAX_SKEW_MS + 1, None),
        Err(Ignored::Stale)
    );
    assert_eq!(Announcement::decode(b"junk"), Err(Ignored::Malformed));
    let bad_url = Announcement::signed(&node, "http://x", NOW);
    assert_eq!(
        Announcement::decode(&bad_url.encode()),
        Err(Ignored::Malformed)
    );
}
