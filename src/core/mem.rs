//! An in-memory [`CoreStore`] for the seeded simulations: the same rules as the redb store
//! (an atomic pairing commit, channel records written with their entries), and a switch
//! that makes the "disk" full.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::core::store::CoreStore;
use crate::domain::channel::direct_members;
use crate::domain::invitation::{Guesses, PairingCommit};
use crate::domain::log::{Log, LogError};
use crate::domain::{Channel, Contact, Entry, Id, InviteRecord, InviteStatus};
use crate::domain::{Person, Profile};
use crate::net::sync::MemLog;

/// Shared with a test: turn the in-memory disk full or give it room again, and see how
/// many entries wait for a flush and how many flushes there were.
#[derive(Clone, Debug, Default)]
pub struct DiskSwitch {
    full: Arc<AtomicBool>,
    unflushed: Arc<AtomicU64>,
    flushes: Arc<AtomicU64>,
}

impl DiskSwitch {
    /// Make every write fail as on a full disk (`true`) or succeed again.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    /// Entries inserted since the last flush (they would not survive a power loss).
    pub fn unflushed(&self) -> u64 {
        self.unflushed.load(Ordering::SeqCst)
    }

    /// Flushes that made at least one entry durable.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemStore {
    log: MemLog,
    contacts: BTreeMap<String, Contact>,
    invites: BTreeMap<String, InviteRecord>,
    records: BTreeMap<String, Channel>,
    profile: Option<Profile>,
    unread: BTreeMap<String, u64>,
    disk: DiskSwitch,
    full_seen: bool,
}

impl MemStore {
    /// An empty store whose disk is controlled by `disk`.
    pub fn new(disk: DiskSwitch) -> MemStore {
        MemStore {
            disk,
            ..MemStore::default()
        }
    }

    fn writable(&mut self) -> Result<(), LogError> {
        if self.full_seen || self.disk.is_full() {
            self.full_seen = true;
            return Err(LogError {
                message: "the in-memory disk is full".into(),
                disk_full: true,
            });
        }
        Ok(())
    }

    fn record_for(&self, e: &Entry, channel: Option<&Channel>) -> Option<Channel> {
        match channel {
            Some(c) => Some(c.clone()),
            None if !self.records.contains_key(&e.channel) => {
                direct_members(&e.channel).map(|members| Channel {
                    id: e.channel.clone(),
                    name: String::new(),
                    members,
                    created_at: e.hlc.ms / 1000,
                })
            }
            None => None,
        }
    }
}

impl Log for MemStore {
    fn head(&self, ch: &str, author: &str) -> Result<Option<(u64, Id)>, LogError> {
        self.log.head(ch, author)
    }
    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError> {
        self.log.heads(ch)
    }
    fn channels(&self) -> Result<Vec<Channel>, LogError> {
        Ok(self.records.values().cloned().collect())
    }
    fn channel(&self, ch: &str) -> Result<Option<Channel>, LogError> {
        Ok(self.records.get(ch).cloned())
    }
    fn range(
        &self,
        ch: &str,
        author: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        self.log.range(ch, author, from_seq, limit)
    }
    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError> {
        self.log.get(ch, author, seq)
    }
    fn person(&self, id: &str) -> Result<Option<Person>, LogError> {
        self.log.person(id)
    }
    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError> {
        self.log.membership(ch)
    }
    fn insert(&mut self, e: &Entry, channel: Option<&Channel>) -> Result<(), LogError> {
        self.writable()?;
        if let Some(rec) = self.record_for(e, channel) {
            self.records.insert(rec.id.clone(), rec);
        }
        self.disk.unflushed.fetch_add(1, Ordering::SeqCst);
        self.log.insert(e, channel)
    }
    fn put_person(&mut self, p: &Person) -> Result<(), LogError> {
        self.writable()?;
        self.log.put_person(p)
    }
    fn flush(&mut self) -> Result<(), LogError> {
        self.writable()?;
        if self.disk.unflushed.swap(0, Ordering::SeqCst) > 0 {
            self.disk.flushes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl CoreStore for MemStore {
    fn contacts(&self) -> Result<Vec<Contact>, LogError> {
        Ok(self.contacts.values().cloned().collect())
    }
    fn contact(&self, person_id: &str) -> Result<Option<Contact>, LogError> {
        Ok(self.contacts.get(person_id).cloned())
    }
    fn put_contact(&mut self, c: &Contact) -> Result<(), LogError> {
        self.writable()?;
        self.contacts.insert(c.person_id().to_string(), c.clone());
        Ok(())
    }
    fn remove_contact(&mut self, person_id: &str) -> Result<bool, LogError> {
        self.writable()?;
        Ok(self.contacts.remove(person_id).is_some())
    }
    fn own_profile(&self) -> Result<Option<Profile>, LogError> {
        Ok(self.profile.clone())
    }
    fn put_own_profile(&mut self, p: &Profile) -> Result<(), LogError> {
        self.writable()?;
        self.profile = Some(p.clone());
        Ok(())
    }
    fn invite(&self, token: &str) -> Result<Option<InviteRecord>, LogError> {
        Ok(self.invites.get(token).cloned())
    }
    fn invites(&self) -> Result<Vec<InviteRecord>, LogError> {
        Ok(self.invites.values().cloned().collect())
    }
    fn put_invite(&mut self, r: &InviteRecord) -> Result<(), LogError> {
        self.writable()?;
        self.invites.insert(r.token.clone(), r.clone());
        Ok(())
    }
    fn revoke_invite(&mut self, token: &str, now: u64) -> Result<Option<InviteRecord>, LogError> {
        let Some(mut rec) = self.invites.get(token).cloned() else {
            return Ok(None);
        };
        if rec.status == InviteStatus::Open {
            rec.status = InviteStatus::Revoked { at: now };
            self.put_invite(&rec)?;
        }
        Ok(Some(rec))
    }
    fn commit_pairing(
        &mut self,
        token: Option<&str>,
        contact: &Contact,
        channel: &Channel,
        now: u64,
    ) -> Result<PairingCommit, LogError> {
        self.writable()?;
        let pid = contact.person_id();
        if let Some(t) = token {
            let Some(mut rec) = self.invites.get(t).cloned() else {
                return Ok(PairingCommit::InviteGone(None));
            };
            if let Err(r) = rec.admits(&pid, now, Guesses::Ignore) {
                return Ok(PairingCommit::InviteGone(Some(r)));
            }
            rec.status = InviteStatus::Used {
                by: pid.to_string(),
                at: now,
            };
            self.invites.insert(t.to_string(), rec);
        }
        self.contacts.insert(pid.to_string(), contact.clone());
        self.records
            .entry(channel.id.clone())
            .or_insert_with(|| channel.clone());
        Ok(PairingCommit::Committed)
    }
    fn channel_records(&self) -> Result<Vec<Channel>, LogError> {
        Ok(self.records.values().cloned().collect())
    }
    fn channel_record(&self, id: &str) -> Result<Option<Channel>, LogError> {
        Ok(self.records.get(id).cloned())
    }
    fn unread(&self, ch: &str) -> u64 {
        self.unread.get(ch).copied().unwrap_or(0)
    }
    fn add_unread(&mut self, ch: &str, n: u64) {
        *self.unread.entry(ch.to_string()).or_insert(0) += n;
    }
    fn clear_unread(&mut self, ch: &str) {
        self.unread.remove(ch);
    }
    fn history_before(
        &self,
        ch: &str,
        before: Option<&Entry>,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        let view = self.log.view(ch);
        let end = match before {
            Some(b) => view.partition_point(|e| e.view_key() < b.view_key()),
            None => view.len(),
        };
        Ok(view[end.saturating_sub(limit)..end].to_vec())
    }
    fn entry_by_view(&self, ch: &str, author: &str, id: &str) -> Result<Option<Entry>, LogError> {
        let mine = self.log.range(ch, author, 0, usize::MAX)?;
        Ok(mine.into_iter().find(|e| e.id() == id))
    }
    fn entry_count(&self) -> usize {
        self.log.all().count()
    }
    fn disk_full_seen(&self) -> bool {
        self.full_seen
    }
    fn heal(&mut self) -> Result<bool, LogError> {
        if self.disk.is_full() {
            return Ok(false);
        }
        self.full_seen = false;
        Ok(true)
    }
}
