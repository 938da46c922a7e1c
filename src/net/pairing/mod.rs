//! Pairing rules as pure state machines: what a node admits with an invitation, and the
//! client's steps from code to contact. No I/O: the shell moves messages and applies the
//! returned effects (store writes) only where these functions say so.
//!
//! The only durable effect on each side is one atomic commit at the very end (node: consume
//! the token and add the contact; client: add the contact), so an abort at any earlier step
//! leaves no half-made contact. A client whose final `pair_done` was lost may present the
//! same code again: the node recognises its own consumer and answers success once more.

pub mod flow;

use crate::domain::codes::TOKEN_LEN;
use crate::domain::identity::{short_id, verification_string, Id, Instance, Person, Profile};
pub use crate::domain::invitation::Admission;
use crate::domain::invitation::{Guesses, Refusal};
use crate::domain::Invite;
use crate::domain::PeerIdentity;
use crate::domain::{Channel, Contact, InviteRecord, InviteStatus};
use crate::domain::{ErrorKind, Via};
use crate::net::wire::{CloseCode, WireMsg};

/// Why pairing failed; each maps to a headless error kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// The invitation has expired.
    #[error("the invitation expired{}; ask for a new code", at_text(*.0))]
    Expired(Option<u64>),
    /// The invitation was already used.
    #[error("the invitation was already used; each code pairs once: ask for a new code")]
    Used,
    /// The invitation was revoked.
    #[error("the invitation was revoked by its owner; ask for a new code")]
    Revoked,
    /// The node never issued this token.
    #[error("the node does not know this invitation (was its data reset?); ask for a new code")]
    Unknown,
    /// The node at the URL is not the Person named in the invitation.
    #[error("the node at this address is {got}, not the person the invitation names ({want}); possible man-in-the-middle: refusing")]
    WrongPerson {
        /// Person id in the invite (short).
        want: String,
        /// Person id presented (short).
        got: String,
    },
    /// The peer broke the pairing exchange.
    #[error("the peer broke the pairing exchange: {0}")]
    Protocol(String),
    /// The short code or trust secret did not match on the other side (or ours).
    #[error("{}", mismatch_text(.0))]
    CodeMismatch(String),
    /// The short code has expired.
    #[error("the short code expired{}; ask for a new one", at_text(*.0))]
    CodeExpired(Option<u64>),
    /// Too many wrong attempts.
    #[error("{0}")]
    CodeExhausted(String),
    /// No open short code with this number.
    #[error("the node has no short code numbered {}; check the number, or ask for a new code", .0.map(|n| n.to_string()).unwrap_or_else(|| "like this".into()))]
    CodeUnknown(Option<u16>),
    /// The node has no trust secret.
    #[error("the node has no trust secret set: start it with LAMA_TRUST_SECRET (or --trust-secret) set to the same secret")]
    NoTrustSecret,
}

fn at_text(at: Option<u64>) -> String {
    at.map(|t| format!(" at {}", utc_text(t)))
        .unwrap_or_default()
}

/// Unix seconds as people read them: `2026-12-02 14:03 UTC` (UTC: the two sides of a
/// pairing may be in different zones).
pub fn utc_text(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| format!("unix time {secs}"))
}

/// The mismatch in words, said once: the other side's reason often says it already.
fn mismatch_text(reason: &str) -> String {
    const SAID: &str = "the code did not match";
    if reason.is_empty() {
        SAID.to_string()
    } else if reason.starts_with(SAID) {
        reason.to_string()
    } else {
        format!("{SAID}: {reason}")
    }
}

impl PairError {
    /// snake_case kind for the headless `error` event.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PairError::Expired(_) => ErrorKind::InviteExpired,
            PairError::Used => ErrorKind::InviteUsed,
            PairError::Revoked => ErrorKind::InviteRevoked,
            PairError::Unknown => ErrorKind::InviteUnknown,
            PairError::WrongPerson { .. } => ErrorKind::KeyMismatch,
            PairError::Protocol(_) => ErrorKind::PairingFailed,
            PairError::CodeMismatch(_) => ErrorKind::CodeMismatch,
            PairError::CodeExpired(_) => ErrorKind::CodeExpired,
            PairError::CodeExhausted(_) => ErrorKind::CodeExhausted,
            PairError::CodeUnknown(_) => ErrorKind::CodeUnknown,
            PairError::NoTrustSecret => ErrorKind::NoTrustSecret,
        }
    }

    /// The close code a node sends for this refusal.
    pub fn close_code(&self) -> CloseCode {
        match self {
            PairError::Expired(_) => CloseCode::InviteExpired,
            PairError::Used => CloseCode::InviteUsed,
            PairError::Revoked => CloseCode::InviteRevoked,
            PairError::Unknown => CloseCode::InviteUnknown,
            PairError::WrongPerson { .. } => CloseCode::WrongPeer,
            PairError::Protocol(_) => CloseCode::ProtocolError,
            PairError::CodeMismatch(_) => CloseCode::CodeMismatch,
            PairError::CodeExpired(_) => CloseCode::CodeExpired,
            PairError::CodeExhausted(_) => CloseCode::CodeExhausted,
            PairError::CodeUnknown(_) => CloseCode::CodeUnknown,
            PairError::NoTrustSecret => CloseCode::NoTrustSecret,
        }
    }

    /// The refusal a client learns from a node's close code, if it is one of ours;
    /// `reason` is the node's sentence, kept where it says more than the code.
    pub fn from_close(code: CloseCode, reason: &str) -> Option<PairError> {
        Some(match code {
            CloseCode::InviteExpired => PairError::Expired(None),
            CloseCode::InviteUsed => PairError::Used,
            CloseCode::InviteRevoked => PairError::Revoked,
            CloseCode::InviteUnknown => PairError::Unknown,
            CloseCode::CodeMismatch => PairError::CodeMismatch(reason.into()),
            CloseCode::CodeExpired => PairError::CodeExpired(None),
            CloseCode::CodeExhausted => PairError::CodeExhausted(reason.into()),
            CloseCode::CodeUnknown => PairError::CodeUnknown(None),
            CloseCode::NoTrustSecret => PairError::NoTrustSecret,
            _ => return None,
        })
    }
}

impl PairError {
    /// The refusal for an invitation (`short`: a short code) that the one rule
    /// ([`InviteRecord::admits`]) refused, or that is gone (`None`). `rec`: the record, for
    /// the time it expired and the short code's number.
    pub fn refused(refusal: Option<Refusal>, rec: Option<&InviteRecord>, short: bool) -> PairError {
        let at = rec.map(|r| r.expires_at);
        let slot = rec
            .and_then(|r| r.token.strip_prefix("short:"))
            .and_then(|n| n.parse().ok());
        match (refusal, short) {
            (Some(Refusal::Used), _) => PairError::Used,
            (Some(Refusal::Revoked), _) => PairError::Revoked,
            (Some(Refusal::Expired), false) => PairError::Expired(at),
            (Some(Refusal::Expired), true) => PairError::CodeExpired(at),
            (Some(Refusal::Exhausted), _) => exhausted(),
            (None, false) => PairError::Unknown,
            (None, true) => PairError::CodeUnknown(slot),
        }
    }
}

/// Node side: may `token` admit `person_id` at `now`? Read-only; the token is consumed
/// only by the final commit.
pub fn check_invite(
    rec: Option<&InviteRecord>,
    person_id: &str,
    now: u64,
) -> Result<Admission, PairError> {
    let Some(r) = rec else {
        return Err(PairError::refused(None, None, false));
    };
    r.admits(person_id, now, Guesses::Count)
        .map_err(|e| PairError::refused(Some(e), rec, false))
}

/// The refusal for a short code destroyed after too many wrong attempts.
pub fn exhausted() -> PairError {
    PairError::CodeExhausted(format!(
        "the code was destroyed after {} wrong attempts; ask for a new one",
        crate::net::pake::MAX_ATTEMPTS
    ))
}

/// The store key of short code number `slot`.
pub fn short_code_key(slot: u16) -> String {
    format!("short:{slot}")
}

/// Node side: may a pairing exchange start with short code number `slot` for `person_id`
/// at `now`? Read-only. Guesses are counted later, one per confirmation received
/// ([`code_guess_counted`]), so a connection that never confirms costs the code nothing.
pub fn check_short_code(
    rec: Option<&InviteRecord>,
    slot: u16,
    person_id: &str,
    now: u64,
) -> Result<Admission, PairError> {
    let Some(r) = rec else {
        return Err(PairError::CodeUnknown(Some(slot)));
    };
    r.admits(person_id, now, Guesses::Count)
        .map_err(|e| PairError::refused(Some(e), rec, true))
}

/// Node side, a confirmation has arrived and is about to be checked: count the guess, or
/// refuse to check it when the code has no guesses left (or is no longer usable). The
/// caller stores the returned record durably before checking, so at most
/// [`crate::net::pake::MAX_ATTEMPTS`] confirmations are ever checked per code, however many
/// exchanges run at once and across restarts.
pub fn code_guess_counted(
    rec: Option<InviteRecord>,
    slot: u16,
    person_id: &str,
    now: u64,
) -> Result<InviteRecord, PairError> {
    check_short_code(rec.as_ref(), slot, person_id, now)?;
    let mut rec = rec.expect("invariant: check_short_code admits only a stored code");
    rec.attempts = rec.attempts.saturating_add(1);
    Ok(rec)
}

/// A new invitation record for `token`.
pub fn new_invite_record(
    token: [u8; TOKEN_LEN],
    code: String,
    now: u64,
    ttl_secs: u64,
) -> InviteRecord {
    InviteRecord {
        token: crate::domain::hex::encode(token),
        code,
        created_at: now,
        expires_at: now + ttl_secs.clamp(1, crate::domain::invitation::MAX_INVITE_TTL_SECS),
        status: InviteStatus::Open,
        attempts: 0,
        owner: None,
        relayed: false,
    }
}

/// The 1:1 channel id of two persons: both ids, sorted, joined by `<->`.
pub fn direct_channel_id(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}<->{b}")
    } else {
        format!("{b}<->{a}")
    }
}

/// The 1:1 channel record between `me` and a peer, named after the peer.
pub fn direct_channel(me: &str, peer_id: &str, peer_name: &str, now: u64) -> Channel {
    let mut members = vec![me.to_string(), peer_id.to_string()];
    members.sort();
    Channel {
        id: direct_channel_id(me, peer_id),
        name: peer_name.to_string(),
        members,
        created_at: now,
    }
}

/// A contact record for a verified peer and its verified profile.
pub fn contact_from(
    peer: &PeerIdentity,
    profile: Option<&Profile>,
    via: Via,
    replica: bool,
    now: u64,
) -> Contact {
    let instance = Some(peer.instance.clone());
    contact_of(&peer.person, instance, profile, (via, replica), now)
}

/// A contact record for `person` (one of whose instances we may know) and its verified
/// profile; `(via, replica)`: how it was made, and whether it is our home node.
pub fn contact_of(
    person: &Person,
    instance: Option<Instance>,
    profile: Option<&Profile>,
    (via, replica): (Via, bool),
    now: u64,
) -> Contact {
    let mut c = Contact {
        person: person.clone(),
        instances: instance.into_iter().collect(),
        endpoints: profile.map(|p| p.endpoints.clone()).unwrap_or_default(),
        profile: profile.cloned(),
        replica,
        replica_for: false,
        via,
        added_at: now,
        endpoint_notes: vec![],
        vouched_by: vec![],
    };
    c.note_endpoints(crate::domain::contact::source_of(via), now);
    c
}

/// A home node's offer for its owner: the Person is the one the invitation names, the
/// profile is signed by it, and it names the node we reached as its home node (the
/// owner's word that this node carries its pairings).
fn check_owner_offer(
    invite: &Invite,
    node: &PeerIdentity,
    person: &Person,
    profile: &Profile,
) -> Result<(), PairError> {
    let want = crate::domain::hex::encode(invite.person_id);
    if person.id() != want {
        return Err(PairError::WrongPerson {
            want: short_id(&want).into(),
            got: short_id(&person.id()).into(),
        });
    }
    check_home_of(node, person, profile)
}

/// `person`'s signed `profile` names the node `node` as its home node.
fn check_home_of(node: &PeerIdentity, person: &Person, profile: &Profile) -> Result<(), PairError> {
    profile
        .verify(person)
        .map_err(|e| PairError::Protocol(format!("the inviter's profile is refused: {e}")))?;
    if !profile.home_nodes().contains(node.person_id.as_str()) {
        return Err(PairError::Protocol(format!(
            "{} does not name the node {} as its home node; refusing",
            person.name,
            short_id(&node.person_id)
        )));
    }
    Ok(())
}

/// Check a profile received from `peer` during pairing.
pub fn check_profile(peer: &PeerIdentity, p: &Profile) -> Result<(), PairError> {
    p.verify(&peer.person)
        .map_err(|e| PairError::Protocol(format!("profile rejected: {e}")))
}

/// Client side of accepting an invitation.
#[derive(Debug)]
pub struct ClientPairing {
    /// None when the node was already proven by a short code or trust secret.
    invite: Option<Invite>,
    step: ClientStep,
}

#[derive(Debug, PartialEq, Eq)]
enum ClientStep {
    Dial,
    AwaitOffer(Box<PeerIdentity>),
    AwaitDone(Box<Inviter>, Box<Profile>),
    Done,
}

/// Whom a pairing makes a contact of: the node dialed, or (a home node carrying its
/// owner's invitation) the owner, whose instances we have not met.
#[derive(Debug, PartialEq, Eq)]
struct Inviter {
    person: Person,
    instance: Option<Instance>,
}

/// What the client commits when pairing succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCommit {
    /// The node as a contact.
    pub contact: Contact,
    /// The 1:1 channel.
    pub channel: Channel,
    /// The verification string.
    pub verification: String,
}

impl ClientPairing {
    /// Start accepting `invite`; an expired one is refused without any network traffic.
    pub fn start(invite: Invite, now: u64) -> Result<Self, PairError> {
        if now >= invite.expires_at {
            return Err(PairError::Expired(Some(invite.expires_at)));
        }
        Ok(ClientPairing {
            invite: Some(invite),
            step: ClientStep::Dial,
        })
    }

    /// Continue with a node whose identity a short code or trust secret exchange has
    /// already confirmed: next comes its `pair_offer`.
    pub fn confirmed_by_pake(peer: PeerIdentity) -> Self {
        ClientPairing {
            invite: None,
            step: ClientStep::AwaitOffer(Box::new(peer)),
        }
    }

    /// The transport key the node must present (checked inside the handshake).
    pub fn expected_key(&self) -> Option<[u8; 32]> {
        self.invite.as_ref().map(|i| i.transport_key)
    }

    /// The token to present in our Hello, hex.
    pub fn token_hex(&self) -> Option<String> {
        self.invite
            .as_ref()
            .map(|i| crate::domain::hex::encode(i.token))
    }

    /// The URLs to try, in order.
    pub fn urls(&self) -> &[String] {
        self.invite.as_ref().map(|i| &i.urls[..]).unwrap_or(&[])
    }

    /// The node's Hello verified: it must be the Person the invitation names (or, for a
    /// client's invitation, its home node).
    pub fn on_node_hello(&mut self, peer: PeerIdentity) -> Result<(), PairError> {
        let (ClientStep::Dial, Some(invite)) = (&self.step, &self.invite) else {
            return Err(PairError::Protocol("unexpected hello".into()));
        };
        let want = crate::domain::hex::encode(invite.home.unwrap_or(invite.person_id));
        if peer.person_id != want {
            return Err(PairError::WrongPerson {
                want: short_id(&want).into(),
                got: short_id(&peer.person_id).into(),
            });
        }
        self.step = ClientStep::AwaitOffer(Box::new(peer));
        Ok(())
    }

    /// The node's `pair_offer`: returns our `pair_confirm` (asking the node to be our
    /// replica when `replica`).
    pub fn on_offer(
        &mut self,
        msg: WireMsg,
        my_profile: &Profile,
        replica: bool,
    ) -> Result<WireMsg, PairError> {
        let ClientStep::AwaitOffer(peer) = &self.step else {
            return Err(PairError::Protocol("unexpected pair_offer".into()));
        };
        let WireMsg::PairOffer { profile, person } = msg else {
            return Err(PairError::Protocol("expected pair_offer".into()));
        };
        let inviter = match self.invite.as_ref().and_then(|i| i.home.map(|_| i)) {
            // Proven by a short code the node holds for its owner: the owner, whose signed
            // profile must name this node as its home node.
            None if self.invite.is_none() && person.is_some() => {
                let person = person.expect("invariant: matched is_some");
                check_home_of(peer, &person, &profile)?;
                Inviter {
                    person,
                    instance: None,
                }
            }
            None => {
                check_profile(peer, &profile)?;
                Inviter {
                    person: peer.person.clone(),
                    instance: Some(peer.instance.clone()),
                }
            }
            Some(invite) => {
                let person = person.ok_or_else(|| {
                    PairError::Protocol("the home node did not say whose invitation it is".into())
                })?;
                check_owner_offer(invite, peer, &person, &profile)?;
                Inviter {
                    person,
                    instance: None,
                }
            }
        };
        self.step = ClientStep::AwaitDone(Box::new(inviter), Box::new(profile));
        Ok(WireMsg::PairConfirm {
            profile: my_profile.clone(),
            replica,
        })
    }

    /// The node's `pair_done`: the one durable effect on the client side.
    pub fn on_done(
        &mut self,
        msg: WireMsg,
        me: &crate::domain::identity::Person,
        now: u64,
    ) -> Result<ClientCommit, PairError> {
        let ClientStep::AwaitDone(inviter, profile) = &self.step else {
            return Err(PairError::Protocol("unexpected pair_done".into()));
        };
        let WireMsg::PairDone { verification } = msg else {
            return Err(PairError::Protocol("expected pair_done".into()));
        };
        let ours = verification_string(me, &inviter.person);
        if verification != ours {
            return Err(PairError::Protocol(
                "the node computed a different verification string".into(),
            ));
        }
        let pid = inviter.person.id();
        let contact = contact_of(
            &inviter.person,
            inviter.instance.clone(),
            Some(profile),
            (Via::Invite, false),
            now,
        );
        let commit = ClientCommit {
            contact,
            channel: direct_channel(&me.id(), &pid, &inviter.person.name, now),
            verification: ours,
        };
        self.step = ClientStep::Done;
        Ok(commit)
    }
}

/// What a node commits when a client confirms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCommit {
    /// The token to consume (hex, or a short code's key); `None` for the trust secret.
    pub token: Option<String>,
    /// The client as a contact.
    pub contact: Contact,
    /// The 1:1 channel.
    pub channel: Channel,
    /// The verification string (sent in `pair_done`).
    pub verification: String,
}

/// Node side, after admitting a token: the `pair_confirm` turns into one atomic commit.
pub fn node_on_confirm(
    me: &crate::domain::identity::Person,
    peer: &PeerIdentity,
    token: Option<&str>,
    via: Via,
    msg: WireMsg,
    now: u64,
) -> Result<NodeCommit, PairError> {
    let WireMsg::PairConfirm { profile, replica } = msg else {
        return Err(PairError::Protocol("expected pair_confirm".into()));
    };
    check_profile(peer, &profile)?;
    let mut contact = contact_from(peer, Some(&profile), via, false, now);
    contact.replica_for = replica;
    Ok(NodeCommit {
        token: token.map(Into::into),
        contact,
        channel: direct_channel(&me.id(), &peer.person_id, &peer.person.name, now),
        verification: verification_string(me, &peer.person),
    })
}

/// Is `token` (hex from a Hello) a well-formed token?
pub fn parse_token(token: &str) -> Option<Id> {
    let b = crate::domain::hex::decode(token).ok()?;
    (b.len() == TOKEN_LEN).then(|| token.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mismatch_is_said_once_and_times_read_as_dates() {
        let e = super::PairError::CodeMismatch("the code did not match: 2 attempt(s) left".into());
        assert_eq!(e.to_string(), "the code did not match: 2 attempt(s) left");
        let e = super::PairError::CodeMismatch("2 attempt(s) left".into());
        assert_eq!(e.to_string(), "the code did not match: 2 attempt(s) left");
        assert_eq!(super::utc_text(1_796_098_381), "2026-12-01 04:13 UTC");
        let e = super::PairError::Expired(Some(1_796_098_381));
        assert!(
            e.to_string().contains("expired at 2026-12-01 04:13 UTC"),
            "{e}"
        );
    }
}
