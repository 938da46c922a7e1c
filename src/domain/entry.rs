//! Channel entries: the signed unit of every log, its body, its hybrid logical clock and
//! its canonical encoding (what is hashed for the id and signed by the author).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::identity::{Id, LocalIdentity, Person};

/// Domain separator for entry signatures.
pub const ENTRY_CONTEXT: &[u8] = b"lama-tui/1 entry\0";

/// A hybrid logical clock timestamp: wall milliseconds and a counter.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds (wall clock, or the largest seen).
    pub ms: u64,
    /// Counter within the same millisecond.
    pub c: u32,
}

impl Hlc {
    /// The next timestamp for a local event at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.ms {
            self.ms = now_ms;
            self.c = 0;
        } else if self.c == u32::MAX {
            // The counter never saturates (every later stamp would tie): the next
            // millisecond starts. Received stamps are bounded by the skew rule, so this
            // runs ahead of the wall clock by at most that.
            self.ms = self.ms.saturating_add(1);
            self.c = 0;
        } else {
            self.c += 1;
        }
        *self
    }

    /// Merge a received timestamp, so later local events order after it.
    pub fn observe(&mut self, other: Hlc) {
        if other > *self {
            *self = other;
        }
    }
}

/// What an entry says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A chat message.
    Text {
        /// The text.
        text: String,
    },
    /// Creates a group channel (first entry of the creator's log).
    Create {
        /// Display name.
        name: String,
        /// Member Person ids, creator included.
        members: Vec<Id>,
    },
    /// Changes the member list of a group channel.
    Members {
        /// Ids added.
        #[serde(default)]
        add: Vec<Id>,
        /// Ids removed.
        #[serde(default)]
        remove: Vec<Id>,
        /// For every id added or removed, its log head in the channel as the writer saw it:
        /// a removal refuses that person's later seqs whatever their timestamps, an add
        /// admits them again. Absent in entries written before version 0.3 (then the change
        /// applies by view position).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        heads: BTreeMap<Id, u64>,
    },
}

/// One signed log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Channel id.
    pub channel: String,
    /// Author Person id.
    pub author: Id,
    /// 1-based position in the author's log for this channel.
    pub seq: u64,
    /// Id of the author's previous entry in this channel (`None` for seq 1).
    pub prev: Option<Id>,
    /// HLC timestamp.
    pub hlc: Hlc,
    /// Content.
    pub body: Body,
    /// The author's Person object, on seq 1 only: makes every log self-certifying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
    /// Author's ed25519 signature over context + canonical JSON with `sig` empty, hex.
    pub sig: String,
}

/// The order of a channel's view: HLC, then author, then sequence.
pub type ViewKey = (Hlc, Id, u64);

impl Entry {
    /// The canonical encoding (JSON, fields in declaration order).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: entries serialise")
    }

    /// The entry id: SHA-256 of the canonical encoding (signature included). The encoding
    /// streams into the hash: computed for every entry received, a buffer of its own
    /// (grown, copied, freed) cost more than the hashing.
    pub fn id(&self) -> Id {
        crate::domain::hex::encode(self.id_bytes())
    }

    /// The entry id as its 32 raw bytes.
    pub fn id_bytes(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        serde_json::to_writer(&mut h, self).expect("invariant: entries serialise");
        h.finalize().into()
    }

    /// What the author signs: the context, then the canonical encoding with `sig` empty.
    pub fn signed_bytes(&self) -> Vec<u8> {
        // Computed for every entry received. `sig` is the last field of the encoding, so
        // the encoding of the entry as it is, cut back to `"sig":` and closed with `""}`,
        // is the encoding with `sig` empty, without a copy of the whole entry to empty it.
        let mut m = Vec::with_capacity(ENTRY_CONTEXT.len() + 256);
        m.extend_from_slice(ENTRY_CONTEXT);
        serde_json::to_writer(&mut m, self).expect("invariant: entries serialise");
        let sig_len = serde_json::to_string(&self.sig)
            .expect("invariant: strings serialise")
            .len();
        m.truncate(m.len() - 1 - sig_len);
        debug_assert!(m.ends_with(b"\"sig\":"), "sig is the last field");
        m.extend_from_slice(b"\"\"}");
        m
    }

    /// The view order key.
    pub fn view_key(&self) -> ViewKey {
        (self.hlc, self.author.clone(), self.seq)
    }

    /// Encoded size, for batching.
    pub fn encoded_len(&self) -> usize {
        self.canonical().len()
    }

    /// The text, for text entries.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Text { text } => Some(text),
            _ => None,
        }
    }
}

/// Sign a new entry for `me`.
pub fn sign_entry(
    me: &LocalIdentity,
    channel: &str,
    seq: u64,
    prev: Option<Id>,
    hlc: Hlc,
    body: Body,
) -> Entry {
    let mut e = Entry {
        channel: channel.into(),
        author: me.person_id().to_string(),
        seq,
        prev,
        hlc,
        body,
        person: (seq == 1).then(|| me.person.clone()),
        sig: String::new(),
    };
    e.sig = crate::domain::hex::encode(me.sign_as_person(&e.signed_bytes()).to_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding with `sig` emptied, the plain way.
    fn signed_by_copy(e: &Entry) -> Vec<u8> {
        let mut u = e.clone();
        u.sig.clear();
        let mut m = ENTRY_CONTEXT.to_vec();
        m.extend(u.canonical());
        m
    }

    #[test]
    fn signed_bytes_are_the_encoding_with_sig_empty_whatever_the_sig_holds() {
        let mut e = Entry {
            channel: "g-01".into(),
            author: "ab".repeat(32),
            seq: 2,
            prev: Some("cd".repeat(32)),
            hlc: Hlc { ms: 5, c: 1 },
            body: Body::Text {
                text: "a \"sig\": \\ ✓".into(),
            },
            person: None,
            sig: "ef".repeat(64),
        };
        for sig in ["ef".repeat(64), String::new(), "\"}\\\u{1}é".into()] {
            e.sig = sig;
            assert_eq!(e.signed_bytes(), signed_by_copy(&e), "{:?}", e.sig);
        }
    }
}
