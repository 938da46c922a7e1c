//! Shared-secret pairing as pure steps: short codes (`7-lunar-pepper-canal`), the stretched
//! trust secret, and a SPAKE2 exchange whose key is confirmed over the Noise handshake hash.
//!
//! Why SPAKE2 and not "hash the code and compare": a hash on the wire can be guessed offline
//! at leisure; a PAKE gives an attacker exactly one guess per exchange, and the node counts
//! those. Why the handshake hash in the confirmation: the SPAKE2 key alone does not say
//! which transport session it belongs to, so a relay between two sessions could splice it;
//! with the hash, a confirmation only verifies inside the one Noise session it was made for.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password as SpakePassword, Spake2};
use zeroize::Zeroizing;

/// Checked guesses per short code, and wrong trust secrets per lockout window.
pub const MAX_ATTEMPTS: u32 = crate::domain::invitation::MAX_CODE_ATTEMPTS;
/// How long a node refuses trust-secret pairing after [`MAX_ATTEMPTS`] wrong secrets.
pub const SECRET_LOCKOUT_SECS: u64 = 600;
/// Argon2id memory for stretching a trust secret, KiB (OWASP's minimum for Argon2id).
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const ARGON2_T: u32 = 2;

/// Domain separation for the SPAKE2 identities and the confirmation MACs.
const CONTEXT: &str = "lama-tui/pake/1";

/// The password of a trust secret for pairing with the node whose Person id is
/// `node_person_id`: Argon2id over the secret, salted with that id so one precomputed table
/// serves one node only.
pub fn stretch_secret(secret: &[u8], node_person_id: &str) -> Zeroizing<Vec<u8>> {
    let salt = Sha256::digest(format!("{CONTEXT}/trust-secret/{node_person_id}").as_bytes());
    let params = argon2::Params::new(ARGON2_M_KIB, ARGON2_T, 1, Some(32))
        .expect("invariant: constant Argon2 parameters are valid");
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new(vec![0u8; 32]);
    a.hash_password_into(secret, &salt, &mut out)
        .expect("invariant: a 32-byte salt and output fit Argon2's limits");
    out
}

/// A PAKE password (a short code's text or a stretched trust secret): zeroed on drop, never
/// printed.
#[derive(Clone)]
pub struct Password(pub Zeroizing<Vec<u8>>);

impl Password {
    /// Wrap password bytes.
    pub fn new(bytes: Vec<u8>) -> Password {
        Password(Zeroizing::new(bytes))
    }
}

impl std::ops::Deref for Password {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What the dialer asks for in its Hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum PakeRequest {
    /// Pair with the short code numbered `slot`.
    Code {
        /// The code's number.
        slot: u16,
    },
    /// Pair with the shared trust secret.
    Secret,
}

/// Which end of the exchange: the dialer is SPAKE2 side A, the listener side B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The dialing instance (SPAKE2 A).
    Dialer,
    /// The listening instance (SPAKE2 B).
    Listener,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Dialer => "dialer",
            Side::Listener => "listener",
        }
    }
    fn other(self) -> Side {
        match self {
            Side::Dialer => Side::Listener,
            Side::Listener => Side::Dialer,
        }
    }
}

/// Why an exchange failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PakeError {
    /// The other side used another code or secret (or is not the session's peer).
    #[error("the code did not match")]
    Mismatch,
    /// A message was not a SPAKE2 message or came at the wrong step.
    #[error("malformed PAKE message: {0}")]
    Malformed(String),
}

/// One side of a SPAKE2 exchange bound to a Noise session.
pub struct PakeExchange {
    side: Side,
    spake: Option<Spake2<Ed25519Group>>,
    key: Option<Zeroizing<Vec<u8>>>,
    transcript: Vec<u8>,
}

impl std::fmt::Debug for PakeExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PakeExchange")
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

impl PakeExchange {
    /// Start: `password` is the short code's text or the stretched secret; the instance
    /// ids of both ends and the Noise handshake hash bind the result to this session.
    /// Returns our SPAKE2 message.
    pub fn start(
        side: Side,
        password: &[u8],
        dialer_instance: &str,
        listener_instance: &str,
        handshake_hash: &[u8],
    ) -> (PakeExchange, Vec<u8>) {
        let ids = (dialer_instance, listener_instance);
        Self::start_with_rng(side, password, ids, handshake_hash, rand_core::OsRng)
    }

    /// As [`PakeExchange::start`] with the SPAKE2 scalar drawn from `rng` (the core passes
    /// its own, seeded in simulations). `instances`: (dialer, listener).
    pub fn start_with_rng(
        side: Side,
        password: &[u8],
        instances: (&str, &str),
        handshake_hash: &[u8],
        rng: impl rand_core::CryptoRng + rand_core::RngCore,
    ) -> (PakeExchange, Vec<u8>) {
        let pw = SpakePassword::new(password);
        let (a, b) = spake_identities(instances.0, instances.1);
        let (id_a, id_b) = (Identity::new(a.as_bytes()), Identity::new(b.as_bytes()));
        let (spake, msg) = match side {
            Side::Dialer => Spake2::<Ed25519Group>::start_a_with_rng(&pw, &id_a, &id_b, rng),
            Side::Listener => Spake2::<Ed25519Group>::start_b_with_rng(&pw, &id_a, &id_b, rng),
        };
        let ex = PakeExchange {
            side,
            spake: Some(spake),
            key: None,
            transcript: handshake_hash.to_vec(),
        };
        (ex, msg)
    }

    /// The peer's SPAKE2 message: derive the shared key. Returns our confirmation MAC.
    pub fn on_peer_msg(&mut self, msg: &[u8]) -> Result<Vec<u8>, PakeError> {
        let spake = self
            .spake
            .take()
            .ok_or_else(|| PakeError::Malformed("a second PAKE message".into()))?;
        let key = spake
            .finish(msg)
            .map_err(|e| PakeError::Malformed(e.to_string()))?;
        self.key = Some(Zeroizing::new(key));
        Ok(self.mac(self.side))
    }

    /// Check the peer's confirmation MAC (constant time).
    pub fn check_confirm(&self, mac: &[u8]) -> Result<(), PakeError> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| PakeError::Malformed("confirmation before the PAKE message".into()))?;
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .expect("invariant: HMAC takes keys of any length");
        m.update(&confirm_input(self.side.other(), &self.transcript));
        m.verify_slice(mac).map_err(|_| PakeError::Mismatch)
    }

    fn mac(&self, side: Side) -> Vec<u8> {
        let key = self.key.as_ref().expect("invariant: called after finish");
        confirm_mac(key, side, &self.transcript)
    }
}

/// The SPAKE2 identities (A, B) of an exchange between two instances.
pub fn spake_identities(dialer_instance: &str, listener_instance: &str) -> (String, String) {
    (
        format!("{CONTEXT}/dialer/{dialer_instance}"),
        format!("{CONTEXT}/listener/{listener_instance}"),
    )
}

fn confirm_input(side: Side, handshake_hash: &[u8]) -> Vec<u8> {
    let mut v = format!("{CONTEXT}/confirm/{}/", side.label()).into_bytes();
    v.extend_from_slice(handshake_hash);
    v
}

/// The confirmation MAC `side` sends: HMAC-SHA256 under the SPAKE2 key over
/// `lama-tui/pake/1/confirm/<side>/` followed by the Noise handshake hash.
pub fn confirm_mac(key: &[u8], side: Side, handshake_hash: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .expect("invariant: HMAC takes keys of any length");
    m.update(&confirm_input(side, handshake_hash));
    m.finalize().into_bytes().to_vec()
}
