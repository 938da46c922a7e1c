//! What the core is asked and what it answers: commands, their answers and errors, the
//! events it reports, and the views the shells render. Plain data: the headless protocol
//! and the terminal UI are both built on these.

use crate::domain::codes::ScanError;
use crate::domain::log::LogError;
use crate::domain::{
    Channel, CodeError, Contact, ErrorKind, InviteRecord, PeerIdentity, ShortCodeError, Via,
};
use crate::net::link::ConnError;
use crate::net::pairing::PairError;
use crate::net::wire::CloseCode;

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

/// A shared trust secret: zeroed on drop, never printed.
#[derive(Clone)]
pub struct TrustSecret(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for TrustSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrustSecret(<redacted>)")
    }
}

/// Why an argument of a command cannot be used (the wire kind is `bad_argument`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A name breaks the naming rules.
    #[error("{0}")]
    Name(String),
    /// A group member is not a person id.
    #[error("member `{0}` is not a person id (64 hex characters)")]
    MemberNotAPersonId(String),
    /// A person id argument is not one.
    #[error("`{0}` is not a person id (64 hex characters)")]
    NotAPersonId(String),
    /// Members of a 1:1 channel cannot change.
    #[error("a 1:1 channel has fixed members; create a group channel instead")]
    DirectChannelFixed,
    /// No channel with this id.
    #[error("no channel `{0}` here; list them with `channels`")]
    NoSuchChannel(String),
    /// A card was given where an invitation was expected.
    #[error("that is a contact card: import it with add_contact")]
    CardNotInvite,
    /// A card was given to `revoke_invite`.
    #[error("that is a contact card, not an invitation")]
    CardNotRevocable,
    /// An invitation was given where a card was expected.
    #[error("that is an invitation: use accept")]
    InviteNotCard,
    /// The card's key does not decode.
    #[error("the card's key is invalid")]
    BadCardKey,
    /// Our own card.
    #[error("that is this instance's own card")]
    OwnCard,
    /// Trust-secret pairing without a secret of our own.
    #[error("this instance has no trust secret: start it with LAMA_TRUST_SECRET set (or --trust-secret)")]
    NoTrustSecret,
    /// Every short-code number is taken.
    #[error("every short-code number is in use; revoke some or wait for them to expire")]
    NoFreeShortCode,
    /// An invitation without an address.
    #[error("the invitation carries no address")]
    NoAddress,
    /// The sync engine refused to write the entry.
    #[error("{0}")]
    Write(String),
}

/// Expected failures of a command, reported to the shell as an `error` event.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] LogError),
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
    ShortCode(#[from] ShortCodeError),
    /// Pairing was refused or broke.
    #[error(transparent)]
    Pair(#[from] PairError),
    /// The command needs the node role.
    #[error("only a node can do this (this instance is a client); run it on the node, or start one with --provision-node")]
    NotANode,
    /// A client invites through its home node, and has none.
    #[error("this client has no home node to carry its invitations and short codes (a client never listens): start it with --provision-node for a node of its own, or pair it with your always-on node as its home node (headless: accept its code with \"replica\":true); then try again")]
    NoHomeNode,
    /// A client's short code is made by its home node, and no link to it is up.
    #[error("this client's home node is not connected, and a client's short code is made by its home node: check that the node runs (--keep-node keeps it up when the client quits) and try again; an invitation code (invite) works while the node is away")]
    HomeNodeOffline,
    /// Our home node would not do what we asked.
    #[error("the home node refused: {0}")]
    HomeRefused(String),
    /// An argument cannot be used.
    #[error(transparent)]
    BadArgument(#[from] ArgError),
    /// A referenced invitation does not exist.
    #[error("no invitation with this code exists on this node")]
    UnknownInvite,
    /// A referenced contact does not exist.
    #[error("no contact with this person id")]
    UnknownContact,
    /// A QR screenshot could not be read as a code.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The runtime is shutting down.
    #[error("the instance is shutting down")]
    ShuttingDown,
}

impl CommandError {
    /// The kind of the headless `error` event.
    pub fn kind(&self) -> ErrorKind {
        use crate::net::handshake::HandshakeError;
        match self {
            CommandError::Store(e) if e.disk_full => ErrorKind::DiskFull,
            CommandError::Store(_) => ErrorKind::Store,
            CommandError::Conn(ConnError::Unreachable { .. }) => ErrorKind::Unreachable,
            CommandError::Conn(ConnError::TlsUntrusted { .. }) => ErrorKind::TlsUntrusted,
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
            CommandError::NoHomeNode => ErrorKind::NoHomeNode,
            CommandError::HomeNodeOffline => ErrorKind::HomeNodeOffline,
            CommandError::HomeRefused(_) => ErrorKind::Refused,
            CommandError::BadArgument(_) => ErrorKind::BadArgument,
            CommandError::UnknownInvite => ErrorKind::UnknownInvite,
            CommandError::UnknownContact => ErrorKind::UnknownContact,
            CommandError::Scan(ScanError::Unreadable(_)) => ErrorKind::QrUnreadable,
            CommandError::Scan(ScanError::NoQr) => ErrorKind::QrNotFound,
            CommandError::Scan(ScanError::NotACode(_)) => ErrorKind::InvalidCode,
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
    /// No link to the contact's own instances, but one to a home node of theirs: what we
    /// send is held there until they connect (PROTOCOL.md §6.5).
    ViaHome,
    /// No link.
    Offline,
}

impl PeerState {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::Connecting => "connecting",
            PeerState::ViaHome => "via_home",
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
    /// It refused us as not one of its contacts (it has not imported our card): its
    /// reason.
    pub refused_us: Option<String>,
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
    /// A channel was created or its members changed by a peer's entry (stored): shells
    /// reload their channel list (a new group appears for its members at once).
    ChannelUpdated {
        /// Channel id.
        channel: String,
        /// `create` or `members`.
        kind: &'static str,
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
    /// Where the code works: only on this machine (every URL in it is loopback), or from
    /// other machines too.
    pub reach: CodeReach,
    /// A short code: the address to give with it (the node's own, or for a client's code
    /// its home node's); `None` for an invitation, which carries its addresses.
    pub url: Option<String>,
}

/// Where an invitation code can be accepted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeReach {
    /// Every URL in it names this machine (the node listens on loopback).
    Local,
    /// Some URL in it is reachable from other machines.
    Network,
}

impl CodeReach {
    /// The reach of a code carrying `urls`.
    pub fn of(urls: &[String]) -> CodeReach {
        let local =
            |u: &String| crate::domain::Reach::of_url(u) == crate::domain::Reach::ThisMachine;
        if urls.iter().all(local) {
            CodeReach::Local
        } else {
            CodeReach::Network
        }
    }

    /// The reach of an invitation code's URLs (`Local` for a code that does not decode
    /// or carries none: it works nowhere else either).
    pub fn of_code(code: &str) -> CodeReach {
        match crate::domain::Code::decode(code) {
            Ok(crate::domain::Code::Invite(inv)) => CodeReach::of(&inv.urls),
            _ => CodeReach::Local,
        }
    }

    /// As the `invite` event names it.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeReach::Local => "local",
            CodeReach::Network => "network",
        }
    }
}

/// A command to the core.
#[derive(Clone, Debug)]
pub enum Command {
    /// Who am I.
    Identity,
    /// List contacts with state.
    Contacts,
    /// Dial a URL once.
    Connect {
        /// `ws://host:port`.
        url: String,
    },
    /// Create an invitation (node only).
    Invite {
        /// Lifetime.
        ttl_secs: u64,
    },
    /// List invitations.
    Invites,
    /// Revoke an invitation by its code.
    RevokeInvite {
        /// The code.
        code: String,
    },
    /// Create a short code (node only).
    ShortCode {
        /// Lifetime.
        ttl_secs: u64,
    },
    /// Pair by short code (`code`) or, with `code: None`, by the trust secret.
    AcceptPake {
        /// The short code as typed; `None`: use the trust secret.
        code: Option<String>,
        /// The node's address; default `node_url`.
        url: Option<String>,
        /// Mark the node as our replica (home node).
        replica: bool,
    },
    /// Accept an invitation code.
    Accept {
        /// The code.
        code: String,
        /// Mark the node as our replica (home node).
        replica: bool,
        /// `Invite` or `Provision`.
        via: Via,
    },
    /// Our contact card code.
    Card,
    /// Import a contact card.
    AddContact {
        /// The card code.
        card: String,
    },
    /// Remove a contact (its channels and history stay).
    RemoveContact {
        /// Person id.
        person_id: String,
    },
    /// Channels with their unread counts.
    Channels,
    /// Create a group channel.
    CreateChannel {
        /// Name.
        name: String,
        /// Member person ids (we are added).
        members: Vec<String>,
    },
    /// Add or remove a member of a group channel (a signed members entry).
    ChangeMembers {
        /// Channel id.
        channel: String,
        /// Person id.
        person_id: String,
        /// Add (true) or remove.
        add: bool,
    },
    /// Write a text message.
    Send {
        /// Channel id.
        channel: String,
        /// Text.
        text: String,
    },
    /// The last messages of a channel, in view order (before `before`, if given).
    History {
        /// Channel id.
        channel: String,
        /// Only messages older than this one.
        before: Option<Box<MessageView>>,
        /// How many.
        limit: usize,
    },
    /// Counters.
    Stats,
    /// The network view: our addresses, each contact's with their state.
    Endpoints,
    /// Everything in a channel is read (the UI shows it): its unread count goes to zero,
    /// durably, so it stays read after a restart.
    MarkRead {
        /// Channel id.
        channel: String,
    },
    /// Drop every link and dial the contacts again at once.
    Reconnect,
    /// Change our display name: a new profile version, pushed to connected contacts.
    SetDisplayName {
        /// The new name.
        name: String,
    },
    /// A trusted party (the provisioning parent) says where a contact listens now.
    TrustEndpoint {
        /// Contact.
        person_id: String,
        /// URL.
        url: String,
    },
}

/// The answer to a [`Command`], one variant per kind of result.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `Identity`.
    Identity(IdentityInfo),
    /// `Contacts`.
    Contacts(Vec<ContactView>),
    /// `Connect`: who answered.
    Connected(Box<PeerIdentity>),
    /// `Invite`, `ShortCode`.
    NewInvite(NewInvite),
    /// `Invites`.
    Invites(Vec<InviteRecord>),
    /// `RevokeInvite`: the record afterwards.
    Invite(InviteRecord),
    /// `Accept`, `AcceptPake`, `AddContact`.
    Paired(Paired),
    /// `Card`.
    Card(String),
    /// `RemoveContact`: whether it existed.
    Removed(bool),
    /// `Channels`, with unread counts.
    Channels(Vec<(Channel, u64)>),
    /// `CreateChannel`: the channel id.
    ChannelId(String),
    /// `ChangeMembers`: the members afterwards.
    Members(Vec<String>),
    /// `Send`: the entry id, once durable.
    EntryId(String),
    /// `History`.
    History(Vec<MessageView>),
    /// `Stats` (the shell adds the wire byte counters).
    Stats(StatsView),
    /// `Endpoints`.
    Endpoints(Box<crate::core::NetView>),
    /// `Reconnect`: links dropped.
    Reconnecting(usize),
    /// `SetDisplayName`: the new profile version.
    ProfileVersion(u64),
    /// `TrustEndpoint`, `MarkRead`.
    Done,
}
