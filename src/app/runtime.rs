//! The runtime actor: owns an instance's identity, store and connection table, runs one
//! `select!`, and is driven through a clonable [`Handle`]. Shells (headless, TUI) only send
//! commands and render the [`Event`]s it emits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::identity::{check_name, LocalIdentity, Secrets};
use crate::net::conn::{self, ConnError, Link, LinkEnd, HANDSHAKE_TIMEOUT, OUTBOX_CAPACITY};
use crate::net::handshake::PeerIdentity;
use crate::net::wire::{CloseCode, WireMsg};
use crate::store::{keyfile, Contact, Store, StoreError};

/// Capacity of the command queue into the actor.
pub const COMMAND_CAPACITY: usize = 64;
/// Capacity of the internal queue from connection tasks into the actor.
pub const INTERNAL_CAPACITY: usize = 256;
/// Capacity of the event queue out of the actor.
pub const EVENT_CAPACITY: usize = 1024;
/// Handshakes in progress at once; further TCP connections wait for a slot.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

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
    /// The runtime is shutting down.
    #[error("the instance is shutting down")]
    ShuttingDown,
}

impl CommandError {
    /// snake_case kind for the headless `error` event.
    pub fn kind(&self) -> &'static str {
        match self {
            CommandError::Store(StoreError::DiskFull(_)) => "disk_full",
            CommandError::Store(_) => "store",
            CommandError::Conn(ConnError::Unreachable { .. }) => "unreachable",
            CommandError::Conn(ConnError::Timeout) => "timeout",
            CommandError::Conn(ConnError::Closed {
                code: Some(CloseCode::NotAContact),
                ..
            }) => "not_a_contact",
            CommandError::Conn(ConnError::Closed { .. }) => "refused",
            CommandError::Conn(ConnError::Handshake(
                crate::net::handshake::HandshakeError::KeyMismatch { .. },
            )) => "key_mismatch",
            CommandError::Conn(_) => "connection_failed",
            CommandError::Refused { .. } => "peer_not_a_contact",
            CommandError::ShuttingDown => "shutting_down",
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
}

/// Commands into the actor.
pub enum Command {
    /// Who am I.
    Identity(oneshot::Sender<IdentityInfo>),
    /// List contacts with state.
    Contacts(oneshot::Sender<Result<Vec<ContactView>, CommandError>>),
    /// Dial a URL.
    Connect {
        /// `ws://host:port`.
        url: String,
        /// Answer.
        reply: oneshot::Sender<Result<PeerIdentity, CommandError>>,
    },
}

/// From connection tasks into the actor.
enum Internal {
    /// May this peer connect? (responder side, and dialer side for the peer it reached)
    Authorize {
        peer: PeerIdentity,
        reply: oneshot::Sender<Result<(), (CloseCode, String)>>,
    },
    /// A link is up.
    LinkUp {
        peer: PeerIdentity,
        conn_id: u64,
        outbox: mpsc::Sender<WireMsg>,
        cancel: CancellationToken,
    },
    /// A link ended.
    LinkDown {
        person_id: String,
        conn_id: u64,
        end: LinkEnd,
    },
}

/// A clonable handle to the runtime.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    cancel: CancellationToken,
}

impl Handle {
    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Who am I.
    pub async fn identity(&self) -> Option<IdentityInfo> {
        self.ask(Command::Identity).await
    }

    /// Contacts with live state.
    pub async fn contacts(&self) -> Result<Vec<ContactView>, CommandError> {
        self.ask(Command::Contacts)
            .await
            .unwrap_or(Err(CommandError::ShuttingDown))
    }

    /// Dial a URL and bring a link up.
    pub async fn connect(&self, url: String) -> Result<PeerIdentity, CommandError> {
        self.ask(|reply| Command::Connect { url, reply })
            .await
            .unwrap_or(Err(CommandError::ShuttingDown))
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
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

fn prepare_dir(dir: &Path) -> Result<(), StartError> {
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
            Some(format!("ws://{host}:{}", a.port()))
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
    let (itx, irx) = mpsc::channel(INTERNAL_CAPACITY);
    let (etx, erx) = mpsc::channel(EVENT_CAPACITY);
    let cancel = CancellationToken::new();
    let actor = Actor {
        cfg,
        me,
        store,
        info: info.clone(),
        commands: rx,
        internal_rx: irx,
        internal_tx: itx,
        events: etx,
        cancel: cancel.clone(),
        tasks: TaskTracker::new(),
        links: HashMap::new(),
        states: HashMap::new(),
        next_conn: 1,
        handshake_slots: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
    };
    let done = tokio::spawn(actor.run(listener));
    Ok(Running {
        handle: Handle { tx, cancel },
        events: erx,
        info,
        done,
    })
}

struct LinkSlot {
    conn_id: u64,
    #[allow(dead_code)] // the sync layer (next issue) sends through it
    outbox: mpsc::Sender<WireMsg>,
    cancel: CancellationToken,
}

#[derive(Default, Clone)]
struct LiveState {
    last_error: Option<String>,
    last_seen: Option<u64>,
    connecting: bool,
}

struct Actor {
    cfg: Config,
    me: Arc<LocalIdentity>,
    store: Store,
    info: IdentityInfo,
    commands: mpsc::Receiver<Command>,
    internal_rx: mpsc::Receiver<Internal>,
    internal_tx: mpsc::Sender<Internal>,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    links: HashMap<String, LinkSlot>,
    states: HashMap<String, LiveState>,
    next_conn: u64,
    handshake_slots: Arc<Semaphore>,
}

impl Actor {
    async fn run(mut self, listener: Option<TcpListener>) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                Some(msg) = self.internal_rx.recv() => self.on_internal(msg).await,
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

    fn emit(&self, e: Event) {
        // A shell that stopped reading must not stall the actor; events are advisory.
        if self.events.try_send(e).is_err() {
            tracing::debug!("event queue full or closed; event dropped");
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Identity(reply) => {
                let _ = reply.send(self.info.clone());
            }
            Command::Contacts(reply) => {
                let _ = reply.send(self.contact_views());
            }
            Command::Connect { url, reply } => self.spawn_dial(url, reply),
        }
    }

    fn contact_views(&self) -> Result<Vec<ContactView>, CommandError> {
        Ok(self
            .store
            .contacts()?
            .into_iter()
            .map(|c| {
                let id = c.person_id();
                let live = self.states.get(&id).cloned().unwrap_or_default();
                let state = if self.links.contains_key(&id) {
                    PeerState::Connected
                } else if live.connecting {
                    PeerState::Connecting
                } else {
                    PeerState::Offline
                };
                ContactView {
                    contact: c,
                    state,
                    last_error: live.last_error,
                    last_seen: live.last_seen,
                }
            })
            .collect())
    }

    fn authorize(&self, peer: &PeerIdentity) -> Result<(), (CloseCode, String)> {
        if peer.person_id == self.me.person_id() {
            return Ok(());
        }
        match self.store.contact(&peer.person_id) {
            Ok(Some(_)) => Ok(()),
            Ok(None) if self.cfg.accept_unknown => Ok(()),
            Ok(None) => Err((
                CloseCode::NotAContact,
                format!(
                    "{} ({}) is not a contact of {}; pair first with an invitation code from this node",
                    peer.person.name,
                    crate::identity::short_id(&peer.person_id),
                    self.me.person.name
                ),
            )),
            Err(e) => Err((CloseCode::Shutdown, format!("the peer's store failed: {e}"))),
        }
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Authorize { peer, reply } => {
                let verdict = self.authorize(&peer);
                if let Err((_, why)) = &verdict {
                    tracing::info!(peer = %peer.person_id, "refused: {why}");
                }
                let _ = reply.send(verdict);
            }
            Internal::LinkUp {
                peer,
                conn_id,
                outbox,
                cancel,
            } => {
                // One link per peer: the newest wins, since an older one may be a dead
                // socket not yet detected.
                if let Some(old) = self.links.insert(
                    peer.person_id.clone(),
                    LinkSlot {
                        conn_id,
                        outbox,
                        cancel,
                    },
                ) {
                    old.cancel.cancel();
                }
                let st = self.states.entry(peer.person_id.clone()).or_default();
                st.connecting = false;
                st.last_seen = Some(now_secs());
                tracing::info!(peer = %peer.person_id, "connected");
                self.emit(Event::Connected {
                    person_id: peer.person_id,
                    name: peer.person.name,
                });
            }
            Internal::LinkDown {
                person_id,
                conn_id,
                end,
            } => {
                if self.links.get(&person_id).map(|s| s.conn_id) != Some(conn_id) {
                    return; // a replaced link; its successor is up
                }
                self.links.remove(&person_id);
                let st = self.states.entry(person_id.clone()).or_default();
                st.last_seen = Some(now_secs());
                if end.code != Some(CloseCode::Shutdown) {
                    st.last_error = Some(end.reason.clone());
                }
                tracing::info!(peer = %person_id, "disconnected: {}", end.reason);
                self.emit(Event::Disconnected {
                    person_id,
                    reason: end.reason,
                });
            }
        }
    }

    fn next_conn_id(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    fn spawn_accept(&mut self, tcp: TcpStream, addr: SocketAddr) {
        let Ok(permit) = self.handshake_slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many handshakes in progress; dropping connection");
            return;
        };
        let me = self.me.clone();
        let itx = self.internal_tx.clone();
        let cancel = self.cancel.child_token();
        let conn_id = self.next_conn_id();
        self.tasks.spawn(async move {
            let setup = async {
                let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(conn::ws_config()))
                    .await
                    .map_err(|e| ConnError::Ws(e.to_string()))?;
                let mut link = conn::respond(ws, &me).await?;
                let (tx, rx) = oneshot::channel();
                let _ = itx
                    .send(Internal::Authorize {
                        peer: link.peer.clone(),
                        reply: tx,
                    })
                    .await;
                match rx.await {
                    Ok(Ok(())) => {
                        link.send_hello(&me).await?;
                        Ok(Some(link))
                    }
                    Ok(Err((code, why))) => {
                        link.refuse(code, &why).await;
                        Ok(None)
                    }
                    Err(_) => {
                        link.refuse(CloseCode::Shutdown, "shutting down").await;
                        Ok(None)
                    }
                }
            };
            let link = match tokio::time::timeout(HANDSHAKE_TIMEOUT, setup).await {
                Err(_) => {
                    tracing::info!(%addr, "handshake timed out");
                    return;
                }
                Ok(Err::<_, ConnError>(e)) => {
                    tracing::info!(%addr, "incoming connection failed: {e}");
                    return;
                }
                Ok(Ok(None)) => return,
                Ok(Ok(Some(l))) => l,
            };
            drop(permit);
            run_registered(link, conn_id, itx, cancel).await;
        });
    }

    fn spawn_dial(
        &mut self,
        url: String,
        reply: oneshot::Sender<Result<PeerIdentity, CommandError>>,
    ) {
        let me = self.me.clone();
        let itx = self.internal_tx.clone();
        let cancel = self.cancel.child_token();
        let conn_id = self.next_conn_id();
        self.tasks.spawn(async move {
            let link = match conn::dial(&url, &me, None).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
            };
            let (tx, rx) = oneshot::channel();
            let _ = itx
                .send(Internal::Authorize {
                    peer: link.peer.clone(),
                    reply: tx,
                })
                .await;
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err((code, why))) => {
                    let peer = link.peer.clone();
                    link.refuse(code, &why).await;
                    let _ = reply.send(Err(CommandError::Refused {
                        name: peer.person.name,
                        short: crate::identity::short_id(&peer.person_id).into(),
                        reason: why,
                    }));
                    return;
                }
                Err(_) => {
                    let _ = reply.send(Err(CommandError::ShuttingDown));
                    return;
                }
            }
            let _ = reply.send(Ok(link.peer.clone()));
            run_registered(link, conn_id, itx, cancel).await;
        });
    }
}

async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Register a link with the actor, run it, and report its end.
async fn run_registered<S>(
    link: Link<S>,
    conn_id: u64,
    itx: mpsc::Sender<Internal>,
    cancel: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (otx, orx) = mpsc::channel(OUTBOX_CAPACITY);
    let peer = link.peer.clone();
    let _ = itx
        .send(Internal::LinkUp {
            peer: peer.clone(),
            conn_id,
            outbox: otx,
            cancel: cancel.clone(),
        })
        .await;
    let end = conn::run_link(link, orx, cancel).await;
    let _ = itx
        .send(Internal::LinkDown {
            person_id: peer.person_id,
            conn_id,
            end,
        })
        .await;
}
