//! The on-disk store keeps the protocol's view order whatever order entries arrived in:
//! two stores that learned the same authors in opposite orders (so numbered them
//! differently) list a channel identically. The crash test found this broken once (the
//! view key held the store's author number); this pins it in milliseconds.

mod common;

use lama_tui::domain::log::Log;
use lama_tui::domain::{sign_entry, Body, Entry, Hlc};
use lama_tui::store::Store;

/// Three entries each from two authors, all at the same two instants.
fn entries() -> (Vec<Entry>, Vec<Entry>) {
    let (a, b) = (common::ident(1, "a@test"), common::ident(2, "b@test"));
    let ch = lama_tui::net::pairing::direct_channel_id(&a.person_id(), &b.person_id());
    let log = |who: &lama_tui::domain::identity::LocalIdentity| {
        let mut prev = None;
        let mut out = Vec::new();
        for seq in 1..=3u64 {
            let hlc = Hlc {
                ms: 1_800_000_000_000 + seq / 2,
                c: 0,
            };
            let text = format!("{} {seq}", who.person.name);
            let e = sign_entry(who, &ch, seq, prev.take(), hlc, Body::Text { text });
            prev = Some(e.id());
            out.push(e);
        }
        out
    };
    (log(&a), log(&b))
}

#[test]
fn two_stores_list_a_channel_in_the_same_order_whatever_came_first() {
    let (a, b) = entries();
    let ch = a[0].channel.clone();
    let tmp = tempfile::tempdir().unwrap();
    let mut first = Store::open(&tmp.path().join("1")).unwrap();
    let mut second = Store::open(&tmp.path().join("2")).unwrap();
    for e in a.iter().chain(&b) {
        first.insert(e, None).unwrap();
    }
    for e in b.iter().chain(&a) {
        second.insert(e, None).unwrap();
    }
    let one = first.history(&ch, 100).unwrap();
    let two = second.history(&ch, 100).unwrap();
    assert_eq!(one, two, "the same view on both");
    let mut want: Vec<Entry> = a.iter().chain(&b).cloned().collect();
    want.sort_by_key(Entry::view_key);
    assert_eq!(one, want, "the protocol's view order (HLC, author id, seq)");
    // Paging back from the newest gives the same pages.
    let last = one.last().unwrap();
    assert_eq!(
        first.history_before(&ch, Some(last), 2).unwrap(),
        second.history_before(&ch, Some(last), 2).unwrap()
    );
}
