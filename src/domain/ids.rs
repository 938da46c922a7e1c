//! Ids as types: a `PersonId` and an `InstanceId` are 64 lowercase hex characters (the
//! SHA-256 of the object's canonical encoding); a `ChannelId` is `g-` + 32 hex (a group) or
//! two sorted person ids joined by `<->` (a 1:1). Each validates when parsed (from a
//! command, a code or JSON), so an id that is not one is refused at the edge, with its
//! cause, instead of deep inside a lookup. On the wire and on disk they are the same
//! strings as before.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// Longest channel id, in bytes.
pub const MAX_CHANNEL_ID: usize = 200;

/// Why a text is not an id of the kind asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {kind}: {why}")]
pub struct IdError {
    /// What was expected (`person id`, `instance id`, `channel id`).
    pub kind: &'static str,
    /// The text, cut to 80 characters.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

fn id_error(kind: &'static str, text: &str, why: &'static str) -> IdError {
    IdError {
        kind,
        text: text.chars().take(80).collect(),
        why,
    }
}

fn check_hex64(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.len() != 64 {
        return Err(id_error(kind, s, "it must be 64 hex characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(id_error(kind, s, "it must be lowercase hex (0-9, a-f)"));
    }
    Ok(())
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why `s` is not a channel id, or `None` when it is one. The grammar is strict so that no
/// two ids can be confused anywhere (in a store key, a prefix scan, a member list):
/// `g-` + 32 lowercase hex for a group; `A<->B` for a 1:1, where A and B are person ids
/// (64 lowercase hex) and A < B.
pub fn channel_id_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("it is empty");
    }
    if s.len() > MAX_CHANNEL_ID {
        return Some("it is longer than 200 bytes");
    }
    if s.chars().any(char::is_control) {
        return Some("it holds a control character");
    }
    if let Some(hex) = s.strip_prefix("g-") {
        return (hex.len() != 32 || !is_hex(hex))
            .then_some("a group id is `g-` and 32 lowercase hex characters");
    }
    match s.split_once("<->") {
        Some((a, b)) if a.len() == 64 && b.len() == 64 && is_hex(a) && is_hex(b) => {
            (a >= b).then_some("the two person ids of a 1:1 id must be sorted and different")
        }
        Some(_) => Some("a 1:1 id is two person ids (64 lowercase hex) joined by `<->`"),
        None => Some("it must be `g-` and 32 hex (a group) or `A<->B` (a 1:1)"),
    }
}

fn check_channel(kind: &'static str, s: &str) -> Result<(), IdError> {
    match channel_id_problem(s) {
        Some(why) => Err(id_error(kind, s, why)),
        None => Ok(()),
    }
}

/// Declares a string id newtype validated by `$check`.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parse and validate.
            pub fn parse(s: &str) -> Result<$name, IdError> {
                $check($kind, s)?;
                Ok($name(s.to_string()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<$name, IdError> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<$name, IdError> {
                $check($kind, &s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A Person's id: SHA-256 of its canonical encoding, 64 lowercase hex characters.
    PersonId,
    "person id",
    check_hex64
);
id_type!(
    /// An Instance's id: SHA-256 of its canonical encoding, 64 lowercase hex characters.
    InstanceId,
    "instance id",
    check_hex64
);
id_type!(
    /// A channel's id: `g-` and 32 hex characters for a group, the two person ids sorted
    /// and joined by `<->` for a 1:1 ([`channel_id_problem`] says why a text is not one).
    ChannelId,
    "channel id",
    check_channel
);

impl PersonId {
    /// The id of a digest already known to be one (our own hashing).
    pub(crate) fn from_digest(hex: String) -> PersonId {
        debug_assert!(check_hex64("person id", &hex).is_ok());
        PersonId(hex)
    }
}

impl InstanceId {
    /// The id of a digest already known to be one (our own hashing).
    pub(crate) fn from_digest(hex: String) -> InstanceId {
        debug_assert!(check_hex64("instance id", &hex).is_ok());
        InstanceId(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate_when_parsed_and_serialise_as_their_text() {
        let hex = "ab".repeat(32);
        let p = PersonId::parse(&hex).expect("64 hex");
        assert_eq!(p, hex);
        assert_eq!(
            serde_json::to_string(&p).expect("json"),
            format!("\"{hex}\"")
        );
        let back: PersonId = serde_json::from_str(&format!("\"{hex}\"")).expect("json");
        assert_eq!(back, p);
        for bad in [
            "",
            "ab",
            &"AB".repeat(32),
            &"zz".repeat(32),
            &"ab".repeat(33),
        ] {
            assert!(PersonId::parse(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<PersonId>(&format!("\"{bad}\"")).is_err());
        }
        let group = format!("g-{}", "0f".repeat(16));
        assert!(ChannelId::parse(&group).is_ok());
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        assert!(ChannelId::parse(&format!("{a}<->{b}")).is_ok());
        for bad in [
            "",
            "G\u{0}x",
            &format!("{group}\u{0}x"),
            "g-team",
            &format!("g-{}", "0F".repeat(16)),
            &format!("{b}<->{a}"),
            &format!("{a}<->{a}"),
            &format!("{a}<->x"),
            &"x".repeat(201),
        ] {
            let e = ChannelId::parse(bad).expect_err(bad);
            assert_eq!(e.kind, "channel id");
        }
        let e = InstanceId::parse("nope").expect_err("short");
        assert!(e.to_string().contains("64 hex"), "{e}");
    }
}
