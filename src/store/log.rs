//! The redb implementation of the sync [`Log`]: entries, author heads, the view index and
//! known persons, written together in one transaction per batch of entries.
//!
//! Keys (all under the channel id and a 0 byte, so a channel is one prefix; after it every
//! key of a kind has a fixed length, so a scan checks each key's length and no channel can
//! pass for another, even one stored before ids were validated, e.g. `G` and `G\0x`):
//! - `entries`: `ch 0 author seq_be8` → entry JSON
//! - `heads`:   `ch 0 author` → `seq_be8 id`
//! - `view`:    `ch 0 ms_be8 c_be4 author seq_be8` → `entries` key
//! - `members`: like `view`, for create and members entries only (membership history)
//! - `persons`: person id → Person JSON

use redb::{ReadableTable, ReadableTableMetadata};

use crate::domain::channel::direct_members;
use crate::domain::identity::{Id, Person};
use crate::domain::log::{Log, LogError};
use crate::domain::Channel;
use crate::domain::Entry;
use crate::store::db::{self, Table};
use crate::store::Store;

fn entry_key(ch: &str, author: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(ch.len() + 1 + author.len() + 8);
    k.extend_from_slice(ch.as_bytes());
    k.push(0);
    k.extend_from_slice(author.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn head_key(ch: &str, author: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ch.len() + 1 + author.len());
    k.extend_from_slice(ch.as_bytes());
    k.push(0);
    k.extend_from_slice(author.as_bytes());
    k
}

fn prefix(ch: &str) -> Vec<u8> {
    let mut k = ch.as_bytes().to_vec();
    k.push(0);
    k
}

fn view_key(e: &Entry) -> Vec<u8> {
    let mut k = prefix(&e.channel);
    k.extend_from_slice(&e.hlc.ms.to_be_bytes());
    k.extend_from_slice(&e.hlc.c.to_be_bytes());
    k.extend_from_slice(e.author.as_bytes());
    k.extend_from_slice(&e.seq.to_be_bytes());
    k
}

/// Key length after the channel prefix: entries (author, seq), heads (author), view and
/// membership index (ms, c, author, seq).
const ENTRY_TAIL: usize = 64 + 8;
const HEAD_TAIL: usize = 64;
const VIEW_TAIL: usize = 8 + 4 + 64 + 8;

/// Whether `k` is a key of exactly the channel whose prefix is `p` (not of a longer id
/// that starts with the same bytes).
fn of_channel(k: &[u8], p: &[u8], tail: usize) -> bool {
    k.len() == p.len() + tail && k.starts_with(p)
}

fn le(e: super::StoreError) -> LogError {
    LogError {
        disk_full: matches!(e, super::StoreError::DiskFull(_)),
        message: e.to_string(),
    }
}

/// A key and its value, copied out of a read transaction.
type KeyValue = (Vec<u8>, Vec<u8>);

/// The key/value writes of one entry.
struct Prepared {
    ek: Vec<u8>,
    ev: Vec<u8>,
    hk: Vec<u8>,
    hv: Vec<u8>,
    vk: Vec<u8>,
    membership: bool,
    record: Option<(String, Vec<u8>)>,
}

impl Store {
    /// Write entries (entry, head, view index, membership index, channel record) in one
    /// transaction: all or nothing.
    fn write_entries(&self, items: &[(&Entry, Option<&Channel>)]) -> Result<(), LogError> {
        let mut seen_direct: std::collections::BTreeSet<String> = Default::default();
        let mut prepared = Vec::with_capacity(items.len());
        for (e, channel) in items {
            let ek = entry_key(&e.channel, &e.author, e.seq);
            let ev = e.canonical();
            let mut hv = e.seq.to_be_bytes().to_vec();
            // The id is the hash of this very encoding: one serialisation, not two.
            hv.extend_from_slice(crate::domain::identity::sha256_hex(&ev).as_bytes());
            // A 1:1 channel seen first through a relay gets its record here.
            let record = match channel {
                Some(c) => Some((*c).clone()),
                None if !seen_direct.contains(&e.channel) => {
                    seen_direct.insert(e.channel.clone());
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
            prepared.push(Prepared {
                hk: head_key(&e.channel, &e.author),
                vk: view_key(e),
                membership: !matches!(e.body, crate::domain::Body::Text { .. }),
                record: record.map(|c| {
                    let v = serde_json::to_vec(&c).expect("invariant: channels serialise");
                    (c.id, v)
                }),
                ek,
                ev,
                hv,
            });
        }
        // Not durable by itself: the sync engine's flush (one fsync for every entry written
        // since the last) comes before any acknowledgement (the group commit).
        let r = self.db.write(false, |w| {
            let mut en = w.open_table(db::ENTRIES)?;
            let mut he = w.open_table(db::HEADS)?;
            let mut vi = w.open_table(db::VIEW)?;
            let mut ch = w.open_table(db::CHANNELS)?;
            let mut mi = w.open_table(db::MEMBERS)?;
            for p in &prepared {
                en.insert(p.ek.as_slice(), p.ev.as_slice())?;
                he.insert(p.hk.as_slice(), p.hv.as_slice())?;
                vi.insert(p.vk.as_slice(), p.ek.as_slice())?;
                if p.membership {
                    mi.insert(p.vk.as_slice(), p.ek.as_slice())?;
                }
                if let Some((id, v)) = &p.record {
                    ch.insert(id.as_bytes(), v.as_slice())?;
                }
            }
            Ok(())
        });
        if prepared.iter().any(|p| p.record.is_some()) {
            self.invalidate_channels();
        }
        r.map_err(le)
    }

    /// One value of a table, copied out.
    fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, super::StoreError> {
        self.db.read(|r| {
            let t = r.open_table(table)?;
            let got = t.get(key)?;
            Ok(got.map(|g| g.value().to_vec()))
        })
    }

    /// The keys and values of `table` under the channel prefix `p` whose keys have exactly
    /// `tail` bytes after it, in key order.
    fn scan_channel(
        &self,
        table: Table,
        p: &[u8],
        tail: usize,
    ) -> Result<Vec<KeyValue>, super::StoreError> {
        let mut end = p.to_vec();
        *end.last_mut()
            .expect("invariant: a channel prefix ends in its 0 byte") = 1;
        self.db.read(|r| {
            let t = r.open_table(table)?;
            let mut out = Vec::new();
            for kv in t.range(p..end.as_slice())? {
                let (k, v) = kv?;
                if of_channel(k.value(), p, tail) {
                    out.push((k.value().to_vec(), v.value().to_vec()));
                }
            }
            Ok(out)
        })
    }

    fn decode_entry(&self, v: &[u8]) -> Result<Entry, super::StoreError> {
        serde_json::from_slice(v).map_err(|e| super::StoreError::Corrupt {
            dir: self.dir().to_path_buf(),
            why: format!("an entry cannot be decoded: {e}"),
        })
    }

    /// A head record: the seq, then the id.
    fn decode_head(&self, v: &[u8]) -> Result<(u64, Id), LogError> {
        let seq = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| self.corrupt("a head record is too short"))?;
        let id = String::from_utf8(v[8..].to_vec())
            .map_err(|_| self.corrupt("a head record's id is not text"))?;
        Ok((seq, id))
    }

    fn corrupt(&self, why: &str) -> LogError {
        le(super::StoreError::Corrupt {
            dir: self.dir().to_path_buf(),
            why: why.to_string(),
        })
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
        let start = prefix(ch);
        let end = match before {
            Some(e) => view_key(e),
            None => {
                let mut p = ch.as_bytes().to_vec();
                p.push(1);
                p
            }
        };
        // One snapshot for the index and the entries it points at.
        let raw = self.db.read(|r| {
            let (vi, en) = (r.open_table(db::VIEW)?, r.open_table(db::ENTRIES)?);
            let mut out = Vec::with_capacity(limit.min(1024));
            for kv in vi.range(start.as_slice()..end.as_slice())?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, ek) = kv?;
                if !of_channel(k.value(), &start, VIEW_TAIL) {
                    continue;
                }
                if let Some(v) = en.get(ek.value())? {
                    out.push(v.value().to_vec());
                }
            }
            Ok(out)
        })?;
        let mut out = raw
            .iter()
            .map(|v| self.decode_entry(v))
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Find an entry of `author` in `ch` by its id (scanning that author's log backwards;
    /// scrollback anchors are recent, so this stops early).
    pub fn entry_by_view(
        &self,
        ch: &str,
        author: &str,
        id: &str,
    ) -> Result<Option<Entry>, crate::store::StoreError> {
        let p = prefix(ch);
        let keys = entry_key(ch, author, 0)..=entry_key(ch, author, u64::MAX);
        self.db.read(|r| {
            let en = r.open_table(db::ENTRIES)?;
            for kv in en
                .range(keys.start().as_slice()..=keys.end().as_slice())?
                .rev()
            {
                let (k, v) = kv?;
                if !of_channel(k.value(), &p, ENTRY_TAIL) {
                    continue;
                }
                // A damaged entry is no match; the caller's scrollback then starts afresh.
                if let Ok(e) = serde_json::from_slice::<Entry>(v.value()) {
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
        self.scan_channel(db::VIEW, &prefix(ch), VIEW_TAIL)
            .map_or(0, |v| v.len())
    }

    /// Unread count of a channel.
    pub fn unread(&self, ch: &str) -> u64 {
        self.get_raw(db::UNREAD, ch.as_bytes())
            .ok()
            .flatten()
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0)
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
        self.scan_channel(db::ENTRIES, &prefix(ch), ENTRY_TAIL)
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, v)| self.decode_entry(v).ok())
            .collect()
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
        match self.get_raw(db::HEADS, &head_key(ch, author)).map_err(le)? {
            Some(v) => Ok(Some(self.decode_head(&v)?)),
            None => Ok(None),
        }
    }

    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError> {
        let p = prefix(ch);
        let mut out = Vec::new();
        for (k, v) in self.scan_channel(db::HEADS, &p, HEAD_TAIL).map_err(le)? {
            let author = String::from_utf8(k.get(p.len()..).unwrap_or_default().to_vec())
                .map_err(|_| self.corrupt("a head key is not text"))?;
            out.push((author, self.decode_head(&v)?.0));
        }
        Ok(out)
    }

    fn channels(&self) -> Result<Vec<Channel>, LogError> {
        let list = Store::channels(self).map_err(le)?;
        Ok(list)
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
        let p = prefix(ch);
        let (from, to) = (
            entry_key(ch, author, from_seq),
            entry_key(ch, author, u64::MAX),
        );
        let raw = self
            .db
            .read(|r| {
                let en = r.open_table(db::ENTRIES)?;
                let mut out = Vec::new();
                for kv in en.range(from.as_slice()..=to.as_slice())? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = kv?;
                    if of_channel(k.value(), &p, ENTRY_TAIL) {
                        out.push(v.value().to_vec());
                    }
                }
                Ok(out)
            })
            .map_err(le)?;
        raw.iter()
            .map(|v| self.decode_entry(v).map_err(le))
            .collect()
    }

    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError> {
        match self
            .get_raw(db::ENTRIES, &entry_key(ch, author, seq))
            .map_err(le)?
        {
            Some(v) => Ok(Some(self.decode_entry(&v).map_err(le)?)),
            None => Ok(None),
        }
    }

    fn person(&self, id: &str) -> Result<Option<Person>, LogError> {
        match self.get_raw(db::PERSONS, id.as_bytes()).map_err(le)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt(&format!("a person record cannot be decoded: {e}"))),
            None => Ok(None),
        }
    }

    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError> {
        let p = prefix(ch);
        let raw = self
            .db
            .read(|r| {
                let (mi, en) = (r.open_table(db::MEMBERS)?, r.open_table(db::ENTRIES)?);
                let mut out = Vec::new();
                let end = {
                    let mut e = p.clone();
                    *e.last_mut()
                        .expect("invariant: a prefix ends in its 0 byte") = 1;
                    e
                };
                for kv in mi.range(p.as_slice()..end.as_slice())? {
                    let (k, ek) = kv?;
                    if !of_channel(k.value(), &p, VIEW_TAIL) {
                        continue;
                    }
                    out.push(en.get(ek.value())?.map(|v| v.value().to_vec()));
                }
                Ok(out)
            })
            .map_err(le)?;
        let mut out = Vec::with_capacity(raw.len());
        for v in raw {
            let v = v.ok_or_else(|| self.corrupt("a membership index points at no entry"))?;
            out.push(self.decode_entry(&v).map_err(le)?);
        }
        Ok(out)
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
