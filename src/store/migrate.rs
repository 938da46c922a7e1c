//! Upgrading a store written by the sled releases (up to 0.x at commit 78d4b5b) to redb.
//!
//! sled is not in this program's build: the separate program `lama-sled-export`
//! (tools/sled-export, with its own lock file) reads the old store and prints every tree as
//! a stream (its format is in that program's header), which this module reads. It is found
//! through `LAMA_SLED_EXPORT`, beside this program, or on PATH; without it the store is left
//! as it is and the start fails with [`StoreError::UpgradeNeedsHelper`], which says how to
//! install it.
//!
//! The records keep their keys and values (the same tables, the same encodings), so the
//! migration copies those sled trees into the redb tables of the same names; the sync log
//! is rebuilt from sled's entries in the new layout ([`super::codec`]). Then it checks that
//! every table holds as many records as the helper announced for its tree (entries, heads,
//! view and membership index included), and that the helper ended well. It is safe to kill
//! at any point:
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
/// The program that reads sled stores (tools/sled-export), run once per upgrade.
pub const HELPER: &str = "lama-sled-export";
/// The first bytes of the helper's stream.
const MAGIC: &[u8; 19] = b"LAMA-SLED-EXPORT/1\n";
/// Longest key or value the stream may carry (the helper's own bound).
const MAX_RECORD: u32 = 64 * 1024 * 1024;
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

/// Where the helper is: `LAMA_SLED_EXPORT` if set, else beside this program, else on PATH.
pub fn helper() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LAMA_SLED_EXPORT").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(HELPER)))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(HELPER))
            .find(|p| p.is_file())
    })
}

/// Copy every tree into `data.redb.partial`, verify, and rename it into place.
fn copy(dir: &Path) -> Result<(), StoreError> {
    let helper = helper().ok_or_else(|| StoreError::UpgradeNeedsHelper(dir.to_path_buf()))?;
    let partial = dir.join(PARTIAL);
    match std::fs::remove_file(&partial) {
        Ok(()) => eprintln!(
            "lama-tui: an interrupted upgrade of {} starts again",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(map_io(dir, e)),
    }
    eprintln!(
        "lama-tui: upgrading the store in {} to the new format with {}; this runs once",
        dir.display(),
        helper.display()
    );
    let mut child = std::process::Command::new(&helper)
        .arg("export")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            StoreError::Other(format!(
                "upgrading the store in {} needs {}, which cannot be started ({e}); reinstall it with `cargo install --locked --path tools/sled-export` from lama-tui's source, or set LAMA_SLED_EXPORT to its path",
                dir.display(),
                helper.display()
            ))
        })?;
    let started = std::time::Instant::now();
    let stdout = child.stdout.take().expect("stdout was piped at spawn");
    let new = Store::with(Db::open_file(&partial, dir)?);
    let read = read_stream(
        dir,
        &mut std::io::BufReader::with_capacity(1 << 20, stdout),
        &new,
    );
    let status = child.wait().map_err(|e| map_io(dir, e))?;
    let mut why = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut why);
    }
    // The helper's own verdict comes first: a stream cut short is its symptom.
    let counts = helper_verdict(dir, status, why.trim()).and(read);
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            // Nothing half-made is left behind (a next start would delete it anyway).
            drop(new);
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if counts.get("meta").copied().unwrap_or(0) == 0 {
        // Every store lama-tui wrote holds its identity in `meta`; sled reads a log it cannot
        // parse as an empty store, so this is what a damaged one looks like.
        drop(new);
        let _ = std::fs::remove_file(&partial);
        return Err(cut(
            dir,
            "it holds no identity record, so its log is damaged or it is not lama-tui's",
        ));
    }
    verify(dir, &counts, &new)?;
    drop(new);
    finish(dir, &partial)?;
    eprintln!(
        "lama-tui: upgrade done: {} entries in {:.1} s",
        counts.get("entries").copied().unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The helper's exit status (see tools/sled-export) as the store's error.
fn helper_verdict(
    dir: &Path,
    status: std::process::ExitStatus,
    why: &str,
) -> Result<(), StoreError> {
    match status.code() {
        Some(0) => Ok(()),
        Some(3) => Err(StoreError::Locked(dir.to_path_buf())),
        Some(4) => Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            why: format!("the old-format store cannot be read for the upgrade: {why}"),
        }),
        _ => Err(StoreError::Other(format!(
            "upgrading the store in {} failed ({status}: {why}); the old store is untouched, start again once that is fixed",
            dir.display()
        ))),
    }
}

/// The records each tree held, by name, as the stream announced them.
type Counts = std::collections::HashMap<String, u64>;

fn cut(dir: &Path, what: &str) -> StoreError {
    StoreError::Corrupt {
        dir: dir.to_path_buf(),
        why: format!("the old-format store cannot be read for the upgrade: {what}"),
    }
}

fn read_n<R: std::io::Read, const N: usize>(dir: &Path, r: &mut R) -> Result<[u8; N], StoreError> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf)
        .map_err(|e| cut(dir, &format!("the helper's stream ends early ({e})")))?;
    Ok(buf)
}

/// One length-prefixed key or value of the stream.
fn read_part<R: std::io::Read>(dir: &Path, r: &mut R) -> Result<Vec<u8>, StoreError> {
    let len = u32::from_be_bytes(read_n(dir, r)?);
    if len > MAX_RECORD {
        return Err(cut(dir, &format!("a record of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)
        .map_err(|e| cut(dir, &format!("the helper's stream ends early ({e})")))?;
    Ok(buf)
}

/// Read the helper's stream into `new`: record trees as they are, entries into the new log,
/// the rest (sled's indexes, which the log rebuilds) only counted.
fn read_stream<R: std::io::Read>(dir: &Path, r: &mut R, new: &Store) -> Result<Counts, StoreError> {
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|e| cut(dir, &format!("the helper printed no stream ({e})")))?;
    if magic != *MAGIC {
        return Err(cut(
            dir,
            "the helper printed something other than its stream",
        ));
    }
    let mut counts = Counts::new();
    loop {
        match read_n::<_, 1>(dir, r)?[0] {
            b'E' => return Ok(counts),
            b'T' => {}
            tag => {
                return Err(cut(
                    dir,
                    &format!("an unknown tag {tag} in the helper's stream"),
                ))
            }
        }
        let name_len = u16::from_be_bytes(read_n(dir, r)?);
        let mut name = vec![0u8; name_len as usize];
        r.read_exact(&mut name)
            .map_err(|e| cut(dir, &format!("the helper's stream ends early ({e})")))?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let count = u64::from_be_bytes(read_n(dir, r)?);
        let table = RECORD_TABLES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t);
        match table {
            Some(table) => copy_records(dir, r, count, new, table)?,
            None if name == "entries" => copy_entries(dir, r, count, new)?,
            None => {
                for _ in 0..count * 2 {
                    read_part(dir, r)?;
                }
            }
        }
        counts.insert(name, count);
    }
}

/// Copy one record tree as it is (same keys, same values).
fn copy_records<R: std::io::Read>(
    dir: &Path,
    r: &mut R,
    count: u64,
    new: &Store,
    table: Table,
) -> Result<(), StoreError> {
    let mut left = count;
    while left > 0 {
        let n = left.min(MIGRATE_BATCH as u64);
        let mut batch = Vec::with_capacity(n as usize);
        for _ in 0..n {
            batch.push((read_part(dir, r)?, read_part(dir, r)?));
        }
        left -= n;
        new.db.write(false, |w| {
            let mut t = w.open_table(table)?;
            for (k, v) in &batch {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Rebuild the log from sled's entries (canonical JSON, in key order: each author's log
/// in seq order, so the last write of a head is the highest seq).
fn copy_entries<R: std::io::Read>(
    dir: &Path,
    r: &mut R,
    total: u64,
    new: &Store,
) -> Result<(), StoreError> {
    let abort_after: Option<u64> = std::env::var("LAMA_TEST_MIGRATE_ABORT_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    eprintln!("lama-tui: upgrading: {total} messages and other entries to copy");
    let mut copied = 0u64;
    while copied < total {
        let n = (total - copied).min(MIGRATE_BATCH as u64);
        let mut batch: Vec<Entry> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = read_part(dir, r)?;
            let v = read_part(dir, r)?;
            let e = serde_json::from_slice(&v).map_err(|e| {
                cut(
                    dir,
                    &format!(
                        "an old-format entry cannot be read ({e}; key {})",
                        String::from_utf8_lossy(&k)
                    ),
                )
            })?;
            batch.push(e);
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
        copied += n;
        if before / PROGRESS_EVERY != copied / PROGRESS_EVERY {
            eprintln!("lama-tui: upgrading: {copied} of {total} entries copied");
        }
        if abort_after.is_some_and(|n| copied >= n) {
            eprintln!("lama-tui: test hook: aborting the upgrade half-way");
            std::process::abort();
        }
    }
    Ok(())
}

/// Every table holds as many records as its tree, and a last durable commit holds them.
fn verify(dir: &Path, want: &Counts, new: &Store) -> Result<(), StoreError> {
    let tables = RECORD_TABLES.iter().chain(&LOG_TABLES[..4]);
    let counts = new.db.read(|r| {
        let mut out = Vec::new();
        for (name, table) in tables.clone() {
            out.push((*name, r.open_table(*table)?.len()?));
        }
        Ok(out)
    })?;
    for (name, got) in counts {
        let want = want.get(name).copied().unwrap_or(0);
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
