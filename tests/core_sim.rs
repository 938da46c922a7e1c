//! The node core driven in memory: nodes and clients over a seeded network (`sim`), with
//! seeded time and randomness. Pairing by each of the three ways, a stranger refused, the
//! duplicate-link rule, the trust-secret lockout, a write on a full disk, reconnection
//! after a cut, and a group of three. A failure prints its seed and how to replay it.

mod sim;

use lama_tui::core::{Answer, Command, CommandError, Event, PeerState};
use lama_tui::domain::{ErrorKind, Via};
use sim::{each_seed, Sim, Spec};

fn code(a: Result<Answer, CommandError>) -> String {
    match a {
        Ok(Answer::NewInvite(i)) => i.code,
        other => panic!("expected a code, got {other:?}"),
    }
}

fn paired(a: Result<Answer, CommandError>) -> lama_tui::core::Paired {
    match a {
        Ok(Answer::Paired(p)) => p,
        other => panic!("expected a pairing, got {other:?}"),
    }
}

fn err_kind(a: Result<Answer, CommandError>) -> ErrorKind {
    match a {
        Err(e) => e.kind(),
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

/// The `contact_added` event `p` emitted for `person_id`, if any.
fn added(s: &Sim, p: usize, person_id: &str) -> Option<(Via, String)> {
    s.peers[p].events.iter().find_map(|e| match e {
        Event::ContactAdded {
            person_id: id,
            via,
            verification,
            ..
        } if id == person_id => Some((*via, verification.clone())),
        _ => None,
    })
}

fn state_of(s: &mut Sim, p: usize, person_id: &str) -> Option<PeerState> {
    match s.ask(p, Command::Contacts) {
        Ok(Answer::Contacts(cs)) => cs
            .iter()
            .find(|c| c.contact.person_id() == person_id)
            .map(|c| c.state),
        other => panic!("contacts failed: {other:?}"),
    }
}

fn connected(s: &Sim, p: usize, person_id: &str) -> bool {
    s.peers[p]
        .events
        .iter()
        .any(|e| matches!(e, Event::Connected { person_id: id, .. } if id == person_id))
}

fn pid(s: &Sim, p: usize) -> String {
    s.peers[p].me.person_id().to_string()
}

/// Pair client `c` with node `n` by an invitation; returns the verification string.
fn pair_by_invite(s: &mut Sim, n: usize, c: usize) -> String {
    let code = code(s.ask(n, Command::Invite { ttl_secs: 600 }));
    let via = Via::Invite;
    let p = paired(s.ask(
        c,
        Command::Accept {
            code,
            replica: false,
            via,
        },
    ));
    assert_eq!(p.person_id, pid(s, n));
    let np = pid(s, c);
    assert!(
        s.run_until(5_000, |s| added(s, n, &np).is_some()),
        "node saw the pairing"
    );
    let (via, verification) = added(s, n, &np).expect("checked");
    assert_eq!(via, Via::Invite);
    assert_eq!(
        verification, p.verification,
        "both sides show the same string"
    );
    p.verification
}

/// A text from `from` in `channel` reaches `to` (as a `message` event).
fn delivered(s: &mut Sim, from: usize, to: usize, channel: &str, text: &str) {
    let r = s.ask(
        from,
        Command::Send {
            channel: channel.into(),
            text: text.into(),
        },
    );
    assert!(matches!(r, Ok(Answer::EntryId(_))), "{r:?}");
    let arrived = |s: &Sim| {
        s.peers[to]
            .events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.text.as_deref() == Some(text)))
    };
    assert!(
        s.run_until(30_000, arrived),
        "{text:?} reached {}",
        s.peers[to].name
    );
}

fn direct(s: &Sim, a: usize, b: usize) -> String {
    lama_tui::net::pairing::direct_channel_id(&pid(s, a), &pid(s, b))
}

#[test]
fn pairing_by_invitation_links_both_sides_and_they_chat() {
    each_seed("pairing_by_invitation", |s| {
        let n = s.add(Spec::node("node"));
        let c = s.add(Spec::client("client"));
        pair_by_invite(s, n, c);
        let (np, cp) = (pid(s, n), pid(s, c));
        assert!(s.run_until(5_000, |s| connected(s, n, &cp) && connected(s, c, &np)));
        let ch = direct(s, n, c);
        delivered(s, c, n, &ch, "hello node");
        delivered(s, n, c, &ch, "hello client");
        // The code is spent: a second client gets `invite_used`.
        let code2 = code(s.ask(n, Command::Invite { ttl_secs: 600 }));
        let c2 = s.add(Spec::client("late"));
        let via = Via::Invite;
        let accept = |code: String| Command::Accept {
            code,
            replica: false,
            via,
        };
        paired(s.ask(c2, accept(code2.clone())));
        let c3 = s.add(Spec::client("later"));
        assert_eq!(err_kind(s.ask(c3, accept(code2))), ErrorKind::InviteUsed);
    });
}

#[test]
fn pairing_by_short_code_and_a_wrong_code_answers_code_mismatch() {
    each_seed("pairing_by_short_code", |s| {
        let n = s.add(Spec::node("node"));
        let url = s.peers[n].url.clone();
        let c = s.add(Spec::client("client"));
        let short = code(s.ask(n, Command::ShortCode { ttl_secs: 300 }));
        // One wrong word first: both sides hear of it, nothing is stored.
        let (slot, _) = short.split_once('-').expect("N-words");
        let words = lama_tui::domain::short_code::wordlist();
        let guess = |w: &str| format!("{slot}-{w}-{w}-{w}");
        let wrong = if guess(words[0]) == short {
            guess(words[1])
        } else {
            guess(words[0])
        };
        let attempt = |code: String| Command::AcceptPake {
            code: Some(code),
            url: url.clone(),
            replica: false,
        };
        let mallory = s.add(Spec::client("mallory"));
        let r = s.ask(mallory, attempt(wrong));
        assert_eq!(err_kind(r), ErrorKind::CodeMismatch);
        assert!(s.peers[n].events.iter().any(|e| matches!(
            e,
            Event::Error { kind: ErrorKind::CodeMismatch, message } if message.contains("2 attempt(s) left")
        )));
        let p = paired(s.ask(c, attempt(short)));
        let cp = pid(s, c);
        assert!(s.run_until(5_000, |s| added(s, n, &cp).is_some()));
        let (via, verification) = added(s, n, &cp).expect("checked");
        assert_eq!((via, verification), (Via::ShortCode, p.verification));
        let ch = direct(s, n, c);
        delivered(s, c, n, &ch, "paired by words");
        let mp = pid(s, mallory);
        assert_eq!(state_of(s, n, &mp), None, "mallory is no contact");
    });
}

#[test]
fn pairing_by_trust_secret_on_start_and_the_lockout_after_three_wrong_secrets() {
    each_seed("pairing_by_trust_secret", |s| {
        let n = s.add(Spec::node("node").secret("correct horse"));
        let url = s.peers[n].url.clone();
        let with_secret =
            |s: &mut Sim, name: &str, secret: &str| s.add(Spec::client(name).secret(secret));
        let pair = |url: Option<String>| Command::AcceptPake {
            code: None,
            url,
            replica: true,
        };
        // Three wrong secrets: each refused with code_mismatch...
        for i in 0..3 {
            let m = with_secret(s, &format!("wrong{i}"), "battery staple");
            assert_eq!(
                err_kind(s.ask(m, pair(url.clone()))),
                ErrorKind::CodeMismatch
            );
        }
        // ...then even the right secret is locked out for the lockout window...
        let early = with_secret(s, "early", "correct horse");
        assert_eq!(
            err_kind(s.ask(early, pair(url.clone()))),
            ErrorKind::CodeExhausted
        );
        // ...and works once it has passed.
        s.run_for(lama_tui::net::pake::SECRET_LOCKOUT_SECS * 1000 + 1);
        let p = paired(s.ask(early, pair(url.clone())));
        assert_eq!(p.person_id, pid(s, n));
        let ep = pid(s, early);
        assert_eq!(added(s, n, &ep).map(|a| a.0), Some(Via::TrustSecret));
        // A client with the secret and no contacts pairs by itself on start, with the node
        // at its --node-url (here: nowhere, so it reports the failure as an event).
        let auto = with_secret(s, "auto", "correct horse");
        let failed = |s: &Sim| {
            s.peers[auto].events.iter().any(|e| {
                matches!(
                    e,
                    Event::Error {
                        kind: ErrorKind::Unreachable,
                        ..
                    }
                )
            })
        };
        assert!(s.run_until(20_000, failed), "{:?}", s.peers[auto].events);
    });
}

#[test]
fn a_stranger_is_refused_and_changes_nothing() {
    each_seed("a_stranger_is_refused", |s| {
        let n = s.add(Spec::node("node"));
        let url = s.peers[n].url.clone().expect("a node has a url");
        let x = s.add(Spec::node("stranger"));
        let r = s.ask(x, Command::Connect { url });
        assert_eq!(err_kind(r), ErrorKind::NotAContact);
        match s.ask(n, Command::Contacts) {
            Ok(Answer::Contacts(cs)) => assert!(cs.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(s.peers[n].events.is_empty(), "{:?}", s.peers[n].events);
        assert_eq!(s.open_links(n, x), 0);
    });
}

#[test]
fn two_nodes_dialing_each_other_keep_one_link() {
    each_seed("two_nodes_dialing_each_other", |s| {
        redials_keep_one_link(s, 0)
    });
}

/// As above, with one side's dials taking 40 ms longer to be answered (a slower path, or
/// a `hello_again` round trip): the link it accepted first may lose to its own, and the
/// other side's switch must not show up here as a dropped link.
#[test]
fn two_nodes_keep_one_link_when_one_sides_dials_are_slower() {
    each_seed("two_nodes_uneven", |s| redials_keep_one_link(s, 40));
}

fn redials_keep_one_link(s: &mut Sim, slow_b: u64) {
    {
        let a = s.add(Spec::node("a"));
        let b = s.add(Spec {
            slow_dials_ms: slow_b,
            ..Spec::node("b")
        });
        pair_by_invite(s, a, b);
        let (ap, bp) = (pid(s, a), pid(s, b));
        assert!(s.run_until(10_000, |s| s.open_links(a, b) == 1));
        let drops = |s: &Sim, p: usize| {
            s.peers[p]
                .events
                .iter()
                .filter(|e| matches!(e, Event::Disconnected { .. }))
                .count()
        };
        for round in 0..3 {
            // Both drop the link and redial at the same instant: two links cross, one
            // dialed by each side, and both sides must keep the same one at once (a side
            // that kept the other one would see its link dropped and come back).
            let before = (drops(s, a), drops(s, b));
            s.command(a, Command::Reconnect);
            s.command(b, Command::Reconnect);
            s.run_for(3_000);
            assert_eq!(
                s.open_links(a, b),
                1,
                "round {round}: exactly one link is kept"
            );
            // Each side loses the link it dropped (none, when the new link replaced it
            // before its end was reported); losing a second one is the flap of two sides
            // that kept different links.
            let after = (drops(s, a), drops(s, b));
            let flapped = after.0 > before.0 + 1 || after.1 > before.1 + 1;
            assert!(
                !flapped,
                "round {round}: drops went from {before:?} to {after:?}"
            );
            let before = after;
            s.run_for(20_000);
            assert_eq!(
                (drops(s, a), drops(s, b)),
                before,
                "round {round}: no flapping"
            );
            assert_eq!(s.open_links(a, b), 1, "round {round}: the link stays");
            assert_eq!(state_of(s, a, &bp), Some(PeerState::Connected));
            assert_eq!(state_of(s, b, &ap), Some(PeerState::Connected));
        }
        let ch = direct(s, a, b);
        delivered(s, a, b, &ch, "after the redials");
        delivered(s, b, a, &ch, "and back");
    }
}

#[test]
fn a_write_on_a_full_disk_is_refused_and_everything_arrives_once_there_is_room() {
    each_seed("a_write_on_a_full_disk", |s| {
        let n = s.add(Spec::node("node"));
        let c = s.add(Spec::client("client"));
        pair_by_invite(s, n, c);
        let ch = direct(s, n, c);
        delivered(s, c, n, &ch, "before");
        s.peers[n].disk.set_full(true);
        let r = s.ask(
            n,
            Command::Send {
                channel: ch.clone(),
                text: "cannot be stored".into(),
            },
        );
        assert_eq!(err_kind(r), ErrorKind::DiskFull);
        // The client's message cannot be stored on the node: it waits on the client.
        let r = s.ask(
            c,
            Command::Send {
                channel: ch.clone(),
                text: "while full".into(),
            },
        );
        assert!(matches!(r, Ok(Answer::EntryId(_))));
        s.run_for(5_000);
        let got = |s: &Sim| {
            s.peers[n]
                .events
                .iter()
                .any(|e| matches!(e, Event::Message(m) if m.text.as_deref() == Some("while full")))
        };
        assert!(!got(s), "nothing is reported stored while the disk is full");
        s.peers[n].disk.set_full(false);
        assert!(s.run_until(60_000, got), "it arrives once there is room");
        delivered(s, n, c, &ch, "after");
    });
}

#[test]
fn after_a_cut_both_sides_catch_up_on_what_was_written_meanwhile() {
    each_seed("after_a_cut", |s| {
        let n = s.add(Spec::node("node"));
        let c = s.add(Spec::client("client"));
        pair_by_invite(s, n, c);
        let ch = direct(s, n, c);
        delivered(s, c, n, &ch, "first");
        s.cut(n, c);
        for (p, text) in [(n, "node while cut"), (c, "client while cut")] {
            let cmd = Command::Send {
                channel: ch.clone(),
                text: text.into(),
            };
            assert!(matches!(s.ask(p, cmd), Ok(Answer::EntryId(_))));
        }
        s.run_for(3_000);
        s.heal(n, c);
        let caught_up = |s: &Sim| {
            let has = |p: usize, t: &str| {
                s.peers[p]
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::Message(m) if m.text.as_deref() == Some(t)))
            };
            has(n, "client while cut") && has(c, "node while cut")
        };
        assert!(s.run_until(60_000, caught_up));
        // The redial after the cut greeted with `hello_known` both ways: each side had
        // learned the other's instance from the first link's full Hellos.
        assert!(s.peers[c].short_hellos >= 1, "no short hello on the redial");
    });
}

#[test]
fn three_instances_share_a_group_through_the_node() {
    each_seed("three_instances_share_a_group", |s| {
        let n = s.add(Spec::node("node"));
        let c1 = s.add(Spec::client("c1"));
        let c2 = s.add(Spec::client("c2"));
        pair_by_invite(s, n, c1);
        pair_by_invite(s, n, c2);
        let members = vec![pid(s, c1), pid(s, c2)];
        let g = match s.ask(
            n,
            Command::CreateChannel {
                name: "team".into(),
                members,
            },
        ) {
            Ok(Answer::ChannelId(g)) => g,
            other => panic!("{other:?}"),
        };
        // Each client learns of the group from the node, then c1's text reaches c2 through
        // the node (the two clients are not contacts of each other).
        let has_group = |s: &mut Sim, p: usize| match s.ask(p, Command::Channels) {
            Ok(Answer::Channels(cs)) => cs.iter().any(|(c, _)| c.id == g),
            other => panic!("{other:?}"),
        };
        for p in [c1, c2] {
            let mut tries = 0;
            while !has_group(s, p) {
                s.run_for(500);
                tries += 1;
                assert!(tries < 60, "{} never got the group", s.peers[p].name);
            }
        }
        delivered(s, c1, c2, &g, "to the team");
        delivered(s, c2, n, &g, "reply to the team");
    });
}

#[test]
fn entries_from_many_links_share_one_commit_and_acks_wait_for_it() {
    // The sim asserts on every ack that nothing waits for a flush; here three clients
    // write at once, and the node's commits must be fewer than the batches it acknowledged.
    each_seed("group_commit", |s| {
        let n = s.add(Spec::node("node"));
        let clients: Vec<usize> = (0..3)
            .map(|i| s.add(Spec::client(&format!("c{i}"))))
            .collect();
        for &c in &clients {
            pair_by_invite(s, n, c);
        }
        let np = pid(s, n);
        assert!(s.run_until(10_000, |s| clients.iter().all(|&c| connected(s, c, &np))));
        let (flushes0, acks0) = (s.peers[n].disk.flushes(), s.peers[n].acks_sent);
        for i in 0..10 {
            for &c in &clients {
                let channel = direct(s, n, c);
                s.command(
                    c,
                    Command::Send {
                        channel,
                        text: format!("m{i}"),
                    },
                );
            }
        }
        let all_in = |s: &Sim| {
            let got = s.peers[n].events.iter().filter(|e| {
                matches!(e, Event::Message(m) if m.text.as_deref().is_some_and(|t| t.starts_with('m')))
            });
            got.count() == 30
        };
        assert!(s.run_until(30_000, all_in), "the node got all 30");
        s.run_for(100);
        let (flushes, acks) = (
            s.peers[n].disk.flushes() - flushes0,
            s.peers[n].acks_sent - acks0,
        );
        assert!(
            acks >= 3,
            "every client's batches were acknowledged: {acks}"
        );
        assert!(
            flushes < acks,
            "{flushes} commits for {acks} acknowledged batches"
        );
    });
}

/// A client that drops its link and dials again at once: its new link may reach the node
/// before the end of the old one does, and lose the duplicate rule to it. When the old
/// one's end arrives, the new one takes over: the client sees only the drop it made.
#[test]
fn a_redial_that_overtakes_the_old_links_end_takes_over() {
    each_seed("redial_overtakes", |s| {
        let n = s.add(Spec::node("node"));
        let c = s.add(Spec::client("client"));
        pair_by_invite(s, n, c);
        assert!(s.run_until(10_000, |s| s.open_links(n, c) == 1));
        let drops = |s: &Sim| {
            s.peers[c]
                .events
                .iter()
                .filter(|e| matches!(e, Event::Disconnected { .. }))
                .count()
        };
        for round in 0..8 {
            let before = drops(s);
            s.command(c, Command::Reconnect);
            s.run_for(5_000);
            assert_eq!(s.open_links(n, c), 1, "round {round}");
            assert_eq!(drops(s), before + 1, "round {round}: only its own drop");
        }
        let ch = direct(s, n, c);
        delivered(s, c, n, &ch, "after the redials");
    });
}
