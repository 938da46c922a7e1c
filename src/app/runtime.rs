//! The runtime: starts an instance (data dir, store, identity, sockets), runs its core in
//! the shell ([`crate::app::actor`]), and hands out a clonable [`Handle`]. Shells (headless, TUI) only send commands and render the events.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::app::actor::{Actor, Request, Sockets};
pub use crate::app::clock::{now_ms, now_secs};
use crate::app::connections::Tls;
use crate::app::store_adapter::DiskStore;
pub use crate::core::{
    Answer, CodeReach, Command, CommandError, ContactNet, ContactView, EndpointView, Event,
    IdentityInfo, MessageView, NetView, NewInvite, Paired, PeerState, Role, SelfNet, StatsView,
    TrustSecret,
};
use crate::core::{CoreConfig, NodeCore};
use crate::domain::identity::{check_name, LocalIdentity, Secrets};
use crate::domain::{Channel, InviteRecord, PeerIdentity, Via};
use crate::net::discovery::Scope;
use crate::net::tls::{self, TlsClient, TlsError, TlsFiles};
use crate::store::{keyfile, Store, StoreError};

/// Capacity of the command queue into the actor.
pub const COMMAND_CAPACITY: usize = 64;
/// Capacity of the event queue out of the actor.
pub const EVENT_CAPACITY: usize = 1024;

/// File in the data dir that records that the store was initialised.
pub const STORE_MARKER: &str = "store.initialised";

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
    /// `--ca-file` (any role); `--tls-cert` and `--tls-key` (a node serving `wss://`).
    pub tls: TlsFiles,
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
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Any other bind failure.
    #[error("cannot listen on {addr}: {source}; choose another address with --listen HOST:PORT")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A clonable handle to the runtime.
#[derive(Clone)]
pub struct Handle {
    pub(crate) tx: mpsc::Sender<Request>,
    pub(crate) cancel: CancellationToken,
}

/// Takes the one answer variant a command can have; another is a bug in the core.
macro_rules! answer {
    ($r:expr, $variant:ident) => {
        match $r {
            Ok(Answer::$variant(v)) => Ok(v),
            Err(e) => Err(e),
            Ok(other) => unreachable!(
                "invariant: the core answers {} with {}, got {other:?}",
                stringify!($variant),
                stringify!($variant)
            ),
        }
    };
}

impl Handle {
    /// Run one command in the core.
    pub async fn call(&self, cmd: Command) -> Result<Answer, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((cmd, tx))
            .await
            .map_err(|_| CommandError::ShuttingDown)?;
        rx.await.unwrap_or(Err(CommandError::ShuttingDown))
    }

    /// Who am I.
    pub async fn identity(&self) -> Option<IdentityInfo> {
        let r: Result<IdentityInfo, CommandError> =
            answer!(self.call(Command::Identity).await, Identity);
        r.ok()
    }

    /// Contacts with live state.
    pub async fn contacts(&self) -> Result<Vec<ContactView>, CommandError> {
        answer!(self.call(Command::Contacts).await, Contacts)
    }

    /// Dial a URL and bring a link up.
    pub async fn connect(&self, url: String) -> Result<PeerIdentity, CommandError> {
        let p: Result<Box<PeerIdentity>, CommandError> =
            answer!(self.call(Command::Connect { url }).await, Connected);
        p.map(|b| *b)
    }

    /// Create an invitation.
    pub async fn invite(&self, ttl_secs: u64) -> Result<NewInvite, CommandError> {
        answer!(self.call(Command::Invite { ttl_secs }).await, NewInvite)
    }

    /// List invitations.
    pub async fn invites(&self) -> Result<Vec<InviteRecord>, CommandError> {
        answer!(self.call(Command::Invites).await, Invites)
    }

    /// Revoke an invitation.
    pub async fn revoke_invite(&self, code: String) -> Result<InviteRecord, CommandError> {
        answer!(self.call(Command::RevokeInvite { code }).await, Invite)
    }

    /// Create a short code.
    pub async fn short_code(&self, ttl_secs: u64) -> Result<NewInvite, CommandError> {
        answer!(self.call(Command::ShortCode { ttl_secs }).await, NewInvite)
    }

    /// Pair by short code, or by the trust secret when `code` is `None`.
    pub async fn accept_pake(
        &self,
        code: Option<String>,
        url: Option<String>,
        replica: bool,
    ) -> Result<Paired, CommandError> {
        let cmd = Command::AcceptPake { code, url, replica };
        answer!(self.call(cmd).await, Paired)
    }

    /// Accept an invitation code.
    pub async fn accept(
        &self,
        code: String,
        via: Via,
        replica: bool,
    ) -> Result<Paired, CommandError> {
        let cmd = Command::Accept { code, replica, via };
        answer!(self.call(cmd).await, Paired)
    }

    /// Our contact card.
    pub async fn card(&self) -> Result<String, CommandError> {
        answer!(self.call(Command::Card).await, Card)
    }

    /// Import a contact card.
    pub async fn add_contact(&self, card: String) -> Result<Paired, CommandError> {
        answer!(self.call(Command::AddContact { card }).await, Paired)
    }

    /// Remove a contact.
    pub async fn remove_contact(&self, person_id: String) -> Result<bool, CommandError> {
        answer!(
            self.call(Command::RemoveContact { person_id }).await,
            Removed
        )
    }

    /// Channels.
    pub async fn channels(&self) -> Result<Vec<(Channel, u64)>, CommandError> {
        answer!(self.call(Command::Channels).await, Channels)
    }

    /// Create a group channel.
    pub async fn create_channel(
        &self,
        name: String,
        members: Vec<String>,
    ) -> Result<String, CommandError> {
        let cmd = Command::CreateChannel { name, members };
        answer!(self.call(cmd).await, ChannelId)
    }

    /// Add (`add`) or remove a member of a group channel.
    pub async fn change_members(
        &self,
        channel: String,
        person_id: String,
        add: bool,
    ) -> Result<Vec<String>, CommandError> {
        let cmd = Command::ChangeMembers {
            channel,
            person_id,
            add,
        };
        answer!(self.call(cmd).await, Members)
    }

    /// Write a text message; answers once it is durable.
    pub async fn send(&self, channel: String, text: String) -> Result<String, CommandError> {
        answer!(self.call(Command::Send { channel, text }).await, EntryId)
    }

    /// The last `limit` messages of a channel.
    pub async fn history(
        &self,
        channel: String,
        limit: usize,
    ) -> Result<Vec<MessageView>, CommandError> {
        let cmd = Command::History {
            channel,
            before: None,
            limit,
        };
        answer!(self.call(cmd).await, History)
    }

    /// Up to `limit` messages older than `before` (scrollback).
    pub async fn history_before(
        &self,
        channel: String,
        before: MessageView,
        limit: usize,
    ) -> Result<Vec<MessageView>, CommandError> {
        let cmd = Command::History {
            channel,
            before: Some(Box::new(before)),
            limit,
        };
        answer!(self.call(cmd).await, History)
    }

    /// Drop every link and redial at once.
    pub async fn reconnect(&self) -> Option<usize> {
        let r: Result<usize, CommandError> =
            answer!(self.call(Command::Reconnect).await, Reconnecting);
        r.ok()
    }

    /// Counters, with this process's wire bytes.
    pub async fn stats(&self) -> Option<StatsView> {
        let r: Result<StatsView, CommandError> = answer!(self.call(Command::Stats).await, Stats);
        let mut s = r.ok()?;
        (s.bytes_in, s.bytes_out) = crate::net::conn::wire_bytes();
        Some(s)
    }

    /// Mark a channel read (durably).
    pub async fn mark_read(&self, channel: String) -> Result<(), CommandError> {
        self.call(Command::MarkRead { channel }).await.map(|_| ())
    }

    /// The network view: our addresses, and each contact's with source and state.
    pub async fn endpoints(&self) -> Result<NetView, CommandError> {
        answer!(self.call(Command::Endpoints).await, Endpoints).map(|b| *b)
    }

    /// Change our display name.
    pub async fn set_display_name(&self, name: String) -> Result<u64, CommandError> {
        answer!(
            self.call(Command::SetDisplayName { name }).await,
            ProfileVersion
        )
    }

    /// Tell the runtime where a contact listens now (trusted local source).
    pub async fn trust_endpoint(&self, person_id: String, url: String) {
        let _ = self.call(Command::TrustEndpoint { person_id, url }).await;
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
    // An emptied or replaced database file opens as a new store; a marker written after
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
            std::fs::write(&marker, ident.person_id().as_str()).map_err(|source| {
                StartError::DataDir {
                    dir: dir.clone(),
                    source,
                }
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
    let tls = tls_of(&cfg.tls)?;
    let (listener, advertised) = match cfg.role {
        Role::Node => {
            let (l, urls) = listen(&cfg, tls.acceptor.is_some()).await?;
            (Some(l), urls)
        }
        Role::Client => (None, Vec::new()),
    };
    let endpoint = advertised.first().cloned();
    let listening = listener.as_ref().and_then(|l| l.local_addr().ok());
    let info = IdentityInfo {
        role: cfg.role,
        name: me.person.name.clone(),
        person_id: me.person_id().to_string(),
        instance_id: me.instance_id().to_string(),
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
    let sockets = Sockets {
        listener,
        discovery,
        announce: info.endpoint.clone().map(|url| (url, cfg.discovery)),
    };
    let core_cfg = CoreConfig {
        role: cfg.role,
        accept_unknown: cfg.accept_unknown,
        trust_secret: cfg.trust_secret.clone(),
        node_url: cfg.node_url.clone(),
        listening: listening.map(|a| a.to_string()),
        discovery: cfg.discovery,
        advertised,
    };
    let store = Box::new(DiskStore::new(store, cfg.data_dir.clone()));
    let seed = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
    let core = NodeCore::new(core_cfg, me, info.clone(), store, now_ms(), seed)
        .map_err(|e| StartError::Store(StoreError::Other(e.message)))?;
    let actor = Actor::new(
        core,
        rx,
        etx,
        cancel.clone(),
        tokio::runtime::Handle::current(),
        tls,
    );
    let done = tokio::spawn(actor.run(sockets));
    Ok(Running {
        handle: Handle { tx, cancel },
        events: erx,
        info,
        done,
    })
}

/// The instance's TLS from its files: each one is read now, so a wrong path stops the start.
fn tls_of(files: &TlsFiles) -> Result<Tls, StartError> {
    let client = TlsClient::new(files.ca_file.as_deref())?;
    let acceptor = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    Ok(Tls { client, acceptor })
}

/// A node's listener, and the URLs it gives out: `--public-url` first, then where it can
/// be reached. Bound to every interface (0.0.0.0, ::), that is each interface's address (an
/// unspecified address works from nowhere); bound to loopback, `localhost` (alone, this
/// machine only: the pairing screen and the `invite` event say so).
/// `tls`: the node serves TLS itself, so its URLs are `wss://`.
async fn listen(cfg: &Config, tls: bool) -> Result<(TcpListener, Vec<String>), StartError> {
    let l = TcpListener::bind(cfg.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            StartError::PortInUse(cfg.listen)
        } else {
            StartError::Bind {
                addr: cfg.listen,
                source: e,
            }
        }
    })?;
    let a = l.local_addr().map_err(|source| StartError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let mut urls: Vec<String> = cfg.public_url.iter().cloned().collect();
    let scheme = if tls { "wss" } else { "ws" };
    let ws = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", a.port()),
        v4 => format!("{scheme}://{v4}:{}", a.port()),
    };
    let before = urls.len();
    if a.ip().is_unspecified() {
        urls.extend(interface_addresses(a.is_ipv6()).into_iter().map(ws));
    } else if !a.ip().is_loopback() {
        urls.push(ws(a.ip()));
    }
    // On loopback the bound address still comes after a public URL: a client on this
    // machine (the provisioning one, say) may not reach the public address from inside.
    if a.ip().is_loopback() || urls.len() == before {
        urls.push(format!("{scheme}://localhost:{}", a.port()));
    }
    urls.dedup();
    urls.truncate(MAX_ADVERTISED_URLS);
    Ok((l, urls))
}

/// Most URLs a node puts in its codes and profile (a code carries every one).
pub const MAX_ADVERTISED_URLS: usize = 4;

/// This machine's addresses other peers can dial: up, not loopback, not IPv6 link-local
/// (which needs an interface name no URL carries); IPv4 first. `v6`: a listener on `::`
/// also takes IPv6 connections.
fn interface_addresses(v6: bool) -> Vec<std::net::IpAddr> {
    let Ok(list) = if_addrs::get_if_addrs() else {
        tracing::warn!("cannot list the network interfaces: advertising localhost only");
        return Vec::new();
    };
    let mut ips: Vec<std::net::IpAddr> = list
        .iter()
        .filter(|i| !i.is_loopback() && i.is_oper_up())
        .map(|i| i.ip())
        .filter(|ip| match ip {
            std::net::IpAddr::V4(_) => true,
            std::net::IpAddr::V6(a) => v6 && (a.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    ips.dedup();
    ips
}
