//! The redb store as the core's [`CoreStore`]: store errors become the core's store
//! faults (their text names the directory and the fix), and the full-disk repair redb needs
//! (a reopen once there is room again) happens here, out of the core's sight.

use std::path::PathBuf;

use crate::core::store::CoreStore;
use crate::domain::invitation::PairingCommit;
use crate::domain::log::{Log, LogError};
use crate::domain::{Channel, Contact, Entry, Id, InviteRecord, Person, Profile};
use crate::store::{Store, StoreError};

/// Bytes a probe write must fit before a store that hit a full disk is reopened.
pub const STORE_HEAL_PROBE_BYTES: usize = 1 << 20;

/// The store of a data dir.
pub struct DiskStore {
    store: Store,
    data_dir: PathBuf,
}

impl DiskStore {
    /// The store opened in `data_dir`.
    pub fn new(store: Store, data_dir: PathBuf) -> DiskStore {
        DiskStore { store, data_dir }
    }
}

fn fault(e: StoreError) -> LogError {
    LogError {
        disk_full: matches!(e, StoreError::DiskFull(_)),
        message: e.to_string(),
    }
}

impl Log for DiskStore {
    fn head(&self, ch: &str, author: &str) -> Result<Option<(u64, Id)>, LogError> {
        self.store.head(ch, author)
    }
    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError> {
        self.store.heads(ch)
    }
    fn channels(&self) -> Result<Vec<Channel>, LogError> {
        Log::channels(&self.store)
    }
    fn channel(&self, ch: &str) -> Result<Option<Channel>, LogError> {
        self.store.channel(ch)
    }
    fn range(
        &self,
        ch: &str,
        author: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        self.store.range(ch, author, from_seq, limit)
    }
    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError> {
        self.store.get(ch, author, seq)
    }
    fn person(&self, id: &str) -> Result<Option<Person>, LogError> {
        self.store.person(id)
    }
    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError> {
        self.store.membership(ch)
    }
    fn insert(&mut self, e: &Entry, channel: Option<&Channel>) -> Result<(), LogError> {
        self.store.insert(e, channel)
    }
    fn insert_many(&mut self, items: &[(Entry, Option<Channel>)]) -> Result<(), LogError> {
        self.store.insert_many(items)
    }
    fn put_person(&mut self, p: &Person) -> Result<(), LogError> {
        self.store.put_person(p)
    }
    fn flush(&mut self) -> Result<(), LogError> {
        Log::flush(&mut self.store)
    }
}

impl CoreStore for DiskStore {
    fn contacts(&self) -> Result<Vec<Contact>, LogError> {
        self.store.contacts().map_err(fault)
    }
    fn contact(&self, person_id: &str) -> Result<Option<Contact>, LogError> {
        self.store.contact(person_id).map_err(fault)
    }
    fn put_contact(&mut self, c: &Contact) -> Result<(), LogError> {
        self.store.put_contact(c).map_err(fault)
    }
    fn remove_contact(&mut self, person_id: &str) -> Result<bool, LogError> {
        self.store.remove_contact(person_id).map_err(fault)
    }
    fn own_profile(&self) -> Result<Option<Profile>, LogError> {
        self.store.own_profile().map_err(fault)
    }
    fn put_own_profile(&mut self, p: &Profile) -> Result<(), LogError> {
        self.store.put_own_profile(p).map_err(fault)
    }
    fn invite(&self, token: &str) -> Result<Option<InviteRecord>, LogError> {
        self.store.invite(token).map_err(fault)
    }
    fn invites(&self) -> Result<Vec<InviteRecord>, LogError> {
        self.store.invites().map_err(fault)
    }
    fn put_invite(&mut self, r: &InviteRecord) -> Result<(), LogError> {
        self.store.put_invite(r).map_err(fault)
    }
    fn revoke_invite(&mut self, token: &str, now: u64) -> Result<Option<InviteRecord>, LogError> {
        self.store.revoke_invite(token, now).map_err(fault)
    }
    fn commit_pairing(
        &mut self,
        token: Option<&str>,
        contact: &Contact,
        channel: &Channel,
        now: u64,
    ) -> Result<PairingCommit, LogError> {
        self.store
            .commit_pairing(token, contact, channel, now)
            .map_err(fault)
    }
    fn channel_records(&self) -> Result<Vec<Channel>, LogError> {
        self.store.channels().map_err(fault)
    }
    fn channel_record(&self, id: &str) -> Result<Option<Channel>, LogError> {
        self.store.get_channel(id).map_err(fault)
    }
    fn unread(&self, ch: &str) -> u64 {
        self.store.unread(ch)
    }
    fn add_unread(&mut self, ch: &str, n: u64) {
        self.store.add_unread(ch, n)
    }
    fn clear_unread(&mut self, ch: &str) {
        self.store.clear_unread(ch)
    }
    fn history_before(
        &self,
        ch: &str,
        before: Option<&Entry>,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        self.store.history_before(ch, before, limit).map_err(fault)
    }
    fn entry_by_view(&self, ch: &str, author: &str, id: &str) -> Result<Option<Entry>, LogError> {
        self.store.entry_by_view(ch, author, id).map_err(fault)
    }
    fn entry_count(&self) -> usize {
        self.store.entry_count()
    }
    fn disk_full_seen(&self) -> bool {
        self.store.disk_full_seen()
    }

    /// After a failed write (a full disk) redb refuses every later one (`PreviousIo`), even
    /// once there is room again, until the database is reopened: when a probe file fits
    /// again, reopen it in place.
    fn heal(&mut self) -> Result<bool, LogError> {
        let probe = self.data_dir.join(".space-probe");
        let room = std::fs::write(&probe, vec![0u8; STORE_HEAL_PROBE_BYTES]).is_ok();
        let _ = std::fs::remove_file(&probe);
        if !room {
            return Ok(false);
        }
        let placeholder = match Store::placeholder() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot reopen the store yet: {e}");
                return Ok(false);
            }
        };
        // The old handle must be gone before the reopen: the database file is locked.
        drop(std::mem::replace(&mut self.store, placeholder));
        self.store = Store::open(&self.data_dir).map_err(fault)?;
        Ok(true)
    }
}
