//! An in-memory network of [`NodeCore`]s, seeded: each connection gets a latency drawn from
//! the seed and delivers in order; time jumps to the next delivery or the next core
//! deadline. The handshake is the one thing simulated rather than run: a dial reaches the
//! node at its URL, and each side learns the other's verified identity and a shared
//! session hash (the Noise handshake itself is tested in `tests/handshake.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use lama_tui::core::mem::{DiskSwitch, MemStore};
use lama_tui::core::{
    Answer, Command, CommandError, CommandId, ConnId, CoreConfig, Event, IdentityInfo, Input,
    NodeCore, Output, PeerHello, Role, TrustSecret,
};
use lama_tui::domain::identity::{LocalIdentity, Secrets};
use lama_tui::domain::PeerIdentity;
use lama_tui::net::handshake::HandshakeError;
use lama_tui::net::link::{ConnError, LinkEnd};
use lama_tui::net::pake::{stretch_secret, Password};
use lama_tui::net::sync::SyncMsg;
use lama_tui::net::wire::{CloseCode, WireMsg};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Where the simulated clock starts (unix ms).
pub const T0: u64 = 1_800_000_000_000;
/// Most steps one run may take before it is called stuck.
const MAX_STEPS: usize = 500_000;

/// How to make an instance.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Person name.
    pub name: String,
    /// Node or client.
    pub role: Role,
    /// The trust secret, if any.
    pub secret: Option<String>,
    /// Accept peers that are not contacts.
    pub accept_unknown: bool,
    /// Extra time its dials take to reach the acceptor's Hello (a slower path, or a
    /// `hello_again` round trip), ms.
    pub slow_dials_ms: u64,
}

impl Spec {
    /// A node named `name`.
    pub fn node(name: &str) -> Spec {
        Spec {
            name: name.into(),
            role: Role::Node,
            secret: None,
            accept_unknown: false,
            slow_dials_ms: 0,
        }
    }
    /// A client named `name`.
    pub fn client(name: &str) -> Spec {
        Spec {
            role: Role::Client,
            ..Spec::node(name)
        }
    }
    /// With a trust secret.
    pub fn secret(mut self, s: &str) -> Spec {
        self.secret = Some(s.into());
        self
    }
}

/// One simulated instance.
pub struct Peer {
    /// Its name.
    pub name: String,
    /// The core.
    pub core: NodeCore,
    /// Its identity.
    pub me: Arc<LocalIdentity>,
    /// Nodes: where they listen.
    pub url: Option<String>,
    /// Its in-memory disk.
    pub disk: DiskSwitch,
    /// Events it emitted, in order.
    pub events: Vec<Event>,
    replies: BTreeMap<CommandId, Result<Answer, CommandError>>,
    rng: ChaCha20Rng,
    next_accept: ConnId,
    next_cmd: CommandId,
    /// An `Input::Commit` is scheduled (the group commit, as the actor does it).
    commit_due: bool,
    /// Acknowledgements of received batches it sent.
    pub acks_sent: u64,
    /// The instances it takes a `hello_known` from (its core's last list).
    known: Vec<PeerIdentity>,
    /// Links it dialed that came up with `hello_known` on both sides.
    pub short_hellos: u64,
    /// See [`Spec::slow_dials_ms`].
    slow_dials_ms: u64,
}

impl Peer {
    fn identity(&self) -> PeerIdentity {
        PeerIdentity {
            person: self.me.person.clone(),
            instance: self.me.instance.clone(),
            person_id: self.me.person_id(),
            instance_id: self.me.instance_id(),
        }
    }
}

/// One connection: (peer, conn) at each end; the dialer first.
struct Wire {
    ends: [(usize, ConnId); 2],
    /// The dialer sent `hello_known` and the acceptor took it.
    short: bool,
    /// The dialer has the acceptor's Hello.
    hello: bool,
    hash: Vec<u8>,
    /// Each end has been told the connection closed.
    closed: [bool; 2],
    latency: u64,
    /// The latest delivery time so far in each direction (index: receiving end).
    last_at: [u64; 2],
}

/// The network.
pub struct Sim {
    /// The instances.
    pub peers: Vec<Peer>,
    /// Simulated unix ms.
    pub now: u64,
    /// Steps taken.
    pub steps: usize,
    rng: ChaCha20Rng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    pending: HashMap<u64, (usize, Input)>,
    seq: u64,
    wires: Vec<Wire>,
    by_end: HashMap<(usize, ConnId), usize>,
    cuts: BTreeSet<(usize, usize)>,
}

impl Sim {
    /// An empty network whose every random choice comes from `seed`.
    pub fn new(seed: u64) -> Sim {
        Sim {
            peers: vec![],
            now: T0,
            steps: 0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            wires: vec![],
            by_end: HashMap::new(),
            cuts: BTreeSet::new(),
        }
    }

    /// Add an instance; it starts at once.
    pub fn add(&mut self, spec: Spec) -> usize {
        let mut secrets = [[0u8; 32]; 3];
        for s in &mut secrets {
            self.rng.fill_bytes(s);
        }
        let [person, instance, transport] = secrets;
        let inst_name = format!("{}/{}", spec.name, spec.role.as_str());
        let me = Arc::new(LocalIdentity::from_secrets(
            &spec.name,
            &inst_name,
            Secrets {
                person,
                instance,
                transport,
            },
        ));
        let idx = self.peers.len();
        let url = (spec.role == Role::Node).then(|| format!("ws://peer{idx}.sim:8765"));
        let info = IdentityInfo {
            role: spec.role,
            name: spec.name.clone(),
            person_id: me.person_id().to_string(),
            instance_id: me.instance_id().to_string(),
            endpoint: url.clone(),
        };
        let cfg = CoreConfig {
            role: spec.role,
            accept_unknown: spec.accept_unknown,
            trust_secret: spec.secret.map(|s| TrustSecret(zeroize::Zeroizing::new(s))),
            node_url: "ws://nowhere.sim:8765".into(),
            listening: url.as_ref().map(|_| "0.0.0.0:8765".into()),
            discovery: lama_tui::net::discovery::Scope::Off,
            advertised: url.iter().cloned().collect(),
        };
        let disk = DiskSwitch::default();
        let store = Box::new(MemStore::new(disk.clone()));
        let seed = self.rng.next_u64();
        let core = NodeCore::new(cfg, me.clone(), info, store, self.now, seed)
            .expect("an empty in-memory store opens");
        self.peers.push(Peer {
            name: spec.name,
            core,
            me,
            url,
            disk,
            events: vec![],
            replies: BTreeMap::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
            next_accept: 1,
            next_cmd: 0,
            commit_due: false,
            acks_sent: 0,
            known: Vec::new(),
            short_hellos: 0,
            slow_dials_ms: spec.slow_dials_ms,
        });
        self.input(idx, Input::Start);
        idx
    }

    /// Give `p` a command; its answer arrives with [`Sim::reply`].
    pub fn command(&mut self, p: usize, cmd: Command) -> CommandId {
        self.peers[p].next_cmd += 1;
        let id = self.peers[p].next_cmd;
        self.input(p, Input::Command { id, cmd });
        id
    }

    /// Run until `p` answered command `id` (at most `max_ms` of simulated time).
    pub fn reply(&mut self, p: usize, id: CommandId, max_ms: u64) -> Result<Answer, CommandError> {
        let done = self.run_until(max_ms, |s| s.peers[p].replies.contains_key(&id));
        assert!(done, "{} never answered command {id}", self.peers[p].name);
        self.peers[p]
            .replies
            .remove(&id)
            .expect("invariant: checked above")
    }

    /// A command and its answer.
    pub fn ask(&mut self, p: usize, cmd: Command) -> Result<Answer, CommandError> {
        let id = self.command(p, cmd);
        self.reply(p, id, 60_000)
    }

    /// Cut every connection between `a` and `b`, and refuse dials between them until
    /// [`Sim::heal`].
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert((a.min(b), a.max(b)));
        let lost = LinkEnd {
            code: None,
            reason: "connection lost".into(),
        };
        for w in 0..self.wires.len() {
            let [(x, _), (y, _)] = self.wires[w].ends;
            if (x, y) == (a, b) || (x, y) == (b, a) {
                for side in 0..2 {
                    self.end_wire(w, side, lost.clone(), 0);
                }
            }
        }
    }

    /// Let `a` and `b` reach each other again.
    pub fn heal(&mut self, a: usize, b: usize) {
        self.cuts.remove(&(a.min(b), a.max(b)));
    }

    /// Connections between `a` and `b` both ends hold open.
    pub fn open_links(&self, a: usize, b: usize) -> usize {
        self.wires
            .iter()
            .filter(|w| {
                let [(x, _), (y, _)] = w.ends;
                ((x, y) == (a, b) || (x, y) == (b, a)) && w.hello && w.closed == [false; 2]
            })
            .count()
    }

    /// Run until `cond` holds, at most `max_ms` of simulated time; whether it held.
    pub fn run_until(&mut self, max_ms: u64, cond: impl Fn(&Sim) -> bool) -> bool {
        let end = self.now + max_ms;
        while !cond(self) {
            if !self.step(end) {
                return cond(self);
            }
        }
        true
    }

    /// Let `ms` of simulated time pass.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// One delivery or timer, if one is due by `end`.
    fn step(&mut self, end: u64) -> bool {
        self.steps += 1;
        assert!(self.steps < MAX_STEPS, "the simulation is stuck");
        let next_msg = self.queue.peek().map(|Reverse((at, _))| *at);
        let next_timer = (0..self.peers.len())
            .filter_map(|p| self.peers[p].core.poll_timeout().map(|t| (t, p)))
            .min();
        let msg_first = match (next_msg, next_timer) {
            (Some(m), Some((t, _))) => m <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if msg_first {
            let Reverse((at, seq)) = self.queue.pop().expect("invariant: peeked");
            if at > end {
                self.queue.push(Reverse((at, seq)));
                return false;
            }
            self.now = self.now.max(at);
            let (p, input) = self.pending.remove(&seq).expect("invariant: queued");
            self.input(p, input);
        } else {
            let (t, p) = next_timer.expect("invariant: matched above");
            if t > end {
                return false;
            }
            self.now = self.now.max(t);
            self.input(p, Input::Timeout);
        }
        true
    }

    fn schedule(&mut self, at: u64, p: usize, input: Input) {
        self.seq += 1;
        self.pending.insert(self.seq, (p, input));
        self.queue.push(Reverse((at, self.seq)));
    }

    fn input(&mut self, p: usize, input: Input) {
        let now = self.now;
        let peer = &mut self.peers[p];
        if matches!(input, Input::Commit) {
            peer.commit_due = false;
        }
        let outs = peer.core.handle(input, now, &mut peer.rng);
        for out in outs {
            self.output(p, out);
        }
        // Received entries wait for a commit that a seeded 0 to 3 ms later makes them
        // durable, so several inputs may share it (as messages queued at the actor do).
        if self.peers[p].core.wants_commit() && !self.peers[p].commit_due {
            self.peers[p].commit_due = true;
            let at = now + self.rng.next_u64() % 4;
            self.schedule(at, p, Input::Commit);
        }
    }

    fn output(&mut self, p: usize, out: Output) {
        match out {
            Output::Dial {
                conn,
                url,
                expected_key,
                extras,
            } => self.dial(p, conn, &url, expected_key, extras),
            Output::Send { conn, msg } => {
                if let WireMsg::Sync {
                    msg: SyncMsg::Ack { .. },
                } = &msg
                {
                    // An ack promises the batch is on disk: nothing may wait for a flush.
                    let waiting = self.peers[p].disk.unflushed();
                    assert_eq!(
                        waiting, 0,
                        "{} acked with entries not flushed",
                        self.peers[p].name
                    );
                    self.peers[p].acks_sent += 1;
                }
                self.send(p, conn, msg)
            }
            Output::Close { conn, code, reason } => self.close(p, conn, code, reason),
            Output::Disconnect { conn } => {
                let reason = "the peer is shutting down".to_string();
                self.close(p, conn, CloseCode::Shutdown, reason)
            }
            Output::Reply { id, result } => {
                self.peers[p].replies.insert(id, result);
            }
            Output::Event(e) => self.peers[p].events.push(e),
            Output::KnownPeers(list) => self.peers[p].known = list,
            Output::Stretch { conn, secret, node } => {
                let password = Password(stretch_secret(secret.0.as_bytes(), &node));
                self.schedule(self.now + 1, p, Input::Stretched { conn, password });
            }
            Output::Stop => panic!("{} stopped: its store was lost", self.peers[p].name),
        }
    }

    fn dial(
        &mut self,
        p: usize,
        conn: ConnId,
        url: &str,
        expected_key: Option<[u8; 32]>,
        extras: lama_tui::net::handshake::HelloExtras,
    ) {
        let latency = 1 + self.rng.next_u64() % 20;
        let target = self
            .peers
            .iter()
            .position(|t| t.url.as_deref() == Some(url));
        let Some(t) = target.filter(|t| !self.cuts.contains(&(p.min(*t), p.max(*t)))) else {
            let error = ConnError::Unreachable {
                url: url.into(),
                why: "connection refused".into(),
            };
            return self.schedule(self.now + latency, p, Input::DialFailed { conn, error });
        };
        let key = self.peers[t]
            .me
            .instance
            .transport_key_bytes()
            .expect("valid key");
        if let Some(want) = expected_key.filter(|k| *k != key) {
            let error = ConnError::Handshake(HandshakeError::KeyMismatch {
                expected: lama_tui::domain::hex::encode(want),
                got: lama_tui::domain::hex::encode(key),
            });
            return self.schedule(self.now + latency, p, Input::DialFailed { conn, error });
        }
        let mut hash = vec![0u8; 32];
        self.rng.fill_bytes(&mut hash);
        let tconn = self.peers[t].next_accept;
        self.peers[t].next_accept += 2;
        let w = self.wires.len();
        let at = self.now + latency;
        // As the shell does it: `hello_known` to a contact whose key we expect, taken when
        // the acceptor's list has our key (else it asks for the full Hello, a round trip).
        let me = self.peers[p].identity();
        let offered = extras.known_peer.as_ref().is_some_and(|k| {
            k.instance_id == self.peers[t].me.instance_id()
                && extras.invite.is_none()
                && extras.pake.is_none()
                && extras.then.is_none()
        });
        let taken = self.peers[t].known.contains(&me);
        let short = offered && taken;
        let at = at + self.peers[p].slow_dials_ms;
        let at = if offered && !taken {
            at + 2 * latency
        } else {
            at
        };
        self.wires.push(Wire {
            ends: [(p, conn), (t, tconn)],
            short,
            hello: false,
            hash: hash.clone(),
            closed: [false; 2],
            latency,
            last_at: [0, at],
        });
        self.by_end.insert((p, conn), w);
        self.by_end.insert((t, tconn), w);
        let hello = PeerHello {
            peer: self.peers[p].identity(),
            hash,
            invite: extras.invite,
            pake: extras.pake,
            known_profile: extras.known_profile,
            rtt_ms: u32::try_from(2 * latency).unwrap_or(u32::MAX),
            short,
        };
        self.schedule(at, t, Input::Incoming { conn: tconn, hello });
        // What the dialer sends in the Hello's flight arrives right behind it (ties keep
        // the order they were scheduled in).
        if let Some(msg) = extras.then {
            let at = self.arrival(w, 1);
            self.schedule(
                at,
                t,
                Input::Msg {
                    conn: tconn,
                    msg: *msg,
                },
            );
        }
    }

    /// When a delivery to `side` of wire `w` happens: after its latency, in order.
    fn arrival(&mut self, w: usize, side: usize) -> u64 {
        let wire = &mut self.wires[w];
        let at = (self.now + wire.latency).max(wire.last_at[side]);
        wire.last_at[side] = at;
        at
    }

    fn send(&mut self, p: usize, conn: ConnId, msg: WireMsg) {
        let Some(&w) = self.by_end.get(&(p, conn)) else {
            return;
        };
        let side = usize::from(self.wires[w].ends[1] == (p, conn));
        if self.wires[w].closed[side] {
            return;
        }
        let (q, qconn) = self.wires[w].ends[1 - side];
        let at = self.arrival(w, 1 - side);
        if side == 1 && !self.wires[w].hello {
            // The acceptor's first message is its Hello: the dial is complete. A short one
            // answers only a short one.
            let known_profile = match msg {
                WireMsg::Hello { known_profile, .. } => known_profile,
                WireMsg::HelloKnown { known_profile, .. } if self.wires[w].short => {
                    self.peers[q].short_hellos += 1;
                    known_profile
                }
                _ => panic!("the acceptor's first message must be its hello, got {msg:?}"),
            };
            self.wires[w].hello = true;
            let hello = PeerHello {
                peer: self.peers[p].identity(),
                hash: self.wires[w].hash.clone(),
                invite: None,
                pake: None,
                known_profile,
                rtt_ms: u32::try_from(2 * self.wires[w].latency).unwrap_or(u32::MAX),
                short: false,
            };
            return self.schedule(at, q, Input::Dialed { conn: qconn, hello });
        }
        self.schedule(at, q, Input::Msg { conn: qconn, msg });
    }

    fn close(&mut self, p: usize, conn: ConnId, code: CloseCode, reason: String) {
        let Some(&w) = self.by_end.get(&(p, conn)) else {
            return;
        };
        let side = usize::from(self.wires[w].ends[1] == (p, conn));
        if self.wires[w].closed[side] {
            return;
        }
        let end = LinkEnd {
            code: Some(code),
            reason,
        };
        self.end_wire(w, side, end.clone(), 0);
        let delay = self.wires[w].latency;
        self.end_wire(w, 1 - side, end, delay);
    }

    /// Tell `side` of wire `w` that it ended, `delay` ms from now (after what is in flight
    /// towards it).
    fn end_wire(&mut self, w: usize, side: usize, end: LinkEnd, delay: u64) {
        if self.wires[w].closed[side] {
            return;
        }
        self.wires[w].closed[side] = true;
        let (p, conn) = self.wires[w].ends[side];
        let at = (self.now + delay).max(self.wires[w].last_at[side]);
        self.wires[w].last_at[side] = at;
        let input = if side == 0 && !self.wires[w].hello {
            // Refused before the acceptor's Hello: the dial itself fails.
            let error = ConnError::Closed {
                code: end.code,
                reason: end.reason,
            };
            Input::DialFailed { conn, error }
        } else {
            Input::Closed { conn, end }
        };
        self.schedule(at, p, input);
    }
}

/// The seeds to run: `LAMA_SEED` alone, or a few fixed ones.
pub fn seeds() -> Vec<u64> {
    match std::env::var("LAMA_SEED") {
        Ok(s) => vec![s.parse().expect("LAMA_SEED is a number")],
        Err(_) => (0..4).collect(),
    }
}

/// Run `scenario` under every seed; a failure names its seed and how to replay it.
pub fn each_seed(test: &str, scenario: impl Fn(&mut Sim)) {
    for seed in seeds() {
        let mut sim = Sim::new(seed);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&mut sim)));
        if let Err(e) = r {
            eprintln!(
                "seed={seed} step={} t={}ms: failed; replay with LAMA_SEED={seed} cargo test --test core_sim {test}",
                sim.steps,
                sim.now - T0
            );
            std::panic::resume_unwind(e);
        }
    }
}
