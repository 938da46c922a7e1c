//! CHUM sync, pure: signed per-author append-only logs per channel, the rules an entry must
//! pass, membership, access control, and the per-link sync session (state exchange, catch-up
//! in view order with a window of acknowledged batches, then live push).
//!
//! Storage is behind the [`Log`] trait: redb in production, a `BTreeMap` in the
//! deterministic simulations. Nothing here touches sockets, clocks or the disk directly.
//! Here: the messages, the sessions and local writes; `rules` judges entries, `receive`
//! handles what arrives, `fill` chooses what to send, `mem` is the in-memory log.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::identity::{Id, LocalIdentity};
use crate::domain::log::{Log, LogError};
use crate::domain::{sign_entry, Body, Entry, Hlc, ViewKey};

mod fill;
mod mem;
mod pending;
mod receive;
mod roster;
mod rules;

use fill::{Cursor, LogKey};
pub use mem::MemLog;
use pending::{Pending, Usage};
pub use roster::Roster;
use rules::channel_effect;
pub use rules::{check_entry, load_roster, verify_signatures, Check, CheckError, Invalid};

/// Most entries in one `entries` message.
pub const BATCH_MAX_ENTRIES: usize = 128;
/// Most encoded bytes of entries in one `entries` message (fits one Noise frame).
pub const BATCH_MAX_BYTES: usize = 48 * 1024;
/// Unacknowledged batches in flight per link.
pub const WINDOW: usize = 4;
/// Smallest batch verified with ed25519 batch verification.
pub const BATCH_VERIFY_MIN: usize = 8;
/// Entries read ahead per author log during catch-up.
pub const CURSOR_CHUNK: usize = 64;
/// Least entries read ahead per log: with many authors pending on one link the chunk shrinks
/// so that a link's read-ahead stays near `CURSOR_CHUNK` entries in all (a node relaying
/// 100 authors to 100 links would otherwise hold 100 x 100 x 64 entries).
pub const CURSOR_MIN_CHUNK: usize = 4;
/// Longest text body, in bytes.
pub const MAX_TEXT: usize = 16 * 1024;
/// Most members of a channel (and so most authors of its logs).
pub const MAX_MEMBERS: usize = 1024;
/// How far an entry's stamp may be ahead of the receiver's clock (as for discovery).
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Most entries held in memory per link for channels this instance cannot hold yet (the
/// history a member shares before the entry that adds us arrives).
pub const PENDING_MAX_ENTRIES: usize = 50_000;
/// Most encoded bytes held in memory per link for such channels.
pub const PENDING_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Most new group channels one author may make this instance store per quota window.
pub const QUOTA_CHANNELS: u32 = 1_000;
/// Most bytes of entries by one author this instance stores per quota window.
pub const QUOTA_BYTES: u64 = 1024 * 1024 * 1024;
/// The quota window.
pub const QUOTA_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// A peer's view of our channels: how far it has each author's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Have {
    /// Channel id → [(author, seq)].
    pub channels: BTreeMap<String, Vec<(Id, u64)>>,
}

/// A refused entry, reported to the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Entry id.
    pub entry: Id,
    /// Why.
    pub reason: Invalid,
}

/// Sync messages (carried inside `WireMsg::Sync`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SyncMsg {
    /// How far we have each log of the channels the receiver may see.
    Have(Have),
    /// A batch of entries, oldest first.
    Entries {
        /// Batch number (per link, from 1).
        batch: u64,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// The batch is stored durably (and what was refused in it).
    Ack {
        /// Batch number.
        batch: u64,
        /// Refused entries.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rejected: Vec<Rejection>,
    },
    /// The sender has sent everything the receiver lacked at the start.
    Done,
}

/// Who the peer of a session is, for access control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Person id.
    pub person_id: Id,
    /// The peer stores and forwards our channels (our home node).
    pub is_my_replica: bool,
    /// The persons whose home node the peer is, by their signed profiles: it may see
    /// what they may see.
    pub replica_of: BTreeSet<Id>,
}

/// Per-link sync state.
#[derive(Debug)]
pub struct Session {
    peer: PeerInfo,
    /// Highest seq the peer has, or that we queued to it, per (channel, author).
    sent: BTreeMap<(String, Id), u64>,
    /// Entries read ahead per pending log.
    cursors: BTreeMap<LogKey, Cursor>,
    /// The front of every non-empty cursor, lowest view key first.
    heap: BinaryHeap<Reverse<(ViewKey, LogKey)>>,
    /// Logs ahead of what the peer has whose cursor is not loaded.
    to_load: BTreeSet<LogKey>,
    /// Channels this instance may not hold yet, as received on this link.
    pending: Pending,
    started: bool,
    /// Unacknowledged batches: number, ids of our own entries in it, entry count.
    inflight: VecDeque<(u64, Vec<Id>, u64)>,
    next_batch: u64,
    done_sent: bool,
    their_done: bool,
}

/// What the engine asks the shell to do.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to send: (link id, message).
    pub send: Vec<(u64, SyncMsg)>,
    /// Messages to send only after [`Log::flush`] succeeded: acknowledgements, which
    /// promise durability. Relayed entries go out before, so a relay's own disk write is
    /// not on the path from author to reader.
    pub after_flush: Vec<(u64, SyncMsg)>,
    /// Entries newly stored, in arrival order (for `message` events).
    pub stored: Vec<Entry>,
    /// Peers whose catch-up towards us completed.
    pub synced: Vec<Id>,
    /// Refusals we sent (counted).
    pub rejected: Vec<Rejection>,
    /// Refusals the peer reported for our entries.
    pub peer_rejected: Vec<Rejection>,
    /// Our own entries a peer has acknowledged (stored durably).
    pub delivered: Vec<Id>,
    /// A read failed while choosing what to push after a write: the affected links catch
    /// up at their next link-up.
    pub fault: Option<LogError>,
}

/// Counters of the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries stored from peers.
    pub received: u64,
    /// Entries ignored as already stored.
    pub duplicates: u64,
    /// Entries refused.
    pub invalid: u64,
    /// Repeated `have`s on one link, ignored.
    pub repeated_haves: u64,
}

/// The sync engine of one instance: all sessions and the rules. Pure.
#[derive(Debug)]
pub struct Engine {
    me: Id,
    hlc: Hlc,
    sessions: BTreeMap<u64, Session>,
    /// Persons whose replica we are: we hold their channels.
    replicated: BTreeSet<Id>,
    /// The roster of each group channel checked so far, kept as membership entries arrive.
    rosters: BTreeMap<String, Arc<Roster>>,
    /// What each author made us store in the current quota window.
    usage: Usage,
    /// Counters.
    pub stats: Stats,
}

/// Errors of a local write.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No such channel.
    #[error("no channel `{0}` here; list them with `channels`")]
    NoChannel(String),
    /// We are not a member.
    #[error("this instance is not a member of channel `{0}`")]
    NotMember(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed (nothing was stored).
    #[error("could not store the message: {0}")]
    Log(#[from] LogError),
}

impl Engine {
    /// An engine for person `me`.
    pub fn new(me: Id) -> Self {
        Engine {
            me,
            hlc: Hlc::default(),
            sessions: BTreeMap::new(),
            replicated: BTreeSet::new(),
            rosters: BTreeMap::new(),
            usage: Usage::default(),
            stats: Stats::default(),
        }
    }

    /// Start the clock after the highest stamp stored, so a restart never writes entries
    /// that order before ones already written (or seen).
    pub fn restore_clock<L: Log + ?Sized>(&mut self, log: &L) -> Result<(), LogError> {
        if let Some(h) = log.latest_hlc()? {
            self.hlc.observe(h);
        }
        Ok(())
    }

    /// The roster of `ch` (cached for groups); `None` for a channel the log does not know.
    pub fn roster<L: Log + ?Sized>(
        &mut self,
        log: &L,
        ch: &str,
    ) -> Result<Option<Arc<Roster>>, LogError> {
        if let Some(r) = self.rosters.get(ch) {
            return Ok(Some(r.clone()));
        }
        let r = load_roster(log, ch)?.map(Arc::new);
        if let Some(r) = r
            .as_ref()
            .filter(|_| crate::domain::channel::direct_members(ch).is_none())
        {
            self.rosters.insert(ch.to_string(), r.clone());
        }
        Ok(r)
    }

    /// Declare the persons whose replica we are.
    pub fn set_replicated(&mut self, ids: impl IntoIterator<Item = Id>) {
        self.replicated = ids.into_iter().collect();
    }

    /// Whether we may store a channel with these members.
    pub fn may_hold(&self, members: &[Id]) -> bool {
        members
            .iter()
            .any(|m| *m == self.me || self.replicated.contains(m))
    }

    /// Whether `peer` may receive a channel with these members.
    fn may_see(&self, peer: &PeerInfo, members: &[Id]) -> bool {
        members.contains(&peer.person_id)
            || (peer.is_my_replica && members.contains(&self.me))
            || members.iter().any(|m| peer.replica_of.contains(m))
    }

    /// How many entries the peer `person_id` still lacks from us over its links (`None`
    /// when no sync session with it is running).
    pub fn behind<L: Log + ?Sized>(
        &self,
        log: &L,
        person_id: &str,
    ) -> Result<Option<u64>, LogError> {
        let Some(s) = self
            .sessions
            .values()
            .find(|s| s.peer.person_id == person_id && s.started)
        else {
            return Ok(None);
        };
        let mut n = 0u64;
        for c in log.channels()? {
            if !self.may_see(&s.peer, &c.members) {
                continue;
            }
            for (author, seq) in log.heads(&c.id)? {
                let sent = *s.sent.get(&(c.id.clone(), author)).unwrap_or(&0);
                n += seq.saturating_sub(sent);
            }
        }
        // Queued but not yet acknowledged counts as still missing on the peer's disk.
        Ok(Some(n + s.inflight.iter().map(|(_, _, c)| c).sum::<u64>()))
    }

    /// Ids of active links.
    pub fn links(&self) -> impl Iterator<Item = &u64> {
        self.sessions.keys()
    }

    fn have_for<L: Log + ?Sized>(&self, log: &L, peer: &PeerInfo) -> Result<Have, LogError> {
        let mut have = Have::default();
        for c in log.channels()? {
            if self.may_see(peer, &c.members) {
                have.channels.insert(c.id.clone(), log.heads(&c.id)?);
            }
        }
        Ok(have)
    }

    /// A link came up: remember it and state what we have.
    pub fn open<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        peer: PeerInfo,
    ) -> Result<Output, LogError> {
        let have = self.have_for(log, &peer)?;
        self.sessions.insert(
            link,
            Session {
                peer,
                sent: BTreeMap::new(),
                cursors: BTreeMap::new(),
                heap: BinaryHeap::new(),
                to_load: BTreeSet::new(),
                pending: Pending::default(),
                started: false,
                inflight: VecDeque::new(),
                next_batch: 1,
                done_sent: false,
                their_done: false,
            },
        );
        Ok(Output {
            send: vec![(link, SyncMsg::Have(have))],
            ..Output::default()
        })
    }

    /// A link went down. Unacknowledged batches are simply resent after the next `have`.
    pub fn close(&mut self, link: u64) {
        self.sessions.remove(&link);
    }

    /// Write a local entry to `channel`: stored and flushed, then pushed to entitled links.
    pub fn write<L: Log + ?Sized>(
        &mut self,
        log: &mut L,
        me: &LocalIdentity,
        channel: &str,
        body: Body,
        now_ms: u64,
    ) -> Result<(Entry, Output), WriteError> {
        let roster = self.roster(&*log, channel)?.filter(|r| r.exists());
        let members = match (&body, &roster) {
            (Body::Create { members, .. }, None) => members.clone(),
            (Body::Create { .. }, Some(_)) => {
                return Err(WriteError::Invalid(format!("channel `{channel}` exists")))
            }
            (_, Some(r)) => r.current().to_vec(),
            (_, None) => return Err(WriteError::NoChannel(channel.into())),
        };
        if !members.contains(&self.me) {
            return Err(WriteError::NotMember(channel.into()));
        }
        if let Body::Text { text } = &body {
            if text.len() > MAX_TEXT {
                return Err(WriteError::Invalid(format!(
                    "the message is {} bytes; the limit is {MAX_TEXT}",
                    text.len()
                )));
            }
        }
        let body = match (body, &roster) {
            (Body::Members { add, remove, .. }, Some(r)) => {
                let mut heads = BTreeMap::new();
                for p in add.iter().chain(&remove) {
                    let stored = log.head(channel, p)?.map(|h| h.0).unwrap_or(0);
                    heads.insert(p.clone(), r.head_to_record(p, stored));
                }
                Body::Members { add, remove, heads }
            }
            (body, _) => body,
        };
        let head = log.head(channel, &self.me)?;
        let seq = head.as_ref().map(|h| h.0).unwrap_or(0) + 1;
        let e = sign_entry(
            me,
            channel,
            seq,
            head.map(|h| h.1),
            self.hlc.tick(now_ms),
            body,
        );
        let mut after = roster.map(|r| (*r).clone()).unwrap_or_default();
        after.apply(&e);
        let ch = channel_effect(&*log, &e, &after)?;
        if seq == 1 {
            log.put_person(&me.person)?;
        }
        if let Err(err) = log.insert(&e, ch.as_ref()).and_then(|()| log.flush()) {
            self.rosters.remove(channel);
            return Err(err.into());
        }
        if !matches!(e.body, Body::Text { .. }) {
            self.rosters.insert(channel.to_string(), Arc::new(after));
        }
        let mut out = Output::default();
        let links: Vec<u64> = self.sessions.keys().copied().collect();
        let touched: BTreeSet<String> = [channel.to_string()].into();
        for l in links {
            // The entry is durable: a store that cannot be read now only delays its push
            // until the next link-up, so the write still succeeds and the fault is reported.
            if let Err(e) = self.fill_some(log, l, &mut out, Some(&touched)) {
                out.fault = Some(e);
            }
        }
        Ok((e, out))
    }
}
