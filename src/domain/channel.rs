//! Channel records: a channel's id, name and members as the store keeps them.

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
    /// Unix seconds.
    pub created_at: u64,
}

/// What a channel is, as far as sync is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Current member ids.
    pub members: Vec<Id>,
}

/// Members of the 1:1 channel `a<->b`, if `ch` is one.
pub fn direct_members(ch: &str) -> Option<Vec<Id>> {
    let (a, b) = ch.split_once("<->")?;
    (a.len() == 64 && b.len() == 64).then(|| vec![a.to_string(), b.to_string()])
}
