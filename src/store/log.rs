//! The redb implementation of the sync [`Log`]: entries, author heads, the view index and
//! known persons, written together in one transaction per batch of entries. The key
//! layout and the entry encoding are in [`codec`](super::codec).

use std::collections::HashMap;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use crate::domain::channel::direct_members;
use crate::domain::identity::{Id, Person};
use crate::domain::log::{Log, LogError};
use crate::domain::Channel;
use crate::domain::Entry;
use crate::store::codec::{self, entry_key, head_key, view_key};
use crate::store::db;
use crate::store::Store;

/// Channel and author numbers already read or written: a lookup per entry otherwise.
#[derive(Debug, Default)]
pub(crate) struct Interned {
    chans: HashMap<String, u32>,
    authors: HashMap<String, u32>,
    author_names: HashMap<u32, String>,
}

/// Numbers handed out by a write transaction, cached once it has committed.
#[derive(Default)]
struct Learned {
    chans: Vec<(String, u32)>,
    authors: Vec<(String, u32)>,
}

fn le(e: super::StoreError) -> LogError {
    LogError {
        disk_full: matches!(e, super::StoreError::DiskFull(_)),
        message: e.to_string(),
    }
}

fn corrupt(why: impl Into<String>) -> redb::Error {
    redb::Error::Corrupted(why.into())
}

fn u32_of(v: &[u8]) -> Result<u32, redb::Error> {
    v.try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| corrupt("an interned number is not 4 bytes"))
}

/// The first and last possible key of channel number `c` (every key starts with it, and
/// none is longer than 56 bytes).
fn chan_bounds(c: u32) -> ([u8; 4], [u8; 64]) {
    let mut hi = [0xffu8; 64];
    hi[..4].copy_from_slice(&c.to_be_bytes());
    (c.to_be_bytes(), hi)
}

type Tbl<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// The number of `name` in `ids` (and `names`, its reverse), handing out the next one if
/// it has none yet.
fn intern(
    ids: &mut Tbl<'_>,
    names: Option<&mut Tbl<'_>>,
    name: &str,
    known: Option<u32>,
    learned: &mut Vec<(String, u32)>,
) -> Result<u32, redb::Error> {
    if let Some(n) = known.or_else(|| learned.iter().find(|(s, _)| s == name).map(|l| l.1)) {
        return Ok(n);
    }
    if let Some(v) = ids.get(name.as_bytes())? {
        let n = u32_of(v.value())?;
        learned.push((name.to_string(), n));
        return Ok(n);
    }
    let n = u32::try_from(ids.len()?).map_err(|_| corrupt("more than 2^32 interned names"))?;
    ids.insert(name.as_bytes(), n.to_be_bytes().as_slice())?;
    if let Some(names) = names {
        names.insert(n.to_be_bytes().as_slice(), name.as_bytes())?;
    }
    learned.push((name.to_string(), n));
    Ok(n)
}

impl Store {
    fn interned(&self) -> std::sync::MutexGuard<'_, Interned> {
        self.interned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of channel `ch`, if any entry of it was ever stored.
    fn chan_num(&self, r: &ReadTransaction, ch: &str) -> Result<Option<u32>, redb::Error> {
        self.num_of(r, db::CHAN_IDS, ch, |i| &mut i.chans)
    }

    /// The number of author `a`, if any entry of theirs was ever stored.
    fn author_num(&self, r: &ReadTransaction, a: &str) -> Result<Option<u32>, redb::Error> {
        self.num_of(r, db::AUTHOR_IDS, a, |i| &mut i.authors)
    }

    /// The number `table` gives `name` (cached in the map `cache` picks).
    fn num_of(
        &self,
        r: &ReadTransaction,
        table: db::Table,
        name: &str,
        cache: fn(&mut Interned) -> &mut HashMap<String, u32>,
    ) -> Result<Option<u32>, redb::Error> {
        if let Some(&n) = cache(&mut self.interned()).get(name) {
            return Ok(Some(n));
        }
        let Some(v) = r.open_table(table)?.get(name.as_bytes())? else {
            return Ok(None);
        };
        let n = u32_of(v.value())?;
        cache(&mut self.interned()).insert(name.to_string(), n);
        Ok(Some(n))
    }

    /// The author id numbered `n`.
    fn author_name(&self, r: &ReadTransaction, n: u32) -> Result<String, redb::Error> {
        if let Some(s) = self.interned().author_names.get(&n) {
            return Ok(s.clone());
        }
        let v = r
            .open_table(db::AUTHOR_NAMES)?
            .get(n.to_be_bytes().as_slice())?;
        let v = v.ok_or_else(|| corrupt("an entry names an author number with no author"))?;
        let s = String::from_utf8(v.value().to_vec())
            .map_err(|_| corrupt("an author id is not text"))?;
        self.interned().author_names.insert(n, s.clone());
        Ok(s)
    }

    /// The channel and author numbers of a log, if both exist.
    fn log_nums(
        &self,
        r: &ReadTransaction,
        ch: &str,
        author: &str,
    ) -> Result<Option<(u32, u32)>, redb::Error> {
        match (self.chan_num(r, ch)?, self.author_num(r, author)?) {
            (Some(c), Some(a)) => Ok(Some((c, a))),
            _ => Ok(None),
        }
    }

    /// Decode the entry stored under entries key `k` of channel `ch`.
    fn entry_at(
        &self,
        r: &ReadTransaction,
        ch: &str,
        k: &[u8],
        v: &[u8],
    ) -> Result<Entry, redb::Error> {
        let (a, seq) = codec::split_entry_key(k).ok_or_else(|| corrupt("a malformed entry key"))?;
        let author = self.author_name(r, a)?;
        codec::decode(ch, &author, seq, v).map_err(corrupt)
    }

    /// A 1:1 channel seen first through a relay gets its record with its first entry.
    fn records_for(&self, items: &[(&Entry, Option<&Channel>)]) -> Vec<(String, Vec<u8>)> {
        let mut seen: std::collections::BTreeSet<&str> = Default::default();
        let mut out = Vec::new();
        for (e, channel) in items {
            let rec = match channel {
                Some(c) => Some((*c).clone()),
                None if seen.insert(e.channel.as_str()) => {
                    match (direct_members(&e.channel), self.get_channel(&e.channel)) {
                        (Some(m), Ok(None)) => Some(Channel {
                            id: e.channel.clone(),
                            name: String::new(),
                            members: m,
                            created_at: e.hlc.ms / 1000,
                        }),
                        _ => None,
                    }
                }
                None => None,
            };
            if let Some(c) = rec {
                let v = serde_json::to_vec(&c).expect("invariant: channels serialise");
                out.push((c.id, v));
            }
        }
        out
    }

    /// Write entries (entry, head, view index, membership index, channel record) in one
    /// transaction: all or nothing. Not durable by itself: the sync engine's flush (one
    /// fsync for every entry written since the last) comes before any acknowledgement.
    pub(crate) fn write_entries(
        &self,
        items: &[(&Entry, Option<&Channel>)],
    ) -> Result<(), LogError> {
        let records = self.records_for(items);
        // Computed before the transaction: hashing is the costly part of a write.
        let ids: Vec<[u8; 32]> = items.iter().map(|(e, _)| e.id_bytes()).collect();
        let mut learned = Learned::default();
        let r = self.db.write(false, |w| {
            let mut en = w.open_table(db::ENTRIES)?;
            let mut he = w.open_table(db::HEADS)?;
            let mut vi = w.open_table(db::VIEW)?;
            let mut mi = w.open_table(db::MEMBERS)?;
            let mut chan_ids = w.open_table(db::CHAN_IDS)?;
            let mut author_ids = w.open_table(db::AUTHOR_IDS)?;
            let mut author_names = w.open_table(db::AUTHOR_NAMES)?;
            for ((e, _), id) in items.iter().zip(&ids) {
                let (kc, ka) = {
                    let i = self.interned();
                    (
                        i.chans.get(&e.channel).copied(),
                        i.authors.get(&e.author).copied(),
                    )
                };
                let c = intern(&mut chan_ids, None, &e.channel, kc, &mut learned.chans)?;
                let a = intern(
                    &mut author_ids,
                    Some(&mut author_names),
                    &e.author,
                    ka,
                    &mut learned.authors,
                )?;
                let ek = entry_key(c, a, e.seq);
                en.insert(ek.as_slice(), codec::encode(e).as_slice())?;
                let mut hv = [0u8; 40];
                hv[..8].copy_from_slice(&e.seq.to_be_bytes());
                hv[8..].copy_from_slice(id);
                he.insert(head_key(c, a).as_slice(), hv.as_slice())?;
                let vk = view_key(c, e.hlc, &e.author, e.seq);
                vi.insert(vk.as_slice(), ek.as_slice())?;
                if !matches!(e.body, crate::domain::Body::Text { .. }) {
                    mi.insert(vk.as_slice(), ek.as_slice())?;
                }
            }
            let mut ch = w.open_table(db::CHANNELS)?;
            for (id, v) in &records {
                ch.insert(id.as_bytes(), v.as_slice())?;
            }
            Ok(())
        });
        if !records.is_empty() {
            self.invalidate_channels();
        }
        r.map_err(le)?;
        let mut i = self.interned();
        for (s, n) in learned.chans {
            i.chans.insert(s, n);
        }
        for (s, n) in learned.authors {
            i.author_names.insert(n, s.clone());
            i.authors.insert(s, n);
        }
        Ok(())
    }

    /// A head record: the seq, then the id (32 bytes).
    fn decode_head(v: &[u8]) -> Result<(u64, Id), redb::Error> {
        if v.len() != 40 {
            return Err(corrupt("a head record is not 40 bytes"));
        }
        let seq = u64::from_be_bytes(v[..8].try_into().map_err(|_| corrupt("short head"))?);
        Ok((seq, crate::domain::hex::encode(&v[8..])))
    }

    /// The last `limit` entries of a channel in view order (oldest first), reading only
    /// those from the index: scrollback never loads a whole history.
    pub fn history(&self, ch: &str, limit: usize) -> Result<Vec<Entry>, crate::store::StoreError> {
        self.history_before(ch, None, limit)
    }

    /// Up to `limit` entries strictly before `before` (a view position from an entry), in
    /// view order.
    pub fn history_before(
        &self,
        ch: &str,
        before: Option<&Entry>,
        limit: usize,
    ) -> Result<Vec<Entry>, crate::store::StoreError> {
        self.db.read(|r| {
            let Some(c) = self.chan_num(r, ch)? else {
                return Ok(Vec::new());
            };
            let (lo, hi) = chan_bounds(c);
            let end: Vec<u8> = match before {
                Some(e) => view_key(c, e.hlc, &e.author, e.seq).to_vec(),
                None => hi.to_vec(),
            };
            let (vi, en) = (r.open_table(db::VIEW)?, r.open_table(db::ENTRIES)?);
            let mut out = Vec::with_capacity(limit.min(1024));
            for kv in vi.range(lo.as_slice()..end.as_slice())?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (_, ek) = kv?;
                if let Some(v) = en.get(ek.value())? {
                    out.push(self.entry_at(r, ch, ek.value(), v.value())?);
                }
            }
            out.reverse();
            Ok(out)
        })
    }

    /// Find an entry of `author` in `ch` by its id (scanning that author's log backwards;
    /// scrollback anchors are recent, so this stops early).
    pub fn entry_by_view(
        &self,
        ch: &str,
        author: &str,
        id: &str,
    ) -> Result<Option<Entry>, crate::store::StoreError> {
        self.db.read(|r| {
            let Some((c, a)) = self.log_nums(r, ch, author)? else {
                return Ok(None);
            };
            let en = r.open_table(db::ENTRIES)?;
            let (lo, hi) = (entry_key(c, a, 0), entry_key(c, a, u64::MAX));
            for kv in en.range(lo.as_slice()..=hi.as_slice())?.rev() {
                let (k, v) = kv?;
                // A damaged entry is no match; the caller's scrollback then starts afresh.
                if let Ok(e) = self.entry_at(r, ch, k.value(), v.value()) {
                    if e.id() == id {
                        return Ok(Some(e));
                    }
                }
            }
            Ok(None)
        })
    }

    /// Number of entries in a channel's view.
    pub fn view_len(&self, ch: &str) -> usize {
        let n = self.db.read(|r| {
            let Some(c) = self.chan_num(r, ch)? else {
                return Ok(0);
            };
            let (lo, hi) = chan_bounds(c);
            let vi = r.open_table(db::VIEW)?;
            let range = vi.range(lo.as_slice()..=hi.as_slice())?;
            Ok(range.count())
        });
        n.unwrap_or(0)
    }

    /// Unread count of a channel.
    pub fn unread(&self, ch: &str) -> u64 {
        let v = self.db.read(|r| {
            let t = r.open_table(db::UNREAD)?;
            let got = t.get(ch.as_bytes())?;
            Ok(got.and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes)))
        });
        v.ok().flatten().unwrap_or(0)
    }

    /// Add to a channel's unread count (not durable by itself: a lost count is harmless).
    pub fn add_unread(&self, ch: &str, n: u64) {
        let _ = self.db.write(false, |w| {
            let mut t = w.open_table(db::UNREAD)?;
            let cur = t
                .get(ch.as_bytes())?
                .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0);
            t.insert(ch.as_bytes(), (cur + n).to_be_bytes().as_slice())?;
            Ok(())
        });
    }

    /// Mark a channel read.
    pub fn clear_unread(&self, ch: &str) {
        let _ = self.db.write(false, |w| {
            w.open_table(db::UNREAD)?.remove(ch.as_bytes())?;
            Ok(())
        });
    }

    /// Every entry stored for a channel (tests and audits).
    pub fn all_entries(&self, ch: &str) -> Vec<Entry> {
        let all = self.db.read(|r| {
            let Some(c) = self.chan_num(r, ch)? else {
                return Ok(Vec::new());
            };
            let (lo, hi) = chan_bounds(c);
            let en = r.open_table(db::ENTRIES)?;
            let mut out = Vec::new();
            for kv in en.range(lo.as_slice()..=hi.as_slice())? {
                let (k, v) = kv?;
                if let Ok(e) = self.entry_at(r, ch, k.value(), v.value()) {
                    out.push(e);
                }
            }
            Ok(out)
        });
        all.unwrap_or_default()
    }

    /// Total entries in the store.
    pub fn entry_count(&self) -> usize {
        self.db
            .read(|r| Ok(r.open_table(db::ENTRIES)?.len()?))
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl Log for Store {
    fn head(&self, ch: &str, author: &str) -> Result<Option<(u64, Id)>, LogError> {
        let got = self.db.read(|r| {
            let Some((c, a)) = self.log_nums(r, ch, author)? else {
                return Ok(None);
            };
            let he = r.open_table(db::HEADS)?;
            let v = he.get(head_key(c, a).as_slice())?;
            v.map(|v| Store::decode_head(v.value())).transpose()
        });
        got.map_err(le)
    }

    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError> {
        let got = self.db.read(|r| {
            let Some(c) = self.chan_num(r, ch)? else {
                return Ok(Vec::new());
            };
            let (lo, hi) = chan_bounds(c);
            let he = r.open_table(db::HEADS)?;
            let mut out = Vec::new();
            for kv in he.range(lo.as_slice()..=hi.as_slice())? {
                let (k, v) = kv?;
                let a = codec::author_of_head_key(k.value())
                    .ok_or_else(|| corrupt("a malformed head key"))?;
                out.push((self.author_name(r, a)?, Store::decode_head(v.value())?.0));
            }
            Ok(out)
        });
        got.map_err(le)
    }

    fn channels(&self) -> Result<Vec<Channel>, LogError> {
        Store::channels(self).map_err(le)
    }

    fn channel(&self, ch: &str) -> Result<Option<Channel>, LogError> {
        self.get_channel(ch).map_err(le)
    }

    fn range(
        &self,
        ch: &str,
        author: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        let got = self.db.read(|r| {
            let Some((c, a)) = self.log_nums(r, ch, author)? else {
                return Ok(Vec::new());
            };
            let (lo, hi) = (entry_key(c, a, from_seq), entry_key(c, a, u64::MAX));
            let en = r.open_table(db::ENTRIES)?;
            let mut out = Vec::new();
            for kv in en.range(lo.as_slice()..=hi.as_slice())? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = kv?;
                let (_, seq) = codec::split_entry_key(k.value())
                    .ok_or_else(|| corrupt("a malformed entry key"))?;
                let e = codec::decode(ch, author, seq, v.value()).map_err(corrupt)?;
                out.push(e);
            }
            Ok(out)
        });
        got.map_err(le)
    }

    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError> {
        let got = self.db.read(|r| {
            let Some((c, a)) = self.log_nums(r, ch, author)? else {
                return Ok(None);
            };
            let en = r.open_table(db::ENTRIES)?;
            let v = en.get(entry_key(c, a, seq).as_slice())?;
            v.map(|v| codec::decode(ch, author, seq, v.value()).map_err(corrupt))
                .transpose()
        });
        got.map_err(le)
    }

    fn person(&self, id: &str) -> Result<Option<Person>, LogError> {
        let v = self
            .db
            .read(|r| {
                let t = r.open_table(db::PERSONS)?;
                let got = t.get(id.as_bytes())?;
                Ok(got.map(|g| g.value().to_vec()))
            })
            .map_err(le)?;
        v.map(|v| {
            serde_json::from_slice(&v).map_err(|e| {
                le(super::StoreError::Corrupt {
                    dir: self.dir().to_path_buf(),
                    why: format!("a person record cannot be decoded: {e}"),
                })
            })
        })
        .transpose()
    }

    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError> {
        let got = self.db.read(|r| {
            let Some(c) = self.chan_num(r, ch)? else {
                return Ok(Vec::new());
            };
            let (lo, hi) = chan_bounds(c);
            let (mi, en) = (r.open_table(db::MEMBERS)?, r.open_table(db::ENTRIES)?);
            let mut out = Vec::new();
            for kv in mi.range(lo.as_slice()..=hi.as_slice())? {
                let (_, ek) = kv?;
                let v = en
                    .get(ek.value())?
                    .ok_or_else(|| corrupt("a membership index points at no entry"))?;
                out.push(self.entry_at(r, ch, ek.value(), v.value())?);
            }
            Ok(out)
        });
        got.map_err(le)
    }

    fn insert(&mut self, e: &Entry, channel: Option<&Channel>) -> Result<(), LogError> {
        self.write_entries(&[(e, channel)])
    }

    fn insert_many(&mut self, items: &[(Entry, Option<Channel>)]) -> Result<(), LogError> {
        let refs: Vec<(&Entry, Option<&Channel>)> =
            items.iter().map(|(e, c)| (e, c.as_ref())).collect();
        self.write_entries(&refs)
    }

    fn put_person(&mut self, p: &Person) -> Result<(), LogError> {
        let v = serde_json::to_vec(p).expect("invariant: persons serialise");
        self.db
            .write(false, |w| {
                w.open_table(db::PERSONS)?
                    .insert(p.id().as_bytes(), v.as_slice())?;
                Ok(())
            })
            .map_err(le)
    }

    fn flush(&mut self) -> Result<(), LogError> {
        Store::flush(self).map_err(le)
    }
}
