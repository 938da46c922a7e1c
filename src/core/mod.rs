//! The sans-IO node core: every decision an instance makes (who may connect, pairing by
//! each of the three ways, the duplicate-link rule, sync dispatch, endpoints, the full
//! disk), as [`NodeCore::handle`] over inputs, the time and an rng, returning outputs.
//!
//! It never reads a clock, spawns, awaits or touches a socket: the shell (`app::actor`)
//! moves bytes and timers, and tests drive several cores over an in-memory network
//! (`tests/core_sim.rs`). Time is unix milliseconds and never goes backwards; after every
//! input the shell re-reads [`NodeCore::poll_timeout`] and sends [`Input::Timeout`] then.
//! The store is called synchronously through [`store::CoreStore`].
//!
//! Connections: the shell reports a connection once its Noise handshake and the peer's
//! Hello are verified ([`Input::Incoming`], [`Input::Dialed`]), then each message on it
//! ([`Input::Msg`]) and its end ([`Input::Closed`]); the core answers with
//! [`Output::Send`], [`Output::Close`] and [`Output::Dial`].

pub mod api;
mod commands;
mod dial;
mod home;
mod home_short;
mod links;
pub mod mem;
mod netview;
mod pair;
pub mod store;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

pub use crate::net::pairing::flow::Rng;
pub use api::*;
pub use netview::{ContactNet, EndpointView, HomeNode, NetView, SelfNet};

use crate::domain::identity::LocalIdentity;
use crate::domain::{PeerIdentity, PersonId, Profile};
use crate::net::discovery::Announcement;
use crate::net::handshake::HelloExtras;
use crate::net::link::{ConnError, LinkEnd};
use crate::net::manager::{LinkMeta, Manager};
use crate::net::pake::{self, PakeRequest, Password};
use crate::net::sync::{Engine, SyncMsg};
use crate::net::wire::{CloseCode, WireMsg};
use store::CoreStore;

/// Names one connection, chosen by the core for dials and by the shell for accepts
/// (the shell uses odd numbers, the core even ones, so they never collide).
pub type ConnId = u64;
/// Names one command, so its [`Output::Reply`] finds its caller.
pub type CommandId = u64;

/// How often a store that hit a full disk is tried again.
pub const HEAL_INTERVAL_MS: u64 = 200;
/// Pairing exchanges in progress at once; a further one evicts the oldest.
pub const MAX_PENDING_PAIRINGS: usize = 64;

/// What the core needs to know of its configuration.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Role.
    pub role: Role,
    /// Accept peers that are not contacts.
    pub accept_unknown: bool,
    /// The shared trust secret.
    pub trust_secret: Option<TrustSecret>,
    /// The node a client pairs with by default (short codes, trust secret).
    pub node_url: String,
    /// The socket address a node listens on (for the network view).
    pub listening: Option<String>,
    /// Local discovery (for the network view).
    pub discovery: crate::net::discovery::Scope,
    /// Node: the URLs its invitations carry, `--public-url` first (the first is the
    /// endpoint in our profile).
    pub advertised: Vec<String>,
}

/// A verified Hello on a new connection: who, in which session, asking for what.
#[derive(Clone, Debug)]
pub struct PeerHello {
    /// The peer, its identity proof verified.
    pub peer: PeerIdentity,
    /// The Noise handshake hash of the session.
    pub hash: Vec<u8>,
    /// Responder side: the invitation token presented, if any.
    pub invite: Option<String>,
    /// Responder side: the PAKE pairing asked for, if any.
    pub pake: Option<PakeRequest>,
    /// The version of our profile the peer holds.
    pub known_profile: Option<u64>,
    /// One round trip, timed over the handshake (ms).
    pub rtt_ms: u32,
    /// Responder side: the peer sent `hello_known` (our answer is one too).
    pub short: bool,
}

/// Something that happened, for the core to decide on.
#[derive(Debug)]
pub enum Input {
    /// The instance starts (once, first).
    Start,
    /// A command from a shell.
    Command {
        /// Names the reply.
        id: CommandId,
        /// The command.
        cmd: Command,
    },
    /// A peer dialed us; its Hello is verified. The core answers with our Hello or a Close.
    Incoming {
        /// The connection.
        conn: ConnId,
        /// The peer's Hello.
        hello: PeerHello,
    },
    /// A dial of ours reached the peer and its Hello is verified.
    Dialed {
        /// The connection.
        conn: ConnId,
        /// The peer's Hello.
        hello: PeerHello,
    },
    /// A dial of ours failed before a Hello.
    DialFailed {
        /// The connection.
        conn: ConnId,
        /// Why.
        error: ConnError,
    },
    /// A message arrived on a connection.
    Msg {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: WireMsg,
    },
    /// A connection ended.
    Closed {
        /// The connection.
        conn: ConnId,
        /// How.
        end: LinkEnd,
    },
    /// A signed discovery announcement arrived.
    Announcement(Announcement),
    /// The trust secret, stretched as [`Output::Stretch`] asked.
    Stretched {
        /// The pairing connection.
        conn: ConnId,
        /// The password.
        password: Password,
    },
    /// The time [`NodeCore::poll_timeout`] named has come.
    Timeout,
    /// Make the entries received so far durable (one commit for all of them) and send the
    /// acknowledgements that waited for it. The shell sends this when
    /// [`NodeCore::wants_commit`] and no further input is ready (the group commit).
    Commit,
}

/// Something for the shell to do.
#[derive(Debug)]
pub enum Output {
    /// Dial `url`; report [`Input::Dialed`] or [`Input::DialFailed`] for `conn`.
    Dial {
        /// The connection to be.
        conn: ConnId,
        /// Where.
        url: String,
        /// The transport key the peer must present.
        expected_key: Option<[u8; 32]>,
        /// Our Hello's optional fields.
        extras: HelloExtras,
    },
    /// The instances whose `hello_known` the shell's listener may take (our contacts'
    /// instances a full Hello proved), replacing the previous list.
    KnownPeers(Vec<PeerIdentity>),
    /// Send a message on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: WireMsg,
    },
    /// Send a Close with a reason, then close the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for machines.
        code: CloseCode,
        /// Why, for people.
        reason: String,
    },
    /// Shut a connection down (the shell closes it as `shutdown`).
    Disconnect {
        /// The connection.
        conn: ConnId,
    },
    /// The answer to a command.
    Reply {
        /// The command.
        id: CommandId,
        /// Its result.
        result: Result<Answer, CommandError>,
    },
    /// An event for the shells.
    Event(Event),
    /// Stretch the trust secret for `node` (slow: off the core's thread), then report
    /// [`Input::Stretched`].
    Stretch {
        /// The pairing connection.
        conn: ConnId,
        /// The secret.
        secret: TrustSecret,
        /// The node's person id (the salt).
        node: String,
    },
    /// The store is lost: stop the instance.
    Stop,
}

/// What a connection is for.
enum Conn {
    /// A manager dial of a contact.
    DialContact {
        /// Whom.
        person_id: String,
        /// At which address.
        url: String,
    },
    /// A `connect` command's dial.
    DialOnce(CommandId),
    /// Our side of pairing as the dialer.
    Client(Box<dial::ClientConn>),
    /// Our side of pairing as the listener.
    Node(Box<pair::NodeConn>),
    /// An established link with this person.
    Link(PersonId),
}

/// A link whose handshake and authorisation are done.
struct LinkSlot {
    conn: ConnId,
    meta: LinkMeta,
}

#[derive(Default, Clone)]
struct LiveState {
    last_error: Option<String>,
    last_seen: Option<u64>,
    /// The address the current link was dialed at (`None`: no link, or it dialed us).
    link_url: Option<String>,
    /// What each address did when dialed.
    urls: HashMap<String, netview::UrlLive>,
    /// The contact refused us as not one of its contacts (a card it has not imported):
    /// its reason. Cleared when a link comes up.
    refused_us: Option<String>,
}

/// The core of one instance.
pub struct NodeCore {
    cfg: CoreConfig,
    me: Arc<LocalIdentity>,
    info: IdentityInfo,
    profile: Profile,
    store: Box<dyn CoreStore>,
    conns: HashMap<ConnId, Conn>,
    links: HashMap<PersonId, LinkSlot>,
    live: HashMap<String, LiveState>,
    manager: Manager,
    engine: Engine,
    /// Contacts to redial at once when their link ends (after `reconnect`).
    redial: HashSet<PersonId>,
    announce_seen: HashMap<String, u64>,
    next_conn: ConnId,
    /// Node: the trust secret stretched for our own Person id (the salt dialers use).
    secret_password: Option<Password>,
    /// Node: start times of trust-secret exchanges not (yet) successful, for the lockout.
    secret_attempts: Vec<u64>,
    /// The disk is full: links are closed and none accepted until the store heals.
    store_full: bool,
    /// Time of the last input, unix ms.
    now: u64,
    /// Acknowledgements of received entries waiting for the commit that makes those entries
    /// durable ([`Input::Commit`]): entries from many links share one fsync.
    uncommitted: Vec<(ConnId, SyncMsg)>,
    /// Which nodes are whose home node, from our contacts' signed profiles.
    homes: home::Homes,
    /// A home node: the contacts each owner vouched for so far in its current round.
    vouch_round: HashMap<String, BTreeSet<String>>,
    /// Links that lost the duplicate rule, open until their grace ends (conn, deadline ms).
    retiring: Vec<links::Retired>,
    /// The instance ids in the shell's `hello_known` list ([`Output::KnownPeers`]).
    known_ids: BTreeSet<String>,
    /// A client: `short_code` commands waiting for our home node's answer, in the order
    /// asked (command id, deadline in ms).
    short_asks: VecDeque<(CommandId, u64)>,
    out: Vec<Output>,
}

impl NodeCore {
    /// A core for `me` over `store`; publishes a new profile version if our endpoint or
    /// name changed. `seed` seeds the dial jitter.
    pub fn new(
        cfg: CoreConfig,
        me: Arc<LocalIdentity>,
        info: IdentityInfo,
        mut store: Box<dyn CoreStore>,
        now: u64,
        seed: u64,
    ) -> Result<NodeCore, crate::domain::log::LogError> {
        let profile = links::current_profile(&me, &info, store.as_mut(), now)?;
        let secret_password = match (&cfg.trust_secret, cfg.role) {
            (Some(s), Role::Node) => Some(Password(pake::stretch_secret(
                s.0.as_bytes(),
                &me.person_id(),
            ))),
            _ => None,
        };
        let mut manager = Manager::new(seed);
        let mut engine = Engine::new(me.person_id().to_string());
        engine.restore_clock(&*store)?;
        let contacts = store.contacts()?;
        for c in &contacts {
            manager.set_endpoints(&c.person_id(), links::dial_targets(c), now);
        }
        engine.set_replicated(
            contacts
                .iter()
                .filter(|c| c.replica_for)
                .map(|c| c.person_id().to_string()),
        );
        let mut core = NodeCore {
            cfg,
            me,
            info,
            profile,
            store,
            conns: HashMap::new(),
            links: HashMap::new(),
            live: HashMap::new(),
            manager,
            engine,
            redial: HashSet::new(),
            announce_seen: HashMap::new(),
            next_conn: 0,
            secret_password,
            secret_attempts: Vec::new(),
            store_full: false,
            now,
            uncommitted: Vec::new(),
            homes: home::Homes::new(),
            vouch_round: HashMap::new(),
            short_asks: VecDeque::new(),
            known_ids: BTreeSet::new(),
            retiring: Vec::new(),
            out: Vec::new(),
        };
        core.refresh_homes();
        Ok(core)
    }

    /// Who this instance is.
    pub fn info(&self) -> &IdentityInfo {
        &self.info
    }

    /// Our identity, with its keys (the shell's handshakes need them).
    pub fn identity(&self) -> Arc<LocalIdentity> {
        self.me.clone()
    }

    /// Make everything stored so far durable (the shell calls this when stopping).
    pub fn flush(&mut self) -> Result<(), crate::domain::log::LogError> {
        self.store.flush()
    }

    /// Decide on one input at time `now` (unix ms; an earlier time than the last is taken
    /// as the last). Returns what the shell must do, in order.
    pub fn handle(&mut self, input: Input, now: u64, rng: &mut dyn Rng) -> Vec<Output> {
        self.now = self.now.max(now);
        match input {
            Input::Start => {
                self.publish_known();
                self.reissue_moved_invites();
                self.auto_pair_by_secret();
            }
            Input::Command { id, cmd } => self.on_command(id, cmd, rng),
            Input::Incoming { conn, hello } => self.on_incoming(conn, hello, rng),
            Input::Dialed { conn, hello } => self.on_dialed(conn, hello, rng),
            Input::DialFailed { conn, error } => self.on_dial_failed(conn, error),
            Input::Msg { conn, msg } => self.on_msg(conn, msg, rng),
            Input::Closed { conn, end } => self.on_closed(conn, end),
            Input::Announcement(a) => self.on_announcement(a),
            Input::Stretched { conn, password } => self.on_stretched(conn, password, rng),
            Input::Timeout => self.on_timeout(),
            Input::Commit => self.commit(),
        }
        std::mem::take(&mut self.out)
    }

    /// Acknowledgements wait for a commit ([`Input::Commit`]).
    pub fn wants_commit(&self) -> bool {
        !self.uncommitted.is_empty()
    }

    /// When the core next wants [`Input::Timeout`] (unix ms), if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        let heal =
            (self.store_full || self.store.disk_full_seen()).then_some(self.now + HEAL_INTERVAL_MS);
        let dial = if self.store_full {
            None
        } else {
            self.manager.next_due()
        };
        let pairing = self.conns.values().filter_map(|c| match c {
            Conn::Client(p) => p.deadline,
            Conn::Node(p) => Some(p.deadline),
            _ => None,
        });
        let asks = self.short_asks.front().map(|a| a.1);
        let retired = self.retiring.iter().map(links::Retired::until).min();
        [heal, dial, asks, retired]
            .into_iter()
            .flatten()
            .chain(pairing)
            .min()
    }

    fn on_timeout(&mut self) {
        if self.store.disk_full_seen() {
            self.enter_disk_full();
        }
        self.heal_store();
        self.expire_pairings();
        self.expire_short_asks();
        self.close_retired();
        self.poll_manager();
    }

    fn on_msg(&mut self, conn: ConnId, msg: WireMsg, rng: &mut dyn Rng) {
        match self.conns.get(&conn) {
            Some(Conn::Link(pid)) => {
                let pid = pid.clone();
                self.on_link_msg(conn, &pid, msg, rng);
            }
            Some(Conn::Client(_)) => self.on_client_msg(conn, msg, rng),
            Some(Conn::Node(_)) => self.on_node_msg(conn, msg),
            // A dial's connection carries nothing before its Hello; one that ended or was
            // refused may still deliver what was in flight.
            Some(Conn::DialContact { .. } | Conn::DialOnce(_)) | None => {}
        }
    }

    fn on_closed(&mut self, conn: ConnId, end: LinkEnd) {
        self.retiring.retain(|r| !r.is(conn));
        match self.conns.remove(&conn) {
            Some(Conn::Link(pid)) => self.on_link_down(conn, pid, end),
            Some(Conn::Client(p)) => self.client_closed(*p, end),
            Some(Conn::Node(p)) => {
                tracing::info!(peer = %p.flow.peer().person_id, "pairing connection ended: {}", end.reason);
            }
            Some(Conn::DialContact { .. } | Conn::DialOnce(_)) | None => {}
        }
    }

    fn next_conn_id(&mut self) -> ConnId {
        // Even numbers: the shell names accepted connections with odd ones.
        self.next_conn += 2;
        self.next_conn
    }

    fn emit(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }

    fn reply(&mut self, id: CommandId, result: Result<Answer, CommandError>) {
        self.out.push(Output::Reply { id, result });
    }

    fn send(&mut self, conn: ConnId, msg: WireMsg) {
        self.out.push(Output::Send { conn, msg });
    }

    /// Close a connection with a reason. A link stays known until its end is reported
    /// ([`Input::Closed`]), which takes it down.
    fn close(&mut self, conn: ConnId, code: CloseCode, reason: impl Into<String>) {
        if !matches!(self.conns.get(&conn), Some(Conn::Link(_))) {
            self.conns.remove(&conn);
        }
        self.out.push(Output::Close {
            conn,
            code,
            reason: reason.into(),
        });
    }

    fn now_secs(&self) -> u64 {
        self.now / 1000
    }
}
