//! The storage the core decides over: the sync log plus contacts, invitations, channel
//! records, the profile and read markers. The redb store implements it in the shell
//! (`app::store_adapter`); [`crate::core::mem::MemStore`] in the simulations. Every call
//! is synchronous: the core runs where blocking on the disk is allowed.

use crate::domain::invitation::PairingCommit;
use crate::domain::log::{Log, LogError};
use crate::domain::{Channel, Contact, Entry, InviteRecord, Profile};

/// The store behind a [`crate::core::NodeCore`].
pub trait CoreStore: Log + Send {
    /// Every contact.
    fn contacts(&self) -> Result<Vec<Contact>, LogError>;
    /// One contact.
    fn contact(&self, person_id: &str) -> Result<Option<Contact>, LogError>;
    /// Add or replace a contact (durable on return).
    fn put_contact(&mut self, c: &Contact) -> Result<(), LogError>;
    /// Remove a contact; whether it existed.
    fn remove_contact(&mut self, person_id: &str) -> Result<bool, LogError>;
    /// Our newest signed profile.
    fn own_profile(&self) -> Result<Option<Profile>, LogError>;
    /// Store our profile (durable on return).
    fn put_own_profile(&mut self, p: &Profile) -> Result<(), LogError>;
    /// One invitation or short code by its key.
    fn invite(&self, token: &str) -> Result<Option<InviteRecord>, LogError>;
    /// Every invitation and short code.
    fn invites(&self) -> Result<Vec<InviteRecord>, LogError>;
    /// Add or replace an invitation (durable on return).
    fn put_invite(&mut self, r: &InviteRecord) -> Result<(), LogError>;
    /// Revoke an invitation; the record afterwards, `None` if there is none.
    fn revoke_invite(&mut self, token: &str, now: u64) -> Result<Option<InviteRecord>, LogError>;
    /// Atomically: consume `token` (if any, and only if still usable), store the contact and
    /// the 1:1 channel record. Durable on return.
    fn commit_pairing(
        &mut self,
        token: Option<&str>,
        contact: &Contact,
        channel: &Channel,
        now: u64,
    ) -> Result<PairingCommit, LogError>;
    /// Every channel record.
    fn channel_records(&self) -> Result<Vec<Channel>, LogError>;
    /// One channel record.
    fn channel_record(&self, id: &str) -> Result<Option<Channel>, LogError>;
    /// Unread messages of a channel.
    fn unread(&self, ch: &str) -> u64;
    /// Add unread messages to a channel (a lost count is harmless: not flushed).
    fn add_unread(&mut self, ch: &str, n: u64);
    /// Mark a channel read.
    fn clear_unread(&mut self, ch: &str);
    /// Up to `limit` entries strictly before `before` in view order (oldest first).
    fn history_before(
        &self,
        ch: &str,
        before: Option<&Entry>,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError>;
    /// An entry of `author` in `ch` by its id.
    fn entry_by_view(&self, ch: &str, author: &str, id: &str) -> Result<Option<Entry>, LogError>;
    /// Entries stored.
    fn entry_count(&self) -> usize;
    /// Some write hit a full disk: until [`CoreStore::heal`] succeeds nothing is written.
    fn disk_full_seen(&self) -> bool;
    /// After a full disk: try to become writable again. `Ok(true)` once healed,
    /// `Ok(false)` while there is still no room, `Err` when the store is lost (fatal).
    fn heal(&mut self) -> Result<bool, LogError>;
}
