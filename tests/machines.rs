//! People on different machines (issue 16): each person's laptop is a network namespace
//! behind a NAT router of its own (it dials out; nothing can dial it), each home node a
//! machine on the shared switch, with 20 ms delay and 1% loss on every link to the switch
//! (`tc netem`, or where the kernel lacks it a user-space switch doing the same). The same scenarios as `tests/home.rs`, across real network boundaries.
//! Where namespaces cannot be made the tests print SKIPPED with the reason.

mod common;

use common::netns::Lan;
use common::people::{group_with_a_removal, never_online_together, pair_and_chat, At, Person};
use serde_json::json;

/// Home nodes on machines 1..=homes, then one NAT'd laptop per person.
fn world(tag: &str, homes: usize, laptops: usize) -> Option<(Lan, Vec<usize>)> {
    let made = Lan::new(tag, homes, Some("delay 20ms loss 1%")).and_then(|mut lan| {
        let ks = (0..laptops)
            .map(|_| lan.add_laptop())
            .collect::<Result<Vec<_>, _>>()?;
        Ok((lan, ks))
    });
    match made {
        Ok(w) => Some(w),
        Err(why) => {
            eprintln!("SKIPPED: cannot make the machines ({why}); needs root, iproute2, nftables");
            None
        }
    }
}

/// A person on laptop `laptop`, with a home node on machine `home` (listening on every
/// interface: its codes carry the machine's address).
fn person(
    lan: &Lan,
    root: &std::path::Path,
    name: &str,
    laptop: usize,
    home: Option<usize>,
) -> Person {
    let at = At::ns(lan.machine(laptop));
    let home = home.map(|h| (At::ns(lan.machine(h)), "0.0.0.0:0"));
    Person::new(root, name, at, home)
}

#[test]
fn two_people_on_laptops_behind_nat_pair_and_chat_through_their_home_nodes() {
    let Some((lan, l)) = world("pair", 2, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = person(&lan, tmp.path(), "alice", l[0], Some(1));
    let mut bob = person(&lan, tmp.path(), "bob", l[1], Some(2));
    assert!(alice
        .home()
        .endpoint()
        .starts_with(&format!("ws://{}:", lan.ip(1))));
    pair_and_chat(&mut alice, &mut bob);
    // The links cross the shaped switch: the round trip Bob's client measured to his home
    // node holds the two 20 ms hops.
    let hb = bob.home().person_id();
    let v = bob.client.ask(json!({"cmd":"endpoints"}), 40);
    let home = v["contacts"].as_array().unwrap().iter();
    let rtt = home
        .filter(|c| c["person_id"] == hb.as_str())
        .flat_map(|c| c["endpoints"].as_array().unwrap().iter())
        .filter_map(|e| e["rtt_ms"].as_u64())
        .max();
    assert!(lan.netem && rtt >= Some(40), "round trip {rtt:?} ms: {v}");
}

#[test]
fn fifty_messages_cross_between_laptops_never_online_together() {
    let Some((lan, l)) = world("away", 2, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alice = person(&lan, tmp.path(), "alice", l[0], Some(1));
    let bob = person(&lan, tmp.path(), "bob", l[1], Some(2));
    never_online_together(alice, bob);
}

#[test]
fn a_group_of_three_machines_and_the_removed_members_home_node_gets_nothing_new() {
    let Some((lan, l)) = world("group", 3, 3) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = person(&lan, tmp.path(), "alice", l[0], Some(1));
    let mut bob = person(&lan, tmp.path(), "bob", l[1], Some(2));
    let mut carol = person(&lan, tmp.path(), "carol", l[2], Some(3));
    group_with_a_removal(&mut alice, &mut bob, &mut carol);
}

#[test]
fn carol_without_a_home_node_pairs_with_alice_through_hers() {
    let Some((lan, l)) = world("carol", 1, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = person(&lan, tmp.path(), "alice", l[0], Some(1));
    let mut carol = person(&lan, tmp.path(), "carol", l[1], None);
    pair_and_chat(&mut alice, &mut carol);
}
