//! Hostile members and contacts against a running node over real sockets: a removed member
//! backdating entries, forged channel ids, stamps at the end of time, a flood of channels,
//! and profiles carrying terminal escapes and junk endpoints. Mallory is a contact whose
//! keys the test holds; she speaks the protocol through the library's own link.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ident, Peer};
use lama_tui::domain::identity::{Endpoint, LocalIdentity, Profile};
use lama_tui::domain::{sign_entry, Body, Card, Code, Entry, Hlc};
use lama_tui::net::conn::{self, Link};
use lama_tui::net::handshake::HelloExtras;
use lama_tui::net::pairing::direct_channel_id;
use lama_tui::net::sync::{Have, Invalid, Rejection, SyncMsg};
use lama_tui::net::wire::WireMsg;
use serde_json::{json, Value};

type Stream = tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

fn card_of(who: &LocalIdentity) -> String {
    Code::Card(Card {
        name: who.person.name.clone(),
        person_key: who.person.verifying_key().unwrap().to_bytes(),
        instance_id: lama_tui::domain::identity::parse_hex::<32>(&who.instance_id(), "i").unwrap(),
        transport_key: who.instance.transport_key_bytes().unwrap(),
        urls: vec![],
    })
    .encode()
}

/// Mallory's side of a link: what she sends and what the node sends her.
struct Mallory {
    me: LocalIdentity,
    link: Link<Stream>,
    batch: u64,
    /// Everything the node sent on this link.
    got: Vec<SyncMsg>,
}

impl Mallory {
    /// Dial the node, state `have` (empty: she asks for everything she may see).
    async fn dial(url: &str, me: &LocalIdentity) -> Mallory {
        let mut link = conn::dial(url, me, None, HelloExtras::default())
            .await
            .expect("the node lets its contact in");
        let have = WireMsg::Sync {
            msg: SyncMsg::Have(Have::default()),
        };
        link.send(&have).await.expect("send have");
        Mallory {
            me: me.clone(),
            link,
            batch: 0,
            got: vec![],
        }
    }

    /// Push entries; the node's refusals in its ack.
    async fn push(&mut self, entries: Vec<Entry>) -> Vec<Rejection> {
        self.batch += 1;
        let batch = self.batch;
        let msg = SyncMsg::Entries { batch, entries };
        self.link
            .send(&WireMsg::Sync { msg })
            .await
            .expect("send entries");
        loop {
            match self.next(Duration::from_secs(20)).await {
                Some(SyncMsg::Ack { batch: b, rejected }) if b == batch => return rejected,
                Some(_) => {}
                None => panic!("no ack for batch {batch}"),
            }
        }
    }

    /// The next sync message from the node (acking its entries), or `None` after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<SyncMsg> {
        loop {
            let m = tokio::time::timeout(wait, self.link.recv()).await.ok()?;
            let WireMsg::Sync { msg } = m.expect("the link holds") else {
                continue;
            };
            if let SyncMsg::Entries { batch, .. } = &msg {
                let ack = SyncMsg::Ack {
                    batch: *batch,
                    rejected: vec![],
                };
                self.link
                    .send(&WireMsg::Sync { msg: ack })
                    .await
                    .expect("send ack");
            }
            self.got.push(msg.clone());
            return Some(msg);
        }
    }

    /// Read until the node says `done`; every entry it sent.
    async fn until_done(&mut self) -> Vec<Entry> {
        let mut entries = vec![];
        loop {
            match self.next(Duration::from_secs(20)).await {
                Some(SyncMsg::Entries { entries: e, .. }) => entries.extend(e),
                Some(SyncMsg::Done) => return entries,
                Some(_) => {}
                None => panic!("the node never finished its catch-up"),
            }
        }
    }

    /// Wait for one entry of `ch` from the node.
    async fn entry_in(&mut self, ch: &str) -> Entry {
        loop {
            match self.next(Duration::from_secs(20)).await {
                Some(SyncMsg::Entries { entries, .. }) => {
                    if let Some(e) = entries.into_iter().find(|e| e.channel == ch) {
                        return e;
                    }
                }
                Some(_) => {}
                None => panic!("no entry of {ch} arrived"),
            }
        }
    }

    fn sign(&self, ch: &str, seq: u64, prev: Option<&Entry>, ms: u64, body: Body) -> Entry {
        let hlc = Hlc { ms, c: 0 };
        sign_entry(&self.me, ch, seq, prev.map(Entry::id), hlc, body)
    }
}

fn text(t: &str) -> Body {
    Body::Text { text: t.into() }
}

fn reasons(r: &[Rejection]) -> Vec<Invalid> {
    r.iter().map(|r| r.reason.clone()).collect()
}

struct World {
    tmp: tempfile::TempDir,
    node: Peer,
    mallory: LocalIdentity,
    next: u64,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let node = Peer::start(
            "node",
            &tmp.path().join("n"),
            &["--name", "node@lama.local", "--discovery", "off"],
        );
        let mut w = World {
            tmp,
            node,
            mallory: ident(66, "mallory@lama.local"),
            next: 10,
        };
        let r = w.ask(json!({"cmd":"add_contact","card":card_of(&w.mallory)}));
        assert_eq!(r["event"], "contact_added", "{r}");
        w
    }

    fn ask(&mut self, cmd: Value) -> Value {
        self.next += 1;
        self.node.ask(cmd, self.next)
    }

    fn texts(&mut self, ch: &str) -> Vec<String> {
        let h = self.ask(json!({"cmd":"history","channel":ch,"limit":1000}));
        h["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn members(&mut self, ch: &str) -> Vec<String> {
        let c = self.ask(json!({"cmd":"channels"}));
        let chans = c["channels"].as_array().expect("channels").clone();
        let found = chans.iter().find(|c| c["id"] == ch).expect("the channel");
        let m = found["members"].as_array().expect("members");
        m.iter().map(|v| v.as_str().unwrap().to_string()).collect()
    }
}

/// The same node, stopped and started again on its data dir.
fn restarted(w: World) -> World {
    let World {
        tmp,
        node,
        mallory,
        next,
    } = w;
    assert!(node.quit().success());
    let node = Peer::start("node", &tmp.path().join("n"), &["--discovery", "off"]);
    World {
        tmp,
        node,
        mallory,
        next,
    }
}

#[test]
fn a_removed_member_cannot_write_or_rejoin_by_backdating_and_receives_nothing_after() {
    let rt = rt();
    let mut w = World::new();
    let m_pid = w.mallory.person_id().to_string();
    let r = w.ask(json!({"cmd":"create_channel","name":"team","members":[m_pid]}));
    let g = r["channel"].as_str().expect("a channel id").to_string();
    let url = w.node.endpoint();
    let mut m = rt.block_on(Mallory::dial(&url, &w.mallory));
    let create = rt
        .block_on(m.until_done())
        .into_iter()
        .find(|e| e.channel == g)
        .expect("Mallory, a member, gets the group");
    let t = create.hlc.ms;
    // A genuine message while she is a member.
    let e1 = m.sign(&g, 1, None, t + 1, text("hello team"));
    let r = rt.block_on(m.push(vec![e1.clone()]));
    assert!(r.is_empty(), "{r:?}");
    w.node
        .wait_for("her message", |v| v["text"] == "hello team");
    // Removed; the group goes on without her.
    let r = w.ask(json!({"cmd":"remove_member","channel":g,"person_id":m_pid}));
    assert_eq!(r["event"], "members_changed", "{r}");
    let r = w.ask(json!({"cmd":"send","channel":g,"text":"after the removal"}));
    assert_eq!(r["event"], "sent", "{r}");
    // She stamps new entries a few ms after the creation, before her removal in time: a
    // text, and (in its place) a members entry re-adding herself. Her removal cut her log
    // after seq 1: whatever the stamp, seq 2 is not a member's.
    let e2 = m.sign(&g, 2, Some(&e1), t + 2, text("backdated"));
    let r = rt.block_on(m.push(vec![e2]));
    assert_eq!(reasons(&r), vec![Invalid::NotMember], "{r:?}");
    let heads = [(m_pid.clone(), 1)].into_iter().collect();
    let body = Body::Members {
        add: vec![m_pid.clone()],
        remove: vec![],
        heads,
    };
    let e2b = m.sign(&g, 2, Some(&e1), t + 3, body);
    let r = rt.block_on(m.push(vec![e2b]));
    assert_eq!(reasons(&r), vec![Invalid::NotMember], "{r:?}");
    assert_eq!(w.texts(&g), ["hello team", "after the removal"]);
    assert!(!w.members(&g).contains(&m_pid), "she is not a member again");
    // Reconnecting with an empty `have`, she receives nothing of the group.
    drop(m);
    let mut m = rt.block_on(Mallory::dial(&url, &w.mallory));
    let got = rt.block_on(m.until_done());
    assert!(got.iter().all(|e| e.channel != g), "she got {got:?}");
    for msg in &m.got {
        let s = serde_json::to_string(msg).expect("json");
        assert!(!s.contains(&g), "the group leaked to her: {s}");
    }
    assert!(w.node.quit().success());
}

#[test]
fn channel_ids_outside_the_grammar_are_refused_and_cannot_shadow_a_group() {
    let rt = rt();
    let mut w = World::new();
    let m_pid = w.mallory.person_id().to_string();
    let n_pid = w.node.person_id();
    let r = w.ask(json!({"cmd":"create_channel","name":"team","members":[m_pid]}));
    let g = r["channel"].as_str().expect("a channel id").to_string();
    let r = w.ask(json!({"cmd":"remove_member","channel":g,"person_id":m_pid}));
    assert_eq!(r["event"], "members_changed", "{r}");
    let url = w.node.endpoint();
    let mut m = rt.block_on(Mallory::dial(&url, &w.mallory));
    rt.block_on(m.until_done());
    let now = now_ms();
    // A channel named like the group plus a NUL and more, listing her and the node; a
    // group id that is not `g-` + 32 hex; a 1:1 id in the wrong order.
    let members = vec![m_pid.clone(), n_pid.clone()];
    let create = || Body::Create {
        name: "x".into(),
        members: members.clone(),
    };
    let shadow = format!("{g}\u{0}x");
    let (lo, hi) = if m_pid < n_pid {
        (&m_pid, &n_pid)
    } else {
        (&n_pid, &m_pid)
    };
    let forged = [
        m.sign(&shadow, 1, None, now, create()),
        m.sign("g-team", 1, None, now, create()),
        m.sign(&format!("{hi}<->{lo}"), 1, None, now, text("wrong order")),
    ];
    let r = rt.block_on(m.push(forged.to_vec()));
    assert_eq!(reasons(&r), vec![Invalid::BadId; 3], "{r:?}");
    // Her text to the group is still refused, a member's still accepted.
    let e = m.sign(&g, 1, None, now + 1, text("let me in"));
    let r = rt.block_on(m.push(vec![e]));
    assert_eq!(reasons(&r), vec![Invalid::NotMember], "{r:?}");
    let r = w.ask(json!({"cmd":"send","channel":g,"text":"members only"}));
    assert_eq!(r["event"], "sent", "{r}");
    let c = w.ask(json!({"cmd":"channels"}));
    let ids: Vec<&str> = c["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2, "only the group and the 1:1: {ids:?}");
    assert!(ids.contains(&g.as_str()), "{ids:?}");
    // The headless edge answers `bad_id` too.
    let r = w.ask(json!({"cmd":"send","channel":shadow,"text":"x"}));
    assert_eq!(r["kind"], "bad_id", "{r}");
    let r = w.ask(json!({"cmd":"send","channel":"g-team","text":"x"}));
    assert_eq!(r["kind"], "bad_id", "{r}");
    assert!(w.node.quit().success());
}

#[test]
fn stamps_ahead_of_the_clock_are_refused_and_a_restart_keeps_the_clock_ahead_of_the_store() {
    let rt = rt();
    let mut w = World::new();
    let dm = direct_channel_id(&w.node.person_id(), &w.mallory.person_id());
    let url = w.node.endpoint();
    let mut m = rt.block_on(Mallory::dial(&url, &w.mallory));
    rt.block_on(m.until_done());
    // The end of time: refused, and the node's own stamps stay near its clock.
    let end = Hlc {
        ms: u64::MAX,
        c: u32::MAX,
    };
    let e = sign_entry(&w.mallory, &dm, 1, None, end, text("forever"));
    let r = rt.block_on(m.push(vec![e]));
    assert_eq!(reasons(&r), vec![Invalid::ClockSkew], "{r:?}");
    let r = w.ask(json!({"cmd":"send","channel":dm,"text":"what time is it"}));
    assert_eq!(r["event"], "sent", "{r}");
    let theirs = rt.block_on(m.entry_in(&dm));
    assert!(theirs.hlc.ms < now_ms() + 60_000, "{:?}", theirs.hlc);
    // Four minutes ahead is within the skew: accepted.
    let ahead = now_ms() + 4 * 60_000;
    let e1 = m.sign(&dm, 1, None, ahead, text("from the near future"));
    let r = rt.block_on(m.push(vec![e1]));
    assert!(r.is_empty(), "{r:?}");
    drop(m);
    // After a restart the node's next message still orders after it.
    let mut w = restarted(w);
    let r = w.ask(json!({"cmd":"send","channel":dm,"text":"after the restart"}));
    assert_eq!(r["event"], "sent", "{r}");
    assert_eq!(
        w.texts(&dm),
        [
            "what time is it",
            "from the near future",
            "after the restart"
        ]
    );
    let url = w.node.endpoint();
    let mut m = rt.block_on(Mallory::dial(&url, &w.mallory));
    let got = rt.block_on(m.until_done());
    let last = got
        .iter()
        .find(|e| e.text() == Some("after the restart"))
        .expect("the node's message");
    assert!(last.hlc.ms >= ahead, "{:?} < {ahead}", last.hlc);
    assert!(w.node.quit().success());
}

#[test]
fn a_contact_cannot_make_the_node_store_channels_it_is_not_in_or_more_than_the_quota() {
    let rt = rt();
    let mut w = World::new();
    let m_pid = w.mallory.person_id().to_string();
    let n_pid = w.node.person_id();
    let url = w.node.endpoint();
    let mut m = rt.block_on(Mallory::dial(&url, &w.mallory));
    rt.block_on(m.until_done());
    let before = w.ask(json!({"cmd":"stats"}))["entries"]
        .as_u64()
        .expect("entries");
    let now = now_ms() - 60_000;
    let group = |i: usize, members: Vec<String>| {
        let id = format!("g-{i:032x}");
        let body = Body::Create {
            name: format!("flood {i}"),
            members,
        };
        m.sign(&id, 1, None, now + i as u64, body)
    };
    // 300 groups of her own: held in memory for the link, never stored.
    let own: Vec<Entry> = (0..300).map(|i| group(i, vec![m_pid.clone()])).collect();
    // Groups that include the node are stored, up to the per-author quota.
    let quota = lama_tui::net::sync::QUOTA_CHANNELS as usize;
    let both = vec![m_pid.clone(), n_pid.clone()];
    let shared: Vec<Entry> = (1000..1000 + quota + 1)
        .map(|i| group(i, both.clone()))
        .collect();
    for chunk in own.chunks(100) {
        let r = rt.block_on(m.push(chunk.to_vec()));
        assert!(r.is_empty(), "{r:?}");
    }
    let stats = w.ask(json!({"cmd":"stats"}));
    assert_eq!(stats["entries"].as_u64(), Some(before), "{stats}");
    // Only the 1:1 made by adding her as a contact.
    let c = w.ask(json!({"cmd":"channels"}));
    assert_eq!(c["channels"].as_array().map(Vec::len), Some(1), "{c}");
    let mut refused = vec![];
    for chunk in shared.chunks(100) {
        refused.extend(rt.block_on(m.push(chunk.to_vec())));
    }
    assert_eq!(reasons(&refused), vec![Invalid::Quota], "{refused:?}");
    let c = w.ask(json!({"cmd":"channels"}));
    assert_eq!(c["channels"].as_array().map(Vec::len), Some(quota + 1));
    assert!(w.node.quit().success());
}

#[test]
fn profiles_with_escapes_or_junk_endpoints_are_refused() {
    let rt = rt();
    let mut w = World::new();
    let url = w.node.endpoint();
    let mut m = rt.block_on(Mallory::dial(&url, &w.mallory));
    rt.block_on(m.until_done());
    let endpoint = |url: &str| Endpoint {
        person_id: w.mallory.person_id().to_string(),
        instance_id: w.mallory.instance_id().to_string(),
        url: url.into(),
        transport_key: hex_key(&w.mallory),
    };
    let cases = [
        (
            "mal\x1b[31mlory\x07\u{9b}",
            vec![endpoint("ws://127.0.0.1:9")],
        ),
        ("mallory", vec![endpoint("http://127.0.0.1:9")]),
        ("mallory", vec![endpoint("ws://evil host:9")]),
        ("mallory", vec![endpoint("ws://127.0.0.1:99999")]),
        ("mallory", vec![endpoint("ws://127.0.0.1:9"); 17]),
    ];
    for (version, (name, endpoints)) in cases.into_iter().enumerate() {
        let profile = Profile::signed_from(
            &w.mallory,
            Profile {
                person_id: w.mallory.person_id().to_string(),
                name: name.into(),
                endpoints,
                version: 1 + version as u64,
                sig: String::new(),
            },
        );
        rt.block_on(m.link.send(&WireMsg::Profile { profile }))
            .expect("send profile");
    }
    // A good one last: the node takes it, so the ones before were judged by then.
    let good = Profile::signed_from(
        &w.mallory,
        Profile {
            person_id: w.mallory.person_id().to_string(),
            name: "Mallory M.".into(),
            endpoints: vec![endpoint("ws://127.0.0.1:9")],
            version: 100,
            sig: String::new(),
        },
    );
    rt.block_on(m.link.send(&WireMsg::Profile { profile: good }))
        .expect("send profile");
    w.node
        .wait_for("the good profile", |v| v["event"] == "endpoints_changed");
    let c = w.ask(json!({"cmd":"contacts"}));
    let mine = &c["contacts"][0];
    assert_eq!(mine["display_name"], "Mallory M.", "{c}");
    let log = lama_tui::app::logging::read_logs(&w.node.dir);
    for why in [
        "name must be",
        "scheme must be",
        "holds a space",
        "the port",
        "at most 16",
    ] {
        assert!(log.contains(why), "the log never said {why:?}");
    }
    assert!(w.node.quit().success());
}

fn hex_key(who: &LocalIdentity) -> String {
    who.instance.transport_key.clone()
}

/// A contact that is not the node's owner cannot use it as a home node: a `vouch` round
/// signed by itself admits nobody, an invitation it hands over is not carried, a
/// `home_paired` it sends adds no contact, and no short code is made for it.
#[test]
fn a_contact_that_is_not_the_owner_cannot_vouch_or_hand_over_invitations() {
    use lama_tui::domain::identity::{vouch_end_signed_bytes, vouch_ids_hash, vouch_signed_bytes};
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &["--discovery", "off"]);
    let mallory = ident(71, "mallory@lama.local");
    let friend = ident(72, "friend@lama.local");
    let r = node.ask(json!({"cmd":"add_contact","card":card_of(&mallory)}), 1);
    assert_eq!(r["event"], "contact_added", "{r}");
    let url = node.endpoint();
    let hex = |b: &[u8]| lama_tui::domain::hex::encode(b);
    let token = hex(&[5u8; 16]);
    rt().block_on(async {
        let mut link = conn::dial(&url, &mallory, None, HelloExtras::default())
            .await
            .expect("a contact gets in");
        let sig = mallory.sign_as_person(&vouch_signed_bytes(&friend.person, None));
        let ids = vouch_ids_hash([friend.person_id().as_str()]);
        let end = mallory.sign_as_person(&vouch_end_signed_bytes(&ids));
        let profile = Profile::signed(&friend, vec![], 1);
        let forged = [
            WireMsg::Vouch {
                person: friend.person.clone(),
                profile: None,
                sig: hex(&sig.to_bytes()),
            },
            WireMsg::VouchEnd {
                ids,
                sig: hex(&end.to_bytes()),
            },
            WireMsg::HomeInvite {
                token: token.clone(),
                expires_at: now_ms() / 1000 + 600,
                revoked: false,
            },
            WireMsg::HomePaired {
                token: token.clone(),
                person: friend.person.clone(),
                profile,
            },
            WireMsg::HomeShortCode { ttl_secs: 300 },
            // The node answers our `have` with its `done` only after everything before it.
            WireMsg::Sync {
                msg: SyncMsg::Have(Have::default()),
            },
        ];
        for m in &forged {
            link.send(m).await.expect("send");
        }
        loop {
            match link.recv().await.expect("the node keeps the link") {
                WireMsg::Sync { msg: SyncMsg::Done } => break,
                m @ WireMsg::HomeShortCodeMade { .. } => {
                    panic!("a short code made for a non-owner: {m:?}")
                }
                _ => continue,
            }
        }
    });
    let contacts = node.ask(json!({"cmd":"contacts"}), 2)["contacts"].clone();
    let ids: Vec<&str> = contacts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["person_id"].as_str())
        .collect();
    assert_eq!(ids, [mallory.person_id().to_string()], "{contacts}");
    let invites = node.ask(json!({"cmd":"invites"}), 3)["invites"].clone();
    assert_eq!(invites, json!([]), "a non-owner's invitation was carried");
    // The friend Mallory vouched for is a stranger to the node.
    let r = rt().block_on(conn::dial(&url, &friend, None, HelloExtras::default()));
    assert!(r.is_err(), "a stranger vouched for by a non-owner got in");
    node.quit();
}
