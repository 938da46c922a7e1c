//! Persistence: a typed API over sled (identity, contacts), plus the secret key file.
//!
//! Every write that a caller reports to the user as done is flushed before it returns.
//! sled errors are mapped to [`StoreError`] variants that name the directory and the fix.

pub mod keyfile;
pub mod log;

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use crate::domain::identity::{Instance, Person, Profile};
use crate::domain::invitation::{Guesses, PairingCommit};
use crate::domain::{Channel, Contact, InviteRecord, InviteStatus};

/// Sub-directory of the data dir that holds the sled database.
pub const DB_DIR: &str = "store";
/// sled page cache size.
pub const STORE_CACHE_BYTES: u64 = 32 * 1024 * 1024;

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
        /// What sled or the decoder reported.
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
    /// The store belongs to a different identity than the key file.
    #[error("the store in {0} belongs to a different identity than identity.key beside it; restore the matching key file or use another --data-dir")]
    IdentityMismatch(PathBuf),
}

/// The typed store. Cheap to clone (sled handles are reference counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    contacts: sled::Tree,
    invites: sled::Tree,
    channels: sled::Tree,
    pub(crate) entries: sled::Tree,
    pub(crate) heads: sled::Tree,
    pub(crate) view: sled::Tree,
    pub(crate) persons: sled::Tree,
    pub(crate) unread: sled::Tree,
    pub(crate) members_idx: sled::Tree,
    /// Channel records in memory: read on every sync step, written rarely.
    channel_cache: std::sync::Arc<std::sync::Mutex<Option<Vec<Channel>>>>,
    /// Set when any operation hit a full disk (see [`Store::disk_full_seen`]).
    disk_full: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dir: PathBuf,
}

fn map_sled(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => map_io(dir, io),
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            why: "sled reported corruption".into(),
        },
        other => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            why: other.to_string(),
        },
    }
}

fn map_io(dir: &Path, io: std::io::Error) -> StoreError {
    if io.to_string().contains("could not acquire lock") {
        return StoreError::Locked(dir.to_path_buf());
    }
    // ENOSPC: ErrorKind::StorageFull is stable, but sled sometimes wraps the raw error.
    if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
        return StoreError::DiskFull(dir.to_path_buf());
    }
    StoreError::Io {
        dir: dir.to_path_buf(),
        source: io,
    }
}

impl Store {
    /// Open (creating if needed) the store under `data_dir/store`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let dir = data_dir.join(DB_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| map_io(&dir, e))?;
        // A bounded page cache: a chat history does not need sled's 1 GiB default in RAM.
        let cfg = sled::Config::new()
            .path(&dir)
            .cache_capacity(STORE_CACHE_BYTES);
        Self::open_with(cfg, dir)
    }

    /// An empty throwaway store, to hold the place of a store being reopened.
    pub fn placeholder() -> Result<Store, StoreError> {
        let dir = std::env::temp_dir();
        Self::open_with(sled::Config::new().temporary(true), dir)
    }

    fn open_with(cfg: sled::Config, dir: PathBuf) -> Result<Store, StoreError> {
        // sled 0.34 can panic on some damaged files instead of returning `Corruption`;
        // a damaged store must be a clear error, so the panic is contained here.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || cfg.open()));
        let db = match opened {
            Ok(r) => r.map_err(|e| map_sled(&dir, e))?,
            Err(_) => {
                return Err(StoreError::Corrupt {
                    dir,
                    why: "the database files cannot be read".into(),
                })
            }
        };
        let meta = db.open_tree("meta").map_err(|e| map_sled(&dir, e))?;
        let contacts = db.open_tree("contacts").map_err(|e| map_sled(&dir, e))?;
        let invites = db.open_tree("invites").map_err(|e| map_sled(&dir, e))?;
        let channels = db.open_tree("channels").map_err(|e| map_sled(&dir, e))?;
        let tree = |n: &str| db.open_tree(n).map_err(|e| map_sled(&dir, e));
        let (entries, heads, view) = (tree("entries")?, tree("heads")?, tree("view")?);
        let (persons, unread) = (tree("persons")?, tree("unread")?);
        let members_idx = tree("members")?;
        Ok(Store {
            db,
            meta,
            contacts,
            invites,
            channels,
            entries,
            heads,
            view,
            persons,
            unread,
            members_idx,
            channel_cache: Default::default(),
            disk_full: Default::default(),
            dir,
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn sled_err(&self, e: sled::Error) -> StoreError {
        let err = map_sled(&self.dir, e);
        if matches!(err, StoreError::DiskFull(_)) {
            self.disk_full
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        err
    }

    /// Some write hit a full disk since this store was opened: sled refuses every write
    /// from then on until the store is reopened.
    pub fn disk_full_seen(&self) -> bool {
        self.disk_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn channels_tree(&self) -> sled::Tree {
        self.channels.clone()
    }

    /// One channel record.
    pub fn get_channel(&self, id: &str) -> Result<Option<Channel>, StoreError> {
        // One key lookup: cloning the cached list to find one record made every check of
        // an entry O(channels), and a write of a record empties that cache.
        if crate::domain::ids::channel_id_problem(id).is_some() {
            return Ok(None);
        }
        self.get_json(&self.channels, id.as_bytes())
    }

    fn get_json<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key).map_err(|e| self.sled_err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    dir: self.dir.clone(),
                    why: format!(
                        "record {} cannot be decoded: {e}",
                        String::from_utf8_lossy(key)
                    ),
                }),
        }
    }

    fn put_json<T: Serialize>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        v: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).expect("invariant: store records serialise");
        tree.insert(key, bytes).map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Flush everything written so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// The public identity, if one was stored.
    pub fn identity(&self) -> Result<Option<(Person, Instance)>, StoreError> {
        self.get_json(&self.meta, b"identity")
    }

    /// Store the public identity (flushed).
    pub fn put_identity(&self, person: &Person, instance: &Instance) -> Result<(), StoreError> {
        self.put_json(&self.meta, b"identity", &(person, instance))?;
        self.flush()
    }

    /// All contacts, ordered by Person id.
    pub fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.list(&self.contacts)
    }

    /// One contact by Person id.
    pub fn contact(&self, person_id: &str) -> Result<Option<Contact>, StoreError> {
        self.get_json(&self.contacts, person_id.as_bytes())
    }

    /// Add or replace a contact (flushed).
    pub fn put_contact(&self, c: &Contact) -> Result<(), StoreError> {
        self.put_json(&self.contacts, c.person_id().as_bytes(), c)?;
        self.flush()
    }

    /// Remove a contact (flushed). Returns whether it existed.
    pub fn remove_contact(&self, person_id: &str) -> Result<bool, StoreError> {
        let old = self
            .contacts
            .remove(person_id.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        self.flush()?;
        Ok(old.is_some())
    }

    fn list<T: DeserializeOwned>(&self, tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for kv in tree.iter() {
            let (k, _) = kv.map_err(|e| self.sled_err(e))?;
            if let Some(v) = self.get_json(tree, &k)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// This instance's own signed profile, as last published.
    pub fn own_profile(&self) -> Result<Option<Profile>, StoreError> {
        self.get_json(&self.meta, b"profile")
    }

    /// Store this instance's own profile (flushed).
    pub fn put_own_profile(&self, p: &Profile) -> Result<(), StoreError> {
        self.put_json(&self.meta, b"profile", p)?;
        self.flush()
    }

    /// Store an invitation (flushed).
    pub fn put_invite(&self, r: &InviteRecord) -> Result<(), StoreError> {
        self.put_json(&self.invites, r.token.as_bytes(), r)?;
        self.flush()
    }

    /// One invitation by token (hex).
    pub fn invite(&self, token: &str) -> Result<Option<InviteRecord>, StoreError> {
        self.get_json(&self.invites, token.as_bytes())
    }

    /// All invitations, ordered by token.
    pub fn invites(&self) -> Result<Vec<InviteRecord>, StoreError> {
        self.list(&self.invites)
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
        let mut list: Vec<Channel> = self.list(&self.channels)?;
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

    /// Add a channel unless it exists (flushed).
    pub fn ensure_channel(&self, c: &Channel) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(c).expect("invariant: store records serialise");
        let _ = self
            .channels
            .compare_and_swap(c.id.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .map_err(|e| self.sled_err(e))?;
        self.invalidate_channels();
        self.flush()
    }

    /// Atomically: consume `token` (if given; it must be open, or already used by
    /// `contact`), store `contact`, and create `channel` unless it exists. Flushed. Either
    /// all of it happens or none.
    pub fn commit_pairing(
        &self,
        token: Option<&str>,
        contact: &Contact,
        channel: &Channel,
        now: u64,
    ) -> Result<PairingCommit, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional;
        let pid = contact.person_id();
        let contact_bytes = serde_json::to_vec(contact).expect("invariant: contacts serialise");
        let channel_bytes = serde_json::to_vec(channel).expect("invariant: channels serialise");
        let r = (&self.invites, &self.contacts, &self.channels).transaction(|(inv, con, ch)| {
            if let Some(t) = token {
                let rec: Option<InviteRecord> = inv
                    .get(t.as_bytes())?
                    .and_then(|v| serde_json::from_slice(&v).ok());
                let Some(mut rec) = rec else {
                    return Err(ConflictableTransactionError::Abort(None));
                };
                if let Err(r) = rec.admits(&pid, now, Guesses::Ignore) {
                    return Err(ConflictableTransactionError::Abort(Some(r)));
                }
                rec.status = InviteStatus::Used {
                    by: pid.to_string(),
                    at: now,
                };
                let b = serde_json::to_vec(&rec).expect("invariant: invites serialise");
                inv.insert(t.as_bytes(), b)?;
            }
            con.insert(pid.as_bytes(), contact_bytes.clone())?;
            if ch.get(channel.id.as_bytes())?.is_none() {
                ch.insert(channel.id.as_bytes(), channel_bytes.clone())?;
            }
            Ok(())
        });
        self.invalidate_channels();
        match r {
            Ok(()) => {
                self.flush()?;
                Ok(PairingCommit::Committed)
            }
            Err(TransactionError::Abort(status)) => Ok(PairingCommit::InviteGone(status)),
            Err(TransactionError::Storage(e)) => Err(self.sled_err(e)),
        }
    }

    /// Revoke an open invitation (flushed). Returns the record as it is now.
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
