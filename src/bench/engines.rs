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

/// Bytes a store occupies: one file (redb) or a directory of them (fjall).
fn bytes_at(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| bytes_at(&e.path())).sum())
        .unwrap_or(0)
}

/// What the measurements need of an engine: the same operations on both, so both are
/// measured by one protocol.
pub trait BenchEngine: Sized {
    /// Open (creating) the store at `path`.
    fn open(path: &Path) -> Self;
    /// Write `keys` in one transaction (or batch), made durable (fsync) or not.
    fn put(&self, keys: std::ops::Range<u64>, durable: bool);
    /// Make every write so far durable.
    fn sync(&self);
    /// Whether key `i` is stored.
    fn has(&self, i: u64) -> bool;
}

/// `n` durable inserts, `BATCH` per commit: per second.
pub fn batched_rate<E: BenchEngine>(e: &E, n: usize) -> f64 {
    let t = Instant::now();
    for start in (0..n as u64).step_by(BATCH) {
        e.put(start..(start + BATCH as u64).min(n as u64), true);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// `n` single durable writes (keys from `base`): their p50 in ms.
pub fn single_p50<E: BenchEngine>(e: &E, n: usize, base: u64) -> f64 {
    let mut lat = Vec::with_capacity(n);
    for i in base..base + n as u64 {
        let t = Instant::now();
        e.put(i..i + 1, true);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    pct(&lat, 0.5)
}

/// An engine's figures, in `dir`.
pub fn figures<E: BenchEngine>(
    n_batched: usize,
    n_single: usize,
    n_open: usize,
    dir: &Path,
) -> EngineFigures {
    std::fs::create_dir_all(dir).expect("bench dir");
    let e = E::open(&dir.join("batched"));
    let batched = batched_rate(&e, n_batched);
    let single_ms = single_p50(&e, n_single, 1 << 40);
    drop(e);
    let path = dir.join("open");
    let e = E::open(&path);
    for start in (0..n_open as u64).step_by(FILL_BATCH) {
        e.put(start..(start + FILL_BATCH as u64).min(n_open as u64), false);
    }
    e.sync();
    drop(e);
    let t = Instant::now();
    let e = E::open(&path);
    assert!(
        e.has(0) || n_open == 0,
        "the filled store holds its first key"
    );
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(e);
    EngineFigures {
        batched,
        single_ms,
        open_ms,
        bytes_per_entry: bytes_at(&path) as f64 / n_open.max(1) as f64,
    }
}

const REDB_TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new("bench");

/// redb as the store opens and commits it (its cache size, quick repair when durable).
pub struct Redb(redb::Database);

impl BenchEngine for Redb {
    fn open(path: &Path) -> Redb {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("bench dir");
        }
        let db = redb::Database::builder()
            .set_cache_size(crate::store::STORE_CACHE_BYTES)
            .create(path)
            .expect("bench redb");
        Redb(db)
    }

    fn put(&self, keys: std::ops::Range<u64>, durable: bool) {
        let val = [7u8; VALUE_BYTES];
        let mut w = self.0.begin_write().expect("begin");
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

    fn sync(&self) {
        self.put(0..0, true);
    }

    fn has(&self, i: u64) -> bool {
        use redb::ReadableDatabase;
        let r = self.0.begin_read().expect("read");
        let t = r.open_table(REDB_TABLE).expect("table");
        let got = t.get(key(i).as_slice()).expect("get");
        got.is_some()
    }
}

/// fjall with one keyspace; durable writes persist the journal (`SyncAll`).
pub struct Fjall(fjall::Database, fjall::Keyspace);

impl BenchEngine for Fjall {
    fn open(path: &Path) -> Fjall {
        let db = fjall::Database::builder(path).open().expect("bench fjall");
        let ks = db
            .keyspace("bench", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        Fjall(db, ks)
    }

    fn put(&self, keys: std::ops::Range<u64>, durable: bool) {
        let val = [7u8; VALUE_BYTES];
        let mode = durable.then_some(fjall::PersistMode::SyncAll);
        let mut b = self.0.batch().durability(mode);
        for i in keys {
            b.insert(&self.1, key(i).to_vec(), val.to_vec());
        }
        b.commit().expect("commit");
    }

    fn sync(&self) {
        self.0
            .persist(fjall::PersistMode::SyncAll)
            .expect("persist");
    }

    fn has(&self, i: u64) -> bool {
        self.1.get(key(i)).expect("get").is_some()
    }
}

/// The upgrade of a sled store of `n` text entries of 100 characters (laid out as the sled
/// releases wrote them) to the redb store: (entries per second, redb bytes per entry).
/// The old store is made by `lama-sled-export import` from the stream that its `export`
/// prints (sled is not in this build); `None` when that helper is not installed.
pub fn migration(tmp: &Path, n: usize) -> Option<(f64, f64)> {
    let helper = crate::store::migrate::helper()?;
    let data = tmp.join("migrate");
    let dir = data.join(crate::store::DB_DIR);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut child = std::process::Command::new(&helper)
        .arg("import")
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start lama-sled-export");
    let stdin = child.stdin.take().expect("stdin was piped at spawn");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdin);
    write_old_store(&mut w, n).expect("write the stream to lama-sled-export");
    drop(w);
    assert!(
        child.wait().expect("wait").success(),
        "lama-sled-export import failed"
    );
    let t = Instant::now();
    let store = crate::store::Store::open(&data).expect("the upgrade succeeds");
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(store.entry_count(), n, "every entry was upgraded");
    drop(store);
    let size = std::fs::metadata(dir.join(crate::store::DB_FILE)).map_or(0, |m| m.len());
    let _ = std::fs::remove_dir_all(&data);
    Some((rate, size as f64 / n.max(1) as f64))
}

/// One key or value of the helper's stream.
fn part(w: &mut impl std::io::Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&(b.len() as u32).to_be_bytes())?;
    w.write_all(b)
}

/// The trees `entries`, `heads` and `view` of one author's channel of `n` text entries, as
/// the sled releases keyed them, in the stream of tools/sled-export.
fn write_old_store(w: &mut impl std::io::Write, n: usize) -> std::io::Result<()> {
    use crate::domain::identity::{LocalIdentity, Secrets};
    use crate::domain::{sign_entry, Body};
    let me = LocalIdentity::from_secrets("bench@lama.local", "bench/1", Secrets::generate());
    let author = me.person_id().to_string();
    let ch = "g-000102030405060708090a0b0c0d0e0f";
    let (mut entries, mut view) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut head = (Vec::new(), Vec::new());
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
        head = (format!("{ch}\0{author}").into_bytes(), hv);
        view.push((vk, ek.clone()));
        entries.push((ek, e.canonical()));
        prev = Some(id);
    }
    let heads = if n > 0 { vec![head] } else { vec![] };
    // The identity record, as every store the sled releases wrote held it.
    let identity = serde_json::to_vec(&(&me.person, &me.instance)).expect("serialise identity");
    let meta = vec![(b"identity".to_vec(), identity)];
    w.write_all(b"LAMA-SLED-EXPORT/1\n")?;
    let trees = [
        ("entries", entries),
        ("heads", heads),
        ("meta", meta),
        ("view", view),
    ];
    for (name, records) in trees {
        w.write_all(b"T")?;
        w.write_all(&(name.len() as u16).to_be_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&(records.len() as u64).to_be_bytes())?;
        for (k, v) in &records {
            part(w, k)?;
            part(w, v)?;
        }
    }
    w.write_all(b"E")?;
    w.flush()
}
