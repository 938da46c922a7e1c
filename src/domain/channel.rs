//! Channels: a channel's id, name, current members and creation time, one type for the
//! store, sync and the shells.

use serde::{Deserialize, Serialize};

use crate::domain::identity::Id;

/// A chat channel's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Channel id (for 1:1: both person ids, sorted, joined by `<->`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Member person ids.
    pub members: Vec<Id>,
    /// Unix seconds: when it was made (its create entry, or the pairing for a 1:1).
    pub created_at: u64,
}

/// Members of the 1:1 channel `a<->b`, if `ch` is one.
pub fn direct_members(ch: &str) -> Option<Vec<Id>> {
    let (a, b) = ch.split_once("<->")?;
    (a.len() == 64 && b.len() == 64).then(|| vec![a.to_string(), b.to_string()])
}
