//! Invitations as a node stores them: the code handed out, its lifetime and its state.

use serde::{Deserialize, Serialize};

use crate::domain::identity::Id;
use crate::domain::InviteState;

/// Default invitation lifetime.
pub const DEFAULT_INVITE_TTL_SECS: u64 = 600;
/// Longest invitation lifetime accepted from `ttl_secs`.
pub const MAX_INVITE_TTL_SECS: u64 = 7 * 24 * 3600;
/// Checked guesses a short code allows before it is destroyed.
pub const MAX_CODE_ATTEMPTS: u32 = 3;

/// Where an invitation stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InviteStatus {
    /// Usable until it expires.
    Open,
    /// Consumed by a successful pairing.
    Used {
        /// Person id that paired with it.
        by: Id,
        /// Unix seconds.
        at: u64,
    },
    /// Revoked by the owner.
    Revoked {
        /// Unix seconds.
        at: u64,
    },
}

/// A stored invitation (node side).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    /// The token, hex: the key of the record.
    pub token: String,
    /// The text code handed out.
    pub code: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Current status.
    pub status: InviteStatus,
    /// Short codes: guesses checked against this code (confirmations received).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// On a home node: the person this invitation pairs with (its owner made it and
    /// handed it over); `None` for our own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Id>,
    /// On a home node: the owner has stored the pairing this invitation made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relayed: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl std::fmt::Debug for InviteRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and the code are bearer secrets (a short code's words are a password):
        // Debug output, and so any log line, never holds them.
        f.debug_struct("InviteRecord")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// How a usable invitation admits a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// An open invitation.
    Fresh,
    /// The invitation was already consumed by this same Person (a retry after a lost
    /// `pair_done`): admitted again, idempotently.
    Repeat,
}

/// Why an invitation admits no one (any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Consumed by another person.
    Used,
    /// Revoked by its owner.
    Revoked,
    /// Past its expiry.
    Expired,
    /// A short code out of guesses.
    Exhausted,
}

impl From<Refusal> for InviteState {
    fn from(r: Refusal) -> InviteState {
        match r {
            Refusal::Used => InviteState::Used,
            Refusal::Revoked => InviteState::Revoked,
            Refusal::Expired => InviteState::Expired,
            Refusal::Exhausted => InviteState::Exhausted,
        }
    }
}

/// Whether a short code's spent guesses count: they do when an exchange is admitted and
/// when one more guess is to be checked; the commit after a correct guess ignores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guesses {
    /// Refuse a code out of guesses.
    Count,
    /// The guess was right: only use, revocation and expiry matter now.
    Ignore,
}

impl InviteRecord {
    /// The one rule of an invitation or a short code, applied when an exchange is
    /// admitted, when a guess is counted, at the atomic commit and when listing: may
    /// `person_id` pair with it at unix time `now`?
    pub fn admits(
        &self,
        person_id: &str,
        now: u64,
        guesses: Guesses,
    ) -> Result<Admission, Refusal> {
        match &self.status {
            InviteStatus::Used { by, .. } if by == person_id => Ok(Admission::Repeat),
            InviteStatus::Used { .. } => Err(Refusal::Used),
            InviteStatus::Revoked { .. } => Err(Refusal::Revoked),
            InviteStatus::Open
                if guesses == Guesses::Count && self.attempts >= MAX_CODE_ATTEMPTS =>
            {
                Err(Refusal::Exhausted)
            }
            InviteStatus::Open if now >= self.expires_at => Err(Refusal::Expired),
            InviteStatus::Open => Ok(Admission::Fresh),
        }
    }

    /// Where the invitation stands at unix time `now`, for listings.
    pub fn status_at(&self, now: u64) -> InviteState {
        match self.admits("", now, Guesses::Count) {
            Ok(_) => InviteState::Open,
            Err(r) => r.into(),
        }
    }
}

/// The outcome of committing a pairing: an invitation checked before the exchange may have
/// changed state by the time of the commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairingCommit {
    /// Contact and channel stored, token (if any) consumed.
    Committed,
    /// The invitation changed state since it was checked (`None`: it is gone); nothing
    /// was written.
    InviteGone(Option<Refusal>),
}
