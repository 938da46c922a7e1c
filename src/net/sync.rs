//! CHUM sync, pure: signed per-author append-only logs per channel, the rules an entry must
//! pass, membership, access control, and the per-link sync session (state exchange, catch-up
//! in view order with a window of acknowledged batches, then live push).
//!
//! Storage is behind the [`Log`] trait: sled in production, a `BTreeMap` in the
//! deterministic simulations. Nothing here touches sockets, clocks or the disk directly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::domain::channel::direct_members;
use crate::domain::identity::{verify_hex_sig, Id, LocalIdentity, Person};
use crate::domain::log::{Log, LogError};
use crate::domain::{sign_entry, Body, ChannelInfo, Entry, Hlc, ViewKey};

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
/// Most members of a channel.
pub const MAX_MEMBERS: usize = 1024;

/// Why an entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Invalid {
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A sequence number was skipped.
    #[error("gap in the author's log")]
    Gap,
    /// Another entry already holds this position, or `prev` does not link.
    #[error("fork: conflicts with the author's log")]
    Fork,
    /// The author is not a member of the channel.
    #[error("author is not a member of the channel")]
    NotMember,
    /// The author's key is unknown (its first entry never arrived).
    #[error("unknown author")]
    UnknownAuthor,
    /// We may not hold this channel.
    #[error("channel not shared with this instance")]
    NotShared,
    /// Fields out of bounds.
    #[error("malformed entry")]
    Malformed,
}

/// Members of a group channel just before view position `at`: the create entry's list,
/// changed by every members entry that precedes `at` in view order.
pub fn members_at<L: Log + ?Sized>(log: &L, ch: &str, at: &ViewKey) -> Option<Vec<Id>> {
    if let Some(m) = direct_members(ch) {
        return Some(m);
    }
    let mut set: Option<BTreeSet<Id>> = None;
    for e in log.membership(ch) {
        if e.view_key() >= *at {
            break;
        }
        match &e.body {
            Body::Create { members, .. } => set = Some(members.iter().cloned().collect()),
            Body::Members { add, remove } => {
                if let Some(s) = set.as_mut() {
                    s.extend(add.iter().cloned());
                    for r in remove {
                        s.remove(r);
                    }
                }
            }
            Body::Text { .. } => {}
        }
    }
    // A channel known only by its record (no create entry stored): its recorded members.
    set.map(|s| s.into_iter().collect())
        .or_else(|| log.channel(ch).map(|c| c.members))
}

/// Current members of a channel.
pub fn members_of<L: Log + ?Sized>(log: &L, ch: &str) -> Option<Vec<Id>> {
    direct_members(ch).or_else(|| log.channel(ch).map(|c| c.members))
}

/// What storing an entry changes about its channel.
fn channel_effect<L: Log + ?Sized>(log: &L, e: &Entry) -> Option<ChannelInfo> {
    match &e.body {
        Body::Create { name, members } => Some(ChannelInfo {
            id: e.channel.clone(),
            name: name.clone(),
            members: sorted_unique(members.iter().cloned()),
        }),
        Body::Members { add, remove } => {
            let mut c = log.channel(&e.channel)?;
            let mut set: BTreeSet<Id> = c.members.into_iter().collect();
            set.extend(add.iter().cloned());
            for r in remove {
                set.remove(r);
            }
            c.members = set.into_iter().collect();
            Some(c)
        }
        Body::Text { .. } => None,
    }
}

fn sorted_unique(it: impl Iterator<Item = Id>) -> Vec<Id> {
    it.collect::<BTreeSet<_>>().into_iter().collect()
}

/// The outcome of checking a received entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// New and valid: store it.
    New,
    /// Already stored (a resend or a replay): ignore.
    Duplicate,
}

/// Check a received entry against the log. `may_hold`: whether this instance may store
/// the channel given its member list.
pub fn check_entry<L: Log + ?Sized>(
    log: &L,
    e: &Entry,
    may_hold: impl Fn(&[Id]) -> bool,
) -> Result<Check, Invalid> {
    check_entry_pre(log, e, may_hold, false)
}

/// [`check_entry`], with the signature already verified when `sig_checked` (a batch
/// verification passed for this entry with the key this function would use).
pub fn check_entry_pre<L: Log + ?Sized>(
    log: &L,
    e: &Entry,
    may_hold: impl Fn(&[Id]) -> bool,
    sig_checked: bool,
) -> Result<Check, Invalid> {
    if e.seq == 0 || e.channel.is_empty() || e.channel.len() > 200 || e.author.len() != 64 {
        return Err(Invalid::Malformed);
    }
    if let Body::Text { text } = &e.body {
        if text.len() > MAX_TEXT {
            return Err(Invalid::Malformed);
        }
    }
    // Key: from the self-certifying first entry, or learned before.
    match (&e.person, e.seq) {
        (Some(p), 1) if p.id() == e.author => {}
        (Some(_), _) | (None, 1) => return Err(Invalid::Malformed),
        (None, _) => {}
    }
    if !sig_checked {
        let person = match &e.person {
            Some(p) => p.clone(),
            None => log.person(&e.author).ok_or(Invalid::UnknownAuthor)?,
        };
        let key = person.verifying_key().map_err(|_| Invalid::BadSignature)?;
        verify_hex_sig(&key, &e.signed_bytes(), &e.sig, "entry")
            .map_err(|_| Invalid::BadSignature)?;
    }
    // Position in the author's log.
    let head = log.head(&e.channel, &e.author);
    let head_seq = head.as_ref().map(|h| h.0).unwrap_or(0);
    if e.seq <= head_seq {
        let stored = log.get(&e.channel, &e.author, e.seq);
        return match stored {
            Some(s) if s.id() == e.id() => Ok(Check::Duplicate),
            _ => Err(Invalid::Fork),
        };
    }
    if e.seq > head_seq + 1 {
        return Err(Invalid::Gap);
    }
    if e.prev != head.map(|h| h.1) {
        return Err(Invalid::Fork);
    }
    // Membership at this point of the view (not "now"), so every instance judges an entry
    // the same way whatever order the entries arrived in.
    let members = match (&e.body, members_of(log, &e.channel)) {
        (Body::Create { members, .. }, None) => {
            if members.len() > MAX_MEMBERS || direct_members(&e.channel).is_some() {
                return Err(Invalid::Malformed);
            }
            members.clone()
        }
        (Body::Create { .. }, Some(_)) => return Err(Invalid::Fork),
        (_, Some(_)) => members_at(log, &e.channel, &e.view_key()).ok_or(Invalid::NotMember)?,
        (_, None) => return Err(Invalid::NotMember),
    };
    if let Body::Members { add, .. } = &e.body {
        if members.len() + add.len() > MAX_MEMBERS || direct_members(&e.channel).is_some() {
            return Err(Invalid::Malformed);
        }
    }
    if !members.contains(&e.author) {
        return Err(Invalid::NotMember);
    }
    if !may_hold(&members) {
        return Err(Invalid::NotShared);
    }
    Ok(Check::New)
}

/// Verify the signatures of a batch at once (ed25519 batch verification, about twice as
/// fast); if the batch fails, each entry is verified alone to find the bad ones. An entry
/// whose key cannot be resolved here gets `false` and is judged by [`check_entry`].
pub fn verify_signatures<L: Log + ?Sized>(log: &L, entries: &[Entry]) -> Vec<bool> {
    let mut keys: BTreeMap<Id, Option<ed25519_dalek::VerifyingKey>> = BTreeMap::new();
    let mut idx = Vec::new();
    let mut msgs = Vec::new();
    let mut sigs = Vec::new();
    let mut vks = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let key = match (&e.person, e.seq) {
            (Some(p), 1) if p.id() == e.author => {
                let k = p.verifying_key().ok();
                keys.insert(e.author.clone(), k);
                k
            }
            (None, s) if s > 1 => *keys
                .entry(e.author.clone())
                .or_insert_with(|| log.person(&e.author).and_then(|p| p.verifying_key().ok())),
            _ => None,
        };
        let sig = crate::domain::identity::parse_hex::<64>(&e.sig, "sig")
            .ok()
            .map(|b| ed25519_dalek::Signature::from_bytes(&b));
        if let (Some(k), Some(sig)) = (key, sig) {
            idx.push(i);
            msgs.push(e.signed_bytes());
            sigs.push(sig);
            vks.push(k);
        }
    }
    let mut ok = vec![false; entries.len()];
    if idx.is_empty() {
        return ok;
    }
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    // Batch verification pays a fixed transcript cost: below a few entries (live pushes)
    // single verification is faster.
    if idx.len() >= BATCH_VERIFY_MIN && ed25519_dalek::verify_batch(&refs, &sigs, &vks).is_ok() {
        for i in idx {
            ok[i] = true;
        }
    } else {
        use ed25519_dalek::Verifier;
        for (n, i) in idx.into_iter().enumerate() {
            ok[i] = vks[n].verify(refs[n], &sigs[n]).is_ok();
        }
    }
    ok
}

/// A read view of a log plus the entries accepted earlier in the same batch.
struct Overlay<'a, L: Log + ?Sized> {
    base: &'a L,
    heads: BTreeMap<(String, Id), (u64, Id)>,
    entries: BTreeMap<(String, Id, u64), Entry>,
    persons: BTreeMap<Id, Person>,
    channels: BTreeMap<String, ChannelInfo>,
    membership: BTreeMap<String, Vec<Entry>>,
}

impl<'a, L: Log + ?Sized> Overlay<'a, L> {
    fn new(base: &'a L) -> Self {
        Overlay {
            base,
            heads: BTreeMap::new(),
            entries: BTreeMap::new(),
            persons: BTreeMap::new(),
            channels: BTreeMap::new(),
            membership: BTreeMap::new(),
        }
    }

    fn add(&mut self, e: &Entry, ch: Option<ChannelInfo>) {
        self.heads
            .insert((e.channel.clone(), e.author.clone()), (e.seq, e.id()));
        if let Some(p) = &e.person {
            self.persons.insert(p.id(), p.clone());
        }
        if let Some(c) = ch {
            self.channels.insert(c.id.clone(), c);
        }
        if !matches!(e.body, Body::Text { .. }) {
            self.membership
                .entry(e.channel.clone())
                .or_default()
                .push(e.clone());
        }
        self.entries
            .insert((e.channel.clone(), e.author.clone(), e.seq), e.clone());
    }
}

impl<L: Log + ?Sized> Log for Overlay<'_, L> {
    fn head(&self, ch: &str, author: &str) -> Option<(u64, Id)> {
        self.heads
            .get(&(ch.to_string(), author.to_string()))
            .cloned()
            .or_else(|| self.base.head(ch, author))
    }
    fn heads(&self, ch: &str) -> Vec<(Id, u64)> {
        let mut m: BTreeMap<Id, u64> = self.base.heads(ch).into_iter().collect();
        for ((c, a), (seq, _)) in &self.heads {
            if c == ch {
                m.insert(a.clone(), *seq);
            }
        }
        m.into_iter().collect()
    }
    fn channels(&self) -> Vec<ChannelInfo> {
        let mut v = self.base.channels();
        for c in self.channels.values() {
            match v.iter_mut().find(|x| x.id == c.id) {
                Some(x) => *x = c.clone(),
                None => v.push(c.clone()),
            }
        }
        v
    }
    fn channel(&self, ch: &str) -> Option<ChannelInfo> {
        self.channels
            .get(ch)
            .cloned()
            .or_else(|| self.base.channel(ch))
    }
    fn range(&self, ch: &str, author: &str, from_seq: u64, limit: usize) -> Vec<Entry> {
        self.base.range(ch, author, from_seq, limit)
    }
    fn get(&self, ch: &str, author: &str, seq: u64) -> Option<Entry> {
        self.entries
            .get(&(ch.to_string(), author.to_string(), seq))
            .cloned()
            .or_else(|| self.base.get(ch, author, seq))
    }
    fn person(&self, id: &str) -> Option<Person> {
        self.persons
            .get(id)
            .cloned()
            .or_else(|| self.base.person(id))
    }
    fn membership(&self, ch: &str) -> Vec<Entry> {
        let mut v = self.base.membership(ch);
        if let Some(more) = self.membership.get(ch) {
            v.extend(more.iter().cloned());
            v.sort_by_key(Entry::view_key);
        }
        v
    }
    fn insert(&mut self, _: &Entry, _: Option<&ChannelInfo>) -> Result<(), LogError> {
        Err(LogError::new("an overlay is read-only"))
    }
    fn put_person(&mut self, _: &Person) -> Result<(), LogError> {
        Err(LogError::new("an overlay is read-only"))
    }
    fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}

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
}

/// Per-link sync state.
#[derive(Debug)]
pub struct Session {
    peer: PeerInfo,
    /// Highest seq the peer has, or that we queued to it, per (channel, author).
    sent: BTreeMap<(String, Id), u64>,
    /// Entries read ahead per (channel, author), and the last seq loaded.
    cursors: BTreeMap<(String, Id), (VecDeque<Entry>, u64)>,
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
}

/// The sync engine of one instance: all sessions and the rules. Pure.
#[derive(Debug)]
pub struct Engine {
    me: Id,
    hlc: Hlc,
    sessions: BTreeMap<u64, Session>,
    /// Persons whose replica we are: we hold their channels.
    replicated: BTreeSet<Id>,
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
            stats: Stats::default(),
        }
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
        members.contains(&peer.person_id) || (peer.is_my_replica && members.contains(&self.me))
    }

    /// How many entries the peer `person_id` still lacks from us over its links (`None`
    /// when no sync session with it is running).
    pub fn behind<L: Log + ?Sized>(&self, log: &L, person_id: &str) -> Option<u64> {
        let s = self
            .sessions
            .values()
            .find(|s| s.peer.person_id == person_id && s.started)?;
        let mut n = 0u64;
        for c in log.channels() {
            if !self.may_see(&s.peer, &c.members) {
                continue;
            }
            for (author, seq) in log.heads(&c.id) {
                let sent = *s.sent.get(&(c.id.clone(), author)).unwrap_or(&0);
                n += seq.saturating_sub(sent);
            }
        }
        // Queued but not yet acknowledged counts as still missing on the peer's disk.
        Some(n + s.inflight.iter().map(|(_, _, c)| c).sum::<u64>())
    }

    /// Ids of active links.
    pub fn links(&self) -> impl Iterator<Item = &u64> {
        self.sessions.keys()
    }

    fn have_for<L: Log + ?Sized>(&self, log: &L, peer: &PeerInfo) -> Have {
        let mut have = Have::default();
        for c in log.channels() {
            if self.may_see(peer, &c.members) {
                have.channels.insert(c.id.clone(), log.heads(&c.id));
            }
        }
        have
    }

    /// A link came up: remember it and state what we have.
    pub fn open<L: Log + ?Sized>(&mut self, log: &L, link: u64, peer: PeerInfo) -> Output {
        let have = self.have_for(log, &peer);
        self.sessions.insert(
            link,
            Session {
                peer,
                sent: BTreeMap::new(),
                cursors: BTreeMap::new(),
                started: false,
                inflight: VecDeque::new(),
                next_batch: 1,
                done_sent: false,
                their_done: false,
            },
        );
        Output {
            send: vec![(link, SyncMsg::Have(have))],
            ..Output::default()
        }
    }

    /// A link went down. Unacknowledged batches are simply resent after the next `have`.
    pub fn close(&mut self, link: u64) {
        self.sessions.remove(&link);
    }

    /// Handle a sync message from `link`.
    pub fn handle<L: Log + ?Sized>(
        &mut self,
        log: &mut L,
        link: u64,
        msg: SyncMsg,
    ) -> Result<Output, LogError> {
        let mut out = Output::default();
        if !self.sessions.contains_key(&link) {
            return Ok(out);
        }
        match msg {
            SyncMsg::Have(have) => {
                let s = self
                    .sessions
                    .get_mut(&link)
                    .expect("invariant: checked above");
                s.sent.clear();
                s.cursors.clear();
                for (ch, heads) in have.channels {
                    for (author, seq) in heads {
                        s.sent.insert((ch.clone(), author), seq);
                    }
                }
                s.started = true;
                self.fill(log, link, &mut out);
            }
            SyncMsg::Entries { batch, entries } => {
                let mut rejected = Vec::new();
                let sender = self
                    .sessions
                    .get(&link)
                    .map(|s| s.peer.person_id.clone())
                    .unwrap_or_default();
                let sig_ok = verify_signatures(&*log, &entries);
                // Check against the log plus what this batch already added, then store the
                // batch in one write.
                let mut overlay = Overlay::new(&*log);
                let mut accepted: Vec<(Entry, Option<ChannelInfo>)> = Vec::new();
                for (e, sig) in entries.into_iter().zip(sig_ok) {
                    // We hold a channel we are a member of (or replicate a member of), or one
                    // a member shares with us: a new member receives the channel's history
                    // before the entry that adds them.
                    let verdict = check_entry_pre(
                        &overlay,
                        &e,
                        |m| self.may_hold(m) || m.contains(&sender),
                        sig,
                    );
                    match verdict {
                        Ok(Check::New) => {
                            let ch = channel_effect(&overlay, &e);
                            overlay.add(&e, ch.clone());
                            self.hlc.observe(e.hlc);
                            self.stats.received += 1;
                            accepted.push((e, ch));
                        }
                        Ok(Check::Duplicate) => self.stats.duplicates += 1,
                        Err(reason) => {
                            self.stats.invalid += 1;
                            rejected.push(Rejection {
                                entry: e.id(),
                                reason,
                            });
                        }
                    }
                }
                drop(overlay);
                for (e, _) in &accepted {
                    if let Some(p) = &e.person {
                        log.put_person(p)?;
                    }
                }
                log.insert_many(&accepted)?;
                if let Some(s) = self.sessions.get_mut(&link) {
                    // The sender has them: never echo them back on this link.
                    for (e, _) in &accepted {
                        let k = (e.channel.clone(), e.author.clone());
                        let v = s.sent.entry(k).or_insert(0);
                        *v = (*v).max(e.seq);
                    }
                }
                out.stored.extend(accepted.into_iter().map(|(e, _)| e));
                out.rejected.extend(rejected.iter().cloned());
                // New entries go on to every other entitled link (relay) at once; the ack
                // waits for the caller's flush: durable before acknowledged.
                let touched: BTreeSet<String> =
                    out.stored.iter().map(|e| e.channel.clone()).collect();
                if !touched.is_empty() {
                    let others: Vec<u64> = self
                        .sessions
                        .keys()
                        .copied()
                        .filter(|l| *l != link)
                        .collect();
                    for l in others {
                        self.fill_some(log, l, &mut out, Some(&touched));
                    }
                }
                out.after_flush
                    .push((link, SyncMsg::Ack { batch, rejected }));
            }
            SyncMsg::Ack { batch, rejected } => {
                let s = self
                    .sessions
                    .get_mut(&link)
                    .expect("invariant: checked above");
                if let Some(i) = s.inflight.iter().position(|(b, _, _)| *b == batch) {
                    let (_, ours, _) = s
                        .inflight
                        .remove(i)
                        .expect("invariant: index from position");
                    out.delivered.extend(
                        ours.into_iter()
                            .filter(|id| !rejected.iter().any(|r| r.entry == *id)),
                    );
                }
                out.peer_rejected.extend(rejected);
                self.fill(log, link, &mut out);
            }
            SyncMsg::Done => {
                let s = self
                    .sessions
                    .get_mut(&link)
                    .expect("invariant: checked above");
                if !s.their_done {
                    s.their_done = true;
                    out.synced.push(s.peer.person_id.clone());
                }
            }
        }
        Ok(out)
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
        let members = match (&body, members_of(&*log, channel)) {
            (Body::Create { members, .. }, None) => members.clone(),
            (Body::Create { .. }, Some(_)) => {
                return Err(WriteError::Invalid(format!("channel `{channel}` exists")))
            }
            (_, Some(m)) => m,
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
        let head = log.head(channel, &self.me);
        let seq = head.as_ref().map(|h| h.0).unwrap_or(0) + 1;
        let e = sign_entry(
            me,
            channel,
            seq,
            head.map(|h| h.1),
            self.hlc.tick(now_ms),
            body,
        );
        let ch = channel_effect(&*log, &e);
        if seq == 1 {
            log.put_person(&me.person)?;
        }
        log.insert(&e, ch.as_ref())?;
        log.flush()?;
        let mut out = Output::default();
        let links: Vec<u64> = self.sessions.keys().copied().collect();
        let touched: BTreeSet<String> = [channel.to_string()].into();
        for l in links {
            self.fill_some(log, l, &mut out, Some(&touched));
        }
        Ok((e, out))
    }

    /// Queue for `link` every entry it may see and lacks, in view order, within the window.
    fn fill<L: Log + ?Sized>(&mut self, log: &L, link: u64, out: &mut Output) {
        self.fill_some(log, link, out, None)
    }

    /// As [`Engine::fill`], looking only at `only`'s channels when given (a write or a relay
    /// touches one channel; scanning every channel per link would make fan-out quadratic).
    fn fill_some<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        out: &mut Output,
        only: Option<&BTreeSet<String>>,
    ) {
        let visible: Vec<ChannelInfo> = {
            let Some(s) = self.sessions.get(&link) else {
                return;
            };
            if !s.started {
                return;
            }
            let candidates = match only {
                Some(set) => set.iter().filter_map(|c| log.channel(c)).collect(),
                None => log.channels(),
            };
            candidates
                .into_iter()
                .filter(|c| self.may_see(&s.peer, &c.members))
                .collect()
        };
        let s = self
            .sessions
            .get_mut(&link)
            .expect("invariant: checked above");
        // Which (channel, author) logs are ahead of what the peer has.
        let mut pending: Vec<(String, Id)> = Vec::new();
        for c in &visible {
            for (author, seq) in log.heads(&c.id) {
                let k = (c.id.clone(), author);
                if seq > *s.sent.get(&k).unwrap_or(&0) {
                    pending.push(k);
                }
            }
        }
        let chunk = (CURSOR_CHUNK / pending.len().max(1)).max(CURSOR_MIN_CHUNK);
        while s.inflight.len() < WINDOW {
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            loop {
                // Load the next entry of every pending log, pick the lowest in view order.
                let mut best: Option<(ViewKey, (String, Id))> = None;
                for k in &pending {
                    let sent = *s.sent.get(k).unwrap_or(&0);
                    let cur = s
                        .cursors
                        .entry(k.clone())
                        .or_insert((VecDeque::new(), sent));
                    while cur.0.front().is_some_and(|e| e.seq <= sent) {
                        cur.0.pop_front();
                    }
                    if cur.1 < sent {
                        cur.1 = sent;
                    }
                    if cur.0.is_empty() {
                        let more = log.range(&k.0, &k.1, cur.1 + 1, chunk);
                        if let Some(last) = more.last() {
                            cur.1 = last.seq;
                        }
                        cur.0.extend(more);
                    }
                    if let Some(e) = cur.0.front() {
                        let vk = e.view_key();
                        if best.as_ref().is_none_or(|(b, _)| vk < *b) {
                            best = Some((vk, k.clone()));
                        }
                    }
                }
                let Some((_, k)) = best else { break };
                let cur = s
                    .cursors
                    .get_mut(&k)
                    .expect("invariant: cursor created above");
                let len = cur.0.front().map(Entry::encoded_len).unwrap_or(0);
                if !batch.is_empty()
                    && (batch.len() >= BATCH_MAX_ENTRIES || bytes + len > BATCH_MAX_BYTES)
                {
                    break;
                }
                let e = cur
                    .0
                    .pop_front()
                    .expect("invariant: best came from a non-empty cursor");
                bytes += len;
                s.sent.insert(k, e.seq);
                batch.push(e);
            }
            if batch.is_empty() {
                break;
            }
            let b = s.next_batch;
            s.next_batch += 1;
            let ours: Vec<Id> = batch
                .iter()
                .filter(|e| e.author == self.me)
                .map(Entry::id)
                .collect();
            let count = batch.len() as u64;
            s.inflight.push_back((b, ours, count));
            out.send.push((
                link,
                SyncMsg::Entries {
                    batch: b,
                    entries: batch,
                },
            ));
        }
        // Everything the peer lacked at the start is on its way: say so, once. (A partial
        // fill cannot tell.)
        if only.is_some() {
            s.cursors.retain(|_, c| !c.0.is_empty());
            return;
        }
        let caught_up = pending.iter().all(|k| {
            log.head(&k.0, &k.1).map(|h| h.0).unwrap_or(0) <= *s.sent.get(k).unwrap_or(&0)
        });
        if caught_up && !s.done_sent {
            s.done_sent = true;
            out.send.push((link, SyncMsg::Done));
        }
        // Bound read-ahead memory: drop cursors of logs that are fully sent.
        s.cursors.retain(|_, c| !c.0.is_empty());
    }
}

/// An in-memory [`Log`], for tests and simulations.
#[derive(Clone, Debug, Default)]
pub struct MemLog {
    entries: BTreeMap<(String, Id, u64), Entry>,
    channels: BTreeMap<String, ChannelInfo>,
    persons: BTreeMap<Id, Person>,
    /// Fail every write from now on (a full disk).
    pub fail_writes: bool,
}

impl MemLog {
    /// Add a channel record directly (as pairing does for 1:1 channels).
    pub fn add_channel(&mut self, c: ChannelInfo) {
        self.channels.insert(c.id.clone(), c);
    }

    /// A channel's view: all entries in view order.
    pub fn view(&self, ch: &str) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.channel == ch)
            .cloned()
            .collect();
        v.sort_by_key(Entry::view_key);
        v
    }

    /// Every stored entry.
    pub fn all(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

impl Log for MemLog {
    fn head(&self, ch: &str, author: &str) -> Option<(u64, Id)> {
        self.entries
            .range(
                (ch.to_string(), author.to_string(), 0)
                    ..=(ch.to_string(), author.to_string(), u64::MAX),
            )
            .next_back()
            .map(|(_, e)| (e.seq, e.id()))
    }
    fn heads(&self, ch: &str) -> Vec<(Id, u64)> {
        let mut m: BTreeMap<Id, u64> = BTreeMap::new();
        for e in self.entries.values().filter(|e| e.channel == ch) {
            let v = m.entry(e.author.clone()).or_insert(0);
            *v = (*v).max(e.seq);
        }
        m.into_iter().collect()
    }
    fn channels(&self) -> Vec<ChannelInfo> {
        let mut v: Vec<ChannelInfo> = self.channels.values().cloned().collect();
        for e in self.entries.values() {
            if let Some(m) = direct_members(&e.channel) {
                if !v.iter().any(|c| c.id == e.channel) {
                    v.push(ChannelInfo {
                        id: e.channel.clone(),
                        name: String::new(),
                        members: m,
                    });
                }
            }
        }
        v
    }
    fn channel(&self, ch: &str) -> Option<ChannelInfo> {
        self.channels.get(ch).cloned().or_else(|| {
            direct_members(ch).map(|m| ChannelInfo {
                id: ch.into(),
                name: String::new(),
                members: m,
            })
        })
    }
    fn range(&self, ch: &str, author: &str, from_seq: u64, limit: usize) -> Vec<Entry> {
        self.entries
            .range(
                (ch.to_string(), author.to_string(), from_seq)
                    ..=(ch.to_string(), author.to_string(), u64::MAX),
            )
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect()
    }
    fn get(&self, ch: &str, author: &str, seq: u64) -> Option<Entry> {
        self.entries
            .get(&(ch.to_string(), author.to_string(), seq))
            .cloned()
    }
    fn person(&self, id: &str) -> Option<Person> {
        self.persons.get(id).cloned()
    }
    fn membership(&self, ch: &str) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.channel == ch && !matches!(e.body, Body::Text { .. }))
            .cloned()
            .collect();
        v.sort_by_key(Entry::view_key);
        v
    }
    fn insert(&mut self, e: &Entry, channel: Option<&ChannelInfo>) -> Result<(), LogError> {
        if self.fail_writes {
            return Err(LogError {
                message: "disk full".into(),
                disk_full: true,
            });
        }
        self.entries
            .insert((e.channel.clone(), e.author.clone(), e.seq), e.clone());
        if let Some(c) = channel {
            self.channels.insert(c.id.clone(), c.clone());
        }
        Ok(())
    }
    fn put_person(&mut self, p: &Person) -> Result<(), LogError> {
        if self.fail_writes {
            return Err(LogError {
                message: "disk full".into(),
                disk_full: true,
            });
        }
        self.persons.insert(p.id(), p.clone());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}
