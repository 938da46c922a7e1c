//! An in-memory log for tests and simulations.

use std::collections::BTreeMap;

use crate::domain::channel::direct_members;
use crate::domain::identity::{Id, Person};
use crate::domain::log::{Log, LogError};
use crate::domain::{Body, Channel, Entry};

/// An in-memory [`Log`], for tests and simulations.
#[derive(Clone, Debug, Default)]
pub struct MemLog {
    entries: BTreeMap<(String, Id, u64), Entry>,
    channels: BTreeMap<String, Channel>,
    persons: BTreeMap<Id, Person>,
    /// Fail every write from now on (a full disk).
    pub fail_writes: bool,
}

impl MemLog {
    /// Add a channel record directly (as pairing does for 1:1 channels).
    pub fn add_channel(&mut self, c: Channel) {
        self.channels.insert(c.id.clone(), c);
    }

    /// A channel's view: all entries in view order.
    pub fn view(&self, ch: &str) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.channel == ch)
            .cloned()
            .collect();
        v.sort_by_key(Entry::view_key);
        v
    }

    /// Every stored entry.
    pub fn all(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

impl Log for MemLog {
    fn head(&self, ch: &str, author: &str) -> Result<Option<(u64, Id)>, LogError> {
        Ok(self
            .entries
            .range(
                (ch.to_string(), author.to_string(), 0)
                    ..=(ch.to_string(), author.to_string(), u64::MAX),
            )
            .next_back()
            .map(|(_, e)| (e.seq, e.id())))
    }
    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError> {
        let mut m: BTreeMap<Id, u64> = BTreeMap::new();
        for e in self.entries.values().filter(|e| e.channel == ch) {
            let v = m.entry(e.author.clone()).or_insert(0);
            *v = (*v).max(e.seq);
        }
        Ok(m.into_iter().collect())
    }
    fn channels(&self) -> Result<Vec<Channel>, LogError> {
        let mut v: Vec<Channel> = self.channels.values().cloned().collect();
        for e in self.entries.values() {
            if let Some(m) = direct_members(&e.channel) {
                if !v.iter().any(|c| c.id == e.channel) {
                    v.push(Channel {
                        id: e.channel.clone(),
                        name: String::new(),
                        members: m,
                        created_at: e.hlc.ms / 1000,
                    });
                }
            }
        }
        Ok(v)
    }
    fn channel(&self, ch: &str) -> Result<Option<Channel>, LogError> {
        Ok(self.channels.get(ch).cloned().or_else(|| {
            direct_members(ch).map(|m| Channel {
                id: ch.into(),
                name: String::new(),
                members: m,
                created_at: 0,
            })
        }))
    }
    fn range(
        &self,
        ch: &str,
        author: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        Ok(self
            .entries
            .range(
                (ch.to_string(), author.to_string(), from_seq)
                    ..=(ch.to_string(), author.to_string(), u64::MAX),
            )
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }
    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError> {
        Ok(self
            .entries
            .get(&(ch.to_string(), author.to_string(), seq))
            .cloned())
    }
    fn person(&self, id: &str) -> Result<Option<Person>, LogError> {
        Ok(self.persons.get(id).cloned())
    }
    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError> {
        let mut v: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.channel == ch && !matches!(e.body, Body::Text { .. }))
            .cloned()
            .collect();
        v.sort_by_key(Entry::view_key);
        Ok(v)
    }
    fn insert(&mut self, e: &Entry, channel: Option<&Channel>) -> Result<(), LogError> {
        if self.fail_writes {
            return Err(LogError {
                message: "disk full".into(),
                disk_full: true,
            });
        }
        self.entries
            .insert((e.channel.clone(), e.author.clone(), e.seq), e.clone());
        if let Some(c) = channel {
            self.channels.insert(c.id.clone(), c.clone());
        }
        Ok(())
    }
    fn put_person(&mut self, p: &Person) -> Result<(), LogError> {
        if self.fail_writes {
            return Err(LogError {
                message: "disk full".into(),
                disk_full: true,
            });
        }
        self.persons.insert(p.id().to_string(), p.clone());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}
