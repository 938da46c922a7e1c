//! The runtime actor itself: one task owning the store, the connection table, the
//! connection manager and the profile; everything else talks to it through channels.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::runtime::{
    now_ms, now_secs, Command, CommandError, Config, ContactView, Event, IdentityInfo, MessageView,
    NewInvite, Paired, PeerState, Reply, Role, StartError,
};
use crate::app::tasks;
use crate::domain::codes::TOKEN_LEN;
use crate::domain::identity::{
    short_id, verification_string, Endpoint, LocalIdentity, Person, Profile,
};
use crate::domain::log::Log;
use crate::domain::Body;
use crate::domain::PeerIdentity;
use crate::domain::ShortCode;
use crate::domain::{short_code, ErrorKind, InviteState, Via};
use crate::domain::{Card, Code, Invite};
use crate::domain::{Contact, InviteRecord, InviteStatus};
use crate::net::conn::LinkEnd;
use crate::net::discovery::{self, Announcement, DISCOVERY_CAPACITY};
use crate::net::manager::{keep_new_link, LinkMeta, Manager};
use crate::net::pairing::{
    self, check_invite, direct_channel, Admission, ClientCommit, ClientPairing, NodeCommit,
    PairError,
};
use crate::net::pake::{self, PakeRequest};
use crate::net::sync::{Engine, Output, PeerInfo, SyncMsg};
use crate::net::wire::{CloseCode, WireMsg};
use crate::store::{PairingCommit, Store, StoreError};

/// Capacity of the internal queue from connection tasks into the actor.
pub const INTERNAL_CAPACITY: usize = 256;
/// Capacity of the queue of application messages from links into the actor.
pub const INBOUND_CAPACITY: usize = 1024;
/// Handshakes in progress at once; a further connection evicts the oldest of them.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// Bytes a probe write must fit before a store that hit a full disk is reopened.
pub const STORE_HEAL_PROBE_BYTES: usize = 1 << 20;
/// How often the connection manager is polled.
pub const MANAGER_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// What a responder does with a verified peer.
#[derive(Debug)]
pub enum Verdict {
    /// A contact (or a stranger under `--accept-unknown`): a normal link.
    Accept {
        /// The version of the peer's profile we hold.
        known_profile: Option<u64>,
    },
    /// A stranger with an admissible invitation: run the pairing exchange.
    Pair {
        /// Token, hex.
        token: String,
        /// Fresh or repeat.
        admission: Admission,
        /// Our profile for `pair_offer`.
        profile: Box<Profile>,
    },
    /// A stranger asking to pair by short code or trust secret: run the PAKE, then the
    /// pairing exchange.
    Pake {
        /// The PAKE password: the short code's text or the stretched trust secret.
        password: pake::Password,
        /// The short code's store key; `None` for the trust secret.
        token: Option<String>,
        /// Our profile for `pair_offer`.
        profile: Box<Profile>,
    },
    /// Refuse with a reason.
    Refuse(CloseCode, String),
}

/// A link whose handshake and authorisation are done, handed to the actor.
pub struct LinkUp {
    /// Who.
    pub peer: PeerIdentity,
    /// Link id.
    pub conn_id: u64,
    /// Send into the link.
    pub outbox: mpsc::Sender<WireMsg>,
    /// Stop the link.
    pub cancel: CancellationToken,
    /// Instance that dialed, and the handshake hash (orders duplicate links).
    pub dialer_instance: String,
    /// The version of our profile the peer holds.
    pub peer_known_profile: Option<u64>,
}

/// Messages from connection tasks into the actor.
pub enum Internal {
    /// Responder: may this peer connect?
    Authorize {
        /// Who.
        peer: PeerIdentity,
        /// Token presented, if any.
        invite: Option<String>,
        /// Short code or trust secret pairing asked for, if any.
        pake: Option<PakeRequest>,
        /// Answer.
        reply: oneshot::Sender<Verdict>,
    },
    /// Node: a PAKE confirmation from `peer` arrived; count it before checking it.
    PakeGuess {
        /// The short code's store key; `None` for the trust secret.
        token: Option<String>,
        /// Who guesses.
        peer: PeerIdentity,
        /// Answer: may the confirmation be checked.
        reply: oneshot::Sender<Result<(), PairError>>,
    },
    /// Node: a PAKE confirmation from `peer` did not verify.
    PakeFailed {
        /// The short code's store key; `None` for the trust secret.
        token: Option<String>,
        /// Who tried.
        peer: PeerIdentity,
        /// Answer: the refusal to send.
        reply: oneshot::Sender<PairError>,
    },
    /// Node: commit a pairing.
    NodeCommit {
        /// What to write.
        commit: NodeCommit,
        /// Answer.
        reply: oneshot::Sender<Result<(), PairError>>,
    },
    /// Client: commit a pairing.
    ClientCommit {
        /// What to write.
        commit: ClientCommit,
        /// How the contact was made.
        via: Via,
        /// Replica flag.
        replica: bool,
        /// Answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// A link is up.
    LinkUp {
        /// The link.
        up: LinkUp,
        /// Answered once the link is registered (or refused as a duplicate). Its messages
        /// travel on another queue than this one; they wait for this answer, or one could
        /// overtake the registration and be dropped as coming from an unknown link.
        registered: oneshot::Sender<()>,
    },
    /// A link ended.
    LinkDown {
        /// Who.
        person_id: String,
        /// Link id.
        conn_id: u64,
        /// Why.
        end: LinkEnd,
    },
    /// A manager dial failed.
    DialFailed {
        /// Whom.
        person_id: String,
        /// Why.
        error: String,
    },
}

/// An application message from a link.
pub struct Inbound {
    /// From whom.
    pub person_id: String,
    /// Link id.
    pub conn_id: u64,
    /// The message.
    pub msg: WireMsg,
}

struct LinkSlot {
    conn_id: u64,
    outbox: mpsc::Sender<WireMsg>,
    cancel: CancellationToken,
    meta: LinkMeta,
}

#[derive(Default, Clone)]
struct LiveState {
    last_error: Option<String>,
    last_seen: Option<u64>,
}

/// Everything a connection task needs from the actor, cheaply cloned.
#[derive(Clone)]
pub struct TaskCtx {
    /// Our identity.
    pub me: Arc<LocalIdentity>,
    /// Into the actor.
    pub itx: mpsc::Sender<Internal>,
    /// Application messages into the actor.
    pub inbound: mpsc::Sender<Inbound>,
}

/// The actor.
pub struct Actor {
    cfg: Config,
    me: Arc<LocalIdentity>,
    store: Store,
    info: IdentityInfo,
    profile: Profile,
    commands: mpsc::Receiver<Command>,
    internal_rx: mpsc::Receiver<Internal>,
    inbound_rx: mpsc::Receiver<Inbound>,
    ctx: TaskCtx,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    links: HashMap<String, LinkSlot>,
    live: HashMap<String, LiveState>,
    manager: Manager,
    engine: Engine,
    /// Contacts to redial at once when their link ends (after `reconnect`).
    redial: std::collections::HashSet<String>,
    announce_seen: HashMap<String, u64>,
    next_conn: u64,
    handshake_slots: tasks::PendingHandshakes,
    /// Node: the trust secret stretched for our own Person id (the salt dialers use).
    secret_password: Option<pake::Password>,
    /// Node: start times of trust-secret exchanges not (yet) successful, for the lockout.
    secret_attempts: Vec<u64>,
    /// The disk is full: sled refuses every write until the store is reopened, and links
    /// are closed meanwhile (see `enter_disk_full`).
    store_full: bool,
}

impl Actor {
    /// Build the actor; publishes a new profile version if our endpoint changed.
    pub fn new(
        cfg: Config,
        me: Arc<LocalIdentity>,
        store: Store,
        info: IdentityInfo,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<Self, StartError> {
        let endpoints: Vec<Endpoint> = info
            .endpoint
            .iter()
            .map(|url| Endpoint {
                person_id: me.person_id(),
                instance_id: me.instance_id(),
                url: url.clone(),
                transport_key: me.instance.transport_key.clone(),
            })
            .collect();
        let profile = match store.own_profile()? {
            Some(p) if p.endpoints == endpoints && p.name == me.person.name => p,
            old => {
                let version = now_ms().max(old.map(|p| p.version + 1).unwrap_or(0));
                let p = Profile::signed(&me, endpoints, version);
                store.put_own_profile(&p)?;
                p
            }
        };
        let secret_password = match (&cfg.trust_secret, cfg.role) {
            (Some(s), Role::Node) => Some(pake::Password(pake::stretch_secret(
                s.0.as_bytes(),
                &me.person_id(),
            ))),
            _ => None,
        };
        let (itx, internal_rx) = mpsc::channel(INTERNAL_CAPACITY);
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
        let mut manager = Manager::new(u64::from_le_bytes(
            crate::domain::identity::random32()[..8]
                .try_into()
                .expect("invariant: 8 bytes"),
        ));
        let now = now_ms();
        let mut engine = Engine::new(me.person_id());
        let contacts = store.contacts()?;
        for c in &contacts {
            manager.set_endpoints(&c.person_id(), dial_targets(c), now);
        }
        engine.set_replicated(
            contacts
                .iter()
                .filter(|c| c.replica_for)
                .map(Contact::person_id),
        );
        Ok(Actor {
            ctx: TaskCtx {
                me: me.clone(),
                itx,
                inbound,
            },
            cfg,
            me,
            store,
            info,
            profile,
            commands,
            internal_rx,
            inbound_rx,
            events,
            cancel,
            tasks: TaskTracker::new(),
            links: HashMap::new(),
            live: HashMap::new(),
            manager,
            engine,
            redial: Default::default(),
            announce_seen: HashMap::new(),
            next_conn: 1,
            handshake_slots: tasks::PendingHandshakes::default(),
            secret_password,
            secret_attempts: Vec::new(),
            store_full: false,
        })
    }

    /// Run until cancelled, then close links and flush.
    pub async fn run(mut self, listener: Option<TcpListener>, discovery: Option<UdpSocket>) {
        let (atx, mut arx) = mpsc::channel(DISCOVERY_CAPACITY);
        if let Some(sock) = discovery {
            self.tasks
                .spawn(discovery::listen(sock, atx, self.cancel.child_token()));
        }
        if let (Role::Node, Some(url)) = (self.cfg.role, self.info.endpoint.clone()) {
            self.tasks.spawn(discovery::announce(
                self.me.clone(),
                url,
                self.cfg.discovery,
                self.cancel.child_token(),
            ));
        }
        self.auto_pair_by_secret();
        let mut tick = tokio::time::interval(MANAGER_TICK);
        loop {
            // Checked first on every turn: after a failed store reopen nothing else may run.
            if self.cancel.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                Some(msg) = self.internal_rx.recv() => self.on_internal(msg),
                Some(msg) = self.inbound_rx.recv() => self.on_inbound(msg),
                Some(a) = arx.recv() => self.on_announcement(a),
                _ = tick.tick() => {
                    if self.store.disk_full_seen() {
                        self.enter_disk_full();
                    }
                    self.heal_store();
                    self.poll_manager();
                }
                acc = accept(&listener) => match acc {
                    Ok((tcp, addr)) => self.spawn_accept(tcp, addr),
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        // Orderly shutdown: every link sends its Close, then the store is flushed.
        for slot in self.links.values() {
            slot.cancel.cancel();
        }
        self.tasks.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), self.tasks.wait()).await;
        if let Err(e) = self.store.flush() {
            tracing::error!("final flush failed: {e}");
        }
        tracing::info!("instance stopped");
    }

    /// After a full disk sled keeps failing every write, even once there is room again, until
    /// the database is reopened. When a probe file fits again, reopen the store in place and
    /// redial, so peers resend what could not be stored. If the reopen fails, stop rather
    /// than run on without a store.
    /// The disk is full: close every link and accept none until the store is healed. Nothing
    /// received could be stored anyway, and an entry whose flush failed must not reach a
    /// peer (after the reopen its position in the log may be taken by another).
    fn enter_disk_full(&mut self) {
        if self.store_full {
            return;
        }
        self.store_full = true;
        tracing::warn!("the disk is full: links are closed until there is room again");
        for slot in self.links.values() {
            slot.cancel.cancel();
        }
    }

    fn heal_store(&mut self) {
        if !self.store_full {
            return;
        }
        let probe = self.cfg.data_dir.join(".space-probe");
        let room = std::fs::write(&probe, vec![0u8; STORE_HEAL_PROBE_BYTES]).is_ok();
        let _ = std::fs::remove_file(&probe);
        if !room {
            return;
        }
        let placeholder = match Store::placeholder() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot reopen the store yet: {e}");
                return;
            }
        };
        drop(std::mem::replace(&mut self.store, placeholder));
        match Store::open(&self.cfg.data_dir) {
            Ok(s) => {
                self.store = s;
                self.store_full = false;
                tracing::info!("the disk has room again: store reopened");
                let now = now_ms();
                let peers: Vec<String> = self.links.keys().cloned().collect();
                for slot in self.links.values() {
                    slot.cancel.cancel();
                }
                for p in peers {
                    self.redial.insert(p);
                }
                self.manager_redial_all(now);
            }
            Err(e) => {
                tracing::error!("reopening the store failed: {e}");
                self.emit(Event::Error {
                    kind: ErrorKind::Store,
                    message: format!("the store could not be reopened after the disk was full ({e}); restart lama-tui"),
                });
                self.cancel.cancel();
            }
        }
    }

    fn manager_redial_all(&mut self, now: u64) {
        if let Ok(cs) = self.store.contacts() {
            for c in cs {
                self.manager.redial_now(&c.person_id(), now);
            }
        }
    }

    fn emit(&self, e: Event) {
        // A shell that stopped reading must not stall the actor; events are advisory.
        if self.events.try_send(e).is_err() {
            tracing::debug!("event queue full or closed; event dropped");
        }
    }

    fn next_conn_id(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Identity(reply) => {
                let _ = reply.send(self.info.clone());
            }
            Command::Contacts(reply) => {
                let _ = reply.send(self.contact_views());
            }
            Command::Connect { url, reply } => {
                let conn_id = self.next_conn_id();
                self.tasks.spawn(tasks::dial_once(
                    self.ctx.clone(),
                    url,
                    reply,
                    conn_id,
                    self.cancel.child_token(),
                ));
            }
            Command::Invite { ttl_secs, reply } => {
                let _ = reply.send(self.new_invite(ttl_secs));
            }
            Command::Invites(reply) => {
                let _ = reply.send(self.store.invites().map_err(Into::into));
            }
            Command::RevokeInvite { code, reply } => {
                let _ = reply.send(self.revoke(&code));
            }
            Command::Accept {
                code,
                replica,
                via,
                reply,
            } => self.start_accept(code, replica, via, reply),
            Command::ShortCode { ttl_secs, reply } => {
                let _ = reply.send(self.new_short_code(ttl_secs));
            }
            Command::AcceptPake {
                code,
                url,
                replica,
                reply,
            } => self.start_accept_pake(code, url, replica, reply),
            Command::Card(reply) => {
                let _ = reply.send(Ok(self.card()));
            }
            Command::AddContact { card, reply } => {
                let _ = reply.send(self.add_card(&card));
            }
            Command::RemoveContact { person_id, reply } => {
                let r = self.store.remove_contact(&person_id);
                if let Ok(true) = r {
                    self.manager.remove(&person_id);
                    if let Some(slot) = self.links.get(&person_id) {
                        let _ = slot.outbox.try_send(WireMsg::Close {
                            code: CloseCode::NotAContact,
                            reason: "you were removed from this instance's contacts".into(),
                        });
                    }
                    self.refresh_replicated();
                    tracing::info!(peer = %person_id, "contact removed");
                }
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Channels(reply) => {
                let r = self.store.channels().map(|cs| {
                    cs.into_iter()
                        .map(|c| {
                            let n = self.store.unread(&c.id);
                            (c, n)
                        })
                        .collect()
                });
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::CreateChannel {
                name,
                members,
                reply,
            } => {
                let _ = reply.send(self.create_channel(name, members));
            }
            Command::ChangeMembers {
                channel,
                person_id,
                add,
                reply,
            } => {
                let _ = reply.send(self.change_members(&channel, person_id, add));
            }
            Command::Send {
                channel,
                text,
                reply,
            } => {
                let r = self.write(&channel, Body::Text { text });
                let _ = reply.send(r.map(|e| e.id()));
            }
            Command::History {
                channel,
                before,
                limit,
                reply,
            } => {
                let r = self.history(&channel, before.as_deref(), limit);
                let _ = reply.send(r);
            }
            Command::Reconnect(reply) => {
                let n = self.links.len();
                for (pid, slot) in &self.links {
                    self.redial.insert(pid.clone());
                    let _ = slot.outbox.try_send(WireMsg::Close {
                        code: CloseCode::Shutdown,
                        reason: "reconnecting".into(),
                    });
                }
                let _ = reply.send(n);
            }
            Command::Stats(reply) => {
                let (bytes_in, bytes_out) = crate::net::conn::wire_bytes();
                let _ = reply.send(crate::app::runtime::StatsView {
                    bytes_in,
                    bytes_out,
                    entries: self.store.entry_count() as u64,
                    received: self.engine.stats.received,
                    duplicates: self.engine.stats.duplicates,
                    invalid: self.engine.stats.invalid,
                    links: self.links.len() as u64,
                });
            }
            Command::SetDisplayName { name, reply } => {
                let _ = reply.send(self.set_display_name(name));
            }
            Command::TrustEndpoint { person_id, url } => {
                if let Err(e) = self.update_endpoint_url(&person_id, &url) {
                    tracing::warn!("cannot record endpoint: {e}");
                }
            }
        }
    }

    fn create_channel(
        &mut self,
        name: String,
        members: Vec<String>,
    ) -> Result<String, CommandError> {
        crate::domain::identity::check_name(&name)
            .map_err(|e| CommandError::BadArgument(e.to_string()))?;
        let mut set: std::collections::BTreeSet<String> = members.into_iter().collect();
        for m in &set {
            if crate::domain::identity::parse_hex::<32>(m, "member").is_err() {
                return Err(CommandError::BadArgument(format!(
                    "member `{m}` is not a person id (64 hex characters)"
                )));
            }
        }
        set.insert(self.me.person_id());
        let id = format!(
            "g-{}",
            hex::encode(&crate::domain::identity::random32()[..16])
        );
        self.write(
            &id,
            Body::Create {
                name,
                members: set.into_iter().collect(),
            },
        )?;
        Ok(id)
    }

    fn change_members(
        &mut self,
        channel: &str,
        person_id: String,
        add: bool,
    ) -> Result<Vec<String>, CommandError> {
        if crate::domain::channel::direct_members(channel).is_some() {
            return Err(CommandError::BadArgument(
                "a 1:1 channel has fixed members; create a group channel instead".into(),
            ));
        }
        if crate::domain::identity::parse_hex::<32>(&person_id, "person_id").is_err() {
            return Err(CommandError::BadArgument(format!(
                "`{person_id}` is not a person id (64 hex characters)"
            )));
        }
        let body = if add {
            Body::Members {
                add: vec![person_id],
                remove: vec![],
            }
        } else {
            Body::Members {
                add: vec![],
                remove: vec![person_id],
            }
        };
        self.write(channel, body)?;
        Ok(self
            .store
            .get_channel(channel)?
            .map(|c| c.members)
            .unwrap_or_default())
    }

    fn write(&mut self, channel: &str, body: Body) -> Result<crate::domain::Entry, CommandError> {
        let mut log = self.store.clone();
        let (e, out) = self
            .engine
            .write(&mut log, &self.me, channel, body, now_ms())
            .map_err(|e| match e {
                crate::net::sync::WriteError::Log(l) if l.disk_full => {
                    CommandError::Store(StoreError::DiskFull(self.cfg.data_dir.clone()))
                }
                crate::net::sync::WriteError::Log(l) => CommandError::Store(StoreError::Other(
                    format!("could not store the message: {l}"),
                )),
                other => CommandError::BadArgument(other.to_string()),
            })?;
        self.dispatch(out);
        Ok(e)
    }

    fn author_name(&self, author: &str) -> String {
        if let Ok(Some(c)) = self.store.contact(author) {
            if let Some(p) = c.profile {
                return p.name;
            }
            return c.person.name;
        }
        if author == self.me.person_id() {
            return self.profile.name.clone();
        }
        self.store
            .person(author)
            .map(|p| p.name)
            .unwrap_or_else(|| short_id(author).to_string())
    }

    fn message_view(&self, e: &crate::domain::Entry) -> MessageView {
        MessageView {
            channel: e.channel.clone(),
            entry: e.id(),
            author: e.author.clone(),
            author_name: self.author_name(&e.author),
            ts: e.hlc.ms,
            text: e.text().map(str::to_string),
            kind: match &e.body {
                Body::Text { .. } => "text",
                Body::Create { .. } => "create",
                Body::Members { .. } => "members",
            },
        }
    }

    fn history(
        &mut self,
        channel: &str,
        before: Option<&MessageView>,
        limit: usize,
    ) -> Result<Vec<MessageView>, CommandError> {
        if self.store.get_channel(channel)?.is_none() {
            return Err(CommandError::BadArgument(format!(
                "no channel `{channel}` here; list them with `channels`"
            )));
        }
        // Channel changes (create, members) live in the same view; history shows messages.
        let anchor = match before {
            Some(m) => self
                .store
                .entry_by_view(channel, &m.author, m.entry.as_str())?,
            None => None,
        };
        if before.is_some() && anchor.is_none() {
            return Ok(vec![]);
        }
        let mut entries = self.store.history_before(channel, anchor.as_ref(), limit)?;
        while entries.iter().filter(|e| e.text().is_some()).count() < limit {
            let Some(first) = entries.first().cloned() else {
                break;
            };
            let older = self.store.history_before(channel, Some(&first), limit)?;
            if older.is_empty() {
                break;
            }
            entries.splice(0..0, older);
        }
        // An entry whose author was not a member at its place in the view (a removal that
        // arrived after it) never shows, so every instance shows the same view.
        let mut texts: Vec<MessageView> = entries
            .iter()
            .filter(|e| e.text().is_some())
            .filter(|e| {
                crate::net::sync::members_at(&self.store, channel, &e.view_key())
                    .is_some_and(|m| m.contains(&e.author))
            })
            .map(|e| self.message_view(e))
            .collect();
        if texts.len() > limit {
            texts.drain(..texts.len() - limit);
        }
        if before.is_none() {
            self.store.clear_unread(channel);
        }
        Ok(texts)
    }

    /// Send what the sync engine produced and report what it stored.
    fn dispatch(&mut self, mut out: Output) {
        let mut sends = std::mem::take(&mut out.send);
        if !out.after_flush.is_empty() {
            // Relays first, then the flush, then the acknowledgements.
            self.send_sync(std::mem::take(&mut sends));
            match self.store.flush() {
                Ok(()) => sends = std::mem::take(&mut out.after_flush),
                Err(e) => {
                    // No ack: the peer resends after the next link-up.
                    tracing::error!("flush before ack failed: {e}");
                    self.emit(Event::Error {
                        kind: ErrorKind::Store,
                        message: format!("cannot store received messages: {e}; free disk space, they will be fetched again"),
                    });
                    for (link, _) in &out.after_flush {
                        if let Some(slot) = self.links.values().find(|s| s.conn_id == *link) {
                            slot.cancel.cancel();
                        }
                    }
                    return;
                }
            }
        }
        self.send_sync(sends);
        self.report(out);
    }

    fn send_sync(&mut self, sends: Vec<(u64, SyncMsg)>) {
        // Every sync message leaves through here: once any write has hit a full disk,
        // nothing more is sent (an entry whose flush failed must not reach a peer).
        if self.store.disk_full_seen() {
            self.enter_disk_full();
            return;
        }
        for (link, msg) in sends {
            if let Some(slot) = self.links.values().find(|s| s.conn_id == link) {
                if slot.outbox.try_send(WireMsg::Sync { msg }).is_err() {
                    // The window bounds what is queued; a full outbox means a stuck link,
                    // which keepalive will close. The next link resumes from the peer's state.
                    tracing::warn!("link outbox full; the sync resumes on reconnect");
                    slot.cancel.cancel();
                }
            }
        }
    }

    fn report(&mut self, out: Output) {
        for e in out.stored.iter().filter(|e| e.text().is_some()) {
            if e.author != self.me.person_id() {
                self.store.add_unread(&e.channel, 1);
            }
            let m = self.message_view(e);
            self.emit(Event::Message(m));
        }
        for pid in out.synced {
            self.emit(Event::Synced { person_id: pid });
        }
        if !out.delivered.is_empty() {
            self.emit(Event::Delivered {
                entries: out.delivered,
            });
        }
        for r in out.rejected {
            tracing::warn!(entry = %short_id(&r.entry), "refused an entry: {}", r.reason);
        }
        for r in out.peer_rejected {
            tracing::warn!(entry = %short_id(&r.entry), "peer refused our entry: {}", r.reason);
        }
    }

    fn on_sync(&mut self, link: u64, msg: SyncMsg) {
        let mut log = self.store.clone();
        match self.engine.handle(&mut log, link, msg) {
            Ok(out) => self.dispatch(out),
            Err(e) => {
                // Nothing of the batch was acknowledged: the peer resends it later.
                tracing::error!("storing synced entries failed: {e}");
                self.emit(Event::Error {
                    kind: if e.disk_full {
                        ErrorKind::DiskFull
                    } else {
                        ErrorKind::Store
                    },
                    message: format!(
                        "cannot store received messages: {e}; they will be fetched again"
                    ),
                });
                if let Some(slot) = self.links.values().find(|s| s.conn_id == link) {
                    slot.cancel.cancel();
                }
            }
        }
    }

    fn set_display_name(&mut self, name: String) -> Result<u64, CommandError> {
        crate::domain::identity::check_name(&name)
            .map_err(|e| CommandError::BadArgument(e.to_string()))?;
        let version = now_ms().max(self.profile.version + 1);
        let mut p = self.profile.clone();
        p.name = name;
        p.version = version;
        let p = Profile::signed_from(&self.me, p);
        self.store.put_own_profile(&p)?;
        self.profile = p;
        for slot in self.links.values() {
            // A full outbox means a stuck link; it gets the profile on its next link-up.
            let _ = slot.outbox.try_send(WireMsg::Profile {
                profile: self.profile.clone(),
            });
        }
        Ok(version)
    }

    fn contact_views(&self) -> Result<Vec<ContactView>, CommandError> {
        Ok(self
            .store
            .contacts()?
            .into_iter()
            .map(|c| {
                let id = c.person_id();
                let live = self.live.get(&id).cloned().unwrap_or_default();
                let state = if self.links.contains_key(&id) {
                    PeerState::Connected
                } else if self.manager.state(&id) == Some(&crate::net::manager::DialState::Dialing)
                {
                    PeerState::Connecting
                } else {
                    PeerState::Offline
                };
                ContactView {
                    behind: self.engine.behind(&self.store, &id),
                    verification: verification_string(&self.me.person, &c.person),
                    contact: c,
                    state,
                    last_error: live.last_error,
                    last_seen: live.last_seen,
                }
            })
            .collect())
    }

    fn new_invite(&mut self, ttl_secs: u64) -> Result<NewInvite, CommandError> {
        if self.cfg.role != Role::Node {
            return Err(CommandError::NotANode);
        }
        let url = self
            .info
            .endpoint
            .clone()
            .expect("invariant: a node has an endpoint");
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&crate::domain::identity::random32()[..TOKEN_LEN]);
        let now = now_secs();
        let mut rec = pairing::new_invite_record(token, String::new(), now, ttl_secs);
        let invite = Invite {
            person_id: crate::domain::identity::parse_hex::<32>(&self.me.person_id(), "person_id")
                .expect("invariant: our id is 32 bytes of hex"),
            transport_key: self
                .me
                .instance
                .transport_key_bytes()
                .expect("invariant: our transport key is valid"),
            token,
            expires_at: rec.expires_at,
            urls: vec![url],
        };
        rec.code = Code::Invite(invite).encode();
        self.store.put_invite(&rec)?;
        tracing::info!(expires_at = rec.expires_at, "invitation created");
        Ok(NewInvite {
            code: rec.code,
            expires_at: rec.expires_at,
        })
    }

    fn revoke(&mut self, code: &str) -> Result<crate::domain::InviteRecord, CommandError> {
        if ShortCode::looks_like(code) {
            let sc = ShortCode::parse(code)?;
            return self
                .store
                .revoke_invite(&pairing::short_code_key(sc.slot), now_secs())?
                .ok_or(CommandError::UnknownInvite);
        }
        let Code::Invite(inv) = Code::decode(code)? else {
            return Err(CommandError::BadArgument(
                "that is a contact card, not an invitation".into(),
            ));
        };
        self.store
            .revoke_invite(&hex::encode(inv.token), now_secs())?
            .ok_or(CommandError::UnknownInvite)
    }

    fn start_accept(&mut self, code: String, replica: bool, via: Via, reply: Reply<Paired>) {
        let invite = match Code::decode(&code) {
            Ok(Code::Invite(i)) => i,
            Ok(Code::Card(_)) => {
                let _ = reply.send(Err(CommandError::BadArgument(
                    "that is a contact card: import it with add_contact".into(),
                )));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let pairing = match ClientPairing::start(invite, now_secs()) {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let conn_id = self.next_conn_id();
        self.tasks.spawn(tasks::accept_invite(
            self.ctx.clone(),
            pairing,
            self.profile.clone(),
            via,
            replica,
            reply,
            conn_id,
            self.cancel.child_token(),
        ));
    }

    fn new_short_code(&mut self, ttl_secs: u64) -> Result<NewInvite, CommandError> {
        if self.cfg.role != Role::Node {
            return Err(CommandError::NotANode);
        }
        let now = now_secs();
        let taken: std::collections::HashSet<String> = self
            .store
            .invites()?
            .into_iter()
            .filter(|r| r.token.starts_with("short:") && r.status_at(now) == InviteState::Open)
            .map(|r| r.token)
            .collect();
        let rnd = crate::domain::identity::random32();
        // A short number first (quick to read out); longer ones only when many are open.
        let start = u16::from_le_bytes([rnd[0], rnd[1]]);
        let slot = [(1u16, 99u16), (100, short_code::MAX_SLOT)]
            .into_iter()
            .find_map(|(lo, hi)| {
                let span = hi - lo + 1;
                (0..span)
                    .map(|i| lo + (start.wrapping_add(i)) % span)
                    .find(|s| !taken.contains(&pairing::short_code_key(*s)))
            })
            .ok_or_else(|| {
                CommandError::BadArgument(
                    "every short-code number is in use; revoke some or wait for them to expire"
                        .into(),
                )
            })?;
        let code = ShortCode::new(slot, [rnd[2], rnd[3], rnd[4]]);
        let rec = InviteRecord {
            token: pairing::short_code_key(slot),
            code: code.reveal(),
            created_at: now,
            expires_at: now + ttl_secs.clamp(1, short_code::MAX_CODE_TTL_SECS),
            status: InviteStatus::Open,
            attempts: 0,
        };
        self.store.put_invite(&rec)?;
        // The number is not secret; the words are, and stay out of the log.
        tracing::info!(slot, expires_at = rec.expires_at, "short code created");
        Ok(NewInvite {
            code: rec.code,
            expires_at: rec.expires_at,
        })
    }

    /// A stranger asks to pair by PAKE: may the code or the secret be tried at all? Nothing
    /// is counted yet: a guess is counted when its confirmation arrives ([`Self::pake_guess`]).
    fn admit_pake(&mut self, peer: &PeerIdentity, req: PakeRequest) -> Result<Verdict, PairError> {
        let now = now_secs();
        let profile = Box::new(self.profile.clone());
        match req {
            PakeRequest::Code { slot } => {
                let key = pairing::short_code_key(slot);
                let rec = self.store.invite(&key).map_err(pake_store_err)?;
                pairing::check_short_code(rec.as_ref(), slot, &peer.person_id, now)?;
                let rec = rec.expect("invariant: check_short_code admits only a stored code");
                Ok(Verdict::Pake {
                    password: pake::Password::new(rec.code.clone().into_bytes()),
                    token: Some(key),
                    profile,
                })
            }
            PakeRequest::Secret => {
                let Some(pw) = &self.secret_password else {
                    return Err(PairError::NoTrustSecret);
                };
                let pw = pw.clone();
                self.secret_locked(now)?;
                Ok(Verdict::Pake {
                    password: pw,
                    token: None,
                    profile,
                })
            }
        }
    }

    /// The trust secret is locked after too many wrong guesses in the lockout window.
    fn secret_locked(&mut self, now: u64) -> Result<(), PairError> {
        self.secret_attempts
            .retain(|t| now < t + pake::SECRET_LOCKOUT_SECS);
        if self.secret_attempts.len() >= pake::MAX_ATTEMPTS as usize {
            let until = self.secret_attempts[0] + pake::SECRET_LOCKOUT_SECS;
            return Err(PairError::CodeExhausted(format!(
                "{} wrong trust secrets in a row: this node tries the secret again from unix time {until}; check that both sides use the same secret",
                pake::MAX_ATTEMPTS
            )));
        }
        Ok(())
    }

    /// A confirmation has arrived: count the guess durably before it is checked, or refuse
    /// to check it when no guess is left.
    fn pake_guess(&mut self, token: Option<&str>, peer: &PeerIdentity) -> Result<(), PairError> {
        let now = now_secs();
        match token {
            Some(key) => {
                let slot = key
                    .trim_start_matches("short:")
                    .parse()
                    .map_err(|_| PairError::CodeUnknown(None))?;
                let rec = self.store.invite(key).map_err(pake_store_err)?;
                let rec = pairing::code_guess_counted(rec, slot, &peer.person_id, now)?;
                self.store.put_invite(&rec).map_err(pake_store_err)
            }
            None => {
                self.secret_locked(now)?;
                self.secret_attempts.push(now);
                Ok(())
            }
        }
    }

    /// A PAKE confirmation failed: spend the attempt, tell the owner, and answer the peer.
    fn pake_failed(&mut self, token: Option<String>, peer: &PeerIdentity) -> PairError {
        let who = format!("{} ({})", peer.person.name, short_id(&peer.person_id));
        let (mine, theirs) = match token {
            Some(key) => {
                // The guess was counted when its confirmation arrived.
                let left = match self.store.invite(&key) {
                    Ok(Some(rec)) => pake::MAX_ATTEMPTS.saturating_sub(rec.attempts),
                    _ => 0,
                };
                let slot = key.trim_start_matches("short:");
                let left_text = if left == 0 {
                    "no attempts left: the code is destroyed".to_string()
                } else {
                    format!("{left} attempt(s) left")
                };
                (
                    format!("{who} tried short code {slot} with the wrong words; {left_text}"),
                    format!("check the words with the node's owner; {left_text}"),
                )
            }
            None => (
                format!("{who} tried to pair with a different trust secret"),
                "both instances must be started with the same trust secret".to_string(),
            ),
        };
        tracing::warn!("{mine}");
        self.emit(Event::Error {
            kind: ErrorKind::CodeMismatch,
            message: mine,
        });
        PairError::CodeMismatch(theirs)
    }

    fn start_accept_pake(
        &mut self,
        code: Option<String>,
        url: Option<String>,
        replica: bool,
        reply: Reply<Paired>,
    ) {
        let secret = match code {
            Some(c) => match ShortCode::parse(&c) {
                Ok(sc) => tasks::PakeSecret::Code(sc),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
            },
            None => match &self.cfg.trust_secret {
                Some(s) => tasks::PakeSecret::Trust(s.clone()),
                None => {
                    let _ = reply.send(Err(CommandError::BadArgument(
                        "this instance has no trust secret: start it with LAMA_TRUST_SECRET set (or --trust-secret)".into(),
                    )));
                    return;
                }
            },
        };
        let url = url.unwrap_or_else(|| self.cfg.node_url.clone());
        let conn_id = self.next_conn_id();
        self.tasks.spawn(tasks::accept_pake(
            self.ctx.clone(),
            url,
            secret,
            self.profile.clone(),
            replica,
            reply,
            conn_id,
            self.cancel.child_token(),
        ));
    }

    /// A client with a trust secret and no contacts pairs with its node on start, as the
    /// seed's shared-login trust intends; the outcome arrives as an event.
    fn auto_pair_by_secret(&mut self) {
        if self.cfg.role != Role::Client || self.cfg.trust_secret.is_none() {
            return;
        }
        if !matches!(self.store.contacts(), Ok(c) if c.is_empty()) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.start_accept_pake(None, None, true, tx);
        let events = self.events.clone();
        self.tasks.spawn(async move {
            let e = match rx.await {
                Ok(Ok(p)) => Event::ContactAdded {
                    person_id: p.person_id,
                    name: p.name,
                    via: Via::TrustSecret,
                    verification: p.verification,
                },
                Ok(Err(e)) => Event::Error {
                    kind: e.kind(),
                    message: format!("pairing with the node by trust secret failed: {e}"),
                },
                Err(_) => return,
            };
            let _ = events.send(e).await;
        });
    }

    fn card(&self) -> String {
        Code::Card(Card {
            name: self.me.person.name.clone(),
            person_key: self
                .me
                .person
                .verifying_key()
                .expect("invariant: our own key is valid")
                .to_bytes(),
            instance_id: crate::domain::identity::parse_hex::<32>(
                &self.me.instance_id(),
                "instance_id",
            )
            .expect("invariant: our id is 32 bytes of hex"),
            transport_key: self
                .me
                .instance
                .transport_key_bytes()
                .expect("invariant: our transport key is valid"),
            urls: self.info.endpoint.iter().cloned().collect(),
        })
        .encode()
    }

    fn add_card(&mut self, card: &str) -> Result<Paired, CommandError> {
        let Code::Card(c) = Code::decode(card)? else {
            return Err(CommandError::BadArgument(
                "that is an invitation: use accept".into(),
            ));
        };
        let key = ed25519_dalek::VerifyingKey::from_bytes(&c.person_key)
            .map_err(|_| CommandError::BadArgument("the card's key is invalid".into()))?;
        crate::domain::identity::check_name(&c.name)
            .map_err(|e| CommandError::BadArgument(e.to_string()))?;
        let person = Person::new(&c.name, &key);
        let pid = person.id();
        if pid == self.me.person_id() {
            return Err(CommandError::BadArgument(
                "that is this instance's own card".into(),
            ));
        }
        let endpoints = c
            .urls
            .iter()
            .map(|u| Endpoint {
                person_id: pid.clone(),
                instance_id: hex::encode(c.instance_id),
                url: u.clone(),
                transport_key: hex::encode(c.transport_key),
            })
            .collect();
        let now = now_secs();
        let mut contact = self.store.contact(&pid)?.unwrap_or(Contact {
            person: person.clone(),
            instances: vec![],
            endpoints: vec![],
            profile: None,
            replica: false,
            replica_for: false,
            via: Via::Card,
            added_at: now,
        });
        contact.endpoints = endpoints;
        let channel = direct_channel(&self.me.person_id(), &pid, &person.name, now);
        self.store.commit_pairing(None, &contact, &channel, now)?;
        self.manager
            .set_endpoints(&pid, dial_targets(&contact), now_ms());
        let verification = verification_string(&self.me.person, &person);
        tracing::info!(peer = %pid, "contact added from a card");
        Ok(Paired {
            person_id: pid,
            name: person.name,
            verification,
        })
    }

    fn authorize(
        &mut self,
        peer: &PeerIdentity,
        invite: Option<&str>,
        pake: Option<PakeRequest>,
    ) -> Verdict {
        if self.store_full {
            return Verdict::Refuse(
                CloseCode::Shutdown,
                "this instance's disk is full; it accepts links again once it has room".into(),
            );
        }
        if peer.person_id == self.me.person_id() {
            return Verdict::Accept {
                known_profile: None,
            };
        }
        if let Some(req) = pake {
            return match self.admit_pake(peer, req) {
                Ok(v) => v,
                Err(e) => Verdict::Refuse(e.close_code(), e.to_string()),
            };
        }
        // A presented invitation is honoured even for an existing contact: the exchange
        // refreshes both profiles, and the client gets the answer it asked for.
        if let Some(token) = invite {
            let Some(token) = pairing::parse_token(token) else {
                return Verdict::Refuse(CloseCode::InviteUnknown, PairError::Unknown.to_string());
            };
            let rec = match self.store.invite(&token) {
                Ok(r) => r,
                Err(e) => {
                    return Verdict::Refuse(CloseCode::Shutdown, format!("store failure: {e}"))
                }
            };
            return match check_invite(rec.as_ref(), &peer.person_id, now_secs()) {
                Ok(admission) => Verdict::Pair {
                    token,
                    admission,
                    profile: Box::new(self.profile.clone()),
                },
                Err(e) => Verdict::Refuse(e.close_code(), e.to_string()),
            };
        }
        match self.store.contact(&peer.person_id) {
            Ok(Some(c)) => {
                return Verdict::Accept {
                    known_profile: c.profile.map(|p| p.version),
                }
            }
            Ok(None) => {}
            Err(e) => return Verdict::Refuse(CloseCode::Shutdown, format!("store failure: {e}")),
        }
        if self.cfg.accept_unknown {
            return Verdict::Accept {
                known_profile: None,
            };
        }
        Verdict::Refuse(
            CloseCode::NotAContact,
            format!(
                "{} ({}) is not a contact of {}; pair first with an invitation code from this node",
                peer.person.name,
                short_id(&peer.person_id),
                self.me.person.name
            ),
        )
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Authorize {
                peer,
                invite,
                pake,
                reply,
            } => {
                let verdict = self.authorize(&peer, invite.as_deref(), pake);
                if let Verdict::Refuse(_, why) = &verdict {
                    tracing::info!(peer = %peer.person_id, "refused: {why}");
                }
                let _ = reply.send(verdict);
            }
            Internal::NodeCommit { commit, reply } => {
                let r = self.commit_node(commit);
                let _ = reply.send(r);
            }
            Internal::PakeGuess { token, peer, reply } => {
                let _ = reply.send(self.pake_guess(token.as_deref(), &peer));
            }
            Internal::PakeFailed { token, peer, reply } => {
                let _ = reply.send(self.pake_failed(token, &peer));
            }
            Internal::ClientCommit {
                commit,
                via,
                replica,
                reply,
            } => {
                let r = self.commit_client(commit, via, replica);
                let _ = reply.send(r);
            }
            Internal::LinkUp { up, registered } => {
                self.on_link_up(up);
                let _ = registered.send(());
            }
            Internal::LinkDown {
                person_id,
                conn_id,
                end,
            } => {
                if self.links.get(&person_id).map(|s| s.conn_id) != Some(conn_id) {
                    return; // a replaced or losing duplicate link
                }
                self.links.remove(&person_id);
                self.engine.close(conn_id);
                let st = self.live.entry(person_id.clone()).or_default();
                st.last_seen = Some(now_secs());
                if end.code != Some(CloseCode::Shutdown) {
                    st.last_error = Some(end.reason.clone());
                }
                self.manager.link_down(&person_id, now_ms());
                if self.redial.remove(&person_id) {
                    self.manager.redial_now(&person_id, now_ms());
                    self.poll_manager();
                }
                tracing::info!(peer = %person_id, "disconnected: {}", end.reason);
                self.emit(Event::Disconnected {
                    person_id,
                    reason: end.reason,
                });
            }
            Internal::DialFailed { person_id, error } => {
                tracing::debug!(peer = %person_id, "dial failed: {error}");
                self.live.entry(person_id.clone()).or_default().last_error = Some(error);
                self.manager.dial_failed(&person_id, now_ms());
            }
        }
    }

    fn commit_node(&mut self, c: NodeCommit) -> Result<(), PairError> {
        let pid = c.contact.person_id();
        let name = c.contact.person.name.clone();
        // Keep what we already know of a repeat pairing's contact (e.g. the replica flag).
        let mut contact = c.contact;
        if let Ok(Some(old)) = self.store.contact(&pid) {
            contact.replica = old.replica;
            contact.added_at = old.added_at;
        }
        match self
            .store
            .commit_pairing(c.token.as_deref(), &contact, &c.channel, now_secs())
        {
            Ok(PairingCommit::Committed) => {}
            Ok(PairingCommit::InviteGone(status)) => {
                let short = c.token.as_deref().is_some_and(|t| t.starts_with("short:"));
                return Err(match status {
                    Some(InviteStatus::Revoked { .. }) => PairError::Revoked,
                    Some(InviteStatus::Used { .. }) => PairError::Used,
                    Some(InviteStatus::Open) if short => PairError::CodeExpired(None),
                    Some(InviteStatus::Open) => PairError::Expired(None),
                    None if short => PairError::CodeUnknown(None),
                    None => PairError::Unknown,
                });
            }
            Err(e) => {
                tracing::error!("pairing commit failed: {e}");
                self.emit(Event::Error {
                    kind: ErrorKind::Store,
                    message: e.to_string(),
                });
                return Err(PairError::Protocol(format!(
                    "the node could not store the contact: {e}"
                )));
            }
        }
        self.manager
            .set_endpoints(&pid, dial_targets(&contact), now_ms());
        if contact.replica_for {
            self.refresh_replicated();
        }
        if contact.via == Via::TrustSecret {
            // A successful exchange is not a guess against the lockout.
            self.secret_attempts.pop();
        }
        tracing::info!(peer = %pid, via = %contact.via, "paired");
        self.emit(Event::ContactAdded {
            person_id: pid,
            name,
            via: contact.via,
            verification: c.verification,
        });
        Ok(())
    }

    fn refresh_replicated(&mut self) {
        if let Ok(cs) = self.store.contacts() {
            self.engine
                .set_replicated(cs.iter().filter(|c| c.replica_for).map(Contact::person_id));
        }
    }

    fn commit_client(
        &mut self,
        c: ClientCommit,
        via: Via,
        replica: bool,
    ) -> Result<(), CommandError> {
        let mut contact = c.contact;
        contact.via = via;
        contact.replica = replica;
        let pid = contact.person_id();
        self.store
            .commit_pairing(None, &contact, &c.channel, now_secs())?;
        self.manager
            .set_endpoints(&pid, dial_targets(&contact), now_ms());
        // The command's answer announces the contact; no separate event.
        tracing::info!(peer = %pid, via = %via, "paired: accepted invitation");
        Ok(())
    }

    fn on_link_up(&mut self, up: LinkUp) {
        let LinkUp {
            peer,
            conn_id,
            outbox,
            cancel,
            dialer_instance,
            peer_known_profile,
        } = up;
        if self.store_full {
            cancel.cancel();
            return;
        }
        let now = now_ms();
        let meta = LinkMeta {
            dialer_instance,
            up_at_ms: now,
        };
        if let Some(old) = self.links.get(&peer.person_id) {
            if !keep_new_link(&old.meta, &meta, now) {
                tracing::debug!(peer = %peer.person_id, "duplicate link closed");
                let _ = outbox.try_send(WireMsg::Close {
                    code: CloseCode::Duplicate,
                    reason: "another link to this instance is kept".into(),
                });
                return;
            }
            old.cancel.cancel();
            self.engine.close(old.conn_id);
        }
        // Learn the instance (e.g. a card contact's first connection) for discovery checks.
        let mut is_my_replica = false;
        if let Ok(Some(mut c)) = self.store.contact(&peer.person_id) {
            is_my_replica = c.replica;
            if !c.instances.iter().any(|i| i == &peer.instance) {
                c.instances.retain(|i| i.id() != peer.instance_id);
                c.instances.push(peer.instance.clone());
                if let Err(e) = self.store.put_contact(&c) {
                    tracing::warn!("cannot record instance: {e}");
                }
            }
        }
        // An unchanged profile is not sent again (it is most of a quiet reconnect's bytes).
        if peer_known_profile != Some(self.profile.version) {
            let _ = outbox.try_send(WireMsg::Profile {
                profile: self.profile.clone(),
            });
        }
        let first = !self.links.contains_key(&peer.person_id);
        self.links.insert(
            peer.person_id.clone(),
            LinkSlot {
                conn_id,
                outbox,
                cancel,
                meta,
            },
        );
        self.manager.link_up(&peer.person_id);
        let log = self.store.clone();
        let out = self.engine.open(
            &log,
            conn_id,
            PeerInfo {
                person_id: peer.person_id.clone(),
                is_my_replica,
            },
        );
        self.dispatch(out);
        let st = self.live.entry(peer.person_id.clone()).or_default();
        st.last_seen = Some(now_secs());
        st.last_error = None;
        if first {
            tracing::info!(peer = %peer.person_id, "connected");
            self.emit(Event::Connected {
                person_id: peer.person_id,
                name: peer.person.name,
            });
        }
    }

    fn on_inbound(&mut self, m: Inbound) {
        if self.links.get(&m.person_id).map(|s| s.conn_id) != Some(m.conn_id) {
            return;
        }
        match m.msg {
            WireMsg::Sync { msg } => self.on_sync(m.conn_id, msg),
            WireMsg::Profile { profile } => {
                if let Err(e) = self.on_profile(&m.person_id, profile) {
                    tracing::warn!(peer = %m.person_id, "profile ignored: {e}");
                }
            }
            other => {
                tracing::debug!(peer = %m.person_id, "unexpected {}", crate::net::handshake::msg_name(&other));
            }
        }
    }

    fn on_profile(&mut self, pid: &str, profile: Profile) -> Result<(), String> {
        let Some(mut c) = self.store.contact(pid).map_err(|e| e.to_string())? else {
            return Ok(()); // a stranger under --accept-unknown: nothing to update
        };
        profile.verify(&c.person).map_err(|e| e.to_string())?;
        if c.profile
            .as_ref()
            .is_some_and(|p| p.version >= profile.version)
        {
            return Ok(());
        }
        let changed = c.endpoints != profile.endpoints;
        c.endpoints = profile.endpoints.clone();
        c.profile = Some(profile);
        self.store.put_contact(&c).map_err(|e| e.to_string())?;
        if changed {
            self.manager.set_endpoints(pid, dial_targets(&c), now_ms());
            self.emit(Event::EndpointsChanged {
                person_id: pid.into(),
                urls: c.endpoints.iter().map(|e| e.url.clone()).collect(),
            });
        }
        Ok(())
    }

    fn on_announcement(&mut self, a: Announcement) {
        let contact = match self.store.contact(&a.person_id) {
            Ok(c) => c,
            Err(_) => return,
        };
        let last = self.announce_seen.get(&a.instance_id).copied();
        if let Err(why) = a.verify(contact.as_ref(), now_ms(), last) {
            tracing::debug!(from = %short_id(&a.person_id), "announcement ignored: {why}");
            return;
        }
        self.announce_seen.insert(a.instance_id.clone(), a.ts);
        let c = contact.expect("invariant: verify() accepted, so the contact exists");
        if c.endpoints
            .iter()
            .any(|e| e.url == a.url && e.instance_id == a.instance_id)
        {
            return;
        }
        tracing::info!(peer = %short_id(&a.person_id), url = %a.url, "endpoint found by discovery");
        if let Err(e) = self.update_endpoint_url(&a.person_id, &a.url) {
            tracing::warn!("cannot record discovered endpoint: {e}");
        }
    }

    /// Point a contact's (first instance's) endpoint at `url`.
    fn update_endpoint_url(&mut self, pid: &str, url: &str) -> Result<(), StoreError> {
        let Some(mut c) = self.store.contact(pid)? else {
            return Ok(());
        };
        let (instance_id, key) = match (c.endpoints.first(), c.instances.first()) {
            (Some(e), _) => (e.instance_id.clone(), e.transport_key.clone()),
            (None, Some(i)) => (i.id(), i.transport_key.clone()),
            (None, None) => return Ok(()),
        };
        c.endpoints.retain(|e| e.instance_id != instance_id);
        c.endpoints.insert(
            0,
            Endpoint {
                person_id: pid.into(),
                instance_id,
                url: url.into(),
                transport_key: key,
            },
        );
        self.store.put_contact(&c)?;
        self.manager.set_endpoints(pid, dial_targets(&c), now_ms());
        self.emit(Event::EndpointsChanged {
            person_id: pid.into(),
            urls: c.endpoints.iter().map(|e| e.url.clone()).collect(),
        });
        Ok(())
    }

    fn poll_manager(&mut self) {
        if self.store_full {
            return;
        }
        for req in self.manager.poll(now_ms()) {
            if self.links.contains_key(&req.person_id) {
                self.manager.link_up(&req.person_id);
                continue;
            }
            let conn_id = self.next_conn_id();
            let known = self
                .store
                .contact(&req.person_id)
                .ok()
                .flatten()
                .and_then(|c| c.profile.map(|p| p.version));
            self.tasks.spawn(tasks::dial_contact(
                self.ctx.clone(),
                req,
                known,
                conn_id,
                self.cancel.child_token(),
            ));
        }
    }

    fn spawn_accept(&mut self, tcp: TcpStream, addr: std::net::SocketAddr) {
        let conn_id = self.next_conn_id();
        let (slot, evicted) = self.handshake_slots.admit(conn_id, MAX_PENDING_HANDSHAKES);
        if evicted.is_some() {
            tracing::debug!(%addr, "handshake slots full: evicted the oldest handshake");
        }
        self.tasks.spawn(tasks::serve_incoming(
            self.ctx.clone(),
            tcp,
            addr,
            slot,
            conn_id,
            self.cancel.child_token(),
        ));
    }
}

/// The (url, key) pairs the manager dials for a contact.
pub fn dial_targets(c: &Contact) -> Vec<(String, [u8; 32])> {
    c.endpoints
        .iter()
        .filter_map(|e| {
            crate::domain::identity::parse_hex::<32>(&e.transport_key, "transport_key")
                .ok()
                .map(|k| (e.url.clone(), k))
        })
        .collect()
}

async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn pake_store_err(e: StoreError) -> PairError {
    PairError::Protocol(format!("the node's store failed: {e}"))
}
