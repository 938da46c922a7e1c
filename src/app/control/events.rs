//! The events of the control protocol: what `ready`, every answer and every unsolicited
//! event carry, field for field (docs/HEADLESS.md).

use serde::Serialize;
use serde_json::Value;

use crate::app::runtime::{ContactView, Event as RuntimeEvent, IdentityInfo, MessageView};
use crate::domain::{ErrorKind, InviteState, Via};

/// Who this instance is: the fields of `ready` and `identity`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentityJson {
    /// `node` or `client`.
    pub role: &'static str,
    /// Person name.
    pub name: String,
    /// Person id.
    pub person_id: String,
    /// Instance id.
    pub instance_id: String,
    /// The bound address of a node; `null` for a client.
    pub endpoint: Option<String>,
}

impl From<&IdentityInfo> for IdentityJson {
    fn from(i: &IdentityInfo) -> Self {
        IdentityJson {
            role: i.role.as_str(),
            name: i.name.clone(),
            person_id: i.person_id.clone(),
            instance_id: i.instance_id.clone(),
            endpoint: i.endpoint.clone(),
        }
    }
}

/// One contact in `contacts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactJson {
    /// Person id.
    pub person_id: String,
    /// The name in its Person object.
    pub name: String,
    /// The name in its newest profile.
    pub display_name: Option<String>,
    /// How it was made.
    pub via: Via,
    /// It is our home node.
    pub replica: bool,
    /// Its endpoint URLs.
    pub endpoints: Vec<String>,
    /// `connected`, `connecting` or `offline`.
    pub state: &'static str,
    /// The last connection error.
    pub last_error: Option<String>,
    /// Unix seconds of the last link.
    pub last_seen: Option<u64>,
    /// The verification string.
    pub verification: String,
    /// Entries it still lacks from us, when syncing with it.
    pub behind: Option<u64>,
    /// It refused us as not one of its contacts (it has not imported our card yet): the
    /// reason it gave; `null` otherwise.
    pub waiting_for_them: Option<String>,
}

impl From<&ContactView> for ContactJson {
    fn from(c: &ContactView) -> Self {
        ContactJson {
            person_id: c.contact.person_id().to_string(),
            name: c.contact.person.name.clone(),
            display_name: c.contact.profile.as_ref().map(|p| p.name.clone()),
            via: c.contact.via,
            replica: c.contact.replica,
            endpoints: c.contact.endpoints.iter().map(|e| e.url.clone()).collect(),
            state: c.state.as_str(),
            last_error: c.last_error.clone(),
            last_seen: c.last_seen,
            verification: c.verification.clone(),
            behind: c.behind,
            waiting_for_them: c.refused_us.clone(),
        }
    }
}

/// One invitation in `invites`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InviteJson {
    /// The code.
    pub code: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Where it stands now.
    pub status: InviteState,
}

/// One channel in `channels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelJson {
    /// Channel id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Member person ids.
    pub members: Vec<String>,
    /// Unread messages.
    pub unread: u64,
}

/// A message in `message` and `history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageJson {
    /// Channel id.
    pub channel: String,
    /// Entry id.
    pub entry: String,
    /// Author person id.
    pub author: String,
    /// Author's display name.
    pub author_name: String,
    /// HLC milliseconds.
    pub ts: u64,
    /// The text of a text entry.
    pub text: Option<String>,
    /// `text`, `create` or `members`.
    pub kind: &'static str,
}

impl From<&MessageView> for MessageJson {
    fn from(m: &MessageView) -> Self {
        MessageJson {
            channel: m.channel.clone(),
            entry: m.entry.clone(),
            author: m.author.clone(),
            author_name: m.author_name.clone(),
            ts: m.ts,
            text: m.text.clone(),
            kind: m.kind,
        }
    }
}

/// An event line: `{"event":"<name>", ...fields}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line: who we are.
    Ready(IdentityJson),
    /// Answer to `identity`.
    Identity(IdentityJson),
    /// Answer to `contacts`.
    Contacts {
        /// The contacts.
        contacts: Vec<ContactJson>,
    },
    /// Answer to `connect`.
    ConnectOk {
        /// Peer person id.
        person_id: String,
        /// Peer name.
        name: String,
    },
    /// Answer to `invite`.
    Invite {
        /// The code.
        code: String,
        /// Unix seconds.
        expires_at: u64,
        /// `local` (every URL in the code is this machine's loopback) or `network`.
        reach: &'static str,
    },
    /// Answer to `invites`.
    Invites {
        /// The invitations.
        invites: Vec<InviteJson>,
    },
    /// Answer to `revoke_invite`.
    InviteRevoked {
        /// The code.
        code: String,
        /// Its state now.
        status: InviteState,
    },
    /// A pairing completed (an answer, or on the node's side an event).
    ContactAdded {
        /// Person id.
        person_id: String,
        /// Name (`null` for a provisioned node, whose name comes with its first link).
        name: Option<String>,
        /// How.
        via: Via,
        /// The verification string.
        verification: String,
    },
    /// Answer to `short_code`.
    ShortCode {
        /// The code.
        code: String,
        /// Unix seconds.
        expires_at: u64,
        /// The address to give with the code: the node's, or a client's home node's (the
        /// one that runs the code's PAKE).
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Answer to `card`.
    Card {
        /// The card code.
        card: String,
    },
    /// Answer to `remove_contact`.
    ContactRemoved {
        /// Person id.
        person_id: String,
    },
    /// Answer to `channels`.
    Channels {
        /// The channels.
        channels: Vec<ChannelJson>,
    },
    /// Answer to `create_channel`. The line's `id` carries the channel id too unless the
    /// command had an `id` of its own (see [`Reply::new`]).
    ChannelCreated {
        /// Channel id.
        channel: String,
    },
    /// Answer to `add_member` and `remove_member`.
    MembersChanged {
        /// Channel id.
        channel: String,
        /// Members afterwards.
        members: Vec<String>,
    },
    /// Answer to `send`.
    Sent {
        /// Channel id.
        channel: String,
        /// Entry id.
        entry: String,
    },
    /// Answer to `history`.
    History {
        /// Channel id.
        channel: String,
        /// Messages, oldest first.
        messages: Vec<MessageJson>,
    },
    /// Answer to `reconnect`.
    Reconnecting {
        /// Links dropped.
        links: usize,
    },
    /// Answer to `stats`.
    Stats {
        /// Wire bytes received.
        bytes_in: u64,
        /// Wire bytes sent.
        bytes_out: u64,
        /// Entries stored.
        entries: u64,
        /// Entries received since start.
        received: u64,
        /// Duplicates since start.
        duplicates: u64,
        /// Entries refused since start.
        invalid: u64,
        /// Links up.
        links: u64,
    },
    /// Answer to `endpoints`.
    Endpoints {
        /// This instance.
        #[serde(rename = "self")]
        me: super::SelfJson,
        /// Every contact.
        contacts: Vec<super::ContactNetJson>,
    },
    /// Answer to `set_display_name`.
    ProfileUpdated {
        /// The new profile version.
        version: u64,
    },
    /// `--provision-node`: our node is up and paired.
    Provisioned {
        /// Its person id.
        person_id: String,
        /// Its endpoint, if we started it.
        endpoint: Option<String>,
        /// An existing node was reused.
        reused: bool,
    },
    /// A link came up.
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
    /// A contact's endpoints changed.
    EndpointsChanged {
        /// Person id.
        person_id: String,
        /// The URLs now.
        urls: Vec<String>,
    },
    /// A text entry from a peer was stored.
    Message(MessageJson),
    /// A peer's entry created a channel or changed its members.
    ChannelUpdated {
        /// Channel id.
        channel: String,
        /// `create` or `members`.
        kind: &'static str,
    },
    /// A peer acknowledged our entries.
    Delivered {
        /// Entry ids.
        entries: Vec<String>,
    },
    /// A peer sent everything we lacked.
    Synced {
        /// The peer.
        person_id: String,
    },
    /// Something went wrong.
    Error {
        /// What, for scripts.
        kind: ErrorKind,
        /// What, for people, with the fix.
        message: String,
    },
}

impl Event {
    /// An `error` event.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Event {
        Event::Error {
            kind,
            message: message.into(),
        }
    }
}

impl From<&RuntimeEvent> for Event {
    fn from(e: &RuntimeEvent) -> Self {
        match e.clone() {
            RuntimeEvent::Connected { person_id, name } => Event::Connected { person_id, name },
            RuntimeEvent::Disconnected { person_id, reason } => {
                Event::Disconnected { person_id, reason }
            }
            RuntimeEvent::ContactAdded {
                person_id,
                name,
                via,
                verification,
            } => Event::ContactAdded {
                person_id,
                name: Some(name),
                via,
                verification,
            },
            RuntimeEvent::EndpointsChanged { person_id, urls } => {
                Event::EndpointsChanged { person_id, urls }
            }
            RuntimeEvent::Message(m) => Event::Message((&m).into()),
            RuntimeEvent::Delivered { entries } => Event::Delivered { entries },
            RuntimeEvent::Synced { person_id } => Event::Synced { person_id },
            RuntimeEvent::ChannelUpdated { channel, kind } => {
                Event::ChannelUpdated { channel, kind }
            }
            RuntimeEvent::Error { kind, message } => Event::Error { kind, message },
        }
    }
}

/// One output line: an event, with the `id` of the command it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reply {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// The command's `id`, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

impl Reply {
    /// The answer to a command with `id`. `channel_created` names the channel `id` as well,
    /// which gives way to the command's own `id` when it has one (docs/HEADLESS.md).
    pub fn new(event: Event, id: Option<Value>) -> Reply {
        let id = match (&event, id) {
            (Event::ChannelCreated { channel }, None) => Some(Value::String(channel.clone())),
            (_, id) => id,
        };
        Reply { event, id }
    }

    /// An event no command caused.
    pub fn unsolicited(event: Event) -> Reply {
        Reply::new(event, None)
    }

    /// The JSON line (without its newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("invariant: control events serialise to JSON")
    }
}
