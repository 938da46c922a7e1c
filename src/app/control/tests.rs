//! Every command parses from its documented form, every event serialises to the documented
//! JSON (compared as values, so key order does not matter), and the examples in
//! docs/HEADLESS.md parse.

use serde_json::{json, Value};

use super::*;
use crate::domain::{InviteState, Via};

fn parse(v: Value) -> Request {
    match parse_line(&v.to_string()) {
        Ok((_, r)) => r,
        Err(b) => panic!("{v} did not parse: {b:?}"),
    }
}

fn bad(line: &str) -> BadLine {
    parse_line(line).expect_err(line)
}

fn ne(s: &str) -> NonEmpty {
    NonEmpty(s.into())
}

/// A group channel id.
const G: &str = "g-00000000000000000000000000000000";

/// A person id, 64 hex characters: `aa…`, `bb…`.
fn pid(c: char) -> String {
    c.to_string().repeat(64)
}

fn person(c: char) -> PersonId {
    PersonId::parse(&pid(c)).expect("64 hex")
}

fn channel(s: &str) -> ChannelId {
    ChannelId::parse(s).expect("a channel id")
}

#[test]
fn every_command_parses_from_its_documented_form() {
    let cases = [
        (json!({"cmd":"identity"}), Request::Identity),
        (json!({"cmd":"quit"}), Request::Quit),
        (json!({"cmd":"contacts"}), Request::Contacts),
        (
            json!({"cmd":"connect","url":"ws://h:1"}),
            Request::Connect {
                url: ne("ws://h:1"),
            },
        ),
        (json!({"cmd":"invite"}), Request::Invite { ttl_secs: None }),
        (
            json!({"cmd":"invite","ttl_secs":60}),
            Request::Invite { ttl_secs: Some(60) },
        ),
        (
            json!({"cmd":"invite","ttl_secs":null}),
            Request::Invite { ttl_secs: None },
        ),
        (json!({"cmd":"invites"}), Request::Invites),
        (
            json!({"cmd":"revoke_invite","code":"c"}),
            Request::RevokeInvite { code: ne("c") },
        ),
        (
            json!({"cmd":"accept","code":"c"}),
            Request::Accept {
                code: Some(ne("c")),
                qr_image: None,
                replica: false,
            },
        ),
        (
            json!({"cmd":"accept","qr_image":"/q.png","replica":true}),
            Request::Accept {
                code: None,
                qr_image: Some(ne("/q.png")),
                replica: true,
            },
        ),
        (
            json!({"cmd":"short_code","ttl_secs":5}),
            Request::ShortCode { ttl_secs: Some(5) },
        ),
        (
            json!({"cmd":"accept_short","code":"7-a-b-c"}),
            Request::AcceptShort {
                code: ne("7-a-b-c"),
                url: None,
                replica: false,
            },
        ),
        (
            json!({"cmd":"accept_short","code":"7-a-b-c","url":"ws://h:1","replica":true}),
            Request::AcceptShort {
                code: ne("7-a-b-c"),
                url: Some(ne("ws://h:1")),
                replica: true,
            },
        ),
        (
            json!({"cmd":"pair_secret"}),
            Request::PairSecret {
                url: None,
                replica: false,
            },
        ),
        (json!({"cmd":"card"}), Request::Card),
        (
            json!({"cmd":"add_contact","card":"k"}),
            Request::AddContact { card: ne("k") },
        ),
        (json!({"cmd":"channels"}), Request::Channels),
        (
            json!({"cmd":"remove_contact","person_id":pid('a')}),
            Request::RemoveContact {
                person_id: person('a'),
            },
        ),
        (
            json!({"cmd":"create_channel","name":"n","members":[pid('a'),pid('b')]}),
            Request::CreateChannel {
                name: ne("n"),
                members: vec![person('a'), person('b')],
            },
        ),
        (
            json!({"cmd":"add_member","channel":G,"person_id":pid('a')}),
            Request::AddMember {
                channel: channel(G),
                person_id: person('a'),
            },
        ),
        (
            json!({"cmd":"remove_member","channel":G,"person_id":pid('a')}),
            Request::RemoveMember {
                channel: channel(G),
                person_id: person('a'),
            },
        ),
        (
            json!({"cmd":"send","channel":G,"text":"hi"}),
            Request::Send {
                channel: channel(G),
                text: ne("hi"),
            },
        ),
        (
            json!({"cmd":"history","channel":G}),
            Request::History {
                channel: channel(G),
                limit: None,
            },
        ),
        (
            json!({"cmd":"history","channel":G,"limit":3}),
            Request::History {
                channel: channel(G),
                limit: Some(3),
            },
        ),
        (json!({"cmd":"stats"}), Request::Stats),
        (json!({"cmd":"endpoints"}), Request::Endpoints),
        (json!({"cmd":"reconnect"}), Request::Reconnect),
        (
            json!({"cmd":"set_display_name","name":"x"}),
            Request::SetDisplayName { name: ne("x") },
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (line, want) in cases {
        seen.insert(line["cmd"].as_str().expect("cmd").to_string());
        assert_eq!(parse(line.clone()), want, "{line}");
        // The id rides along in any command and is handed back.
        let mut with_id = line.clone();
        with_id["id"] = json!({"any": [1, "json"]});
        let (id, _) = parse_line(&with_id.to_string()).expect("with id");
        assert_eq!(id, Some(json!({"any": [1, "json"]})));
    }
    let names: std::collections::BTreeSet<String> =
        Request::NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(seen, names, "every command has a case here");
}

#[test]
fn bad_lines_name_what_is_wrong() {
    assert_eq!(bad("not json").kind, ErrorKind::MalformedJson);
    assert_eq!(bad("[1,2]").kind, ErrorKind::MalformedJson);
    assert_eq!(bad(r#"{"id":4}"#).kind, ErrorKind::MissingCmd);
    assert_eq!(bad(r#"{"id":4}"#).id, Some(json!(4)));
    assert_eq!(bad(r#"{"cmd":7}"#).kind, ErrorKind::BadArgument);
    let b = bad(r#"{"cmd":"fly","id":"x"}"#);
    assert_eq!(
        (b.kind, b.id),
        (ErrorKind::UnknownCommand, Some(json!("x")))
    );
    for line in [
        r#"{"cmd":"connect"}"#,
        r#"{"cmd":"connect","url":""}"#,
        r#"{"cmd":"connect","url":5}"#,
        r#"{"cmd":"invite","ttl_secs":0}"#,
        r#"{"cmd":"invite","ttl_secs":604801}"#,
        r#"{"cmd":"invite","ttl_secs":"60"}"#,
        r#"{"cmd":"short_code","ttl_secs":3601}"#,
        r#"{"cmd":"accept"}"#,
        r#"{"cmd":"create_channel","name":"n"}"#,
        r#"{"cmd":"create_channel","name":"n","members":[1]}"#,
        r#"{"cmd":"history","channel":"g-00000000000000000000000000000000","limit":1000001}"#,
        r#"{"cmd":"history","channel":"g-00000000000000000000000000000000","limit":-1}"#,
        r#"{"cmd":"send","channel":"g-00000000000000000000000000000000"}"#,
    ] {
        let b = bad(line);
        assert_eq!(b.kind, ErrorKind::BadArgument, "{line}: {b:?}");
        assert!(!b.message.is_empty());
    }
    // Well-typed text that is not an id of its kind: `bad_id`, naming the grammar.
    for line in [
        r#"{"cmd":"remove_contact","person_id":"p"}"#,
        r#"{"cmd":"add_member","channel":"g-00000000000000000000000000000000","person_id":"ABAB"}"#,
        r#"{"cmd":"send","channel":"G\u0000x","text":"hi"}"#,
        r#"{"cmd":"send","channel":"g-team","text":"hi"}"#,
        r#"{"cmd":"create_channel","name":"n","members":["not hex"]}"#,
    ] {
        let b = bad(line);
        assert_eq!(b.kind, ErrorKind::BadId, "{line}: {b:?}");
    }
    let b = bad(r#"{"cmd":"remove_contact","person_id":"p"}"#);
    assert!(b.message.contains("not a person id"), "{}", b.message);
    let b = bad(r#"{"cmd":"send","channel":"G\u0000x","text":"hi"}"#);
    assert!(b.message.contains("control character"), "{}", b.message);
    let b = bad(r#"{"cmd":"send","channel":"g-team","text":"hi"}"#);
    assert!(b.message.contains("32 lowercase hex"), "{}", b.message);
    let b = bad(r#"{"cmd":"send","channel":"g-00000000000000000000000000000000"}"#);
    assert!(
        b.message.contains("`send`") && b.message.contains("text"),
        "{}",
        b.message
    );
}

fn line(r: Reply) -> Value {
    serde_json::from_str(&r.to_line()).expect("a line is JSON")
}

#[test]
fn every_event_serialises_to_its_documented_json() {
    let ident = IdentityJson {
        role: "node",
        name: "n".into(),
        person_id: "p".into(),
        instance_id: "i".into(),
        endpoint: None,
    };
    let msg = MessageJson {
        channel: "c".into(),
        entry: "e".into(),
        author: "a".into(),
        author_name: "A".into(),
        ts: 5,
        text: Some("t".into()),
        kind: "text",
    };
    let contact = ContactJson {
        person_id: "p".into(),
        name: "n".into(),
        display_name: None,
        via: Via::Card,
        replica: false,
        endpoints: vec!["ws://h:1".into()],
        state: "offline",
        last_error: None,
        last_seen: Some(9),
        verification: "1 2 3".into(),
        behind: None,
        waiting_for_them: Some("not yet".into()),
    };
    let ident_json =
        json!({"role":"node","name":"n","person_id":"p","instance_id":"i","endpoint":null});
    let cases = [
        (
            Event::Ready(ident.clone()),
            json!({"event":"ready","role":"node","name":"n","person_id":"p","instance_id":"i","endpoint":null}),
        ),
        (Event::Identity(ident), {
            let mut v = ident_json;
            v["event"] = json!("identity");
            v
        }),
        (
            Event::Contacts {
                contacts: vec![contact],
            },
            json!({"event":"contacts","contacts":[{"person_id":"p","name":"n","display_name":null,"via":"card","replica":false,"endpoints":["ws://h:1"],"state":"offline","last_error":null,"last_seen":9,"verification":"1 2 3","behind":null,"waiting_for_them":"not yet"}]}),
        ),
        (
            Event::ConnectOk {
                person_id: "p".into(),
                name: "n".into(),
            },
            json!({"event":"connect_ok","person_id":"p","name":"n"}),
        ),
        (
            Event::Invite {
                code: "c".into(),
                expires_at: 3,
                reach: "local",
            },
            json!({"event":"invite","code":"c","expires_at":3,"reach":"local"}),
        ),
        (
            Event::Invites {
                invites: vec![InviteJson {
                    code: "c".into(),
                    created_at: 1,
                    expires_at: 2,
                    status: InviteState::Expired,
                }],
            },
            json!({"event":"invites","invites":[{"code":"c","created_at":1,"expires_at":2,"status":"expired"}]}),
        ),
        (
            Event::InviteRevoked {
                code: "c".into(),
                status: InviteState::Revoked,
            },
            json!({"event":"invite_revoked","code":"c","status":"revoked"}),
        ),
        (
            Event::ContactAdded {
                person_id: "p".into(),
                name: None,
                via: Via::Provision,
                verification: "v".into(),
            },
            json!({"event":"contact_added","person_id":"p","name":null,"via":"provision","verification":"v"}),
        ),
        (
            Event::ShortCode {
                code: "7-a-b-c".into(),
                expires_at: 3,
                url: None,
            },
            json!({"event":"short_code","code":"7-a-b-c","expires_at":3}),
        ),
        (
            Event::ShortCode {
                code: "7-a-b-c".into(),
                expires_at: 3,
                url: Some("ws://10.0.0.2:8765".into()),
            },
            json!({"event":"short_code","code":"7-a-b-c","expires_at":3,"url":"ws://10.0.0.2:8765"}),
        ),
        (
            Event::Card { card: "k".into() },
            json!({"event":"card","card":"k"}),
        ),
        (
            Event::ContactRemoved {
                person_id: "p".into(),
            },
            json!({"event":"contact_removed","person_id":"p"}),
        ),
        (
            Event::Channels {
                channels: vec![ChannelJson {
                    id: "g".into(),
                    name: "n".into(),
                    members: vec!["p".into()],
                    unread: 2,
                }],
            },
            json!({"event":"channels","channels":[{"id":"g","name":"n","members":["p"],"unread":2}]}),
        ),
        (
            Event::ChannelCreated {
                channel: "g".into(),
            },
            json!({"event":"channel_created","channel":"g","id":"g"}),
        ),
        (
            Event::MembersChanged {
                channel: "g".into(),
                members: vec!["p".into()],
            },
            json!({"event":"members_changed","channel":"g","members":["p"]}),
        ),
        (
            Event::Sent {
                channel: "g".into(),
                entry: "e".into(),
            },
            json!({"event":"sent","channel":"g","entry":"e"}),
        ),
        (
            Event::History {
                channel: "g".into(),
                messages: vec![msg.clone()],
            },
            json!({"event":"history","channel":"g","messages":[{"channel":"c","entry":"e","author":"a","author_name":"A","ts":5,"text":"t","kind":"text"}]}),
        ),
        (
            Event::Reconnecting { links: 2 },
            json!({"event":"reconnecting","links":2}),
        ),
        (
            Event::Stats {
                bytes_in: 1,
                bytes_out: 2,
                entries: 3,
                received: 4,
                duplicates: 5,
                invalid: 6,
                links: 7,
            },
            json!({"event":"stats","bytes_in":1,"bytes_out":2,"entries":3,"received":4,"duplicates":5,"invalid":6,"links":7}),
        ),
        (
            Event::Endpoints {
                me: crate::app::control::SelfJson {
                    role: "node",
                    listening: Some("0.0.0.0:8765".into()),
                    urls: vec![crate::app::control::UrlJson {
                        url: "ws://10.0.0.2:8765".into(),
                        reach: crate::domain::Reach::LocalNetwork,
                    }],
                    home_node: None,
                    discovery: "lan",
                },
                contacts: vec![crate::app::control::ContactNetJson {
                    person_id: "p".into(),
                    name: "n".into(),
                    state: "offline",
                    last_seen: None,
                    endpoints: vec![crate::app::control::EndpointJson {
                        url: "ws://h:1".into(),
                        source: crate::domain::EndpointSource::Discovery,
                        learned_at: 9,
                        state: crate::domain::EndpointState::Waiting,
                        last_ok: Some(8),
                        rtt_ms: Some(2),
                        last_error: Some("refused".into()),
                        next_retry_at: Some(10),
                        stale_since: None,
                    }],
                }],
            },
            json!({"event":"endpoints",
                "self":{"role":"node","listening":"0.0.0.0:8765","urls":[{"url":"ws://10.0.0.2:8765","reach":"local_network"}],"home_node":null,"discovery":"lan"},
                "contacts":[{"person_id":"p","name":"n","state":"offline","last_seen":null,"endpoints":[
                    {"url":"ws://h:1","source":"discovery","learned_at":9,"state":"waiting","last_ok":8,"rtt_ms":2,"last_error":"refused","next_retry_at":10,"stale_since":null}]}]}),
        ),
        (
            Event::ProfileUpdated { version: 8 },
            json!({"event":"profile_updated","version":8}),
        ),
        (
            Event::Provisioned {
                person_id: "p".into(),
                endpoint: Some("ws://h:1".into()),
                reused: true,
            },
            json!({"event":"provisioned","person_id":"p","endpoint":"ws://h:1","reused":true}),
        ),
        (
            Event::Connected {
                person_id: "p".into(),
                name: "n".into(),
            },
            json!({"event":"connected","person_id":"p","name":"n"}),
        ),
        (
            Event::Disconnected {
                person_id: "p".into(),
                reason: "r".into(),
            },
            json!({"event":"disconnected","person_id":"p","reason":"r"}),
        ),
        (
            Event::EndpointsChanged {
                person_id: "p".into(),
                urls: vec!["u".into()],
            },
            json!({"event":"endpoints_changed","person_id":"p","urls":["u"]}),
        ),
        (
            Event::Message(msg),
            json!({"event":"message","channel":"c","entry":"e","author":"a","author_name":"A","ts":5,"text":"t","kind":"text"}),
        ),
        (
            Event::Delivered {
                entries: vec!["e".into()],
            },
            json!({"event":"delivered","entries":["e"]}),
        ),
        (
            Event::Synced {
                person_id: "p".into(),
            },
            json!({"event":"synced","person_id":"p"}),
        ),
        (
            Event::error(ErrorKind::DiskFull, "m"),
            json!({"event":"error","kind":"disk_full","message":"m"}),
        ),
    ];
    for (event, want) in cases {
        assert_eq!(line(Reply::unsolicited(event.clone())), want);
        // With a command's id, the id is echoed (and wins over channel_created's own).
        let mut with_id = want.clone();
        with_id["id"] = json!(7);
        assert_eq!(line(Reply::new(event, Some(json!(7)))), with_id);
    }
}

#[test]
fn the_event_field_comes_first_and_the_id_last() {
    let l = Reply::new(
        Event::Sent {
            channel: "g".into(),
            entry: "e".into(),
        },
        Some(json!(1)),
    )
    .to_line();
    assert_eq!(l, r#"{"event":"sent","channel":"g","entry":"e","id":1}"#);
}

/// Turn a documented command template (`"code":...`, `"ttl_secs":N`) into a real line.
fn fill_template(t: &str) -> String {
    t.replace(
        "\"person_id\":...",
        &format!("\"person_id\":\"{}\"", pid('a')),
    )
    .replace("[person ids]", &format!("[\"{}\"]", pid('a')))
    .replace(":...", ":\"x\"")
    .replace(":N", ":5")
    .replace("\"channel\":<id>", &format!("\"channel\":\"{G}\""))
    .replace("<id>", "\"x\"")
}

#[test]
fn the_examples_in_headless_md_parse() {
    let doc = include_str!("../../../docs/HEADLESS.md");
    let mut found = std::collections::BTreeSet::new();
    for chunk in doc.split('`').skip(1).step_by(2) {
        if !chunk.starts_with("{\"cmd\":") {
            continue;
        }
        let filled = fill_template(chunk);
        let Ok(v) = serde_json::from_str::<Value>(&filled) else {
            continue; // a sentence fragment like {"cmd":"remove_member",...}
        };
        let cmd = v["cmd"].as_str().expect("cmd").to_string();
        if let Err(b) = parse_line(&filled) {
            panic!("documented `{chunk}` does not parse: {b:?}");
        }
        found.insert(cmd);
    }
    for name in Request::NAMES {
        let named = found.contains(*name) || doc.contains(&format!("{{\"cmd\":\"{name}\""));
        assert!(named, "`{name}` is not in docs/HEADLESS.md");
    }
    assert!(
        found.len() >= 20,
        "only {} examples parsed: {found:?}",
        found.len()
    );
}
