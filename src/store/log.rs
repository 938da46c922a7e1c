//! The sled implementation of the sync [`Log`]: entries, author heads, the view index and
//! known persons, written together in one transaction per entry.
//!
//! Keys (all under the channel id and a 0 byte, so a channel is one prefix):
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
use crate::domain::ChannelInfo;
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

fn info_of(c: Channel) -> ChannelInfo {
    ChannelInfo {
        id: c.id,
        name: c.name,
        members: c.members,
    }
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
    fn write_entries(&self, items: &[(&Entry, Option<&ChannelInfo>)]) -> Result<(), LogError> {
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
                Some(c) => Some(Channel {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    members: c.members.clone(),
                    created_at: e.hlc.ms / 1000,
                }),
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

    fn decode_entry(&self, v: &[u8]) -> Option<Entry> {
        serde_json::from_slice(v).ok()
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
        for kv in self.view.range(start..end).rev().take(limit) {
            let (_, ek) = kv.map_err(|e| self.sled_err(e))?;
            if let Some(v) = self.entries.get(&ek).map_err(|e| self.sled_err(e))? {
                if let Some(e) = self.decode_entry(&v) {
                    out.push(e);
                }
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
        for kv in self
            .entries
            .range(entry_key(ch, author, 0)..=entry_key(ch, author, u64::MAX))
            .rev()
        {
            let (_, v) = kv.map_err(|e| self.sled_err(e))?;
            if let Some(e) = self.decode_entry(&v) {
                if e.id() == id {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// Number of entries in a channel's view.
    pub fn view_len(&self, ch: &str) -> usize {
        self.view.scan_prefix(prefix(ch)).count()
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
        self.entries
            .scan_prefix(prefix(ch))
            .filter_map(|kv| kv.ok().and_then(|(_, v)| self.decode_entry(&v)))
            .collect()
    }

    /// Total entries in the store.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

impl Log for Store {
    fn head(&self, ch: &str, author: &str) -> Option<(u64, Id)> {
        let v = self.heads.get(head_key(ch, author)).ok()??;
        let seq = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let id = String::from_utf8(v.get(8..)?.to_vec()).ok()?;
        Some((seq, id))
    }

    fn heads(&self, ch: &str) -> Vec<(Id, u64)> {
        let p = prefix(ch);
        self.heads
            .scan_prefix(&p)
            .filter_map(|kv| {
                let (k, v) = kv.ok()?;
                let author = String::from_utf8(k.get(p.len()..)?.to_vec()).ok()?;
                let seq = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                Some((author, seq))
            })
            .collect()
    }

    fn channels(&self) -> Vec<ChannelInfo> {
        self.channels()
            .unwrap_or_default()
            .into_iter()
            .map(info_of)
            .collect()
    }

    fn channel(&self, ch: &str) -> Option<ChannelInfo> {
        self.get_channel(ch).ok().flatten().map(info_of)
    }

    fn range(&self, ch: &str, author: &str, from_seq: u64, limit: usize) -> Vec<Entry> {
        self.entries
            .range(entry_key(ch, author, from_seq)..=entry_key(ch, author, u64::MAX))
            .take(limit)
            .filter_map(|kv| kv.ok().and_then(|(_, v)| self.decode_entry(&v)))
            .collect()
    }

    fn get(&self, ch: &str, author: &str, seq: u64) -> Option<Entry> {
        let v = self.entries.get(entry_key(ch, author, seq)).ok()??;
        self.decode_entry(&v)
    }

    fn person(&self, id: &str) -> Option<Person> {
        let v = self.persons.get(id.as_bytes()).ok()??;
        serde_json::from_slice(&v).ok()
    }

    fn membership(&self, ch: &str) -> Vec<Entry> {
        self.members_idx
            .scan_prefix(prefix(ch))
            .filter_map(|kv| {
                let (_, ek) = kv.ok()?;
                let v = self.entries.get(ek).ok()??;
                self.decode_entry(&v)
            })
            .collect()
    }

    fn insert(&mut self, e: &Entry, channel: Option<&ChannelInfo>) -> Result<(), LogError> {
        self.write_entries(&[(e, channel)])
    }

    fn insert_many(&mut self, items: &[(Entry, Option<ChannelInfo>)]) -> Result<(), LogError> {
        let refs: Vec<(&Entry, Option<&ChannelInfo>)> =
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
