//! The storage port of sync: what the sync engine reads and writes, implemented by the
//! store (redb) and by an in-memory log in the simulations.

use crate::domain::identity::{Id, Person};
use crate::domain::{Channel, Entry, Hlc};

/// Errors of the storage behind a [`Log`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LogError {
    /// What failed, for a person.
    pub message: String,
    /// The disk is full: the fix is free space, and nothing was lost.
    pub disk_full: bool,
}

impl LogError {
    /// A storage failure other than a full disk.
    pub fn new(message: impl Into<String>) -> LogError {
        LogError {
            message: message.into(),
            disk_full: false,
        }
    }
}

/// Storage of logs, channels and known persons. Every read returns a `Result`: a store
/// that cannot read is an error for the caller to report, never an absent record (which
/// would make a disk fault look like a gap, a fork or a non-member).
pub trait Log {
    /// Highest (seq, id) of an author's log in a channel.
    fn head(&self, ch: &str, author: &str) -> Result<Option<(u64, Id)>, LogError>;
    /// All author heads of a channel.
    fn heads(&self, ch: &str) -> Result<Vec<(Id, u64)>, LogError>;
    /// All channels.
    fn channels(&self) -> Result<Vec<Channel>, LogError>;
    /// One channel.
    fn channel(&self, ch: &str) -> Result<Option<Channel>, LogError>;
    /// Up to `limit` entries of an author's log from `from_seq` on.
    fn range(
        &self,
        ch: &str,
        author: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError>;
    /// One entry.
    fn get(&self, ch: &str, author: &str, seq: u64) -> Result<Option<Entry>, LogError>;
    /// A known Person.
    fn person(&self, id: &str) -> Result<Option<Person>, LogError>;
    /// The channel's membership entries (create, members), in view order.
    fn membership(&self, ch: &str) -> Result<Vec<Entry>, LogError>;
    /// Store an entry (and the channel record it changes) atomically.
    fn insert(&mut self, e: &Entry, channel: Option<&Channel>) -> Result<(), LogError>;
    /// Store several entries (each with the channel record it changes) in one go; the
    /// default stores them one by one.
    fn insert_many(&mut self, items: &[(Entry, Option<Channel>)]) -> Result<(), LogError> {
        for (e, c) in items {
            self.insert(e, c.as_ref())?;
        }
        Ok(())
    }
    /// The highest stamp of any stored entry (the clock restarts after it). The default
    /// reads the head entry of every log: the highest stamp of a log is its head's, since
    /// stamps grow along a log.
    fn latest_hlc(&self) -> Result<Option<Hlc>, LogError> {
        let mut best: Option<Hlc> = None;
        for c in self.channels()? {
            for (author, seq) in self.heads(&c.id)? {
                if let Some(e) = self.get(&c.id, &author, seq)? {
                    best = best.max(Some(e.hlc));
                }
            }
        }
        Ok(best)
    }
    /// Remember a Person.
    fn put_person(&mut self, p: &Person) -> Result<(), LogError>;
    /// Make everything stored so far durable.
    fn flush(&mut self) -> Result<(), LogError>;
}
