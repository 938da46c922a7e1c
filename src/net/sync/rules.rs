//! The rules every instance judges an entry by, the same way: ids and bounds, signatures,
//! log order (gaps and forks), time (skew and growth along the log), and membership at the
//! entry's place in its author's log (see `roster`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::channel::direct_members;
use crate::domain::identity::{verify_hex_sig, Id, Person};
use crate::domain::ids::channel_id_problem;
use crate::domain::log::{Log, LogError};
use crate::domain::{Body, Channel, Entry, PersonId};
use crate::net::sync::roster::Roster;
use crate::net::sync::{BATCH_VERIFY_MIN, MAX_CLOCK_SKEW_MS, MAX_MEMBERS, MAX_TEXT};

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
    /// A channel id, author or member id that does not follow the id grammar.
    #[error("an id does not follow the id grammar")]
    BadId,
    /// Stamped more than the allowed skew ahead of the receiver's clock.
    #[error("timestamp too far in the future (clock skew)")]
    ClockSkew,
    /// Stamped no later than the author's previous entry in the channel.
    #[error("timestamp not after the author's previous entry")]
    Backdated,
    /// Over a quota of what this instance stores for one author or one link.
    #[error("over this instance's quota")]
    Quota,
    /// A reason this version does not know (from a newer peer).
    #[serde(other)]
    #[error("refused for a reason this version does not know")]
    Other,
}

/// The roster of a channel from the log: a 1:1's two members, a group's membership
/// entries, or (a group known only by its record) the recorded members; `None` for a
/// channel this log does not know.
pub fn load_roster<L: Log + ?Sized>(log: &L, ch: &str) -> Result<Option<Roster>, LogError> {
    if let Some(r) = Roster::direct(ch) {
        return Ok(Some(r));
    }
    let entries = log.membership(ch)?;
    if entries.is_empty() {
        return Ok(log.channel(ch)?.map(|c| Roster::from_members(&c.members)));
    }
    Ok(Some(Roster::from_entries(entries)))
}

/// The channel record after storing `e`, given the roster with `e` applied: a create makes
/// it, a members entry sets its members to the roster's (view order, not arrival order).
pub(super) fn channel_effect<L: Log + ?Sized>(
    log: &L,
    e: &Entry,
    after: &Roster,
) -> Result<Option<Channel>, LogError> {
    Ok(match &e.body {
        Body::Create { name, .. } => match log.channel(&e.channel)? {
            // A record made from an earlier create keeps its name and time.
            Some(mut c) => {
                c.members = after.current().to_vec();
                Some(c)
            }
            None => Some(Channel {
                id: e.channel.clone(),
                name: name.clone(),
                members: after.current().to_vec(),
                created_at: e.hlc.ms / 1000,
            }),
        },
        Body::Members { .. } => log.channel(&e.channel)?.map(|mut c| {
            c.members = after.current().to_vec();
            c
        }),
        Body::Text { .. } => None,
    })
}

/// The outcome of checking a received entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// New and valid: store it.
    New,
    /// Already stored (a resend or a replay): ignore.
    Duplicate,
}

/// Why an entry could not be judged as valid: a verdict on the entry, or a store that
/// could not be read (then there is no verdict: the entry is neither stored nor refused).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The entry is refused.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The store failed while the entry was being checked.
    #[error("{0}")]
    Store(#[from] LogError),
}

/// Whether `s` is a person id (64 lowercase hex).
fn is_person_id(s: &str) -> bool {
    PersonId::parse(s).is_ok()
}

/// The checks that need nothing but the entry: ids, bounds, the shape of bodies.
fn check_fields(e: &Entry) -> Result<(), Invalid> {
    if channel_id_problem(&e.channel).is_some() || !is_person_id(&e.author) {
        return Err(Invalid::BadId);
    }
    if e.seq == 0 {
        return Err(Invalid::Malformed);
    }
    match &e.body {
        Body::Text { text } if text.len() > MAX_TEXT => Err(Invalid::Malformed),
        Body::Text { .. } => Ok(()),
        Body::Create { members, .. } => {
            if !members.iter().all(|m| is_person_id(m)) {
                return Err(Invalid::BadId);
            }
            let is_group = direct_members(&e.channel).is_none();
            let ok = is_group && e.seq == 1 && members.len() <= MAX_MEMBERS;
            ok.then_some(()).ok_or(Invalid::Malformed)
        }
        Body::Members { add, remove, heads } => {
            if !add.iter().chain(remove).all(|m| is_person_id(m)) {
                return Err(Invalid::BadId);
            }
            let changed: BTreeSet<&Id> = add.iter().chain(remove).collect();
            let disjoint = changed.len() == add.len() + remove.len();
            // New entries name the head of every person they change; old ones none.
            let heads_ok = heads.is_empty()
                || (heads.len() == changed.len() && heads.keys().all(|k| changed.contains(k)));
            let ok = direct_members(&e.channel).is_none()
                && disjoint
                && heads_ok
                && add.len() <= MAX_MEMBERS;
            ok.then_some(()).ok_or(Invalid::Malformed)
        }
    }
}

/// Check a received entry against the log and the channel's roster (`None`: a channel the
/// log does not know), at the receiver's wall time `now_ms`. `sig_checked`: a batch
/// verification already passed for this entry with the key this function would use.
pub fn check_entry<L: Log + ?Sized>(
    log: &L,
    roster: Option<&Roster>,
    e: &Entry,
    now_ms: u64,
    sig_checked: bool,
) -> Result<Check, CheckError> {
    check_fields(e)?;
    // Key: from the self-certifying first entry, or learned before.
    match (&e.person, e.seq) {
        (Some(p), 1) if p.id() == e.author => {}
        (Some(_), _) | (None, 1) => return Err(Invalid::Malformed.into()),
        (None, _) => {}
    }
    if !sig_checked {
        let person = match &e.person {
            Some(p) => p.clone(),
            None => log.person(&e.author)?.ok_or(Invalid::UnknownAuthor)?,
        };
        let key = person.verifying_key().map_err(|_| Invalid::BadSignature)?;
        verify_hex_sig(&key, &e.signed_bytes(), &e.sig, "entry")
            .map_err(|_| Invalid::BadSignature)?;
    }
    // Position in the author's log.
    let head = log.head(&e.channel, &e.author)?;
    let head_seq = head.as_ref().map(|h| h.0).unwrap_or(0);
    if e.seq <= head_seq {
        let stored = log.get(&e.channel, &e.author, e.seq)?;
        return match stored {
            Some(s) if s.id() == e.id() => Ok(Check::Duplicate),
            _ => Err(Invalid::Fork.into()),
        };
    }
    if e.seq > head_seq + 1 {
        return Err(Invalid::Gap.into());
    }
    if e.prev != head.map(|h| h.1) {
        return Err(Invalid::Fork.into());
    }
    // Time: not ahead of ours by more than the skew (it may be accepted later, once our
    // clock has caught up), and growing along the author's log.
    if e.hlc.ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Invalid::ClockSkew.into());
    }
    if e.seq > 1 {
        let prev = log.get(&e.channel, &e.author, e.seq - 1)?;
        if prev.is_some_and(|p| p.hlc >= e.hlc) {
            return Err(Invalid::Backdated.into());
        }
    }
    check_membership(roster, e)?;
    Ok(Check::New)
}

/// The author must be a member at this point of its log (see [`Roster`]).
fn check_membership(roster: Option<&Roster>, e: &Entry) -> Result<(), Invalid> {
    let roster = roster.filter(|r| r.exists());
    if let Body::Create { members, .. } = &e.body {
        if roster.is_some() {
            return Err(Invalid::Fork);
        }
        return members
            .contains(&e.author)
            .then_some(())
            .ok_or(Invalid::NotMember);
    }
    let roster = roster.ok_or(Invalid::NotMember)?;
    if !roster.admits(&e.author, e.seq, &e.view_key()) {
        return Err(Invalid::NotMember);
    }
    if let Body::Members { add, .. } = &e.body {
        if roster.current().len() + add.len() > MAX_MEMBERS {
            return Err(Invalid::Malformed);
        }
    }
    Ok(())
}

/// Verify the signatures of a batch at once (ed25519 batch verification, about twice as
/// fast); if the batch fails, each entry is verified alone to find the bad ones. An entry
/// whose key cannot be resolved here gets `false` and is judged by [`check_entry`].
pub fn verify_signatures<L: Log + ?Sized>(
    log: &L,
    entries: &[Entry],
) -> Result<Vec<bool>, LogError> {
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
            (None, s) if s > 1 => match keys.get(&e.author) {
                Some(k) => *k,
                None => {
                    let k = log.person(&e.author)?.and_then(|p| p.verifying_key().ok());
                    keys.insert(e.author.clone(), k);
                    k
                }
            },
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
        return Ok(ok);
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
    Ok(ok)
}

/// A read view of a log plus the entries accepted earlier in the same batch.
pub(super) struct Overlay<'a, L: Log + ?Sized> {
    base: &'a L,
    heads: BTreeMap<(String, Id), (u64, Id)>,
    entries: BTreeMap<(String, Id, u64), Entry>,
    persons: BTreeMap<Id, Person>,
    channels: BTreeMap<String, Channel>,
    membership: BTreeMap<String, Vec<Entry>>,
}

impl<'a, L: Log + ?Sized> Overlay<'a, L> {
    pub(super) fn new(base: &'a L) -> Self {
        Overlay {
            base,
            heads: BTreeMap::new(),
            entries: BTreeMap::new(),
            persons: BTreeMap::new(),
            channels: BTreeMap::new(),
            membership: BTreeMap::new(),
        }
    }

    pub(super) fn add(&mut self, e: &Entry, ch: Option<Channel>) {
        self.heads
            .insert((e.channel.clone(), e.author.clone()), (e.seq, e.id()));
        if let Some(p) = &e.person {
            self.persons.insert(p.id().to_string(), p.clone());
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
    fn head(&self, ch: &str, author: &str) -> Result<Option<(u64, Id)>, LogError> {
        match self.heads.get(&(ch.to_string(), author.to_string())) {
            Some(h) => Ok(Some(h.clone())),
            None => self.base.head(ch, author),
        }
    }
    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError> {
        let mut m: BTreeMap<Id, u64> = self.base.heads(ch)?.into_iter().collect();
        for ((c, a), (seq, _)) in &self.heads {
            if c == ch {
                m.insert(a.clone(), *seq);
            }
        }
        Ok(m.into_iter().collect())
    }
    fn channels(&self) -> Result<Vec<Channel>, LogError> {
        let mut v = self.base.channels()?;
        for c in self.channels.values() {
            match v.iter_mut().find(|x| x.id == c.id) {
                Some(x) => *x = c.clone(),
                None => v.push(c.clone()),
            }
        }
        Ok(v)
    }
    fn channel(&self, ch: &str) -> Result<Option<Channel>, LogError> {
        match self.channels.get(ch) {
            Some(c) => Ok(Some(c.clone())),
            None => self.base.channel(ch),
        }
    }
    fn range(
        &self,
        ch: &str,
        author: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        self.base.range(ch, author, from_seq, limit)
    }
    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError> {
        match self.entries.get(&(ch.to_string(), author.to_string(), seq)) {
            Some(e) => Ok(Some(e.clone())),
            None => self.base.get(ch, author, seq),
        }
    }
    fn person(&self, id: &str) -> Result<Option<Person>, LogError> {
        match self.persons.get(id) {
            Some(p) => Ok(Some(p.clone())),
            None => self.base.person(id),
        }
    }
    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError> {
        let mut v = self.base.membership(ch)?;
        if let Some(more) = self.membership.get(ch) {
            v.extend(more.iter().cloned());
            v.sort_by_key(Entry::view_key);
        }
        Ok(v)
    }
    fn insert(&mut self, _: &Entry, _: Option<&Channel>) -> Result<(), LogError> {
        Err(LogError::new("an overlay is read-only"))
    }
    fn put_person(&mut self, _: &Person) -> Result<(), LogError> {
        Err(LogError::new("an overlay is read-only"))
    }
    fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}
