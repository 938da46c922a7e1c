//! Text codes for pairing invitations and contact cards: a binary payload, a CRC-32, and
//! RFC 4648 base32 behind the prefix `LAMA1`.
//!
//! Base32 uses only `A-Z` and `2-7`, so the code fits QR alphanumeric mode, survives chat
//! apps and is case-insensitive. The CRC-32 detects every burst of up to 32 bits, and a
//! mistyped base32 character changes at most 5 adjacent bits: any one-character typo is
//! caught before any network traffic.

use data_encoding::BASE32_NOPAD;

/// The prefix every code starts with (case-insensitive on input).
pub const PREFIX: &str = "LAMA1";
/// Payload format version.
pub const CODE_VERSION: u8 = 1;
/// Bytes of the single-use token.
pub const TOKEN_LEN: usize = 16;
/// Longest URL carried.
pub const MAX_URL: usize = 200;
/// Most URLs carried.
pub const MAX_URLS: usize = 4;

const KIND_INVITE: u8 = 1;
const KIND_CARD: u8 = 2;
const KIND_HOME_INVITE: u8 = 3;

/// A pairing invitation, as carried by its code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The inviting Person's id (32 bytes).
    pub person_id: [u8; 32],
    /// A client's invitation: the Person id of its home node, which carries the pairing
    /// (code kind 3); `None`: the inviter is the node dialed (kind 1).
    pub home: Option<[u8; 32]>,
    /// The Noise static public key of the node dialed.
    pub transport_key: [u8; 32],
    /// Single-use random token.
    pub token: [u8; TOKEN_LEN],
    /// Unix seconds after which the invite is refused.
    pub expires_at: u64,
    /// `ws://` URLs of the node.
    pub urls: Vec<String>,
}

/// A contact card: who someone is and where to reach them, no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    /// Person name.
    pub name: String,
    /// Person ed25519 public key.
    pub person_key: [u8; 32],
    /// Instance id.
    pub instance_id: [u8; 32],
    /// Noise static public key of the instance.
    pub transport_key: [u8; 32],
    /// `ws://` URLs (empty for a client).
    pub urls: Vec<String>,
}

/// A decoded code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// An invitation.
    Invite(Invite),
    /// A contact card.
    Card(Card),
}

/// Why a code was rejected (all before any network traffic).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Empty input.
    #[error("the code is empty: paste the whole code, starting with LAMA1")]
    Empty,
    /// Does not start with the prefix.
    #[error("this is not a lama-tui code: it must start with LAMA1")]
    BadPrefix,
    /// A character outside the alphabet.
    #[error("the code contains `{0}`, which cannot appear in a code: check for a typo")]
    BadCharacter(char),
    /// The checksum does not match.
    #[error("the code's checksum does not match: it has a typo or is cut short; copy it again")]
    Checksum,
    /// Too short to hold a payload.
    #[error("the code is too short: it was cut off; copy the whole code")]
    Truncated,
    /// A newer format.
    #[error("the code uses format {0}, which this version does not understand: update lama-tui")]
    UnsupportedVersion(u8),
    /// Structurally invalid payload behind a valid checksum.
    #[error("the code is malformed ({0})")]
    Malformed(&'static str),
}

fn put_urls(out: &mut Vec<u8>, urls: &[String]) {
    let urls: Vec<&String> = urls
        .iter()
        .filter(|u| u.len() <= MAX_URL)
        .take(MAX_URLS)
        .collect();
    out.push(urls.len() as u8);
    for u in urls {
        out.push(u.len() as u8);
        out.extend_from_slice(u.as_bytes());
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodeError> {
        if self.b.len() < n {
            return Err(CodeError::Malformed("payload ends early"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], CodeError> {
        Ok(self
            .take(N)?
            .try_into()
            .expect("invariant: take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8, CodeError> {
        Ok(self.take(1)?[0])
    }
    fn string(&mut self) -> Result<String, CodeError> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| CodeError::Malformed("bad text"))
    }
    fn urls(&mut self) -> Result<Vec<String>, CodeError> {
        let n = self.u8()? as usize;
        if n > MAX_URLS {
            return Err(CodeError::Malformed("too many URLs"));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let u = self.string()?;
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                return Err(CodeError::Malformed("URL is not ws://"));
            }
            v.push(u);
        }
        Ok(v)
    }
}

fn wrap(payload: Vec<u8>) -> String {
    let mut b = payload;
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    format!("{PREFIX}{}", BASE32_NOPAD.encode(&b))
}

impl Code {
    /// Encode as the text code (upper case, no separators).
    pub fn encode(&self) -> String {
        let mut p = vec![CODE_VERSION];
        match self {
            Code::Invite(i) => {
                p.push(if i.home.is_some() {
                    KIND_HOME_INVITE
                } else {
                    KIND_INVITE
                });
                p.extend_from_slice(&i.person_id);
                if let Some(h) = &i.home {
                    p.extend_from_slice(h);
                }
                p.extend_from_slice(&i.transport_key);
                p.extend_from_slice(&i.token);
                p.extend_from_slice(&i.expires_at.to_be_bytes());
                put_urls(&mut p, &i.urls);
            }
            Code::Card(c) => {
                p.push(KIND_CARD);
                let name = truncate_utf8(&c.name, 255);
                p.push(name.len() as u8);
                p.extend_from_slice(name.as_bytes());
                p.extend_from_slice(&c.person_key);
                p.extend_from_slice(&c.instance_id);
                p.extend_from_slice(&c.transport_key);
                put_urls(&mut p, &c.urls);
            }
        }
        wrap(p)
    }

    /// Decode a code as pasted: surrounding text whitespace, line breaks, `-` and case do
    /// not matter.
    pub fn decode(input: &str) -> Result<Code, CodeError> {
        let cleaned: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        if cleaned.is_empty() {
            return Err(CodeError::Empty);
        }
        let Some(body) = cleaned.strip_prefix(PREFIX) else {
            return Err(CodeError::BadPrefix);
        };
        if let Some(c) = body
            .chars()
            .find(|c| !(c.is_ascii_uppercase() || ('2'..='7').contains(c)))
        {
            return Err(CodeError::BadCharacter(c));
        }
        // A cut inside a base32 group leaves an impossible length: call it truncation.
        let bytes = BASE32_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| CodeError::Truncated)?;
        if bytes.len() < 4 + 2 {
            return Err(CodeError::Truncated);
        }
        let (payload, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_be_bytes(crc.try_into().expect("invariant: 4 bytes"));
        if crc32fast::hash(payload) != crc {
            return Err(CodeError::Checksum);
        }
        let mut r = Reader { b: payload };
        let version = r.u8()?;
        if version != CODE_VERSION {
            return Err(CodeError::UnsupportedVersion(version));
        }
        let code = match r.u8()? {
            kind @ (KIND_INVITE | KIND_HOME_INVITE) => Code::Invite(Invite {
                person_id: r.arr()?,
                home: if kind == KIND_HOME_INVITE {
                    Some(r.arr()?)
                } else {
                    None
                },
                transport_key: r.arr()?,
                token: r.arr()?,
                expires_at: u64::from_be_bytes(r.arr()?),
                urls: r.urls()?,
            }),
            KIND_CARD => Code::Card(Card {
                name: r.string()?,
                person_key: r.arr()?,
                instance_id: r.arr()?,
                transport_key: r.arr()?,
                urls: r.urls()?,
            }),
            _ => return Err(CodeError::Malformed("unknown code kind")),
        };
        if !r.b.is_empty() {
            return Err(CodeError::Malformed("trailing bytes"));
        }
        Ok(code)
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Why no code could be read from an image.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The file could not be read or is not a PNG/JPEG image.
    #[error("cannot read the image {0}: use a PNG or JPEG screenshot of the code")]
    Unreadable(String),
    /// No QR code was found.
    #[error("no QR code found in the image: crop it to the code, or paste the text code instead")]
    NoQr,
    /// A QR code was found but holds no lama-tui code.
    #[error("the QR code does not hold a lama-tui code: {0}")]
    NotACode(CodeError),
}
