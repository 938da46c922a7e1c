//! The rules every instance judges an entry by, the same way: signatures, log order
//! (gaps and forks), membership at the entry's place in the view, and bounds.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::channel::direct_members;
use crate::domain::identity::{verify_hex_sig, Id, Person};
use crate::domain::log::{Log, LogError};
use crate::domain::{Body, Channel, Entry, ViewKey};
use crate::net::sync::{BATCH_VERIFY_MIN, MAX_MEMBERS, MAX_TEXT};

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
pub fn members_at<L: Log + ?Sized>(
    log: &L,
    ch: &str,
    at: &ViewKey,
) -> Result<Option<Vec<Id>>, LogError> {
    if let Some(m) = direct_members(ch) {
        return Ok(Some(m));
    }
    let mut set: Option<BTreeSet<Id>> = None;
    for e in log.membership(ch)? {
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
    match set {
        Some(s) => Ok(Some(s.into_iter().collect())),
        None => Ok(log.channel(ch)?.map(|c| c.members)),
    }
}

/// Current members of a channel.
pub fn members_of<L: Log + ?Sized>(log: &L, ch: &str) -> Result<Option<Vec<Id>>, LogError> {
    match direct_members(ch) {
        Some(m) => Ok(Some(m)),
        None => Ok(log.channel(ch)?.map(|c| c.members)),
    }
}

/// What storing an entry changes about its channel.
pub(super) fn channel_effect<L: Log + ?Sized>(
    log: &L,
    e: &Entry,
) -> Result<Option<Channel>, LogError> {
    Ok(match &e.body {
        Body::Create { name, members } => Some(Channel {
            id: e.channel.clone(),
            name: name.clone(),
            members: sorted_unique(members.iter().cloned()),
            created_at: e.hlc.ms / 1000,
        }),
        Body::Members { add, remove } => log.channel(&e.channel)?.map(|mut c| {
            let mut set: BTreeSet<Id> = c.members.into_iter().collect();
            set.extend(add.iter().cloned());
            for r in remove {
                set.remove(r);
            }
            c.members = set.into_iter().collect();
            c
        }),
        Body::Text { .. } => None,
    })
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

/// Check a received entry against the log. `may_hold`: whether this instance may store
/// the channel given its member list.
pub fn check_entry<L: Log + ?Sized>(
    log: &L,
    e: &Entry,
    may_hold: impl Fn(&[Id]) -> bool,
) -> Result<Check, CheckError> {
    check_entry_pre(log, e, may_hold, false)
}

/// [`check_entry`], with the signature already verified when `sig_checked` (a batch
/// verification passed for this entry with the key this function would use).
pub fn check_entry_pre<L: Log + ?Sized>(
    log: &L,
    e: &Entry,
    may_hold: impl Fn(&[Id]) -> bool,
    sig_checked: bool,
) -> Result<Check, CheckError> {
    if e.seq == 0 || e.channel.is_empty() || e.channel.len() > 200 || e.author.len() != 64 {
        return Err(Invalid::Malformed.into());
    }
    if let Body::Text { text } = &e.body {
        if text.len() > MAX_TEXT {
            return Err(Invalid::Malformed.into());
        }
    }
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
    // Membership at this point of the view (not "now"), so every instance judges an entry
    // the same way whatever order the entries arrived in.
    let members = match (&e.body, members_of(log, &e.channel)?) {
        (Body::Create { members, .. }, None) => {
            if members.len() > MAX_MEMBERS || direct_members(&e.channel).is_some() {
                return Err(Invalid::Malformed.into());
            }
            members.clone()
        }
        (Body::Create { .. }, Some(_)) => return Err(Invalid::Fork.into()),
        (_, Some(_)) => members_at(log, &e.channel, &e.view_key())?.ok_or(Invalid::NotMember)?,
        (_, None) => return Err(Invalid::NotMember.into()),
    };
    if let Body::Members { add, .. } = &e.body {
        if members.len() + add.len() > MAX_MEMBERS || direct_members(&e.channel).is_some() {
            return Err(Invalid::Malformed.into());
        }
    }
    if !members.contains(&e.author) {
        return Err(Invalid::NotMember.into());
    }
    if !may_hold(&members) {
        return Err(Invalid::NotShared.into());
    }
    Ok(Check::New)
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
