//! The headless control protocol as types (docs/HEADLESS.md): commands in (here), events
//! out (`events`), one JSON object per line. Pure: parsing and encoding only; `headless` is
//! the shell that runs them. Every command, event, field and error kind named here is a
//! contract with scripts.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::domain::ids::IdError;
use crate::domain::{invitation, short_code, ChannelId, ErrorKind, PersonId};

mod events;
mod netjson;

pub use events::{ChannelJson, ContactJson, Event, IdentityJson, InviteJson, MessageJson, Reply};
pub use netjson::parts as netjson_parts;
pub use netjson::{ContactNetJson, EndpointJson, HomeNodeJson, SelfJson, UrlJson};

/// Default `limit` of `history`.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;
/// Largest `limit` of `history`.
pub const MAX_HISTORY_LIMIT: usize = 1_000_000;

/// A string argument that must not be empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonEmpty(pub String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom(
                "an empty string where text is needed",
            ));
        }
        Ok(NonEmpty(s))
    }
}

/// A command: `{"cmd":"<name>", ...arguments}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Who am I.
    Identity,
    /// Stop.
    Quit,
    /// Contacts with their live state.
    Contacts,
    /// Dial one URL now.
    Connect {
        /// `ws://host:port`.
        url: NonEmpty,
    },
    /// Make an invitation (node only).
    Invite {
        /// Lifetime; default [`invitation::DEFAULT_INVITE_TTL_SECS`].
        ttl_secs: Option<u64>,
    },
    /// List invitations and short codes.
    Invites,
    /// Revoke an invitation or short code.
    RevokeInvite {
        /// The code.
        code: NonEmpty,
    },
    /// Accept an invitation, given as text or as a screenshot of its QR code.
    Accept {
        /// The text code.
        code: Option<NonEmpty>,
        /// A PNG or JPEG screenshot of the QR code, read instead of `code`.
        qr_image: Option<NonEmpty>,
        /// Mark the node as our home node.
        #[serde(default)]
        replica: bool,
    },
    /// Make a short code (node only).
    ShortCode {
        /// Lifetime; default [`short_code::DEFAULT_CODE_TTL_SECS`].
        ttl_secs: Option<u64>,
    },
    /// Pair by a short code.
    AcceptShort {
        /// The short code as typed.
        code: NonEmpty,
        /// The node's address; default `--node-url`.
        url: Option<NonEmpty>,
        /// Mark the node as our home node.
        #[serde(default)]
        replica: bool,
    },
    /// Pair by the shared trust secret.
    PairSecret {
        /// The node's address; default `--node-url`.
        url: Option<NonEmpty>,
        /// Mark the node as our home node.
        #[serde(default)]
        replica: bool,
    },
    /// Our contact card.
    Card,
    /// Import a contact card.
    AddContact {
        /// The card code.
        card: NonEmpty,
    },
    /// Channels with unread counts.
    Channels,
    /// Remove a contact.
    RemoveContact {
        /// Person id.
        person_id: PersonId,
    },
    /// Create a group channel.
    CreateChannel {
        /// Name.
        name: NonEmpty,
        /// Member person ids (we are added).
        members: Vec<PersonId>,
    },
    /// Add a member to a group channel.
    AddMember {
        /// Channel id.
        channel: ChannelId,
        /// Person id.
        person_id: PersonId,
    },
    /// Remove a member from a group channel.
    RemoveMember {
        /// Channel id.
        channel: ChannelId,
        /// Person id.
        person_id: PersonId,
    },
    /// Write a text message.
    Send {
        /// Channel id.
        channel: ChannelId,
        /// Text.
        text: NonEmpty,
    },
    /// The last messages of a channel.
    History {
        /// Channel id.
        channel: ChannelId,
        /// How many; default [`DEFAULT_HISTORY_LIMIT`].
        limit: Option<u64>,
    },
    /// Counters.
    Stats,
    /// The network view: our addresses, and each contact's with source and state.
    Endpoints,
    /// Drop every link and redial.
    Reconnect,
    /// Change our display name.
    SetDisplayName {
        /// The name.
        name: NonEmpty,
    },
}

impl Request {
    /// Every command name (checked against the enum and docs/HEADLESS.md by tests).
    pub const NAMES: &'static [&'static str] = &[
        "identity",
        "quit",
        "contacts",
        "connect",
        "invite",
        "invites",
        "revoke_invite",
        "accept",
        "short_code",
        "accept_short",
        "pair_secret",
        "card",
        "add_contact",
        "channels",
        "remove_contact",
        "create_channel",
        "add_member",
        "remove_member",
        "send",
        "history",
        "stats",
        "endpoints",
        "reconnect",
        "set_display_name",
    ];

    /// The command waits on the network: it answers later, without holding up the ones
    /// after it.
    pub fn waits_on_network(&self) -> bool {
        matches!(
            self,
            Request::Connect { .. }
                | Request::Accept { .. }
                | Request::AcceptShort { .. }
                | Request::PairSecret { .. }
        )
    }

    /// The checks serde's types cannot express: ranges, and `accept`'s one-of.
    fn check(&self) -> Result<(), String> {
        let ttl = |t: &Option<u64>, max: u64| match t {
            Some(n) if !(1..=max).contains(n) => Err(format!(
                "`ttl_secs` must be a whole number of seconds from 1 to {max}"
            )),
            _ => Ok(()),
        };
        match self {
            Request::Invite { ttl_secs } => ttl(ttl_secs, invitation::MAX_INVITE_TTL_SECS),
            Request::ShortCode { ttl_secs } => ttl(ttl_secs, short_code::MAX_CODE_TTL_SECS),
            Request::History { limit: Some(n), .. } if *n > MAX_HISTORY_LIMIT as u64 => Err(
                format!("`limit` must be a whole number up to {MAX_HISTORY_LIMIT}"),
            ),
            Request::Accept {
                code: None,
                qr_image: None,
                ..
            } => Err("`accept` needs a non-empty string field `code` (or `qr_image`)".into()),
            _ => Ok(()),
        }
    }
}

/// A line that cannot be executed: its `id` (if any could be read), kind and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// The `id` field, if the line was an object with one.
    pub id: Option<Value>,
    /// What is wrong.
    pub kind: ErrorKind,
    /// Human sentence.
    pub message: String,
}

/// Parse one input line into `(id, request)`.
pub fn parse_line(line: &str) -> Result<(Option<Value>, Request), BadLine> {
    let bad = |id: Option<Value>, kind, message: String| BadLine { id, kind, message };
    let v: Value = serde_json::from_str(line).map_err(|e| {
        bad(
            None,
            ErrorKind::MalformedJson,
            format!("the line is not valid JSON ({e}); send one JSON object per line"),
        )
    })?;
    let Value::Object(obj) = v else {
        return Err(bad(
            None,
            ErrorKind::MalformedJson,
            "the line is JSON but not an object; send {\"cmd\":...}".into(),
        ));
    };
    let id = obj.get("id").cloned();
    let cmd = match obj.get("cmd") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            let msg = "`cmd` must be a string".to_string();
            return Err(bad(id, ErrorKind::BadArgument, msg));
        }
        None => {
            let msg = "the object has no `cmd` field; e.g. {\"cmd\":\"identity\"}".to_string();
            return Err(bad(id, ErrorKind::MissingCmd, msg));
        }
    };
    if !Request::NAMES.contains(&cmd.as_str()) {
        let msg = format!("unknown command `{cmd}`; see docs/HEADLESS.md for the list");
        return Err(bad(id, ErrorKind::UnknownCommand, msg));
    }
    if let Some(e) = malformed_id(&obj) {
        let msg = format!("`{cmd}`: {e}");
        return Err(bad(id, ErrorKind::BadId, msg));
    }
    let req = Request::deserialize(Value::Object(obj))
        .map_err(|e| format!("`{cmd}`: {e}; see docs/HEADLESS.md"))
        .and_then(|r| r.check().map(|()| r))
        .map_err(|msg| bad(id.clone(), ErrorKind::BadArgument, msg))?;
    Ok((id, req))
}

/// The first id argument that is text but not an id of its kind (`bad_id`, not
/// `bad_argument`: the value has the right type and the wrong grammar).
fn malformed_id(obj: &serde_json::Map<String, Value>) -> Option<IdError> {
    if let Some(Value::String(s)) = obj.get("channel") {
        if let Err(e) = ChannelId::parse(s) {
            return Some(e);
        }
    }
    if let Some(Value::String(s)) = obj.get("person_id") {
        if let Err(e) = PersonId::parse(s) {
            return Some(e);
        }
    }
    if let Some(Value::Array(ms)) = obj.get("members") {
        let texts = ms.iter().filter_map(Value::as_str);
        if let Some(e) = texts.filter_map(|s| PersonId::parse(s).err()).next() {
            return Some(e);
        }
    }
    None
}

#[cfg(test)]
mod tests;
