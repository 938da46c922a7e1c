//! The storage engines measured side by side on this machine, as the store would use them:
//! redb (the store's engine) and fjall (the alternative weighed for it). Each figure is the
//! same work on both: 400-byte values under 16-byte big-endian keys.
//!
//! - durable batched inserts: 128 per durable commit (as sync writes a batch, then flushes);
//! - a durable single write's latency (p50);
//! - open with `n` entries: from a closed store to the first read answered;
//! - disk bytes per entry after the fill.

use std::path::Path;
use std::time::Instant;

use super::pct;
use crate::domain::Hlc;

/// Bytes per value: a signed text entry of about 100 characters, encoded.
const VALUE_BYTES: usize = 400;
/// Entries per durable commit in the batched figure.
const BATCH: usize = 128;
/// Entries per commit while filling the store for the open measurement.
const FILL_BATCH: usize = 10_000;

/// One engine's figures.
pub struct EngineFigures {
    /// Durable batched inserts per second.
    pub batched: f64,
    /// Durable single write p50, ms.
    pub single_ms: f64,
    /// Open to first read with `n` entries, ms.
    pub open_ms: f64,
    /// Bytes on disk per entry.
    pub bytes_per_entry: f64,
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

const REDB_TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new("bench");

fn redb_open(path: &Path) -> redb::Database {
    redb::Database::builder()
        .set_cache_size(crate::store::STORE_CACHE_BYTES)
        .create(path)
        .expect("bench redb")
}

/// Commit `keys` into redb in one transaction, durably or not.
fn redb_put(db: &redb::Database, keys: std::ops::Range<u64>, durable: bool) {
    let val = [7u8; VALUE_BYTES];
    let mut w = db.begin_write().expect("begin");
    if durable {
        w.set_quick_repair(true);
    } else {
        w.set_durability(redb::Durability::None)
            .expect("single-process database");
    }
    {
        let mut t = w.open_table(REDB_TABLE).expect("table");
        for i in keys {
            t.insert(key(i).as_slice(), val.as_slice()).expect("insert");
        }
    }
    w.commit().expect("commit");
}

/// redb's figures, in `dir`.
pub fn redb_figures(n_batched: usize, n_single: usize, n_open: usize, dir: &Path) -> EngineFigures {
    std::fs::create_dir_all(dir).expect("bench dir");
    let db = redb_open(&dir.join("batched.redb"));
    let t = Instant::now();
    for start in (0..n_batched as u64).step_by(BATCH) {
        redb_put(
            &db,
            start..(start + BATCH as u64).min(n_batched as u64),
            true,
        );
    }
    let batched = n_batched as f64 / t.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(n_single);
    for i in 0..n_single as u64 {
        let t = Instant::now();
        redb_put(&db, (1 << 40) + i..(1 << 40) + i + 1, true);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(db);
    let path = dir.join("open.redb");
    let db = redb_open(&path);
    for start in (0..n_open as u64).step_by(FILL_BATCH) {
        redb_put(
            &db,
            start..(start + FILL_BATCH as u64).min(n_open as u64),
            false,
        );
    }
    redb_put(&db, 0..0, true);
    drop(db);
    let t = Instant::now();
    let db = redb_open(&path);
    {
        use redb::ReadableDatabase;
        let r = db.begin_read().expect("read");
        let t = r.open_table(REDB_TABLE).expect("table");
        assert!(t.get(key(0).as_slice()).expect("get").is_some() || n_open == 0);
    }
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    EngineFigures {
        batched,
        single_ms: pct(&lat, 0.5),
        open_ms,
        bytes_per_entry: std::fs::metadata(&path).map_or(0, |m| m.len()) as f64
            / n_open.max(1) as f64,
    }
}

fn fjall_open(dir: &Path) -> (fjall::Database, fjall::Keyspace) {
    let db = fjall::Database::builder(dir).open().expect("bench fjall");
    let ks = db
        .keyspace("bench", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    (db, ks)
}

/// Write `keys` into fjall as one batch, synced to disk or not.
fn fjall_put(
    db: &fjall::Database,
    ks: &fjall::Keyspace,
    keys: std::ops::Range<u64>,
    durable: bool,
) {
    let val = [7u8; VALUE_BYTES];
    let mode = durable.then_some(fjall::PersistMode::SyncAll);
    let mut b = db.batch().durability(mode);
    for i in keys {
        b.insert(ks, key(i).to_vec(), val.to_vec());
    }
    b.commit().expect("commit");
}

/// fjall's figures, in `dir`.
pub fn fjall_figures(
    n_batched: usize,
    n_single: usize,
    n_open: usize,
    dir: &Path,
) -> EngineFigures {
    let (db, ks) = fjall_open(&dir.join("batched"));
    let t = Instant::now();
    for start in (0..n_batched as u64).step_by(BATCH) {
        fjall_put(
            &db,
            &ks,
            start..(start + BATCH as u64).min(n_batched as u64),
            true,
        );
    }
    let batched = n_batched as f64 / t.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(n_single);
    for i in 0..n_single as u64 {
        let t = Instant::now();
        fjall_put(&db, &ks, (1 << 40) + i..(1 << 40) + i + 1, true);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop((ks, db));
    let path = dir.join("open");
    let (db, ks) = fjall_open(&path);
    for start in (0..n_open as u64).step_by(FILL_BATCH) {
        fjall_put(
            &db,
            &ks,
            start..(start + FILL_BATCH as u64).min(n_open as u64),
            false,
        );
    }
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
    drop((ks, db));
    let t = Instant::now();
    let (_db, ks) = fjall_open(&path);
    assert!(ks.get(key(0)).expect("get").is_some() || n_open == 0);
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    EngineFigures {
        batched,
        single_ms: pct(&lat, 0.5),
        open_ms,
        bytes_per_entry: dir_bytes(&path) as f64 / n_open.max(1) as f64,
    }
}

/// The upgrade of a sled store of `n` text entries of 100 characters (laid out as the sled
/// releases wrote them) to the redb store: (entries per second, redb bytes per entry).
pub fn migration(tmp: &Path, n: usize) -> (f64, f64) {
    use crate::domain::identity::{LocalIdentity, Secrets};
    use crate::domain::{sign_entry, Body};
    let data = tmp.join("migrate");
    let dir = data.join(crate::store::DB_DIR);
    let me = LocalIdentity::from_secrets("bench@lama.local", "bench/1", Secrets::generate());
    let author = me.person_id().to_string();
    let ch = "g-000102030405060708090a0b0c0d0e0f";
    let db = sled::Config::new().path(&dir).open().expect("bench sled");
    let (en, he, vi) = (
        db.open_tree("entries").expect("tree"),
        db.open_tree("heads").expect("tree"),
        db.open_tree("view").expect("tree"),
    );
    let mut prev = None;
    for seq in 1..=n as u64 {
        let hlc = Hlc {
            ms: 1_700_000_000_000 + seq,
            c: 0,
        };
        let text = format!("{seq:>10} {}", "x".repeat(89));
        let e = sign_entry(&me, ch, seq, prev.take(), hlc, Body::Text { text });
        let mut ek = format!("{ch}\0{author}").into_bytes();
        ek.extend_from_slice(&seq.to_be_bytes());
        let mut vk = format!("{ch}\0").into_bytes();
        vk.extend_from_slice(&hlc.ms.to_be_bytes());
        vk.extend_from_slice(&hlc.c.to_be_bytes());
        vk.extend_from_slice(author.as_bytes());
        vk.extend_from_slice(&seq.to_be_bytes());
        let id = e.id();
        let mut hv = seq.to_be_bytes().to_vec();
        hv.extend_from_slice(id.as_bytes());
        en.insert(ek.as_slice(), e.canonical()).expect("insert");
        vi.insert(vk, ek.as_slice()).expect("insert");
        he.insert(format!("{ch}\0{author}"), hv).expect("insert");
        prev = Some(id);
    }
    db.flush().expect("flush");
    drop((en, he, vi, db));
    let t = Instant::now();
    let store = crate::store::Store::open(&data).expect("the upgrade succeeds");
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(store.entry_count(), n, "every entry was upgraded");
    drop(store);
    let size = std::fs::metadata(dir.join(crate::store::DB_FILE)).map_or(0, |m| m.len());
    let _ = std::fs::remove_dir_all(&data);
    (rate, size as f64 / n.max(1) as f64)
}
