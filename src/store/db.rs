//! The redb plumbing under [`Store`](super::Store): the tables, read and write transactions,
//! and redb's errors as [`StoreError`]s that name the directory and the fix.
//!
//! Why redb (figures in README, "Performance"): one file, copy-on-write B-trees with a real
//! `fsync` on every durable commit, opening without walking the store (quick repair saves the
//! allocator state with each durable commit, so even a kill -9 reopens at once), no
//! dependencies, and actively maintained.
//!
//! Durability: record writes a caller reports as done commit with
//! [`redb::Durability::Immediate`]. Entry writes commit with `Durability::None` and are made
//! durable by the next [`Db::sync`] (what the sync engine calls before it acknowledges): that
//! is the group commit, one fsync for every entry written since the last one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{Database, Durability, ReadTransaction, TableDefinition, WriteTransaction};

use super::StoreError;

/// A table of byte keys and byte values.
pub(crate) type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const META: Table = TableDefinition::new("meta");
pub(crate) const CONTACTS: Table = TableDefinition::new("contacts");
pub(crate) const INVITES: Table = TableDefinition::new("invites");
pub(crate) const CHANNELS: Table = TableDefinition::new("channels");
pub(crate) const ENTRIES: Table = TableDefinition::new("entries");
pub(crate) const HEADS: Table = TableDefinition::new("heads");
pub(crate) const VIEW: Table = TableDefinition::new("view");
pub(crate) const PERSONS: Table = TableDefinition::new("persons");
pub(crate) const UNREAD: Table = TableDefinition::new("unread");
pub(crate) const MEMBERS: Table = TableDefinition::new("members");
pub(crate) const CHAN_IDS: Table = TableDefinition::new("chan_ids");
pub(crate) const AUTHOR_IDS: Table = TableDefinition::new("author_ids");
pub(crate) const AUTHOR_NAMES: Table = TableDefinition::new("author_names");

/// The record tables, by the name the sled store gave its tree: keys and values are the
/// same in both, so the upgrade copies each one as it is.
pub(crate) const RECORD_TABLES: [(&str, Table); 6] = [
    ("meta", META),
    ("contacts", CONTACTS),
    ("invites", INVITES),
    ("channels", CHANNELS),
    ("persons", PERSONS),
    ("unread", UNREAD),
];

/// The sync log's tables (laid out as [`super::codec`] says; the upgrade rebuilds them from
/// sled's entries).
pub(crate) const LOG_TABLES: [(&str, Table); 7] = [
    ("entries", ENTRIES),
    ("heads", HEADS),
    ("view", VIEW),
    ("members", MEMBERS),
    ("chan_ids", CHAN_IDS),
    ("author_ids", AUTHOR_IDS),
    ("author_names", AUTHOR_NAMES),
];

/// The database file inside the store directory.
pub const DB_FILE: &str = "data.redb";
/// redb page cache: a chat history does not need redb's 1 GiB default in RAM.
pub const STORE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// An open database and what its errors are reported against.
#[derive(Clone)]
pub(crate) struct Db {
    db: Arc<Database>,
    pub(crate) dir: PathBuf,
    /// Some commit since the last durable one was not durable.
    dirty: Arc<AtomicBool>,
    /// Set when any operation hit a full disk.
    disk_full: Arc<AtomicBool>,
}

/// Map any redb error to the store boundary's error.
pub(crate) fn map_redb(dir: &Path, e: impl Into<redb::Error>) -> StoreError {
    let corrupt = |why: String| StoreError::Corrupt {
        dir: dir.to_path_buf(),
        why,
    };
    match e.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked(dir.to_path_buf())
        }
        redb::Error::Io(io) => map_io(dir, io),
        redb::Error::Corrupted(why) => corrupt(why),
        redb::Error::UpgradeRequired(v) => {
            corrupt(format!("its file format {v} is not one this version reads"))
        }
        redb::Error::PreviousIo => StoreError::Other(format!(
            "an earlier write to the store in {} failed; it is reopened once the cause is fixed (free some disk space)",
            dir.display()
        )),
        other => corrupt(other.to_string()),
    }
}

/// Map an OS error met on the store's files.
pub(crate) fn map_io(dir: &Path, io: std::io::Error) -> StoreError {
    if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
        return StoreError::DiskFull(dir.to_path_buf());
    }
    if io.kind() == std::io::ErrorKind::InvalidData
        || io.kind() == std::io::ErrorKind::UnexpectedEof
    {
        return StoreError::Corrupt {
            dir: dir.to_path_buf(),
            why: format!("its database file cannot be read: {io}"),
        };
    }
    StoreError::Io {
        dir: dir.to_path_buf(),
        source: io,
    }
}

impl Db {
    /// Open (creating if needed) the database file in `dir`, with every table present.
    pub(crate) fn open(dir: &Path) -> Result<Db, StoreError> {
        Self::open_file(&dir.join(DB_FILE), dir)
    }

    /// Open (creating if needed) the database file `path`; errors name `dir`.
    pub(crate) fn open_file(path: &Path, dir: &Path) -> Result<Db, StoreError> {
        let path = path.to_path_buf();
        let owned = dir.to_path_buf();
        // A damaged file must be a clear error, never a crash: redb checks what it reads,
        // and a panic on some unforeseen damage is contained here all the same.
        let opened = std::panic::catch_unwind(move || {
            Database::builder()
                .set_cache_size(STORE_CACHE_BYTES)
                .create(&path)
        });
        let db = match opened {
            Ok(r) => r.map_err(|e| map_redb(&owned, e))?,
            Err(_) => {
                return Err(StoreError::Corrupt {
                    dir: owned,
                    why: "the database file cannot be read".into(),
                })
            }
        };
        Self::with(db, dir.to_path_buf())
    }

    /// An empty database in memory, to hold the place of a store being reopened.
    pub(crate) fn in_memory() -> Result<Db, StoreError> {
        let dir = std::env::temp_dir();
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| map_redb(&dir, e))?;
        Self::with(db, dir)
    }

    fn with(db: Database, dir: PathBuf) -> Result<Db, StoreError> {
        let db = Db {
            db: Arc::new(db),
            dir,
            dirty: Default::default(),
            disk_full: Default::default(),
        };
        // Every table exists from here on: a read never meets a missing table. Not durable
        // by itself (no fsync on every start): tables lost with it are made again at the
        // next open, and the first durable write makes them durable.
        db.write(false, |w| {
            for (_, t) in RECORD_TABLES.iter().chain(&LOG_TABLES) {
                w.open_table(*t)?;
            }
            Ok(())
        })?;
        Ok(db)
    }

    /// Note a full disk in `err` (see [`Db::disk_full_seen`]) and pass it on.
    pub(crate) fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        let err = map_redb(&self.dir, e);
        if matches!(err, StoreError::DiskFull(_)) {
            self.disk_full.store(true, Ordering::Relaxed);
        }
        err
    }

    /// Some write hit a full disk since the store was opened: redb refuses every write after
    /// a failed one (`PreviousIo`) until the database is reopened.
    pub(crate) fn disk_full_seen(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// Run `f` in a read transaction (a consistent snapshot).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        use redb::ReadableDatabase;
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        f(&r).map_err(|e| self.err(e))
    }

    /// Run `f` in a write transaction and commit it, durably or not. `f` returning an error
    /// aborts the transaction: nothing of it is written.
    pub(crate) fn write<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let mut w = self.db.begin_write().map_err(|e| self.err(e))?;
        if durable {
            w.set_quick_repair(true);
        } else {
            w.set_durability(Durability::None)
                .map_err(|e| self.err(redb::Error::from(e)))?;
        }
        let out = f(&w).map_err(|e| self.err(e))?;
        // The flag changes while this transaction is the only writer, so no other commit
        // can slip between a durable commit and the flag saying everything is durable.
        let was_dirty = self.dirty.swap(!durable, Ordering::AcqRel);
        if let Err(e) = w.commit() {
            self.dirty.store(was_dirty || !durable, Ordering::Release);
            return Err(self.err(e));
        }
        Ok(out)
    }

    /// Make every commit so far durable: one fsync for all of them (a no-op when there is
    /// nothing to make durable).
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        if self.dirty.load(Ordering::Acquire) {
            self.write(true, |_| Ok(()))?;
        }
        Ok(())
    }
}
