//! The sled implementation of the sync [`Log`]: entries, author heads, the view index and
//! known persons, written together in one transaction per entry.
//!
//! Keys (all under the channel id and a 0 byte, so a channel is one prefix; after it every
//! key of a kind has a fixed length, so a scan checks each key's length and no channel can
//! pass for another, even one stored before ids were validated, e.g. `G` and `G\0x`):
//! - `entries`: `ch 0 author seq_be8` → entry JSON
//! - `heads`:   `ch 0 author` → `seq_be8 id`
//! - `view`:    `ch 0 ms_be8 c_be4 author seq_be8` → `entries` key
//! - `members`: like `view`, for create and members entries only (membership history)
//! - `persons`: person id → Person JSON

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::domain::channel::direct_members;
use crate::domain::identity::{Id, Person};
use crate::domain::log::{Log, LogError};
use crate::domain::Channel;
use crate::domain::Entry;
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
        let r: Result<(), TransactionError<()>> = (
            &self.entries,
            &self.heads,
            &self.view,
            &self.channels_tree(),
            &self.members_idx,
        )
            .transaction(|(en, he, vi, ch, mi)| {
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
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        if prepared.iter().any(|p| p.record.is_some()) {
            self.invalidate_channels();
        }
        r.map_err(|e| match e {
            TransactionError::Storage(s) => le(self.sled_err(s)),
            TransactionError::Abort(()) => LogError::new("transaction aborted"),
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

    fn read_err(&self, e: sled::Error) -> LogError {
        le(self.sled_err(e))
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
        let mut out = Vec::with_capacity(limit.min(1024));
        let keys = self.view.range(start.clone()..end).rev();
        let exact = keys.filter(|kv| {
            kv.as_ref()
                .map_or(true, |(k, _)| of_channel(k, &start, VIEW_TAIL))
        });
        for kv in exact.take(limit) {
            let (_, ek) = kv.map_err(|e| self.sled_err(e))?;
            if let Some(v) = self.entries.get(&ek).map_err(|e| self.sled_err(e))? {
                out.push(self.decode_entry(&v)?);
            }
        }
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
        for kv in self
            .entries
            .range(entry_key(ch, author, 0)..=entry_key(ch, author, u64::MAX))
            .rev()
        {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            if !of_channel(&k, &p, ENTRY_TAIL) {
                continue;
            }
            let e = self.decode_entry(&v)?;
            {
                if e.id() == id {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// Number of entries in a channel's view.
    pub fn view_len(&self, ch: &str) -> usize {
        let p = prefix(ch);
        self.view
            .scan_prefix(&p)
            .filter(|kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| of_channel(k, &p, VIEW_TAIL))
            })
            .count()
    }

    /// Unread count of a channel.
    pub fn unread(&self, ch: &str) -> u64 {
        self.unread
            .get(ch.as_bytes())
            .ok()
            .flatten()
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0)
    }

    /// Add to a channel's unread count (not flushed: a lost count is harmless).
    pub fn add_unread(&self, ch: &str, n: u64) {
        let _ = self.unread.update_and_fetch(ch.as_bytes(), |old| {
            let cur = old
                .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0);
            Some((cur + n).to_be_bytes().to_vec())
        });
    }

    /// Mark a channel read.
    pub fn clear_unread(&self, ch: &str) {
        let _ = self.unread.remove(ch.as_bytes());
    }

    /// Every entry stored for a channel (tests and audits).
    pub fn all_entries(&self, ch: &str) -> Vec<Entry> {
        let p = prefix(ch);
        self.entries
            .scan_prefix(&p)
            .filter_map(|kv| kv.ok())
            .filter(|(k, _)| of_channel(k, &p, ENTRY_TAIL))
            .filter_map(|(_, v)| self.decode_entry(&v).ok())
            .collect()
    }

    /// Total entries in the store.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

impl Log for Store {
    fn head(&self, ch: &str, author: &str) -> Result<Option<(u64, Id)>, LogError> {
        let Some(v) = self
            .heads
            .get(head_key(ch, author))
            .map_err(|e| self.read_err(e))?
        else {
            return Ok(None);
        };
        Ok(Some(self.decode_head(&v)?))
    }

    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError> {
        let p = prefix(ch);
        let mut out = Vec::new();
        for kv in self.heads.scan_prefix(&p) {
            let (k, v) = kv.map_err(|e| self.read_err(e))?;
            if !of_channel(&k, &p, HEAD_TAIL) {
                continue;
            }
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
        let mut out = Vec::new();
        let p = prefix(ch);
        let keys = entry_key(ch, author, from_seq)..=entry_key(ch, author, u64::MAX);
        for kv in self.entries.range(keys) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(|e| self.read_err(e))?;
            if of_channel(&k, &p, ENTRY_TAIL) {
                out.push(self.decode_entry(&v).map_err(le)?);
            }
        }
        Ok(out)
    }

    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError> {
        let v = self.entries.get(entry_key(ch, author, seq));
        match v.map_err(|e| self.read_err(e))? {
            Some(v) => Ok(Some(self.decode_entry(&v).map_err(le)?)),
            None => Ok(None),
        }
    }

    fn person(&self, id: &str) -> Result<Option<Person>, LogError> {
        match self
            .persons
            .get(id.as_bytes())
            .map_err(|e| self.read_err(e))?
        {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt(&format!("a person record cannot be decoded: {e}"))),
            None => Ok(None),
        }
    }

    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError> {
        let mut out = Vec::new();
        let p = prefix(ch);
        for kv in self.members_idx.scan_prefix(&p) {
            let (k, ek) = kv.map_err(|e| self.read_err(e))?;
            if !of_channel(&k, &p, VIEW_TAIL) {
                continue;
            }
            let v = self.entries.get(ek).map_err(|e| self.read_err(e))?;
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
        self.persons
            .insert(p.id().as_bytes(), v)
            .map_err(|e| le(self.sled_err(e)))?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        Store::flush(self).map_err(le)
    }
}
