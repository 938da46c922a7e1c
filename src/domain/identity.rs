//! Person and Instance objects, their canonical encoding and content-derived ids, and keys.
//!
//! An id is the SHA-256 of the object's canonical encoding, and the encoding contains the
//! public keys. Two instances that pick the same name therefore get different Person ids:
//! a name clash can never be mistaken for the same person (ONE.core's key-mismatch trap).

use crate::domain::ids::{InstanceId, PersonId};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Domain separator for the session proof signature (see docs/PROTOCOL.md, "Identity proof").
pub const HELLO_CONTEXT: &[u8] = b"lama-tui/1 hello\0";

/// Errors in identity objects received from elsewhere.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// A hex field has the wrong length or alphabet.
    #[error("field `{field}` is not {len} bytes of hex")]
    BadHex {
        /// Which field.
        field: &'static str,
        /// Expected byte length.
        len: usize,
    },
    /// A public key is not a valid curve point.
    #[error("field `{0}` is not a valid public key")]
    BadKey(&'static str),
    /// A signature does not verify under the claimed key.
    #[error("signature does not verify: {0}")]
    BadSignature(&'static str),
    /// The name is empty or too long.
    #[error("name must be 1 to 128 characters without control characters")]
    BadName,
    /// An endpoint URL is not `ws://host[:port]` or `wss://host[:port]`.
    #[error("endpoint `{url}` is not a ws:// or wss:// URL with a host: {why}")]
    BadEndpoint {
        /// The URL, cut to 80 characters and with control characters replaced.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A profile lists more endpoints than any instance set has.
    #[error("a profile lists {0} endpoints; at most {MAX_PROFILE_ENDPOINTS} are kept")]
    TooManyEndpoints(usize),
}

/// Most endpoints in one profile.
pub const MAX_PROFILE_ENDPOINTS: usize = 16;
/// Longest endpoint URL, in bytes.
pub const MAX_URL_LEN: usize = 256;

/// Check that `url` is `ws://` or `wss://`, a host (a DNS name, an IPv4 address, or an
/// IPv6 address in brackets), optionally a port 1 to 65535 (else the scheme's), and
/// optionally a printable path.
pub fn check_endpoint_url(url: &str) -> Result<(), IdentityError> {
    let bad = |why| IdentityError::BadEndpoint {
        url: url
            .chars()
            .take(80)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
        why,
    };
    if url.len() > MAX_URL_LEN {
        return Err(bad("it is longer than 256 bytes"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("it holds a space, a control or a non-ASCII character"));
    }
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| bad("the scheme must be ws:// or wss://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("an unclosed `[`"))?;
            let ok = !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
            if !ok {
                return Err(bad("the bracketed host is not an IPv6 address"));
            }
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
                ),
            }
        }
        // No port: the scheme's (80 or 443).
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':';
    if host.is_empty() || !host.bytes().all(host_ok) {
        return Err(bad(
            "the host is empty or holds characters a host name cannot hold",
        ));
    }
    match port.map(|p| (p, p.parse::<u16>())) {
        None => Ok(()),
        Some((p, Ok(n))) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        Some(_) => Err(bad("the port is not a number from 1 to 65535")),
    }
}

/// A 32-byte content id, shown as 64 lowercase hex characters.
pub type Id = String;

/// SHA-256 of `bytes` as 64 lowercase hex characters.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::domain::hex::encode(Sha256::digest(bytes))
}

/// Parse exactly `N` bytes of hex.
pub fn parse_hex<const N: usize>(s: &str, field: &'static str) -> Result<[u8; N], IdentityError> {
    let v = crate::domain::hex::decode(s).map_err(|_| IdentityError::BadHex { field, len: N })?;
    v.try_into()
        .map_err(|_| IdentityError::BadHex { field, len: N })
}

/// Check a user-chosen name.
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(IdentityError::BadName);
    }
    Ok(())
}

/// A Person: a name and the ed25519 key that speaks for it.
///
/// Field order is the canonical (lexicographic) key order; serde_json keeps declaration order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Always "Person".
    #[serde(rename = "$type")]
    pub kind: String,
    /// Human name, e.g. `demo@lama.local`. Not unique: the id is.
    pub name: String,
    /// ed25519 public key, hex.
    pub sign_key: String,
}

/// An Instance: one running installation owned by a Person, with its own keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Always "Instance".
    #[serde(rename = "$type")]
    pub kind: String,
    /// Instance name, e.g. `demo@lama.local/node`.
    pub name: String,
    /// Person id of the owner.
    pub owner: Id,
    /// ed25519 public key of the instance, hex (signs discovery announcements).
    pub sign_key: String,
    /// X25519 Noise static public key, hex.
    pub transport_key: String,
}

impl Person {
    /// A Person object for a name and key.
    pub fn new(name: &str, key: &VerifyingKey) -> Self {
        Person {
            kind: "Person".into(),
            name: name.into(),
            sign_key: crate::domain::hex::encode(key.as_bytes()),
        }
    }

    /// The canonical encoding: JSON, keys sorted, no whitespace.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: a struct of strings always serialises")
    }

    /// The Person id: SHA-256 of the canonical encoding.
    pub fn id(&self) -> PersonId {
        PersonId::from_digest(sha256_hex(&self.canonical()))
    }

    /// Check the object's fields and return its verifying key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, IdentityError> {
        if self.kind != "Person" {
            return Err(IdentityError::BadKey("$type"));
        }
        check_name(&self.name)?;
        let b = parse_hex::<32>(&self.sign_key, "sign_key")?;
        VerifyingKey::from_bytes(&b).map_err(|_| IdentityError::BadKey("sign_key"))
    }
}

impl Instance {
    /// The canonical encoding: JSON, keys sorted, no whitespace.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: a struct of strings always serialises")
    }

    /// The Instance id: SHA-256 of the canonical encoding.
    pub fn id(&self) -> InstanceId {
        InstanceId::from_digest(sha256_hex(&self.canonical()))
    }

    /// The transport (Noise static) public key bytes.
    pub fn transport_key_bytes(&self) -> Result<[u8; 32], IdentityError> {
        parse_hex::<32>(&self.transport_key, "transport_key")
    }

    /// Check the object's fields.
    pub fn validate(&self) -> Result<(), IdentityError> {
        if self.kind != "Instance" {
            return Err(IdentityError::BadKey("$type"));
        }
        check_name(&self.name)?;
        parse_hex::<32>(&self.owner, "owner")?;
        let b = parse_hex::<32>(&self.sign_key, "sign_key")?;
        VerifyingKey::from_bytes(&b).map_err(|_| IdentityError::BadKey("sign_key"))?;
        self.transport_key_bytes()?;
        Ok(())
    }
}

/// Secret key material of one instance. Never logged: `Debug` is redacted.
#[derive(Clone)]
pub struct Secrets {
    /// ed25519 secret of the Person.
    pub person: [u8; 32],
    /// ed25519 secret of the Instance.
    pub instance: [u8; 32],
    /// X25519 secret of the Noise static key.
    pub transport: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.person.zeroize();
        self.instance.zeroize();
        self.transport.zeroize();
    }
}

/// Fill a 32-byte array from the OS random source.
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("invariant: the OS random source is available");
    b
}

impl Secrets {
    /// Fresh random keys.
    pub fn generate() -> Self {
        Secrets {
            person: random32(),
            instance: random32(),
            transport: random32(),
        }
    }
}

/// A full local identity: the public objects and the secrets behind them.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    /// The Person object.
    pub person: Person,
    /// The Instance object.
    pub instance: Instance,
    /// The secrets.
    pub secrets: Secrets,
}

impl LocalIdentity {
    /// Derive the public objects from a name, instance name and secrets.
    pub fn from_secrets(name: &str, instance_name: &str, secrets: Secrets) -> Self {
        let person_key = SigningKey::from_bytes(&secrets.person);
        let person = Person::new(name, &person_key.verifying_key());
        let inst_key = SigningKey::from_bytes(&secrets.instance);
        let transport_pub =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secrets.transport));
        let instance = Instance {
            kind: "Instance".into(),
            name: instance_name.into(),
            owner: person.id().to_string(),
            sign_key: crate::domain::hex::encode(inst_key.verifying_key().as_bytes()),
            transport_key: crate::domain::hex::encode(transport_pub.as_bytes()),
        };
        LocalIdentity {
            person,
            instance,
            secrets,
        }
    }

    /// Person id.
    pub fn person_id(&self) -> PersonId {
        self.person.id()
    }

    /// Instance id.
    pub fn instance_id(&self) -> InstanceId {
        self.instance.id()
    }

    /// Sign with the Person key.
    pub fn sign_as_person(&self, msg: &[u8]) -> Signature {
        SigningKey::from_bytes(&self.secrets.person).sign(msg)
    }

    /// Sign with the Instance key.
    pub fn sign_as_instance(&self, msg: &[u8]) -> Signature {
        SigningKey::from_bytes(&self.secrets.instance).sign(msg)
    }
}

/// The bytes a Person signs to vouch for an instance in one Noise session.
pub fn hello_signed_bytes(handshake_hash: &[u8], instance_id: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(HELLO_CONTEXT.len() + handshake_hash.len() + 64);
    m.extend_from_slice(HELLO_CONTEXT);
    m.extend_from_slice(handshake_hash);
    m.extend_from_slice(instance_id.as_bytes());
    m
}

/// Verify an ed25519 signature given as hex.
pub fn verify_hex_sig(
    key: &VerifyingKey,
    msg: &[u8],
    sig_hex: &str,
    what: &'static str,
) -> Result<(), IdentityError> {
    let b = parse_hex::<64>(sig_hex, "sig")?;
    key.verify(msg, &Signature::from_bytes(&b))
        .map_err(|_| IdentityError::BadSignature(what))
}

/// A short human-comparable fingerprint of an id: first 8 hex characters.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A network endpoint of an instance, as published in a Profile (`OneInstanceEndpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The owning Person id.
    pub person_id: Id,
    /// The Instance id.
    pub instance_id: Id,
    /// A `ws://host:port` URL.
    pub url: String,
    /// The instance's Noise static public key, hex.
    pub transport_key: String,
}

/// A Person's signed public profile: display name and endpoints. Newer `version` wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Whose profile.
    pub person_id: Id,
    /// Display name.
    pub name: String,
    /// Where the Person's instances listen (`OneInstanceEndpoint`s).
    pub endpoints: Vec<Endpoint>,
    /// Monotonic version (unix milliseconds of the change).
    pub version: u64,
    /// Person-key signature over [`Profile::signed_bytes`], hex.
    pub sig: String,
}

impl Profile {
    /// The endpoints of the person's own instances.
    pub fn own_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(move |e| e.person_id == self.person_id)
    }

    /// The Person ids of the home nodes the person names (endpoints of other Persons).
    pub fn home_nodes(&self) -> std::collections::BTreeSet<&str> {
        self.endpoints
            .iter()
            .filter(|e| e.person_id != self.person_id)
            .map(|e| e.person_id.as_str())
            .collect()
    }
}

/// Domain separator for profile signatures.
pub const PROFILE_CONTEXT: &[u8] = b"lama-tui/1 profile\0";

impl Profile {
    /// Build and sign a profile.
    pub fn signed(me: &LocalIdentity, endpoints: Vec<Endpoint>, version: u64) -> Profile {
        Self::signed_from(
            me,
            Profile {
                person_id: me.person_id().to_string(),
                name: me.person.name.clone(),
                endpoints,
                version,
                sig: String::new(),
            },
        )
    }

    /// Sign `p` (its fields as given) with our Person key.
    pub fn signed_from(me: &LocalIdentity, mut p: Profile) -> Profile {
        p.sig = crate::domain::hex::encode(me.sign_as_person(&p.signed_bytes()).to_bytes());
        p
    }

    /// Context followed by the canonical JSON of the profile with `sig` empty.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.sig.clear();
        let mut m = PROFILE_CONTEXT.to_vec();
        m.extend(serde_json::to_vec(&unsigned).expect("invariant: profiles serialise"));
        m
    }

    /// Verify that `person` signed this profile. An endpoint of another Person is a home
    /// node of this one: the signature is the person's word that it carries their mail.
    pub fn verify(&self, person: &Person) -> Result<(), IdentityError> {
        if self.person_id != person.id() {
            return Err(IdentityError::BadSignature("profile of another person"));
        }
        // What a profile carries is shown and dialed: a name by the rules of person names,
        // endpoints that parse, and not too many of them.
        check_name(&self.name)?;
        if self.endpoints.len() > MAX_PROFILE_ENDPOINTS {
            return Err(IdentityError::TooManyEndpoints(self.endpoints.len()));
        }
        for e in &self.endpoints {
            check_endpoint_url(&e.url)?;
        }
        verify_hex_sig(
            &person.verifying_key()?,
            &self.signed_bytes(),
            &self.sig,
            "profile",
        )
    }
}

/// Domain separator of a `vouch` signature.
pub const VOUCH_CONTEXT: &[u8] = b"lama-tui/1 vouch\0";
/// Domain separator of a `vouch_end` signature.
pub const VOUCH_END_CONTEXT: &[u8] = b"lama-tui/1 vouch-end\0";

/// What an owner signs to vouch for a contact to its home node: the context, the
/// contact's canonical Person, a zero byte, and the profile's JSON (`null` without one).
pub fn vouch_signed_bytes(person: &Person, profile: Option<&Profile>) -> Vec<u8> {
    let mut m = VOUCH_CONTEXT.to_vec();
    m.extend(person.canonical());
    m.push(0);
    m.extend(serde_json::to_vec(&profile).expect("invariant: profiles serialise"));
    m
}

/// The digest a `vouch_end` names: SHA-256 (hex) of the vouched Person ids, sorted, each
/// followed by a line feed.
pub fn vouch_ids_hash<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    crate::domain::hex::encode(h.finalize())
}

/// What an owner signs to end a round of vouches: the context and the digest.
pub fn vouch_end_signed_bytes(ids_hash: &str) -> Vec<u8> {
    let mut m = VOUCH_END_CONTEXT.to_vec();
    m.extend(ids_hash.as_bytes());
    m
}

/// The short verification string both sides of a pairing show: 12 digits in three groups,
/// from SHA-256 over both Person keys in sorted order. A man in the middle would have to
/// substitute a key, which changes the digits on one side.
pub fn verification_string(a: &Person, b: &Person) -> String {
    let (x, y) = if a.sign_key <= b.sign_key {
        (a, b)
    } else {
        (b, a)
    };
    let mut h = Sha256::new();
    h.update(b"lama-tui/1 verify\0");
    h.update(x.sign_key.as_bytes());
    h.update(y.sign_key.as_bytes());
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("invariant: 8 bytes")) % 1_000_000_000_000;
    let s = format!("{n:012}");
    format!("{} {} {}", &s[..4], &s[4..8], &s[8..])
}

/// A peer whose identity proof verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's Person.
    pub person: Person,
    /// The peer's Instance.
    pub instance: Instance,
    /// `person.id()`.
    pub person_id: PersonId,
    /// `instance.id()`.
    pub instance_id: InstanceId,
}
