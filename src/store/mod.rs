//! Persistence: a typed API over redb (identity, contacts, invitations, channels, the
//! sync log), plus the secret key file.
//!
//! Every write that a caller reports to the user as done is durable (fsynced) before it
//! returns. redb errors are mapped to [`StoreError`] variants that name the directory and
//! the fix. A store written by the sled releases is migrated on first open ([`migrate`]).

pub mod codec;
mod db;
pub mod keyfile;
pub mod log;
pub mod migrate;

use std::path::{Path, PathBuf};

use redb::ReadableTable;
use serde::{de::DeserializeOwned, Serialize};

use crate::domain::identity::{Instance, Person, Profile};
use crate::domain::invitation::{Guesses, PairingCommit};
use crate::domain::{Channel, Contact, InviteRecord, InviteStatus};

/// Sub-directory of the data dir that holds the database file.
pub const DB_DIR: &str = "store";
pub use db::{DB_FILE, STORE_CACHE_BYTES};

/// Errors of the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open.
    #[error("the store in {0} is in use by another running lama-tui; quit that instance, or give this one its own --data-dir")]
    Locked(PathBuf),
    /// The store's files are damaged.
    #[error("the store in {dir} is damaged ({why}); move that directory away and restore a backup (your identity key file is kept separately in the data dir)")]
    Corrupt {
        /// The store directory.
        dir: PathBuf,
        /// What the database or the decoder reported.
        why: String,
    },
    /// The disk is full.
    #[error("the disk holding {0} is full; free some space and try again (nothing was lost: the last write was not acknowledged)")]
    DiskFull(PathBuf),
    /// Any other file system error.
    #[error("cannot use the store in {dir}: {source}")]
    Io {
        /// The store directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A write failed for another reason (the sentence says which).
    #[error("{0}")]
    Other(String),
    /// The store was written by the sled releases and the program that reads those is missing.
    #[error("the store in {0} was written by lama-tui 0.1 (sled) and is upgraded once by the helper program lama-sled-export, which is neither beside lama-tui nor on PATH; install it from lama-tui's source with `cargo install --locked --path tools/sled-export` (or set LAMA_SLED_EXPORT to its path) and start again; the store was not changed")]
    UpgradeNeedsHelper(PathBuf),
    /// The store belongs to a different identity than the key file.
    #[error("the store in {0} belongs to a different identity than identity.key beside it; restore the matching key file or use another --data-dir")]
    IdentityMismatch(PathBuf),
}

/// The typed store. Cheap to clone (the database handle is reference counted).
#[derive(Clone)]
pub struct Store {
    pub(crate) db: db::Db,
    /// Channel records in memory: read on every sync step, written rarely.
    channel_cache: std::sync::Arc<std::sync::Mutex<Option<Vec<Channel>>>>,
    /// Channel and author numbers of the log's keys.
    interned: std::sync::Arc<std::sync::Mutex<log::Interned>>,
}

impl Store {
    /// Open (creating if needed) the store under `data_dir/store`, first migrating a store
    /// the sled releases wrote there (see [`migrate`]).
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let dir = data_dir.join(DB_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| db::map_io(&dir, e))?;
        migrate::if_needed(data_dir, &dir)?;
        Ok(Self::with(db::Db::open(&dir)?))
    }

    /// An empty throwaway store in memory, to hold the place of a store being reopened.
    pub fn placeholder() -> Result<Store, StoreError> {
        Ok(Self::with(db::Db::in_memory()?))
    }

    fn with(db: db::Db) -> Store {
        Store {
            db,
            channel_cache: Default::default(),
            interned: Default::default(),
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.db.dir
    }

    /// Some write hit a full disk since this store was opened: the database refuses every
    /// write from then on until it is reopened.
    pub fn disk_full_seen(&self) -> bool {
        self.db.disk_full_seen()
    }

    /// One channel record.
    pub fn get_channel(&self, id: &str) -> Result<Option<Channel>, StoreError> {
        // One key lookup: cloning the cached list to find one record made every check of
        // an entry O(channels), and a write of a record empties that cache.
        if crate::domain::ids::channel_id_problem(id).is_some() {
            return Ok(None);
        }
        self.get_json(db::CHANNELS, id.as_bytes())
    }

    fn decode<T: DeserializeOwned>(&self, key: &[u8], v: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
            dir: self.dir().to_path_buf(),
            why: format!(
                "record {} cannot be decoded: {e}",
                String::from_utf8_lossy(key)
            ),
        })
    }

    fn get_json<T: DeserializeOwned>(
        &self,
        table: db::Table,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let v = self.db.read(|r| {
            let t = r.open_table(table)?;
            let got = t.get(key)?;
            Ok(got.map(|g| g.value().to_vec()))
        })?;
        v.map(|v| self.decode(key, &v)).transpose()
    }

    /// Write one record durably.
    fn put_json<T: Serialize>(
        &self,
        table: db::Table,
        key: &[u8],
        v: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).expect("invariant: store records serialise");
        self.db.write(true, |w| {
            w.open_table(table)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Make every write so far durable (one fsync for all of them).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.sync()
    }

    /// The public identity, if one was stored.
    pub fn identity(&self) -> Result<Option<(Person, Instance)>, StoreError> {
        self.get_json(db::META, b"identity")
    }

    /// Store the public identity (durably).
    pub fn put_identity(&self, person: &Person, instance: &Instance) -> Result<(), StoreError> {
        self.put_json(db::META, b"identity", &(person, instance))
    }

    /// All contacts, ordered by Person id.
    pub fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.list(db::CONTACTS)
    }

    /// One contact by Person id.
    pub fn contact(&self, person_id: &str) -> Result<Option<Contact>, StoreError> {
        self.get_json(db::CONTACTS, person_id.as_bytes())
    }

    /// Add or replace a contact (durably).
    pub fn put_contact(&self, c: &Contact) -> Result<(), StoreError> {
        self.put_json(db::CONTACTS, c.person_id().as_bytes(), c)
    }

    /// Remove a contact (durably). Returns whether it existed.
    pub fn remove_contact(&self, person_id: &str) -> Result<bool, StoreError> {
        self.db.write(true, |w| {
            let mut t = w.open_table(db::CONTACTS)?;
            let existed = t.remove(person_id.as_bytes())?.is_some();
            Ok(existed)
        })
    }

    /// Every record of a table, in key order.
    fn list<T: DeserializeOwned>(&self, table: db::Table) -> Result<Vec<T>, StoreError> {
        let raw = self.db.read(|r| {
            let t = r.open_table(table)?;
            let mut out = Vec::new();
            for kv in t.iter()? {
                let (k, v) = kv?;
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        })?;
        raw.iter().map(|(k, v)| self.decode(k, v)).collect()
    }

    /// This instance's own signed profile, as last published.
    pub fn own_profile(&self) -> Result<Option<Profile>, StoreError> {
        self.get_json(db::META, b"profile")
    }

    /// Store this instance's own profile (durably).
    pub fn put_own_profile(&self, p: &Profile) -> Result<(), StoreError> {
        self.put_json(db::META, b"profile", p)
    }

    /// Store an invitation (durably).
    pub fn put_invite(&self, r: &InviteRecord) -> Result<(), StoreError> {
        self.put_json(db::INVITES, r.token.as_bytes(), r)
    }

    /// One invitation by token (hex).
    pub fn invite(&self, token: &str) -> Result<Option<InviteRecord>, StoreError> {
        self.get_json(db::INVITES, token.as_bytes())
    }

    /// All invitations, ordered by token.
    pub fn invites(&self) -> Result<Vec<InviteRecord>, StoreError> {
        self.list(db::INVITES)
    }

    /// All channels, ordered by id.
    pub fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        let mut cache = self
            .channel_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cache.as_ref() {
            return Ok(c.clone());
        }
        let mut list: Vec<Channel> = self.list(db::CHANNELS)?;
        // A record under an id that is not one (stored before ids were checked, by a
        // hostile peer) is no channel: it is left on disk and never listed or synced.
        list.retain(|c| {
            let problem = crate::domain::ids::channel_id_problem(&c.id);
            if let Some(why) = problem {
                tracing::warn!(id = ?c.id, "ignoring a stored channel record: {why}");
            }
            problem.is_none()
        });
        *cache = Some(list.clone());
        Ok(list)
    }

    /// Forget the cached channel list after a write to the channels tree.
    pub(crate) fn invalidate_channels(&self) {
        *self
            .channel_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Add a channel unless it exists (durably).
    pub fn ensure_channel(&self, c: &Channel) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(c).expect("invariant: store records serialise");
        let r = self.db.write(true, |w| {
            let mut t = w.open_table(db::CHANNELS)?;
            if t.get(c.id.as_bytes())?.is_none() {
                t.insert(c.id.as_bytes(), bytes.as_slice())?;
            }
            Ok(())
        });
        self.invalidate_channels();
        r
    }

    /// Atomically: consume `token` (if given; it must be open, or already used by
    /// `contact`), store `contact`, and create `channel` unless it exists. Durable. Either
    /// all of it happens or none.
    pub fn commit_pairing(
        &self,
        token: Option<&str>,
        contact: &Contact,
        channel: &Channel,
        now: u64,
    ) -> Result<PairingCommit, StoreError> {
        let pid = contact.person_id();
        let contact_bytes = serde_json::to_vec(contact).expect("invariant: contacts serialise");
        let channel_bytes = serde_json::to_vec(channel).expect("invariant: channels serialise");
        // An invitation that no longer admits the contact is checked before anything is
        // written, so returning early commits nothing.
        let r = self.db.write(true, |w| {
            if let Some(t) = token {
                let mut inv = w.open_table(db::INVITES)?;
                let rec: Option<InviteRecord> = inv
                    .get(t.as_bytes())?
                    .and_then(|v| serde_json::from_slice(v.value()).ok());
                let Some(mut rec) = rec else {
                    return Ok(PairingCommit::InviteGone(None));
                };
                if let Err(status) = rec.admits(&pid, now, Guesses::Ignore) {
                    return Ok(PairingCommit::InviteGone(Some(status)));
                }
                rec.status = InviteStatus::Used {
                    by: pid.to_string(),
                    at: now,
                };
                let b = serde_json::to_vec(&rec).expect("invariant: invites serialise");
                inv.insert(t.as_bytes(), b.as_slice())?;
            }
            w.open_table(db::CONTACTS)?
                .insert(pid.as_bytes(), contact_bytes.as_slice())?;
            let mut ch = w.open_table(db::CHANNELS)?;
            if ch.get(channel.id.as_bytes())?.is_none() {
                ch.insert(channel.id.as_bytes(), channel_bytes.as_slice())?;
            }
            Ok(PairingCommit::Committed)
        });
        self.invalidate_channels();
        r
    }

    /// Revoke an open invitation (durably). Returns the record as it is now.
    pub fn revoke_invite(&self, token: &str, now: u64) -> Result<Option<InviteRecord>, StoreError> {
        let Some(mut rec) = self.invite(token)? else {
            return Ok(None);
        };
        if rec.status == InviteStatus::Open {
            rec.status = InviteStatus::Revoked { at: now };
            self.put_invite(&rec)?;
        }
        Ok(Some(rec))
    }
}
