//! Upgrading a store written by the sled releases (up to 0.x at commit 78d4b5b) to redb.
//!
//! The records keep their keys and values (the same tables, the same encodings), so the
//! migration copies those sled trees into the redb tables of the same names; the sync log
//! is rebuilt from sled's entries in the new layout ([`super::codec`]). Then it checks that
//! every table holds as many records as its tree (entries, heads, view and membership index
//! included). It is safe to kill at any point:
//! 1. copy into `data.redb.partial` (a killed run leaves only this file, which the next
//!    start deletes and writes again);
//! 2. verify the counts, fsync, and rename it to `data.redb` (the commit point);
//! 3. move sled's files into `store-sled-backup/` beside the store (a run killed before
//!    this step finishes it at the next start: `data.redb` exists, sled's files remain).
//!
//! The backup is kept: the message says where, and that it can be deleted once the new
//! store has been seen to work.
//!
//! Test hook: `LAMA_TEST_MIGRATE_ABORT_AFTER=N` aborts the process (as a kill -9 would end
//! it) once N entries have been copied, so a test can restart a migration killed half-way.

use std::path::{Path, PathBuf};

use redb::ReadableTableMetadata;

use super::db::{map_io, Db, Table, DB_FILE, LOG_TABLES, RECORD_TABLES};
use super::{Store, StoreError};
use crate::domain::Entry;

/// Where sled's files are moved once the migration has been verified.
pub const BACKUP_DIR: &str = "store-sled-backup";
/// The file being written while a migration runs.
const PARTIAL: &str = "data.redb.partial";
/// Records copied per (non-durable) transaction; the last commit is durable.
const MIGRATE_BATCH: usize = 20_000;
/// Progress is reported every this many entries (stores smaller than this say nothing
/// between the start and the end).
const PROGRESS_EVERY: u64 = 50_000;

/// The files sled 0.34 keeps in its directory.
fn sled_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
        })
        .collect()
}

/// Whether the store directory `dir` holds a sled store not yet upgraded (the next
/// [`Store::open`](super::Store::open) upgrades it).
pub fn pending(dir: &Path) -> bool {
    !sled_files(dir).is_empty() && !dir.join(DB_FILE).exists()
}

/// Migrate the sled store in `dir` (the store directory of `data_dir`) if there is one.
pub fn if_needed(data_dir: &Path, dir: &Path) -> Result<(), StoreError> {
    let old = sled_files(dir);
    if old.is_empty() {
        return Ok(());
    }
    if !dir.join(DB_FILE).exists() {
        if !dir.join("conf").exists() {
            // Only fragments of sled's files and no new store: nothing we can read.
            return Err(StoreError::Corrupt {
                dir: dir.to_path_buf(),
                why: "it holds parts of an old-format store without its conf file".into(),
            });
        }
        copy(dir)?;
    }
    let backup = data_dir.join(BACKUP_DIR);
    move_aside(dir, &old, &backup)?;
    eprintln!(
        "lama-tui: the store in {} is upgraded; the old one is kept in {} (delete it once this version has worked for you)",
        dir.display(),
        backup.display()
    );
    Ok(())
}

/// Open the sled store read for migration; a damaged one is a clear error, not a crash.
fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    let cfg = sled::Config::new()
        .path(dir)
        .cache_capacity(32 * 1024 * 1024);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || cfg.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(io))) if io.to_string().contains("could not acquire lock") => {
            Err(StoreError::Locked(dir.to_path_buf()))
        }
        Ok(Err(sled::Error::Io(io))) => Err(map_io(dir, io)),
        Ok(Err(e)) => Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            why: format!("the old-format store cannot be read for the upgrade: {e}"),
        }),
        Err(_) => Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            why: "the old-format store cannot be read for the upgrade".into(),
        }),
    }
}

fn sled_err(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => map_io(dir, io),
        other => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            why: format!("the old-format store cannot be read for the upgrade: {other}"),
        },
    }
}

/// Copy every tree into `data.redb.partial`, verify, and rename it into place.
fn copy(dir: &Path) -> Result<(), StoreError> {
    let sled = open_sled(dir)?;
    let partial = dir.join(PARTIAL);
    match std::fs::remove_file(&partial) {
        Ok(()) => eprintln!(
            "lama-tui: an interrupted upgrade of {} starts again",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(map_io(dir, e)),
    }
    let entries = sled.open_tree("entries").map_err(|e| sled_err(dir, e))?;
    let total = entries.len() as u64;
    eprintln!(
        "lama-tui: upgrading the store in {} to the new format ({total} messages and other entries); this runs once",
        dir.display()
    );
    let started = std::time::Instant::now();
    let new = Store::with(Db::open_file(&partial, dir)?);
    for (name, table) in RECORD_TABLES {
        let tree = sled.open_tree(name).map_err(|e| sled_err(dir, e))?;
        copy_records(dir, &tree, &new, table)?;
    }
    let copied = copy_entries(dir, &entries, &new, total)?;
    verify(dir, &sled, &new)?;
    drop(new);
    finish(dir, &partial)?;
    eprintln!(
        "lama-tui: upgrade done: {copied} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Copy one record tree as it is (same keys, same values).
fn copy_records(
    dir: &Path,
    tree: &sled::Tree,
    new: &Store,
    table: Table,
) -> Result<(), StoreError> {
    let mut iter = tree.iter();
    loop {
        let mut batch = Vec::with_capacity(MIGRATE_BATCH);
        for kv in iter.by_ref().take(MIGRATE_BATCH) {
            batch.push(kv.map_err(|e| sled_err(dir, e))?);
        }
        if batch.is_empty() {
            return Ok(());
        }
        new.db.write(false, |w| {
            let mut t = w.open_table(table)?;
            for (k, v) in &batch {
                t.insert(k.as_ref(), v.as_ref())?;
            }
            Ok(())
        })?;
    }
}

/// Rebuild the log from sled's entries (canonical JSON, in key order: each author's log
/// in seq order, so the last write of a head is the highest seq).
fn copy_entries(dir: &Path, tree: &sled::Tree, new: &Store, total: u64) -> Result<u64, StoreError> {
    let abort_after: Option<u64> = std::env::var("LAMA_TEST_MIGRATE_ABORT_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut iter = tree.iter();
    let mut copied = 0u64;
    loop {
        let mut batch: Vec<Entry> = Vec::with_capacity(MIGRATE_BATCH);
        for kv in iter.by_ref().take(MIGRATE_BATCH) {
            let (k, v) = kv.map_err(|e| sled_err(dir, e))?;
            let e = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                dir: dir.to_path_buf(),
                why: format!(
                    "an old-format entry cannot be read for the upgrade ({e}; key {})",
                    String::from_utf8_lossy(&k)
                ),
            })?;
            batch.push(e);
        }
        if batch.is_empty() {
            return Ok(copied);
        }
        let items: Vec<(&Entry, Option<&crate::domain::Channel>)> =
            batch.iter().map(|e| (e, None)).collect();
        new.write_entries(&items).map_err(|e| {
            StoreError::Other(format!(
                "upgrading the store in {} failed while writing entries: {}",
                dir.display(),
                e.message
            ))
        })?;
        let before = copied;
        copied += batch.len() as u64;
        if before / PROGRESS_EVERY != copied / PROGRESS_EVERY {
            eprintln!("lama-tui: upgrading: {copied} of {total} entries copied");
        }
        if abort_after.is_some_and(|n| copied >= n) {
            eprintln!("lama-tui: test hook: aborting the upgrade half-way");
            std::process::abort();
        }
    }
}

/// Every table holds as many records as its tree, and a last durable commit holds them.
fn verify(dir: &Path, sled: &sled::Db, new: &Store) -> Result<(), StoreError> {
    let tables = RECORD_TABLES.iter().chain(&LOG_TABLES[..4]);
    let counts = new.db.read(|r| {
        let mut out = Vec::new();
        for (name, table) in tables.clone() {
            out.push((*name, r.open_table(*table)?.len()?));
        }
        Ok(out)
    })?;
    for (name, got) in counts {
        let want = sled.open_tree(name).map_err(|e| sled_err(dir, e))?.len() as u64;
        if got != want {
            return Err(StoreError::Other(format!(
                "upgrading the store in {} failed: {name} holds {got} records after the copy, not {want}; the old store is untouched, please report this",
                dir.display()
            )));
        }
    }
    new.db.write(true, |_| Ok(()))
}

/// Rename the verified copy into place, durably.
fn finish(dir: &Path, partial: &Path) -> Result<(), StoreError> {
    let f = std::fs::File::open(partial).map_err(|e| map_io(dir, e))?;
    f.sync_all().map_err(|e| map_io(dir, e))?;
    std::fs::rename(partial, dir.join(DB_FILE)).map_err(|e| map_io(dir, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| map_io(dir, e))
}

/// Move sled's files into the backup directory.
fn move_aside(dir: &Path, files: &[PathBuf], backup: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(backup).map_err(|e| map_io(backup, e))?;
    for f in files {
        let Some(name) = f.file_name() else { continue };
        std::fs::rename(f, backup.join(name)).map_err(|e| map_io(dir, e))?;
    }
    sync_dir(backup)?;
    sync_dir(dir)
}
