//! The runtime actor: owns an instance's identity, store and connection table, runs one
//! `select!`, and is driven through a clonable [`Handle`]. Shells (headless, TUI) only send
//! commands and render the [`Event`]s it emits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::app::actor::Actor;
use crate::domain::identity::{check_name, LocalIdentity, Secrets};
use crate::domain::CodeError;
use crate::domain::PeerIdentity;
use crate::domain::{Channel, Contact, InviteRecord};
use crate::domain::{ErrorKind, Via};
use crate::net::conn::ConnError;
use crate::net::discovery::Scope;
use crate::net::pairing::PairError;
use crate::net::wire::CloseCode;
use crate::store::{keyfile, Store, StoreError};

/// Capacity of the command queue into the actor.
pub const COMMAND_CAPACITY: usize = 64;
/// Capacity of the event queue out of the actor.
pub const EVENT_CAPACITY: usize = 1024;

/// File in the data dir that records that the store was initialised.
pub const STORE_MARKER: &str = "store.initialised";

/// Which role an instance plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Listens and dials.
    Node,
    /// Dials only.
    Client,
}

impl Role {
    /// `node` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Client => "client",
        }
    }
}

/// What the runtime needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Role.
    pub role: Role,
    /// Data directory (created if missing).
    pub data_dir: PathBuf,
    /// Person name for a new identity.
    pub name: Option<String>,
    /// Listen address (nodes only).
    pub listen: SocketAddr,
    /// Passphrase sealing the key file.
    pub passphrase: Option<String>,
    /// Accept peers that are not contacts.
    pub accept_unknown: bool,
    /// Local discovery scope.
    pub discovery: Scope,
    /// The shared trust secret (`LAMA_TRUST_SECRET` or the `--trust-secret` prompt).
    pub trust_secret: Option<TrustSecret>,
    /// The node a client pairs with by trust secret, and the default address for short
    /// codes.
    pub node_url: String,
    /// Node: the address given out instead of the bound one (`--public-url`).
    pub public_url: Option<String>,
}

/// A shared trust secret: zeroed on drop, never printed.
#[derive(Clone)]
pub struct TrustSecret(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for TrustSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrustSecret(<redacted>)")
    }
}

/// Errors that stop an instance from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir cannot be created or used.
    #[error("cannot use data dir {dir}: {source}; pick another with --data-dir")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key file failed to open.
    #[error(transparent)]
    Keyfile(#[from] keyfile::KeyfileError),
    /// `--name` differs from the stored identity's name.
    #[error("the data dir {dir} already holds the identity `{existing}`; drop --name to use it, or pass another --data-dir for a new identity `{given}`")]
    NameMismatch {
        /// The data dir.
        dir: PathBuf,
        /// Stored name.
        existing: String,
        /// Requested name.
        given: String,
    },
    /// The name is not acceptable.
    #[error("invalid --name `{0}`: use 1 to 128 characters without control characters")]
    BadName(String),
    /// The listen port is taken.
    #[error("cannot listen on {0}: the port is already in use (another node running?); choose another with --listen 127.0.0.1:PORT, or --listen 127.0.0.1:0 for any free port")]
    PortInUse(SocketAddr),
    /// Any other bind failure.
    #[error("cannot listen on {addr}: {source}; choose another address with --listen HOST:PORT")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Expected failures of a command, reported to the shell as an `error` event.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Dialing failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The peer was refused by us.
    #[error("refused {name} ({short}): {reason}")]
    Refused {
        /// Peer name.
        name: String,
        /// Short person id.
        short: String,
        /// Why.
        reason: String,
    },
    /// A code could not be read.
    #[error("invalid code: {0}")]
    Code(#[from] CodeError),
    /// A short code could not be read.
    #[error("invalid short code: {0}")]
    ShortCode(#[from] crate::domain::ShortCodeError),
    /// Pairing was refused or broke.
    #[error(transparent)]
    Pair(#[from] PairError),
    /// The command needs the node role.
    #[error("only a node can do this (this instance is a client); run it on the node, or start one with --provision-node")]
    NotANode,
    /// An argument has the wrong kind of value.
    #[error("{0}")]
    BadArgument(String),
    /// A referenced invitation does not exist.
    #[error("no invitation with this code exists on this node")]
    UnknownInvite,
    /// A referenced contact does not exist.
    #[error("no contact with this person id")]
    UnknownContact,
    /// A QR screenshot could not be read as a code.
    #[error(transparent)]
    Scan(#[from] crate::app::scan::ScanError),
    /// The runtime is shutting down.
    #[error("the instance is shutting down")]
    ShuttingDown,
}

impl CommandError {
    /// The kind of the headless `error` event.
    pub fn kind(&self) -> ErrorKind {
        use crate::net::handshake::HandshakeError;
        match self {
            CommandError::Store(StoreError::DiskFull(_)) => ErrorKind::DiskFull,
            CommandError::Store(_) => ErrorKind::Store,
            CommandError::Conn(ConnError::Unreachable { .. }) => ErrorKind::Unreachable,
            CommandError::Conn(ConnError::Timeout) => ErrorKind::Timeout,
            CommandError::Conn(ConnError::Closed {
                code: Some(CloseCode::NotAContact),
                ..
            }) => ErrorKind::NotAContact,
            CommandError::Conn(ConnError::Closed { .. }) => ErrorKind::Refused,
            CommandError::Conn(ConnError::Handshake(HandshakeError::KeyMismatch { .. })) => {
                ErrorKind::KeyMismatch
            }
            CommandError::Conn(_) => ErrorKind::ConnectionFailed,
            CommandError::Refused { .. } => ErrorKind::PeerNotAContact,
            CommandError::Code(_) | CommandError::ShortCode(_) => ErrorKind::InvalidCode,
            CommandError::Pair(p) => p.kind(),
            CommandError::NotANode => ErrorKind::NotANode,
            CommandError::BadArgument(_) => ErrorKind::BadArgument,
            CommandError::UnknownInvite => ErrorKind::UnknownInvite,
            CommandError::UnknownContact => ErrorKind::UnknownContact,
            CommandError::Scan(crate::app::scan::ScanError::Unreadable(_)) => {
                ErrorKind::QrUnreadable
            }
            CommandError::Scan(crate::app::scan::ScanError::NoQr) => ErrorKind::QrNotFound,
            CommandError::Scan(crate::app::scan::ScanError::NotACode(_)) => ErrorKind::InvalidCode,
            CommandError::ShuttingDown => ErrorKind::ShuttingDown,
        }
    }
}

/// Who this instance is, as reported in `ready` and `identity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityInfo {
    /// Role.
    pub role: Role,
    /// Person name.
    pub name: String,
    /// Person id.
    pub person_id: String,
    /// Instance id.
    pub instance_id: String,
    /// `ws://host:port` for a node, `None` for a client.
    pub endpoint: Option<String>,
}

/// Connection state of a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// A link is up.
    Connected,
    /// A dial is in progress.
    Connecting,
    /// No link.
    Offline,
}

impl PeerState {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::Connecting => "connecting",
            PeerState::Offline => "offline",
        }
    }
}

/// A contact with its live state, for listings.
#[derive(Clone, Debug)]
pub struct ContactView {
    /// Stored contact.
    pub contact: Contact,
    /// Live state.
    pub state: PeerState,
    /// Last error seen on this contact's connection.
    pub last_error: Option<String>,
    /// Unix seconds of the last time a link was up.
    pub last_seen: Option<u64>,
    /// The verification string of this pairing (both sides show the same).
    pub verification: String,
    /// Entries this contact still lacks from us (`None` when not syncing with it).
    pub behind: Option<u64>,
}

/// Something the shell should show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A link to a peer came up.
    Connected {
        /// Peer person id.
        person_id: String,
        /// Peer name.
        name: String,
    },
    /// A link went down.
    Disconnected {
        /// Peer person id.
        person_id: String,
        /// Why.
        reason: String,
    },
    /// A contact was added (pairing, card, provisioning).
    ContactAdded {
        /// Person id.
        person_id: String,
        /// Name.
        name: String,
        /// How the contact was made.
        via: Via,
        /// Verification string (both sides show the same).
        verification: String,
    },
    /// A contact's endpoints changed (profile update or discovery).
    EndpointsChanged {
        /// Person id.
        person_id: String,
        /// New URLs.
        urls: Vec<String>,
    },
    /// An entry arrived from a peer and is stored.
    Message(MessageView),
    /// Our own entries reached a peer's disk (it acknowledged them).
    Delivered {
        /// Entry ids.
        entries: Vec<String>,
    },
    /// A peer has sent us everything we lacked when the link came up.
    Synced {
        /// The peer.
        person_id: String,
    },
    /// Something went wrong outside any command.
    Error {
        /// What went wrong, for scripts.
        kind: ErrorKind,
        /// Human sentence.
        message: String,
    },
}

/// A channel entry as shown to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView {
    /// Channel id.
    pub channel: String,
    /// Entry id.
    pub entry: String,
    /// Author person id.
    pub author: String,
    /// Author's display name.
    pub author_name: String,
    /// HLC milliseconds (unix ms).
    pub ts: u64,
    /// Text, for text entries.
    pub text: Option<String>,
    /// `text`, `create`, `members`.
    pub kind: &'static str,
}

/// Counters for `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsView {
    /// Wire bytes received (binary WebSocket payloads, handshake included).
    pub bytes_in: u64,
    /// Wire bytes sent.
    pub bytes_out: u64,
    /// Entries in the store.
    pub entries: u64,
    /// Entries received and stored from peers since start.
    pub received: u64,
    /// Entries received again (ignored) since start.
    pub duplicates: u64,
    /// Entries refused since start.
    pub invalid: u64,
    /// Links up.
    pub links: u64,
}

/// A successful `accept` or `add_contact`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paired {
    /// The contact's person id.
    pub person_id: String,
    /// Its name.
    pub name: String,
    /// The verification string.
    pub verification: String,
}

/// A fresh invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInvite {
    /// The text code.
    pub code: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Reply channel of a command.
pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// Commands into the actor.
pub enum Command {
    /// Who am I.
    Identity(oneshot::Sender<IdentityInfo>),
    /// List contacts with state.
    Contacts(Reply<Vec<ContactView>>),
    /// Dial a URL once.
    Connect {
        /// `ws://host:port`.
        url: String,
        /// Answer.
        reply: Reply<PeerIdentity>,
    },
    /// Create an invitation (node only).
    Invite {
        /// Lifetime.
        ttl_secs: u64,
        /// Answer.
        reply: Reply<NewInvite>,
    },
    /// List invitations.
    Invites(Reply<Vec<InviteRecord>>),
    /// Revoke an invitation by its code.
    RevokeInvite {
        /// The code.
        code: String,
        /// Answer: the record after revocation.
        reply: Reply<InviteRecord>,
    },
    /// Create a short code (node only).
    ShortCode {
        /// Lifetime.
        ttl_secs: u64,
        /// Answer.
        reply: Reply<NewInvite>,
    },
    /// Pair by short code (`code`) or, with `code: None`, by the trust secret.
    AcceptPake {
        /// The short code as typed; `None`: use the trust secret.
        code: Option<String>,
        /// The node's address; default `node_url`.
        url: Option<String>,
        /// Mark the node as our replica (home node).
        replica: bool,
        /// Answer.
        reply: Reply<Paired>,
    },
    /// Accept an invitation code.
    Accept {
        /// The code.
        code: String,
        /// Mark the node as our replica (home node).
        replica: bool,
        /// `Invite` or `Provision`.
        via: Via,
        /// Answer.
        reply: Reply<Paired>,
    },
    /// Our contact card code.
    Card(Reply<String>),
    /// Import a contact card.
    AddContact {
        /// The card code.
        card: String,
        /// Answer: the new contact.
        reply: Reply<Paired>,
    },
    /// Remove a contact (its channels and history stay).
    RemoveContact {
        /// Person id.
        person_id: String,
        /// Answer: whether it existed.
        reply: Reply<bool>,
    },
    /// Channels with their unread counts.
    Channels(Reply<Vec<(Channel, u64)>>),
    /// Create a group channel.
    CreateChannel {
        /// Name.
        name: String,
        /// Member person ids (we are added).
        members: Vec<String>,
        /// Answer: the channel id.
        reply: Reply<String>,
    },
    /// Add or remove a member of a group channel (a signed members entry).
    ChangeMembers {
        /// Channel id.
        channel: String,
        /// Person id.
        person_id: String,
        /// Add (true) or remove.
        add: bool,
        /// Answer: the members afterwards.
        reply: Reply<Vec<String>>,
    },
    /// Write a text message.
    Send {
        /// Channel id.
        channel: String,
        /// Text.
        text: String,
        /// Answer: the entry id, once durable.
        reply: Reply<String>,
    },
    /// The last messages of a channel, in view order (before `before`, if given).
    History {
        /// Channel id.
        channel: String,
        /// Only messages older than this one.
        before: Option<Box<MessageView>>,
        /// How many.
        limit: usize,
        /// Answer.
        reply: Reply<Vec<MessageView>>,
    },
    /// Counters.
    Stats(oneshot::Sender<StatsView>),
    /// Drop every link and dial the contacts again at once; answers with the number of
    /// links dropped.
    Reconnect(oneshot::Sender<usize>),
    /// Change our display name: a new profile version, pushed to connected contacts.
    SetDisplayName {
        /// The new name.
        name: String,
        /// Answer: the new profile version.
        reply: Reply<u64>,
    },
    /// A trusted party (the provisioning parent) says where a contact listens now.
    TrustEndpoint {
        /// Contact.
        person_id: String,
        /// URL.
        url: String,
    },
}

/// A clonable handle to the runtime.
#[derive(Clone)]
pub struct Handle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) cancel: CancellationToken,
}

impl Handle {
    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn call<T>(&self, f: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        self.ask(f).await.unwrap_or(Err(CommandError::ShuttingDown))
    }

    /// Who am I.
    pub async fn identity(&self) -> Option<IdentityInfo> {
        self.ask(Command::Identity).await
    }

    /// Contacts with live state.
    pub async fn contacts(&self) -> Result<Vec<ContactView>, CommandError> {
        self.call(Command::Contacts).await
    }

    /// Dial a URL and bring a link up.
    pub async fn connect(&self, url: String) -> Result<PeerIdentity, CommandError> {
        self.call(|reply| Command::Connect { url, reply }).await
    }

    /// Create an invitation.
    pub async fn invite(&self, ttl_secs: u64) -> Result<NewInvite, CommandError> {
        self.call(|reply| Command::Invite { ttl_secs, reply }).await
    }

    /// List invitations.
    pub async fn invites(&self) -> Result<Vec<InviteRecord>, CommandError> {
        self.call(Command::Invites).await
    }

    /// Revoke an invitation.
    pub async fn revoke_invite(&self, code: String) -> Result<InviteRecord, CommandError> {
        self.call(|reply| Command::RevokeInvite { code, reply })
            .await
    }

    /// Create a short code.
    pub async fn short_code(&self, ttl_secs: u64) -> Result<NewInvite, CommandError> {
        self.call(|reply| Command::ShortCode { ttl_secs, reply })
            .await
    }

    /// Pair by short code, or by the trust secret when `code` is `None`.
    pub async fn accept_pake(
        &self,
        code: Option<String>,
        url: Option<String>,
        replica: bool,
    ) -> Result<Paired, CommandError> {
        self.call(|reply| Command::AcceptPake {
            code,
            url,
            replica,
            reply,
        })
        .await
    }

    /// Accept an invitation code.
    pub async fn accept(
        &self,
        code: String,
        via: Via,
        replica: bool,
    ) -> Result<Paired, CommandError> {
        self.call(|reply| Command::Accept {
            code,
            replica,
            via,
            reply,
        })
        .await
    }

    /// Our contact card.
    pub async fn card(&self) -> Result<String, CommandError> {
        self.call(Command::Card).await
    }

    /// Import a contact card.
    pub async fn add_contact(&self, card: String) -> Result<Paired, CommandError> {
        self.call(|reply| Command::AddContact { card, reply }).await
    }

    /// Remove a contact.
    pub async fn remove_contact(&self, person_id: String) -> Result<bool, CommandError> {
        self.call(|reply| Command::RemoveContact { person_id, reply })
            .await
    }

    /// Channels.
    pub async fn channels(&self) -> Result<Vec<(Channel, u64)>, CommandError> {
        self.call(Command::Channels).await
    }

    /// Create a group channel.
    pub async fn create_channel(
        &self,
        name: String,
        members: Vec<String>,
    ) -> Result<String, CommandError> {
        self.call(|reply| Command::CreateChannel {
            name,
            members,
            reply,
        })
        .await
    }

    /// Add (`add`) or remove a member of a group channel.
    pub async fn change_members(
        &self,
        channel: String,
        person_id: String,
        add: bool,
    ) -> Result<Vec<String>, CommandError> {
        self.call(|reply| Command::ChangeMembers {
            channel,
            person_id,
            add,
            reply,
        })
        .await
    }

    /// Write a text message; answers once it is durable.
    pub async fn send(&self, channel: String, text: String) -> Result<String, CommandError> {
        self.call(|reply| Command::Send {
            channel,
            text,
            reply,
        })
        .await
    }

    /// The last `limit` messages of a channel.
    pub async fn history(
        &self,
        channel: String,
        limit: usize,
    ) -> Result<Vec<MessageView>, CommandError> {
        self.call(|reply| Command::History {
            channel,
            before: None,
            limit,
            reply,
        })
        .await
    }

    /// Up to `limit` messages older than `before` (scrollback).
    pub async fn history_before(
        &self,
        channel: String,
        before: MessageView,
        limit: usize,
    ) -> Result<Vec<MessageView>, CommandError> {
        self.call(|reply| Command::History {
            channel,
            before: Some(Box::new(before)),
            limit,
            reply,
        })
        .await
    }

    /// Drop every link and redial at once.
    pub async fn reconnect(&self) -> Option<usize> {
        self.ask(Command::Reconnect).await
    }

    /// Counters.
    pub async fn stats(&self) -> Option<StatsView> {
        self.ask(Command::Stats).await
    }

    /// Change our display name.
    pub async fn set_display_name(&self, name: String) -> Result<u64, CommandError> {
        self.call(|reply| Command::SetDisplayName { name, reply })
            .await
    }

    /// Tell the runtime where a contact listens now (trusted local source).
    pub async fn trust_endpoint(&self, person_id: String, url: String) {
        let _ = self
            .tx
            .send(Command::TrustEndpoint { person_id, url })
            .await;
    }

    /// Ask the runtime to stop (flush, close links).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// A started runtime.
pub struct Running {
    /// Handle for commands.
    pub handle: Handle,
    /// Events for the shell.
    pub events: mpsc::Receiver<Event>,
    /// Identity as reported by `ready`.
    pub info: IdentityInfo,
    /// Completes when the actor has stopped and the store is flushed.
    pub done: tokio::task::JoinHandle<()>,
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Load or create the identity in `data_dir`.
pub fn load_identity(cfg: &Config, store: &Store) -> Result<LocalIdentity, StartError> {
    let dir = &cfg.data_dir;
    let pass = cfg.passphrase.as_deref();
    let instance_name = |name: &str| format!("{name}/{}", cfg.role.as_str());
    let ident = match keyfile::read(dir, pass)? {
        Some(kf) => {
            if let Some(given) = &cfg.name {
                if *given != kf.name {
                    return Err(StartError::NameMismatch {
                        dir: dir.clone(),
                        existing: kf.name,
                        given: given.clone(),
                    });
                }
            }
            LocalIdentity::from_secrets(&kf.name, &instance_name(&kf.name), kf.secrets.clone())
        }
        None => {
            let name = cfg
                .name
                .clone()
                .unwrap_or_else(|| format!("{}@lama.local", cfg.role.as_str()));
            check_name(&name).map_err(|_| StartError::BadName(name.clone()))?;
            let secrets = Secrets::generate();
            keyfile::write(dir, &name, &secrets, pass)?;
            LocalIdentity::from_secrets(&name, &instance_name(&name), secrets)
        }
    };
    // sled recovers a truncated log silently by dropping its tail; a marker written after
    // the identity was first stored tells a lost store from a new one.
    let marker = dir.join(STORE_MARKER);
    match store.identity()? {
        Some((p, i)) if p == ident.person && i == ident.instance => {}
        Some(_) => return Err(StoreError::IdentityMismatch(store.dir().to_path_buf()).into()),
        None if marker.exists() => {
            return Err(StoreError::Corrupt {
                dir: store.dir().to_path_buf(),
                why: "its records are gone (truncated or replaced)".into(),
            }
            .into())
        }
        None => {
            store.put_identity(&ident.person, &ident.instance)?;
            std::fs::write(&marker, ident.person_id()).map_err(|source| StartError::DataDir {
                dir: dir.clone(),
                source,
            })?;
        }
    }
    Ok(ident)
}

pub(crate) fn prepare_dir(dir: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Start an instance: open store and identity, bind (node), spawn the actor.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    prepare_dir(&cfg.data_dir)?;
    let store = Store::open(&cfg.data_dir)?;
    let me = Arc::new(load_identity(&cfg, &store)?);
    let listener = match cfg.role {
        Role::Node => Some(TcpListener::bind(cfg.listen).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                StartError::PortInUse(cfg.listen)
            } else {
                StartError::Bind {
                    addr: cfg.listen,
                    source: e,
                }
            }
        })?),
        Role::Client => None,
    };
    let endpoint = match &listener {
        Some(l) => {
            let a = l.local_addr().map_err(|source| StartError::Bind {
                addr: cfg.listen,
                source,
            })?;
            let host = if a.ip().is_loopback() {
                "localhost".to_string()
            } else {
                a.ip().to_string()
            };
            Some(
                cfg.public_url
                    .clone()
                    .unwrap_or_else(|| format!("ws://{host}:{}", a.port())),
            )
        }
        None => None,
    };
    let info = IdentityInfo {
        role: cfg.role,
        name: me.person.name.clone(),
        person_id: me.person_id(),
        instance_id: me.instance_id(),
        endpoint,
    };
    tracing::info!(
        role = cfg.role.as_str(),
        person = %info.person_id,
        endpoint = ?info.endpoint,
        "instance started"
    );
    let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
    let (etx, erx) = mpsc::channel(EVENT_CAPACITY);
    let cancel = CancellationToken::new();
    // Nodes listen too: a node paired with another node finds it the same way.
    let discovery = crate::net::discovery::bind_listener(cfg.discovery).await;
    let actor = Actor::new(cfg, me, store, info.clone(), rx, etx, cancel.clone())?;
    let done = tokio::spawn(actor.run(listener, discovery));
    Ok(Running {
        handle: Handle { tx, cancel },
        events: erx,
        info,
        done,
    })
}
