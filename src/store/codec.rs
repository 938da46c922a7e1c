//! How the store lays out entries on disk (specified in docs/PROTOCOL.md, "Store layout").
//!
//! Channels and authors are interned as u32 numbers (tables `chan_ids`, `author_ids` and
//! `author_keys`), so a key is a few fixed-width integers instead of a 130-character
//! channel id and a 64-character author id:
//! - `entries`: `chan_be4 author_be4 seq_be8` → entry value
//! - `heads`:   `chan_be4 author_be4` → `seq_be8 id32`
//! - `view`, `members`: `chan_be4 ms_be8 c_be4 author_id32 seq_be8` → the entries key
//!
//! An entry value is either compact (tag 1: a text entry that has a previous entry and
//! no Person attached, with ids as raw bytes) or the entry's canonical JSON (tag 0: every
//! other entry, rare: the first of each log, group creation and membership changes). The
//! channel, author and seq come from the key. Decoding gives back exactly the entry that
//! was encoded, so its id and signature check are unchanged.

use crate::domain::entry::{Body, Entry, Hlc};
use crate::domain::hex::{decode_lower, encode as hex};

/// Tag of a JSON entry value.
const TAG_JSON: u8 = 0;
/// Tag of a compact text entry value.
const TAG_TEXT: u8 = 1;
/// Bytes before the text in a compact value: tag, prev, hlc ms, hlc c, signature.
const TEXT_HEAD: usize = 1 + 32 + 8 + 4 + 64;

/// Key of one entry.
pub fn entry_key(chan: u32, author: u32, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&chan.to_be_bytes());
    k[4..8].copy_from_slice(&author.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Key of an author's head in a channel.
pub fn head_key(chan: u32, author: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&chan.to_be_bytes());
    k[4..].copy_from_slice(&author.to_be_bytes());
    k
}

/// Key of an entry's place in its channel's view (and membership index): the view order
/// of §12.1, which is by author *id* (not by this store's author numbers, which differ
/// from one instance to another), so every instance lists a channel the same way.
pub fn view_key(chan: u32, hlc: Hlc, author: &str, seq: u64) -> [u8; 56] {
    let mut k = [0u8; 56];
    k[..4].copy_from_slice(&chan.to_be_bytes());
    k[4..12].copy_from_slice(&hlc.ms.to_be_bytes());
    k[12..16].copy_from_slice(&hlc.c.to_be_bytes());
    k[16..48].copy_from_slice(&author_order(author));
    k[48..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// An author id as 32 bytes that sort as the id does: its raw bytes (lowercase hex sorts as
/// its bytes). Ids are checked on arrival; anything else gets its SHA-256, so it still has
/// a key of its own.
fn author_order(author: &str) -> [u8; 32] {
    id_bytes(author).unwrap_or_else(|| {
        use sha2::Digest;
        sha2::Sha256::digest(author.as_bytes()).into()
    })
}

/// The (author number, seq) of an entries key.
pub fn split_entry_key(k: &[u8]) -> Option<(u32, u64)> {
    let k: &[u8; 16] = k.try_into().ok()?;
    let author = u32::from_be_bytes(k[4..8].try_into().ok()?);
    let seq = u64::from_be_bytes(k[8..].try_into().ok()?);
    Some((author, seq))
}

/// The author number of a heads key.
pub fn author_of_head_key(k: &[u8]) -> Option<u32> {
    let k: &[u8; 8] = k.try_into().ok()?;
    Some(u32::from_be_bytes(k[4..].try_into().ok()?))
}

/// 32 raw bytes of a lowercase hex id of 64 digits; `None` for anything else.
pub fn id_bytes(hex: &str) -> Option<[u8; 32]> {
    decode_lower(hex)
}

/// The stored value of `e` (its channel, author and seq live in the key).
pub fn encode(e: &Entry) -> Vec<u8> {
    if let (Body::Text { text }, None, Some(prev)) = (&e.body, &e.person, &e.prev) {
        if let (Some(prev), Some(sig)) = (id_bytes(prev), decode_lower::<64>(&e.sig)) {
            let mut v = Vec::with_capacity(TEXT_HEAD + text.len());
            v.push(TAG_TEXT);
            v.extend_from_slice(&prev);
            v.extend_from_slice(&e.hlc.ms.to_be_bytes());
            v.extend_from_slice(&e.hlc.c.to_be_bytes());
            v.extend_from_slice(&sig);
            v.extend_from_slice(text.as_bytes());
            return v;
        }
    }
    let mut v = vec![TAG_JSON];
    v.extend(e.canonical());
    v
}

/// The entry stored as `v` under the key of (`channel`, `author`, `seq`).
pub fn decode(channel: &str, author: &str, seq: u64, v: &[u8]) -> Result<Entry, String> {
    match v.first() {
        Some(&TAG_JSON) => {
            let e: Entry = serde_json::from_slice(&v[1..]).map_err(|e| e.to_string())?;
            if e.channel != channel || e.author != author || e.seq != seq {
                return Err("an entry is stored under another entry's key".into());
            }
            Ok(e)
        }
        Some(&TAG_TEXT) if v.len() >= TEXT_HEAD => {
            let text = std::str::from_utf8(&v[TEXT_HEAD..])
                .map_err(|_| "a stored text is not UTF-8".to_string())?;
            let ms = u64::from_be_bytes(v[33..41].try_into().map_err(|_| "short value")?);
            let c = u32::from_be_bytes(v[41..45].try_into().map_err(|_| "short value")?);
            Ok(Entry {
                channel: channel.to_string(),
                author: author.to_string(),
                seq,
                prev: Some(hex(&v[1..33])),
                hlc: Hlc { ms, c },
                body: Body::Text {
                    text: text.to_string(),
                },
                person: None,
                sig: hex(&v[45..TEXT_HEAD]),
            })
        }
        _ => Err("an entry value has an unknown form".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_entry(prev: Option<&str>, sig: &str) -> Entry {
        Entry {
            channel: "g-0123".into(),
            author: "ab".repeat(32),
            seq: 7,
            prev: prev.map(str::to_string),
            hlc: Hlc {
                ms: 1_700_000_000_123,
                c: 4,
            },
            body: Body::Text {
                text: "héllo ✓".into(),
            },
            person: None,
            sig: sig.into(),
        }
    }

    #[test]
    fn entries_round_trip_exactly_in_either_form() {
        let compact = text_entry(Some(&"cd".repeat(32)), &"ef".repeat(64));
        let v = encode(&compact);
        assert_eq!(v[0], TAG_TEXT);
        assert_eq!(v.len(), TEXT_HEAD + "héllo ✓".len());
        assert_eq!(decode("g-0123", &"ab".repeat(32), 7, &v).unwrap(), compact);
        // Not lowercase hex, or no prev: kept as JSON, and still exact.
        for odd in [
            text_entry(Some(&"CD".repeat(32)), &"ef".repeat(64)),
            text_entry(None, &"ef".repeat(64)),
            text_entry(Some(&"cd".repeat(32)), "short"),
        ] {
            let v = encode(&odd);
            assert_eq!(v[0], TAG_JSON);
            assert_eq!(decode("g-0123", &"ab".repeat(32), 7, &v).unwrap(), odd);
        }
        assert!(decode(
            "g-other",
            &"ab".repeat(32),
            7,
            &encode(&text_entry(None, "x"))
        )
        .is_err());
        assert!(decode("g-0123", &"ab".repeat(32), 7, &[9, 1, 2]).is_err());
        assert!(decode("g-0123", &"ab".repeat(32), 7, &[TAG_TEXT, 1, 2]).is_err());
    }

    #[test]
    fn keys_sort_as_the_view_and_logs_need() {
        let (lo, hi) = ("01".repeat(32), "fe".repeat(32));
        let a = view_key(1, Hlc { ms: 5, c: 0 }, &hi, 1);
        let b = view_key(1, Hlc { ms: 5, c: 1 }, &lo, 1);
        let c = view_key(2, Hlc { ms: 0, c: 0 }, &lo, 0);
        assert!(a < b && b < c);
        // The same stamp: by author id, whatever number this store gave each author.
        let t = Hlc { ms: 9, c: 0 };
        assert!(view_key(1, t, &lo, 7) < view_key(1, t, &hi, 1));
        assert_eq!(split_entry_key(&entry_key(3, 4, 5)), Some((4, 5)));
        assert!(entry_key(1, 1, 2) < entry_key(1, 1, 10));
        assert_eq!(hex(id_bytes(&"0f".repeat(32)).unwrap()), "0f".repeat(32));
    }
}
