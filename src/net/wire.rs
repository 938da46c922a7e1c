//! Messages carried inside the Noise session, their JSON encoding, and the protocol limits.

use serde::{Deserialize, Serialize};

use crate::domain::identity::{Instance, Person, Profile};

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;
/// Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// Noise prologue: binds the protocol version into the handshake hash.
pub const PROLOGUE: &[u8] = b"lama-tui/1";
/// Largest WebSocket message (and frame) accepted: one Noise message.
pub const MAX_FRAME: usize = 65535;
/// Largest plaintext that fits one Noise transport message (frame minus the 16-byte tag).
pub const MAX_PLAINTEXT: usize = MAX_FRAME - 16;

/// Why a connection is being closed; sent inside the session before the WebSocket close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseCode {
    /// The peer's Person is not a contact and presented no valid invitation.
    NotAContact,
    /// The identity proof did not verify.
    BadProof,
    /// A message could not be decoded or broke the protocol.
    ProtocolError,
    /// The peer is shutting down.
    Shutdown,
    /// Another connection to the same instance is kept instead.
    Duplicate,
    /// The peer sent nothing for too long.
    Timeout,
    /// The peer is not the Person the dialer expected at this endpoint.
    WrongPeer,
    /// The presented invitation token was never issued by this node.
    InviteUnknown,
    /// The invitation has expired.
    InviteExpired,
    /// The invitation was already used by someone else.
    InviteUsed,
    /// The invitation was revoked.
    InviteRevoked,
    /// The short code or trust secret did not match (the PAKE confirmation failed).
    CodeMismatch,
    /// The short code has expired.
    CodeExpired,
    /// The short code was destroyed after too many wrong attempts, or the trust secret is
    /// locked after too many wrong ones.
    CodeExhausted,
    /// No open short code has this number on the node.
    CodeUnknown,
    /// The node has no trust secret set.
    NoTrustSecret,
}

impl CloseCode {
    /// WebSocket close status sent with this reason (4000-4999: private use).
    pub fn ws_status(self) -> u16 {
        match self {
            CloseCode::NotAContact => 4001,
            CloseCode::BadProof => 4002,
            CloseCode::ProtocolError => 4003,
            CloseCode::Shutdown => 4004,
            CloseCode::Duplicate => 4005,
            CloseCode::Timeout => 4006,
            CloseCode::WrongPeer => 4007,
            CloseCode::InviteUnknown => 4010,
            CloseCode::InviteExpired => 4011,
            CloseCode::InviteUsed => 4012,
            CloseCode::InviteRevoked => 4013,
            CloseCode::CodeMismatch => 4014,
            CloseCode::CodeExpired => 4015,
            CloseCode::CodeExhausted => 4016,
            CloseCode::CodeUnknown => 4017,
            CloseCode::NoTrustSecret => 4018,
        }
    }

    /// The snake_case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCode::NotAContact => "not_a_contact",
            CloseCode::BadProof => "bad_proof",
            CloseCode::ProtocolError => "protocol_error",
            CloseCode::Shutdown => "shutdown",
            CloseCode::Duplicate => "duplicate",
            CloseCode::Timeout => "timeout",
            CloseCode::WrongPeer => "wrong_peer",
            CloseCode::InviteUnknown => "invite_unknown",
            CloseCode::InviteExpired => "invite_expired",
            CloseCode::InviteUsed => "invite_used",
            CloseCode::InviteRevoked => "invite_revoked",
            CloseCode::CodeMismatch => "code_mismatch",
            CloseCode::CodeExpired => "code_expired",
            CloseCode::CodeExhausted => "code_exhausted",
            CloseCode::CodeUnknown => "code_unknown",
            CloseCode::NoTrustSecret => "no_trust_secret",
        }
    }
}

/// A message inside the encrypted session. JSON object tagged by `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireMsg {
    /// First message of each side: who I am, proven for this session.
    Hello {
        /// Protocol version of the sender.
        version: u32,
        /// The sender's Person.
        person: Person,
        /// The sender's Instance (its `transport_key` must be the Noise static key).
        instance: Instance,
        /// Person-key signature over `HELLO_CONTEXT || handshake_hash || instance_id`, hex.
        sig: String,
        /// Initiator only, when pairing: the invitation token, hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite: Option<String>,
        /// The version of the receiver's profile the sender already holds, so an unchanged
        /// profile is not sent again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known_profile: Option<u64>,
        /// Initiator only, when pairing by short code or trust secret: which one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pake: Option<crate::net::pake::PakeRequest>,
    },
    /// In place of `hello`, to a peer that knows us: the Noise static key of this session is
    /// our instance's, whose Person it holds (docs/PROTOCOL.md, section 4). The responder
    /// answers one with its own (or with `hello_again` when it does not know the key).
    HelloKnown {
        /// Protocol version of the sender.
        version: u32,
        /// The version of the receiver's profile the sender already holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known_profile: Option<u64>,
    },
    /// Responder to a `hello_known` whose key it does not know: send the full `hello`.
    HelloAgain,
    /// One SPAKE2 message (docs/PROTOCOL.md, section on short codes).
    Pake {
        /// The 33-byte SPAKE2 message, hex.
        msg: String,
    },
    /// Key confirmation: HMAC-SHA256 under the SPAKE2 key over the handshake hash, hex.
    PakeConfirm {
        /// The MAC, hex.
        mac: String,
    },
    /// The sender's current signed profile (sent on every link-up and on change).
    Profile {
        /// The profile.
        profile: Profile,
    },
    /// Node to client after admitting an invitation: the profile of the person to pair
    /// with (the node's own, or its owner's when a home node carries the pairing).
    PairOffer {
        /// The inviting person's profile.
        profile: Profile,
        /// A home node pairing for its owner: the owner's Person (the profile is its).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<Person>,
    },
    /// Client to node: take me as a contact; the client's profile.
    PairConfirm {
        /// The client's profile.
        profile: Profile,
        /// The client asks the node to be its replica (home node).
        #[serde(default)]
        replica: bool,
    },
    /// CHUM sync (docs/PROTOCOL.md, section 12).
    Sync {
        /// The sync message.
        msg: crate::net::sync::SyncMsg,
    },
    /// Node to client: the pairing is committed on the node.
    PairDone {
        /// The verification string the node shows.
        verification: String,
    },
    /// Owner to its home node: an invitation of the owner's for the node to carry
    /// (docs/PROTOCOL.md, section 6.5).
    HomeInvite {
        /// The token, hex.
        token: String,
        /// Unix seconds.
        expires_at: u64,
        /// The owner revoked it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revoked: bool,
    },
    /// Home node to owner: a pairing it made with one of the owner's invitations.
    HomePaired {
        /// The invitation's token, hex.
        token: String,
        /// The new contact.
        person: Person,
        /// Its profile, signed by it.
        profile: Profile,
    },
    /// Owner to its home node: make a short code that pairs the one who says it with the
    /// owner (docs/PROTOCOL.md, section 6.5).
    HomeShortCode {
        /// How long it stays open, seconds.
        ttl_secs: u64,
    },
    /// Home node to owner, answering `home_short_code`: the code, or why there is none.
    HomeShortCodeMade {
        /// The short code (secret: for the owner to read out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Unix seconds after which it is refused (with `code`).
        #[serde(default)]
        expires_at: u64,
        /// Why no code was made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// Owner to home node: the pairing of `token` is stored.
    HomePairedAck {
        /// The token, hex.
        token: String,
    },
    /// Owner to its home node: one of the owner's contacts, who may reach the owner's
    /// channels through the node (a round of these ends with `vouch_end`).
    Vouch {
        /// The contact.
        person: Person,
        /// Its newest profile (where its own home nodes are).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<Profile>,
        /// The owner's Person-key signature (section 6.5), hex.
        sig: String,
    },
    /// Owner to its home node: the round of `vouch`es is complete; a contact vouched
    /// before and not in it loses access.
    VouchEnd {
        /// SHA-256 (hex) of the vouched Person ids, sorted, each followed by `\n`.
        ids: String,
        /// The owner's Person-key signature (section 6.5), hex.
        sig: String,
    },
    /// The sender is closing the connection, and why.
    Close {
        /// Machine-readable reason.
        code: CloseCode,
        /// Human sentence.
        reason: String,
    },
    /// Keepalive probe.
    Ping {
        /// Echoed in the pong.
        n: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The ping's `n`.
        n: u64,
    },
}

/// Errors decoding a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The bytes are not a known message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message does not fit one frame.
    #[error("message of {0} bytes exceeds the {MAX_PLAINTEXT}-byte limit")]
    TooLarge(usize),
}

impl WireMsg {
    /// Encode as compact JSON.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let v = serde_json::to_vec(self).expect("invariant: wire messages serialise");
        if v.len() > MAX_PLAINTEXT {
            return Err(WireError::TooLarge(v.len()));
        }
        Ok(v)
    }

    /// Decode from JSON bytes.
    pub fn decode(b: &[u8]) -> Result<WireMsg, WireError> {
        if b.len() > MAX_PLAINTEXT {
            return Err(WireError::TooLarge(b.len()));
        }
        serde_json::from_slice(b).map_err(|e| WireError::Malformed(e.to_string()))
    }
}
