//! Noise XX handshake and the identity proof, as a pure state machine over byte messages.
//!
//! No sockets here: the caller moves the bytes. That keeps every failure mode (wrong key,
//! truncation, replay) testable in memory and deterministic with fixed ephemeral keys.

use crate::domain::identity::{hello_signed_bytes, verify_hex_sig, IdentityError, LocalIdentity};
use crate::domain::PeerIdentity;
use crate::net::wire::{WireError, WireMsg, MAX_FRAME, NOISE_PARAMS, PROLOGUE, PROTOCOL_VERSION};

/// Errors of the handshake boundary.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Noise rejected a message (bad MAC, truncated, out of order, replayed).
    #[error("handshake message rejected: {0}")]
    Noise(String),
    /// The responder's static key is not the one we expected for this endpoint.
    #[error("the peer's transport key is {got}, not the expected {expected}: possible man-in-the-middle; refusing")]
    KeyMismatch {
        /// Expected key, hex.
        expected: String,
        /// Presented key, hex.
        got: String,
    },
    /// A message arrived that does not fit the current step.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// The decrypted payload is not a valid message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The identity proof failed.
    #[error("identity proof failed: {0}")]
    Proof(String),
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {0}, this build speaks {PROTOCOL_VERSION}")]
    Version(u32),
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        HandshakeError::Noise(e.to_string())
    }
}

impl From<IdentityError> for HandshakeError {
    fn from(e: IdentityError) -> Self {
        HandshakeError::Proof(e.to_string())
    }
}

/// One side of a Noise XX handshake in progress.
pub struct Handshake {
    state: snow::HandshakeState,
    expected_remote: Option<[u8; 32]>,
}

fn builder<'a>(
    static_secret: &'a [u8; 32],
    ephemeral: Option<&'a [u8; 32]>,
) -> Result<snow::Builder<'a>, HandshakeError> {
    let params = NOISE_PARAMS
        .parse()
        .expect("invariant: NOISE_PARAMS is a valid name");
    let mut b = snow::Builder::new(params)
        .local_private_key(static_secret)?
        .prologue(PROLOGUE)?;
    if let Some(e) = ephemeral {
        b = b.fixed_ephemeral_key_for_testing_only(e);
    }
    Ok(b)
}

impl Handshake {
    /// The dialing side. `expected_remote`: the transport key the dialer was told to expect
    /// (from an invite or a contact's endpoint); a different key aborts before our static
    /// key is revealed.
    pub fn initiator(
        static_secret: &[u8; 32],
        expected_remote: Option<[u8; 32]>,
    ) -> Result<Self, HandshakeError> {
        Self::initiator_with_ephemeral(static_secret, expected_remote, None)
    }

    /// As [`Handshake::initiator`] with a fixed ephemeral key: test vectors only.
    pub fn initiator_with_ephemeral(
        static_secret: &[u8; 32],
        expected_remote: Option<[u8; 32]>,
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<Self, HandshakeError> {
        Ok(Handshake {
            state: builder(static_secret, ephemeral)?.build_initiator()?,
            expected_remote,
        })
    }

    /// The listening side.
    pub fn responder(static_secret: &[u8; 32]) -> Result<Self, HandshakeError> {
        Self::responder_with_ephemeral(static_secret, None)
    }

    /// As [`Handshake::responder`] with a fixed ephemeral key: test vectors only.
    pub fn responder_with_ephemeral(
        static_secret: &[u8; 32],
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<Self, HandshakeError> {
        Ok(Handshake {
            state: builder(static_secret, ephemeral)?.build_responder()?,
            expected_remote: None,
        })
    }

    /// Whether it is our turn to write.
    pub fn is_my_turn(&self) -> bool {
        self.state.is_my_turn()
    }

    /// Whether all three messages have passed.
    pub fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// Produce our next handshake message (empty payload).
    pub fn write(&mut self) -> Result<Vec<u8>, HandshakeError> {
        if !self.state.is_my_turn() || self.is_finished() {
            return Err(HandshakeError::Unexpected("not our turn to write".into()));
        }
        let mut buf = vec![0u8; MAX_FRAME];
        let n = self.state.write_message(&[], &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Consume the peer's next handshake message.
    pub fn read(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        if self.state.is_my_turn() || self.is_finished() {
            return Err(HandshakeError::Unexpected(
                "not the peer's turn to write".into(),
            ));
        }
        let mut buf = vec![0u8; MAX_FRAME];
        let n = self.state.read_message(msg, &mut buf)?;
        if n != 0 {
            return Err(HandshakeError::Unexpected(
                "handshake payloads must be empty".into(),
            ));
        }
        if let (Some(expected), Some(got)) = (self.expected_remote, self.state.get_remote_static())
        {
            if got != expected {
                return Err(HandshakeError::KeyMismatch {
                    expected: crate::domain::hex::encode(expected),
                    got: crate::domain::hex::encode(got),
                });
            }
        }
        Ok(())
    }

    /// Switch to transport mode once finished.
    pub fn into_session(self) -> Result<Session, HandshakeError> {
        if !self.is_finished() {
            return Err(HandshakeError::Unexpected("handshake not finished".into()));
        }
        let hash = self.state.get_handshake_hash().to_vec();
        let remote: [u8; 32] = self
            .state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| HandshakeError::Unexpected("no remote static key".into()))?;
        Ok(Session {
            transport: self.state.into_transport_mode()?,
            hash,
            remote_static: remote,
        })
    }
}

/// An established Noise session: every frame after the handshake goes through it.
pub struct Session {
    transport: snow::TransportState,
    hash: Vec<u8>,
    remote_static: [u8; 32],
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cipher state stays out of Debug output: it is key material.
        f.debug_struct("Session")
            .field(
                "remote_static",
                &crate::domain::hex::encode(self.remote_static),
            )
            .finish_non_exhaustive()
    }
}

/// The optional fields of a Hello: what the sender asks for and what it already holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloExtras {
    /// Initiator, pairing by invitation: the token, hex.
    pub invite: Option<String>,
    /// Initiator, pairing by short code or trust secret.
    pub pake: Option<crate::net::pake::PakeRequest>,
    /// The version of the receiver's profile the sender holds.
    pub known_profile: Option<u64>,
    /// Initiator: a message sent right after the Hello, in the same flight (an invitation's
    /// `pair_confirm`, which saves a round trip). Not part of the Hello.
    pub then: Option<Box<WireMsg>>,
    /// Initiator, dialing a contact: who it is (its Person and the Instance whose key we
    /// expect). When the responder is of this version and presents that key, we send
    /// `hello_known` instead of the full Hello. Not part of the Hello.
    pub known_peer: Option<Box<PeerIdentity>>,
}

impl Session {
    /// The Noise handshake hash (binds signatures to this session).
    pub fn handshake_hash(&self) -> &[u8] {
        &self.hash
    }

    /// The peer's Noise static public key.
    pub fn remote_static(&self) -> [u8; 32] {
        self.remote_static
    }

    /// Encrypt one message into one frame.
    pub fn seal(&mut self, msg: &WireMsg) -> Result<Vec<u8>, HandshakeError> {
        let plain = msg.encode()?;
        let mut buf = vec![0u8; plain.len() + 16];
        let n = self.transport.write_message(&plain, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Decrypt and decode one frame.
    pub fn open(&mut self, frame: &[u8]) -> Result<WireMsg, HandshakeError> {
        if frame.len() > MAX_FRAME {
            return Err(WireError::TooLarge(frame.len()).into());
        }
        let mut buf = vec![0u8; frame.len()];
        let n = self.transport.read_message(frame, &mut buf)?;
        Ok(WireMsg::decode(&buf[..n])?)
    }

    /// Our Hello for this session; `invite` is the token when pairing.
    pub fn hello(&self, me: &LocalIdentity, invite: Option<String>) -> WireMsg {
        self.hello_with(
            me,
            HelloExtras {
                invite,
                ..HelloExtras::default()
            },
        )
    }

    /// Our Hello with the optional fields set.
    pub fn hello_with(&self, me: &LocalIdentity, extras: HelloExtras) -> WireMsg {
        hello_msg(me, &self.hash, extras)
    }

    /// Verify the peer's Hello against this session.
    pub fn verify_hello(&self, msg: &WireMsg) -> Result<PeerIdentity, HandshakeError> {
        let WireMsg::Hello {
            version,
            person,
            instance,
            sig,
            ..
        } = msg
        else {
            return Err(HandshakeError::Unexpected(format!(
                "expected hello, got {}",
                msg_name(msg)
            )));
        };
        if *version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version(*version));
        }
        let person_key = person.verifying_key()?;
        instance.validate()?;
        let person_id = person.id();
        if instance.owner != person_id {
            return Err(HandshakeError::Proof(
                "the instance is not owned by the presented person".into(),
            ));
        }
        if instance.transport_key_bytes()? != self.remote_static {
            return Err(HandshakeError::Proof(
                "the instance's transport key is not the key used in the handshake".into(),
            ));
        }
        let instance_id = instance.id();
        verify_hex_sig(
            &person_key,
            &hello_signed_bytes(&self.hash, &instance_id),
            sig,
            "hello",
        )?;
        Ok(PeerIdentity {
            person: person.clone(),
            instance: instance.clone(),
            person_id,
            instance_id,
        })
    }
}

/// Our Hello for the session with handshake hash `hash`: the identity proof (the Person
/// key's signature over the hash and our instance id) and the optional fields.
pub fn hello_msg(me: &LocalIdentity, hash: &[u8], extras: HelloExtras) -> WireMsg {
    let sig = me.sign_as_person(&hello_signed_bytes(hash, &me.instance_id()));
    WireMsg::Hello {
        version: PROTOCOL_VERSION,
        person: me.person.clone(),
        instance: me.instance.clone(),
        sig: crate::domain::hex::encode(sig.to_bytes()),
        invite: extras.invite,
        known_profile: extras.known_profile,
        pake: extras.pake,
    }
}

/// The `type` tag of a message, for error texts.
pub fn msg_name(m: &WireMsg) -> &'static str {
    match m {
        WireMsg::Hello { .. } => "hello",
        WireMsg::HelloKnown { .. } => "hello_known",
        WireMsg::HelloAgain => "hello_again",
        WireMsg::Close { .. } => "close",
        WireMsg::Ping { .. } => "ping",
        WireMsg::Pong { .. } => "pong",
        WireMsg::Profile { .. } => "profile",
        WireMsg::PairOffer { .. } => "pair_offer",
        WireMsg::PairConfirm { .. } => "pair_confirm",
        WireMsg::PairDone { .. } => "pair_done",
        WireMsg::Pake { .. } => "pake",
        WireMsg::PakeConfirm { .. } => "pake_confirm",
        WireMsg::Sync { .. } => "sync",
        WireMsg::HomeInvite { .. } => "home_invite",
        WireMsg::HomePaired { .. } => "home_paired",
        WireMsg::HomePairedAck { .. } => "home_paired_ack",
        WireMsg::HomeShortCode { .. } => "home_short_code",
        WireMsg::HomeShortCodeMade { .. } => "home_short_code_made",
        WireMsg::Vouch { .. } => "vouch",
        WireMsg::VouchEnd { .. } => "vouch_end",
    }
}
