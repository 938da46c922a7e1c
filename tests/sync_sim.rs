//! Deterministic simulations of CHUM sync: several instances with in-memory logs, links
//! that deliver in order per direction but interleave at random, and cuts at random points
//! (in the middle of batches). Every run is seeded; a failure prints its seed.

use std::collections::{BTreeMap, VecDeque};

use lama_tui::domain::identity::{LocalIdentity, Secrets};
use lama_tui::domain::log::Log;
use lama_tui::domain::Channel;
use lama_tui::domain::{sign_entry, Body, Entry, Hlc};
use lama_tui::net::sync::{load_roster, Engine, Invalid, MemLog, PeerInfo, SyncMsg};

/// The simulated wall clock's start, and the receivers' `now` in single-engine tests.
const NOW: u64 = 1_800_000_000_000;
const TEAM: &str = "g-7ea70000000000000000000000000000";
const SECRET: &str = "g-5ec00000000000000000000000000000";
const GM: &str = "g-00000000000000000000000000000001";
const GX: &str = "g-00000000000000000000000000000002";
const GY: &str = "g-00000000000000000000000000000003";
const ELSEWHERE: &str = "g-00000000000000000000000000000004";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Inst {
    id: LocalIdentity,
    engine: Engine,
    log: MemLog,
}

fn inst(seed: u8, name: &str) -> Inst {
    let id = LocalIdentity::from_secrets(
        name,
        &format!("{name}/sim"),
        Secrets {
            person: [seed; 32],
            instance: [seed.wrapping_add(1); 32],
            transport: [seed.wrapping_add(2); 32],
        },
    );
    Inst {
        engine: Engine::new(id.person_id().to_string()),
        id,
        log: MemLog::default(),
    }
}

/// A link between two instances; `q[0]` carries a→b, `q[1]` b→a.
struct LinkSim {
    a: usize,
    b: usize,
    up: Option<(u64, u64)>, // link ids at a and at b
    q: [VecDeque<SyncMsg>; 2],
}

struct Net {
    insts: Vec<Inst>,
    links: Vec<LinkSim>,
    next_link: u64,
    rng: Rng,
    clock: u64,
    /// Every message delivered to each instance (for access-control checks).
    delivered: BTreeMap<usize, Vec<SyncMsg>>,
    /// Replica relation: (instance, peer) → peer is the instance's replica.
    replica_of: Vec<(usize, usize)>,
    /// How far each instance's wall clock is behind `clock`.
    behind: BTreeMap<usize, u64>,
}

impl Net {
    fn new(insts: Vec<Inst>, pairs: &[(usize, usize)], seed: u64) -> Net {
        Net {
            insts,
            links: pairs
                .iter()
                .map(|&(a, b)| LinkSim {
                    a,
                    b,
                    up: None,
                    q: [VecDeque::new(), VecDeque::new()],
                })
                .collect(),
            next_link: 1,
            rng: Rng(seed | 1),
            clock: NOW,
            delivered: BTreeMap::new(),
            replica_of: vec![],
            behind: BTreeMap::new(),
        }
    }

    /// Instance `i`'s wall clock.
    fn now(&self, i: usize) -> u64 {
        self.clock - self.behind.get(&i).copied().unwrap_or(0)
    }

    fn pid(&self, i: usize) -> String {
        self.insts[i].id.person_id().to_string()
    }

    fn push(&mut self, at: usize, sends: Vec<(u64, SyncMsg)>) {
        for (link, m) in sends {
            for l in self.links.iter_mut() {
                if let Some((la, lb)) = l.up {
                    if l.a == at && la == link {
                        l.q[0].push_back(m.clone());
                    } else if l.b == at && lb == link {
                        l.q[1].push_back(m.clone());
                    }
                }
            }
        }
    }

    fn connect(&mut self, li: usize) {
        if self.links[li].up.is_some() {
            return;
        }
        let (a, b) = (self.links[li].a, self.links[li].b);
        let (la, lb) = (self.next_link, self.next_link + 1);
        self.next_link += 2;
        self.links[li].up = Some((la, lb));
        let pa = PeerInfo {
            person_id: self.pid(b),
            is_my_replica: self.replica_of.contains(&(a, b)),
            replica_of: Default::default(),
        };
        let pb = PeerInfo {
            person_id: self.pid(a),
            is_my_replica: self.replica_of.contains(&(b, a)),
            replica_of: Default::default(),
        };
        let ia = &mut self.insts[a];
        let oa = ia
            .engine
            .open(&ia.log, la, pa)
            .expect("an in-memory log reads");
        let ib = &mut self.insts[b];
        let ob = ib
            .engine
            .open(&ib.log, lb, pb)
            .expect("an in-memory log reads");
        self.push(a, oa.send);
        self.push(b, ob.send);
    }

    fn cut(&mut self, li: usize) {
        if let Some((la, lb)) = self.links[li].up.take() {
            let (a, b) = (self.links[li].a, self.links[li].b);
            self.insts[a].engine.close(la);
            self.insts[b].engine.close(lb);
            self.links[li].q[0].clear();
            self.links[li].q[1].clear();
        }
    }

    /// Deliver one message on a random non-empty direction. Returns false when idle.
    fn step(&mut self) -> bool {
        let ready: Vec<(usize, usize)> = self
            .links
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                (0..2)
                    .filter(move |d| !l.q[*d].is_empty())
                    .map(move |d| (i, d))
            })
            .collect();
        if ready.is_empty() {
            return false;
        }
        let (li, d) = ready[self.rng.below(ready.len() as u64) as usize];
        let msg = self.links[li].q[d].pop_front().unwrap();
        let (to, link) = {
            let l = &self.links[li];
            let (la, lb) = l.up.unwrap();
            if d == 0 {
                (l.b, lb)
            } else {
                (l.a, la)
            }
        };
        self.delivered.entry(to).or_default().push(msg.clone());
        let now = self.now(to);
        let i = &mut self.insts[to];
        let mut out = i
            .engine
            .handle(&mut i.log, link, msg, now)
            .expect("MemLog never fails here");
        i.log.flush().unwrap();
        out.send.append(&mut out.after_flush);
        self.push(to, out.send);
        true
    }

    fn write(&mut self, at: usize, ch: &str, text: &str) -> Entry {
        self.clock += self.rng.below(3);
        let now = self.now(at);
        let i = &mut self.insts[at];
        let (e, out) = i
            .engine
            .write(&mut i.log, &i.id, ch, Body::Text { text: text.into() }, now)
            .unwrap();
        self.push(at, out.send);
        e
    }

    fn create(&mut self, at: usize, ch: &str, members: &[usize]) {
        let members: Vec<String> = members.iter().map(|m| self.pid(*m)).collect();
        self.clock += 1;
        let i = &mut self.insts[at];
        let (_, out) = i
            .engine
            .write(
                &mut i.log,
                &i.id,
                ch,
                Body::Create {
                    name: ch.into(),
                    members,
                },
                self.clock,
            )
            .unwrap();
        self.push(at, out.send);
    }

    /// Connect every link but `skip`, and deliver until idle.
    fn settle_except(&mut self, skip: usize) {
        for li in 0..self.links.len() {
            if li != skip {
                self.connect(li);
            }
        }
        while self.step() {}
    }

    fn settle(&mut self) {
        for li in 0..self.links.len() {
            self.connect(li);
        }
        let mut n = 0;
        while self.step() {
            n += 1;
            assert!(n < 5_000_000, "no quiescence");
        }
    }
}

fn ids(v: &[Entry]) -> Vec<String> {
    v.iter().map(Entry::id).collect()
}

/// Three instances (node 0, clients 1 and 2 linked only to the node), all writing into a
/// group channel while links are cut at random: identical views, nothing lost, no duplicate.
fn run_convergence(seed: u64) {
    let mut net = Net::new(
        vec![inst(1, "node"), inst(10, "alice"), inst(20, "bob")],
        &[(0, 1), (0, 2)],
        seed,
    );
    net.create(0, TEAM, &[0, 1, 2]);
    net.settle();
    let mut written = 0;
    let mut cuts = 0;
    for round in 0..400 {
        let r = net.rng.below(100);
        if r < 30 {
            let who = net.rng.below(3) as usize;
            net.write(who, TEAM, &format!("m{round} from {who}"));
            written += 1;
        } else if r < 38 {
            let li = net.rng.below(2) as usize;
            net.cut(li);
            cuts += 1;
        } else if r < 50 {
            let li = net.rng.below(2) as usize;
            net.connect(li);
        } else {
            let steps = net.rng.below(8);
            for _ in 0..steps {
                net.step();
            }
        }
    }
    net.settle();
    let v0 = net.insts[0].log.view(TEAM);
    let v1 = net.insts[1].log.view(TEAM);
    let v2 = net.insts[2].log.view(TEAM);
    assert_eq!(v0.len(), written + 1, "seed {seed}: node lost entries");
    assert_eq!(ids(&v0), ids(&v1), "seed {seed}: node and alice differ");
    assert_eq!(ids(&v0), ids(&v2), "seed {seed}: node and bob differ");
    let mut uniq = ids(&v0);
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), v0.len(), "seed {seed}: duplicate in view");
    assert!(cuts > 10, "seed {seed}: only {cuts} cuts");
    for i in &net.insts {
        assert_eq!(
            i.engine.stats.invalid, 0,
            "seed {seed}: valid entries refused"
        );
    }
}

#[test]
fn three_instances_converge_under_random_cuts_and_reordering() {
    for seed in 1..=40u64 {
        run_convergence(seed * 0x9e37_79b9);
    }
}

/// What a channel shows on instance `i`: its entries in view order whose authors the roster
/// admits at their place (what `history` shows).
fn shown(net: &Net, i: usize, ch: &str) -> Vec<String> {
    let log = &net.insts[i].log;
    let roster = load_roster(log, ch)
        .expect("an in-memory log reads")
        .expect("the channel is known");
    log.view(ch)
        .iter()
        .filter(|e| roster.admits(&e.author, e.seq, &e.view_key()))
        .map(Entry::id)
        .collect()
}

impl Net {
    /// A write that may be refused (Mallory's, if the removal reached her).
    fn try_write(&mut self, at: usize, ch: &str, text: &str) {
        self.clock += 1;
        let now = self.now(at);
        let i = &mut self.insts[at];
        let body = Body::Text { text: text.into() };
        if let Ok((_, out)) = i.engine.write(&mut i.log, &i.id, ch, body, now) {
            self.push(at, out.send);
        }
    }

    /// Put entries on the link from `from` to `to` as if `from` sent them (a hostile
    /// instance writing bytes its engine would not).
    fn inject(&mut self, from: usize, to: usize, entries: Vec<Entry>, batch: u64) {
        for l in self.links.iter_mut().filter(|l| l.up.is_some()) {
            let d = match (l.a, l.b) {
                (a, b) if a == from && b == to => 0,
                (a, b) if a == to && b == from => 1,
                _ => continue,
            };
            l.q[d].push_back(SyncMsg::Entries { batch, entries });
            return;
        }
    }

    /// A hostile entry by `m` in `ch`, invalid by construction (so it can never fork an
    /// honest log): `kind` picks a forged id, a stamp far ahead, a stamp not after her last
    /// one, or (once she is removed) a backdated text or a members entry re-adding her.
    fn hostile(&mut self, m: usize, ch: &str, kind: u64, removed: bool, t0: u64) -> Option<Entry> {
        let me = self.insts[m].id.clone();
        let pid = me.person_id().to_string();
        let head = self.insts[m].log.head(ch, &pid).expect("reads");
        let prev = head
            .as_ref()
            .and_then(|h| self.insts[m].log.get(ch, &pid, h.0).expect("reads"));
        let seq = head.as_ref().map_or(1, |h| h.0 + 1);
        let prev_id = head.map(|h| h.1);
        let sign = |c: &str, ms: u64, body: Body| {
            sign_entry(&me, c, seq, prev_id.clone(), Hlc { ms, c: 0 }, body)
        };
        let text = |t: &str| Body::Text { text: t.into() };
        Some(match kind % 5 {
            0 => sign(&format!("{ch}\u{0}x"), self.clock, text("forged id")),
            1 => sign(ch, self.clock + 3_600_000, text("from the future")),
            2 => sign(ch, prev?.hlc.ms, text("not after my last")),
            3 if removed => sign(ch, t0 + 1, text("backdated after removal")),
            4 if removed => {
                let heads = [(pid.clone(), seq - 1)].into_iter().collect();
                let body = Body::Members {
                    add: vec![pid.clone()],
                    remove: vec![],
                    heads,
                };
                sign(ch, t0 + 2, body)
            }
            _ => return None,
        })
    }
}

/// A node, two honest clients and Mallory, a member linked to the node and to alice. She
/// writes, is removed at a random point, and keeps writing (her engine never learns) and
/// injecting hostile entries. Every honest instance ends showing the same view, with every
/// honest entry and none of hers after the removal.
fn run_hostile(seed: u64) {
    let mut net = Net::new(
        vec![
            inst(1, "node"),
            inst(10, "alice"),
            inst(20, "bob"),
            inst(40, "mallory"),
        ],
        &[(0, 1), (0, 2), (0, 3), (1, 3)],
        seed,
    );
    net.create(0, TEAM, &[0, 1, 2, 3]);
    let t0 = net.clock;
    net.settle();
    let remove_at = 50 + net.rng.below(250);
    let mut removed = false;
    let mut honest = vec![];
    let mut injected = 0;
    for round in 0..400u64 {
        if round == remove_at {
            change(&mut net, 0, TEAM, 3, false);
            removed = true;
        }
        let r = net.rng.below(100);
        if r < 25 {
            let who = net.rng.below(3) as usize;
            honest.push(net.write(who, TEAM, &format!("m{round} from {who}")).id());
        } else if r < 35 {
            net.try_write(3, TEAM, &format!("mallory {round}"));
        } else if r < 45 {
            let kind = net.rng.below(5);
            let to = if net.rng.below(2) == 0 { 0 } else { 1 };
            if let Some(e) = net.hostile(3, TEAM, kind, removed, t0) {
                net.inject(3, to, vec![e], 1_000_000 + round);
                injected += 1;
            }
        } else if r < 52 {
            let li = net.rng.below(4) as usize;
            net.cut(li);
        } else if r < 62 {
            let li = net.rng.below(4) as usize;
            net.connect(li);
        } else {
            for _ in 0..net.rng.below(8) {
                net.step();
            }
        }
    }
    if !removed {
        change(&mut net, 0, TEAM, 3, false);
    }
    net.settle();
    let v0 = shown(&net, 0, TEAM);
    assert_eq!(
        v0,
        shown(&net, 1, TEAM),
        "seed {seed}: node and alice differ"
    );
    assert_eq!(v0, shown(&net, 2, TEAM), "seed {seed}: node and bob differ");
    for id in &honest {
        assert!(v0.contains(id), "seed {seed}: an honest entry is missing");
    }
    let mallory = net.pid(3);
    let removal = net.insts[0]
        .log
        .view(TEAM)
        .into_iter()
        .find(|e| matches!(&e.body, Body::Members { remove, .. } if remove.contains(&mallory)))
        .expect("the removal");
    let Body::Members { heads, .. } = &removal.body else {
        unreachable!("found as a members entry")
    };
    let cut = heads[&mallory];
    for e in net.insts[0].log.view(TEAM) {
        if e.author == mallory && v0.contains(&e.id()) {
            assert!(
                e.seq <= cut,
                "seed {seed}: her seq {} after the cut shows",
                e.seq
            );
        }
    }
    for i in 0..3 {
        let members = load_roster(&net.insts[i].log, TEAM)
            .expect("reads")
            .expect("known")
            .current()
            .to_vec();
        assert!(
            !members.contains(&mallory),
            "seed {seed}: she is back at {i}"
        );
        assert_eq!(members.len(), 3, "seed {seed}: members at {i}");
    }
    assert!(injected > 5, "seed {seed}: only {injected} hostile entries");
}

#[test]
fn honest_views_converge_while_a_removed_member_backdates_forges_and_keeps_writing() {
    let base = seed_from_env();
    for k in 0..24u64 {
        run_hostile(base.wrapping_add(k.wrapping_mul(0x9e37_79b9)));
    }
}

/// `LAMA_SEED` replays a run of the hostile simulation.
fn seed_from_env() -> u64 {
    std::env::var("LAMA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

#[test]
fn a_cut_in_the_middle_of_a_catch_up_resumes_without_loss_or_duplicates() {
    let mut net = Net::new(vec![inst(1, "node"), inst(10, "alice")], &[(0, 1)], 7);
    let ch = lama_tui::net::pairing::direct_channel_id(&net.pid(0), &net.pid(1));
    for i in 0..1000 {
        net.write(1, &ch, &format!("offline {i}"));
    }
    for _ in 0..5 {
        net.connect(0);
        // A few messages, then the connection dies mid-batch.
        for _ in 0..3 {
            net.step();
        }
        net.cut(0);
    }
    let partial = net.insts[0].log.view(&ch).len();
    assert!(partial > 0 && partial < 1000, "partial = {partial}");
    net.settle();
    let v = net.insts[0].log.view(&ch);
    assert_eq!(v.len(), 1000);
    assert_eq!(ids(&v), ids(&net.insts[1].log.view(&ch)));
    // In order.
    for (i, e) in v.iter().enumerate() {
        assert_eq!(e.text(), Some(format!("offline {i}").as_str()));
    }
}

#[test]
fn entries_never_reach_a_non_member_not_even_their_ids() {
    // node 0, members 1 and 2, stranger 3 connected to the same node.
    let mut net = Net::new(
        vec![
            inst(1, "node"),
            inst(10, "alice"),
            inst(20, "bob"),
            inst(30, "eve"),
        ],
        &[(0, 1), (0, 2), (0, 3)],
        99,
    );
    net.create(0, SECRET, &[0, 1, 2]);
    net.settle();
    for i in 0..50 {
        net.write((i % 3) as usize, SECRET, &format!("s{i}"));
    }
    net.settle();
    assert_eq!(net.insts[2].log.view(SECRET).len(), 51);
    assert!(net.insts[3].log.view(SECRET).is_empty());
    let secret_ids: Vec<String> = net.insts[0]
        .log
        .view(SECRET)
        .iter()
        .map(Entry::id)
        .collect();
    for m in net.delivered.get(&3).cloned().unwrap_or_default() {
        let text = serde_json::to_string(&m).unwrap();
        assert!(!text.contains(SECRET), "eve saw the channel: {text}");
        for id in &secret_ids {
            assert!(!text.contains(id.as_str()), "eve saw an entry id");
        }
    }
}

#[test]
fn a_replica_holds_and_forwards_its_clients_channels() {
    // alice (1) and bob (2) share a 1:1 channel; node 0 is alice's replica, not a member.
    // bob is connected only to the node, alice writes while bob is offline.
    let mut net = Net::new(
        vec![inst(1, "node"), inst(10, "alice"), inst(20, "bob")],
        &[(0, 1), (0, 2)],
        5,
    );
    net.replica_of.push((1, 0));
    let (a, b) = (net.pid(1), net.pid(2));
    net.insts[0].engine.set_replicated([a.clone()]);
    let ch = lama_tui::net::pairing::direct_channel_id(&a, &b);
    net.connect(0);
    for i in 0..20 {
        net.write(1, &ch, &format!("to bob {i}"));
    }
    while net.step() {}
    assert_eq!(net.insts[0].log.view(&ch).len(), 20, "replica stored them");
    net.cut(0); // alice goes away
    net.connect(1); // bob comes online, talks only to the node
    while net.step() {}
    assert_eq!(
        net.insts[2].log.view(&ch).len(),
        20,
        "bob got them via the replica"
    );
}

fn signed(
    who: &LocalIdentity,
    ch: &str,
    seq: u64,
    prev: Option<String>,
    ms: u64,
    text: &str,
) -> Entry {
    sign_entry(
        who,
        ch,
        seq,
        prev,
        Hlc { ms, c: 0 },
        Body::Text { text: text.into() },
    )
}

#[test]
fn every_invalid_entry_is_refused_counted_and_reported() {
    let node = inst(1, "node");
    let alice = inst(10, "alice");
    let eve = inst(30, "eve");
    let mut log = MemLog::default();
    let (n, a) = (
        node.id.person_id().to_string(),
        alice.id.person_id().to_string(),
    );
    log.add_channel(Channel {
        id: GX.to_string(),
        name: "x".into(),
        members: vec![n.clone(), a.clone()],
        created_at: 0,
    });
    let mut engine = Engine::new(n.clone());
    let _ = engine.open(
        &log,
        1,
        PeerInfo {
            person_id: a.clone(),
            is_my_replica: false,
            replica_of: Default::default(),
        },
    );
    let e1 = signed(&alice.id, GX, 1, None, 10, "one");
    let e2 = signed(&alice.id, GX, 2, Some(e1.id()), 11, "two");
    let mut bad_sig = signed(&alice.id, GX, 1, None, 10, "one");
    bad_sig.body = Body::Text {
        text: "changed".into(),
    };
    let gap = signed(&alice.id, GX, 3, Some("00".repeat(32)), 12, "gap");
    let fork = signed(&alice.id, GX, 1, None, 10, "another first");
    let bad_prev = signed(&alice.id, GX, 2, Some("ab".repeat(32)), 11, "bad prev");
    let outsider = signed(&eve.id, GX, 1, None, 10, "let me in");
    let not_shared = signed(&alice.id, ELSEWHERE, 1, None, 10, "hm");

    let mut send = |entries: Vec<Entry>, batch: u64| {
        let out = engine
            .handle(&mut log, 1, SyncMsg::Entries { batch, entries }, NOW)
            .unwrap();
        let acks: Vec<_> = out
            .after_flush
            .iter()
            .filter_map(|(_, m)| match m {
                SyncMsg::Ack { rejected, .. } => Some(rejected.clone()),
                _ => None,
            })
            .collect();
        (out.stored.len(), acks.concat())
    };
    let (stored, rej) = send(vec![bad_sig.clone(), gap.clone()], 1);
    assert_eq!(stored, 0);
    assert_eq!(
        rej.iter().map(|r| r.reason.clone()).collect::<Vec<_>>(),
        // The gap entry is correctly signed by alice, whose key the batch's (badly signed)
        // first entry certifies by its hash: it is refused for the gap.
        vec![Invalid::BadSignature, Invalid::Gap]
    );
    let (stored, rej) = send(vec![e1.clone(), fork, gap, outsider, not_shared], 2);
    assert_eq!(stored, 1);
    let reasons: Vec<Invalid> = rej.iter().map(|r| r.reason.clone()).collect();
    assert_eq!(
        reasons,
        vec![
            Invalid::Fork,
            Invalid::Gap,
            Invalid::NotMember,
            Invalid::NotMember
        ]
    );
    let (stored, rej) = send(vec![bad_prev, e2.clone()], 3);
    assert_eq!(stored, 1);
    assert_eq!(rej[0].reason, Invalid::Fork);
    // A replay of stored entries: not stored twice, not an error.
    let (stored, rej) = send(vec![e1, e2], 4);
    assert_eq!((stored, rej.len()), (0, 0));
    assert_eq!(engine.stats.duplicates, 2);
    assert_eq!(engine.stats.invalid, 7);
    assert_eq!(log.view(GX).len(), 2);
    assert!(log.view(ELSEWHERE).is_empty());
    assert!(log.head(ELSEWHERE, &a).expect("reads").is_none());
}

#[test]
fn views_merge_by_hlc_then_author_then_seq_even_with_skewed_clocks() {
    // bob's wall clock is an hour behind; replies still order after what they answer.
    let mut net = Net::new(vec![inst(1, "node"), inst(10, "alice")], &[(0, 1)], 3);
    let ch = lama_tui::net::pairing::direct_channel_id(&net.pid(0), &net.pid(1));
    net.settle();
    net.write(0, &ch, "question");
    net.settle();
    net.behind.insert(1, 3_600_000);
    net.write(1, &ch, "answer");
    net.settle();
    let v = net.insts[0].log.view(&ch);
    assert_eq!(
        v.iter().map(|e| e.text().unwrap()).collect::<Vec<_>>(),
        ["question", "answer"]
    );
    assert_eq!(ids(&v), ids(&net.insts[1].log.view(&ch)));
}

fn change(net: &mut Net, at: usize, ch: &str, who: usize, add: bool) {
    let pid = net.pid(who);
    net.clock += 5;
    let i = &mut net.insts[at];
    let body = if add {
        Body::Members {
            add: vec![pid],
            remove: vec![],
            heads: Default::default(),
        }
    } else {
        Body::Members {
            add: vec![],
            remove: vec![pid],
            heads: Default::default(),
        }
    };
    let (_, out) = i
        .engine
        .write(&mut i.log, &i.id, ch, body, net.clock)
        .unwrap();
    net.push(at, out.send);
}

#[test]
fn membership_changes_are_signed_entries_judged_at_their_place_in_the_view() {
    // node 0 and alice 1 in a group; bob 2 is connected to the node but not a member yet.
    let mut net = Net::new(
        vec![inst(1, "node"), inst(10, "alice"), inst(20, "bob")],
        &[(0, 1), (0, 2)],
        11,
    );
    net.create(0, GM, &[0, 1]);
    net.settle();
    net.write(1, GM, "before bob");
    net.settle();
    assert!(
        net.insts[2].log.view(GM).is_empty(),
        "bob is not a member yet"
    );
    // The node adds bob: he gets the whole channel, history included, and can write.
    change(&mut net, 0, GM, 2, true);
    net.settle();
    assert_eq!(net.insts[2].log.view(GM).len(), 3);
    net.write(2, GM, "hi, bob here");
    net.settle();
    assert_eq!(net.insts[1].log.view(GM).len(), 4);

    // Alice is removed while cut off; what she writes after that point is refused everywhere.
    net.cut(0);
    change(&mut net, 0, GM, 1, false);
    net.settle_except(0);
    net.clock += 10;
    net.write(1, GM, "written after my removal");
    net.connect(0);
    while net.step() {}
    let v0 = ids(&net.insts[0].log.view(GM));
    let v2 = ids(&net.insts[2].log.view(GM));
    assert_eq!(v0, v2, "node and bob agree");
    assert!(
        !net.insts[0]
            .log
            .view(GM)
            .iter()
            .any(|e| e.text() == Some("written after my removal")),
        "a removed member's later entry reached the view"
    );
    assert!(net.insts[0].engine.stats.invalid >= 1);
    // A removed member receives nothing from that point on (not even later ids), and
    // whatever she writes stays with her.
    net.write(0, GM, "after alice left");
    net.write(1, GM, "still talking");
    net.settle();
    assert!(!net.insts[1]
        .log
        .view(GM)
        .iter()
        .any(|e| e.text() == Some("after alice left")));
    assert!(!net.insts[2]
        .log
        .view(GM)
        .iter()
        .any(|e| e.text() == Some("still talking")));
    assert_eq!(
        ids(&net.insts[0].log.view(GM)),
        ids(&net.insts[2].log.view(GM))
    );
}

#[test]
fn an_author_never_seen_is_unknown() {
    let node = inst(1, "node");
    let alice = inst(10, "alice");
    let (n, a) = (
        node.id.person_id().to_string(),
        alice.id.person_id().to_string(),
    );
    let mut log = MemLog::default();
    log.add_channel(Channel {
        id: GY.to_string(),
        name: "y".into(),
        members: vec![n.clone(), a.clone()],
        created_at: 0,
    });
    let mut engine = Engine::new(n.to_string());
    let _ = engine.open(
        &log,
        1,
        PeerInfo {
            person_id: a.to_string(),
            is_my_replica: false,
            replica_of: Default::default(),
        },
    );
    let e2 = signed(
        &alice.id,
        GY,
        2,
        Some("00".repeat(32)),
        11,
        "no first entry",
    );
    let out = engine
        .handle(
            &mut log,
            1,
            SyncMsg::Entries {
                batch: 1,
                entries: vec![e2],
            },
            NOW,
        )
        .unwrap();
    let reasons: Vec<Invalid> = out.rejected.iter().map(|r| r.reason.clone()).collect();
    assert_eq!(reasons, vec![Invalid::UnknownAuthor]);
}

#[test]
fn behind_counts_what_a_peer_still_lacks() {
    let mut net = Net::new(vec![inst(1, "node"), inst(10, "alice")], &[(0, 1)], 21);
    let ch = lama_tui::net::pairing::direct_channel_id(&net.pid(0), &net.pid(1));
    net.settle();
    let alice = net.pid(1);
    assert_eq!(
        net.insts[0]
            .engine
            .behind(&net.insts[0].log, &alice)
            .expect("an in-memory log reads"),
        Some(0)
    );
    net.cut(0);
    for i in 0..300 {
        net.write(0, &ch, &format!("m{i}"));
    }
    assert_eq!(
        net.insts[0]
            .engine
            .behind(&net.insts[0].log, &alice)
            .expect("an in-memory log reads"),
        None,
        "no link"
    );
    net.connect(0);
    // Both haves delivered, no ack yet: all 300 are still missing on alice's disk.
    net.step();
    net.step();
    let behind = |net: &Net| {
        net.insts[0]
            .engine
            .behind(&net.insts[0].log, &alice)
            .expect("an in-memory log reads")
            .unwrap()
    };
    assert_eq!(behind(&net), 300);
    // As acks come back the count falls to zero.
    let mut seen_partial = false;
    while net.step() {
        let b = behind(&net);
        seen_partial |= b > 0 && b < 300;
    }
    assert!(seen_partial, "the count never fell gradually");
    assert_eq!(
        net.insts[0]
            .engine
            .behind(&net.insts[0].log, &alice)
            .expect("an in-memory log reads"),
        Some(0)
    );
}

/// A log whose reads fail while `broken` is set (a disk that cannot be read).
struct Unreadable {
    inner: MemLog,
    broken: bool,
}

impl Unreadable {
    fn check(&self) -> Result<(), lama_tui::domain::log::LogError> {
        if self.broken {
            return Err(lama_tui::domain::log::LogError::new("read error"));
        }
        Ok(())
    }
}

impl Log for Unreadable {
    fn head(
        &self,
        ch: &str,
        a: &str,
    ) -> Result<Option<(u64, String)>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.head(ch, a)
    }
    fn heads(&self, ch: &str) -> Result<Vec<(String, u64)>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.heads(ch)
    }
    fn channels(&self) -> Result<Vec<Channel>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.channels()
    }
    fn channel(&self, ch: &str) -> Result<Option<Channel>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.channel(ch)
    }
    fn range(
        &self,
        ch: &str,
        a: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.range(ch, a, from, limit)
    }
    fn get(
        &self,
        ch: &str,
        a: &str,
        seq: u64,
    ) -> Result<Option<Entry>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.get(ch, a, seq)
    }
    fn person(
        &self,
        id: &str,
    ) -> Result<Option<lama_tui::domain::Person>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.person(id)
    }
    fn membership(&self, ch: &str) -> Result<Vec<Entry>, lama_tui::domain::log::LogError> {
        self.check()?;
        self.inner.membership(ch)
    }
    fn insert(
        &mut self,
        e: &Entry,
        c: Option<&Channel>,
    ) -> Result<(), lama_tui::domain::log::LogError> {
        self.inner.insert(e, c)
    }
    fn put_person(
        &mut self,
        p: &lama_tui::domain::Person,
    ) -> Result<(), lama_tui::domain::log::LogError> {
        self.inner.put_person(p)
    }
    fn flush(&mut self) -> Result<(), lama_tui::domain::log::LogError> {
        Ok(())
    }
}

#[test]
fn a_store_that_cannot_read_gives_no_verdict_and_nothing_is_refused() {
    let node = inst(1, "node");
    let alice = inst(10, "alice");
    let (n, a) = (
        node.id.person_id().to_string(),
        alice.id.person_id().to_string(),
    );
    let mut log = Unreadable {
        inner: MemLog::default(),
        broken: false,
    };
    log.inner.add_channel(Channel {
        id: GX.to_string(),
        name: "x".into(),
        members: vec![n.clone(), a.clone()],
        created_at: 0,
    });
    let mut engine = Engine::new(n.to_string());
    let peer = PeerInfo {
        person_id: a.to_string(),
        is_my_replica: false,
        replica_of: Default::default(),
    };
    engine.open(&log, 1, peer).expect("readable at first");
    let e1 = signed(&alice.id, GX, 1, None, 10, "one");
    let e2 = signed(&alice.id, GX, 2, Some(e1.id()), 11, "two");
    let entries = vec![e1, e2];
    // Unreadable: an error for the caller, not a gap, fork or non-member verdict.
    log.broken = true;
    let msg = SyncMsg::Entries {
        batch: 1,
        entries: entries.clone(),
    };
    let r = engine.handle(&mut log, 1, msg, NOW);
    assert!(r.is_err(), "a read error is an error");
    assert_eq!(
        engine.stats.invalid, 0,
        "and no entry is counted as refused"
    );
    assert!(log.inner.view(GX).is_empty(), "and nothing is stored");
    // Readable again: the resent batch is stored whole.
    log.broken = false;
    let out = engine
        .handle(&mut log, 1, SyncMsg::Entries { batch: 2, entries }, NOW)
        .expect("readable");
    assert_eq!(out.stored.len(), 2);
    assert_eq!(engine.stats.invalid, 0);
}
