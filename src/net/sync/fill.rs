//! What a link is sent: every entry the peer may see and lacks, in view order, in batches
//! within the window of unacknowledged ones; then `done`, once.
//!
//! The session keeps a cursor per pending (channel, author) log and a heap of the cursors'
//! next entries by view key, so each entry sent costs O(log k) for k pending logs, and an
//! `ack` continues where the last batch stopped instead of rescanning every channel.

use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};

use crate::domain::identity::Id;
use crate::domain::log::{Log, LogError};
use crate::domain::{Channel, Entry};
use crate::net::sync::{
    Engine, Output, Session, SyncMsg, BATCH_MAX_BYTES, BATCH_MAX_ENTRIES, CURSOR_CHUNK,
    CURSOR_MIN_CHUNK, WINDOW,
};

/// One author's log in one channel.
pub(super) type LogKey = (String, Id);

/// Channels a peer may see (their records), and the ids of those it may not.
type Split = (Vec<Channel>, Vec<String>);

/// Entries read ahead from one log, and the last seq read.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    buf: VecDeque<Entry>,
    loaded: u64,
}

impl Engine {
    /// Continue sending `link` what it lacks (after an `ack`, or once its `have` arrived).
    pub(super) fn fill<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        out: &mut Output,
    ) -> Result<(), LogError> {
        self.fill_some(log, link, out, None)
    }

    /// As [`Engine::fill`], after `only`'s channels changed (a write, a relay): their logs
    /// that the peer lacks join the queue, and logs of those it may no longer see leave it.
    pub(super) fn fill_some<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        out: &mut Output,
        only: Option<&BTreeSet<String>>,
    ) -> Result<(), LogError> {
        if let Some(set) = only {
            let Some((visible, hidden)) = self.visible(log, link, set)? else {
                return Ok(());
            };
            let s = self.session(link);
            s.forget(&hidden);
            s.queue_lacking(log, &visible)?;
        } else if !self.sessions.get(&link).is_some_and(|s| s.started) {
            return Ok(());
        }
        let me = self.me.clone();
        let s = self.session(link);
        while s.inflight.len() < WINDOW {
            let batch = s.next_batch(log)?;
            if batch.is_empty() {
                break;
            }
            let b = s.next_batch;
            s.next_batch += 1;
            let ours: Vec<Id> = batch
                .iter()
                .filter(|e| e.author == me)
                .map(Entry::id)
                .collect();
            s.inflight.push_back((b, ours, batch.len() as u64));
            let msg = SyncMsg::Entries {
                batch: b,
                entries: batch,
            };
            out.send.push((link, msg));
        }
        // Everything the peer lacked at the start is on its way: say so, once.
        if !s.done_sent && s.heap.is_empty() && s.to_load.is_empty() {
            s.done_sent = true;
            out.send.push((link, SyncMsg::Done));
        }
        Ok(())
    }

    fn session(&mut self, link: u64) -> &mut Session {
        self.sessions
            .get_mut(&link)
            .expect("invariant: the caller found a started session for this link")
    }

    /// Which channels of `set` the peer of `link` may see, and which it may not; `None`
    /// when the link has no started session.
    fn visible<L: Log + ?Sized>(
        &self,
        log: &L,
        link: u64,
        set: &BTreeSet<String>,
    ) -> Result<Option<Split>, LogError> {
        let Some(s) = self.sessions.get(&link).filter(|s| s.started) else {
            return Ok(None);
        };
        let (mut visible, mut hidden) = (Vec::new(), Vec::new());
        for id in set {
            match log.channel(id)? {
                Some(c) if self.may_see(&s.peer, &c.members) => visible.push(c),
                _ => hidden.push(id.clone()),
            }
        }
        Ok(Some((visible, hidden)))
    }

    /// Start the catch-up of `link` from scratch: every log of every channel it may see.
    pub(super) fn queue_all<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
    ) -> Result<(), LogError> {
        let Some(s) = self.sessions.get(&link) else {
            return Ok(());
        };
        let mut visible = Vec::new();
        for c in log.channels()? {
            if self.may_see(&s.peer, &c.members) {
                visible.push(c);
            }
        }
        self.session(link).queue_lacking(log, &visible)
    }
}

impl Session {
    /// Queue the logs of `channels` that are ahead of what the peer has.
    fn queue_lacking<L: Log + ?Sized>(
        &mut self,
        log: &L,
        channels: &[Channel],
    ) -> Result<(), LogError> {
        for c in channels {
            for (author, seq) in log.heads(&c.id)? {
                let k = (c.id.clone(), author);
                let sent = *self.sent.get(&k).unwrap_or(&0);
                let buffered = self.cursors.get(&k).is_some_and(|c| !c.buf.is_empty());
                if seq > sent && !buffered {
                    self.to_load.insert(k);
                }
            }
        }
        Ok(())
    }

    /// Drop the queued logs of channels the peer may no longer see (it was removed).
    fn forget(&mut self, channels: &[String]) {
        if channels.is_empty() {
            return;
        }
        let gone = |k: &LogKey| channels.contains(&k.0);
        self.cursors.retain(|k, _| !gone(k));
        self.to_load.retain(|k| !gone(k));
        self.heap.retain(|Reverse((_, k))| !gone(k));
    }

    /// Entries read ahead per log: about `CURSOR_CHUNK` for the whole link.
    fn chunk(&self) -> usize {
        let logs = self.cursors.len() + self.to_load.len();
        (CURSOR_CHUNK / logs.max(1)).max(CURSOR_MIN_CHUNK)
    }

    /// Read the next chunk of `k` into its cursor; push its front on the heap.
    fn load<L: Log + ?Sized>(&mut self, log: &L, k: LogKey) -> Result<(), LogError> {
        let chunk = self.chunk();
        let sent = *self.sent.get(&k).unwrap_or(&0);
        let cur = self.cursors.entry(k.clone()).or_default();
        cur.buf.retain(|e| e.seq > sent);
        if cur.buf.is_empty() {
            let more = log.range(&k.0, &k.1, cur.loaded.max(sent) + 1, chunk)?;
            if let Some(last) = more.last() {
                cur.loaded = last.seq;
            }
            cur.buf.extend(more);
        }
        match cur.buf.front() {
            Some(e) => self.heap.push(Reverse((e.view_key(), k))),
            None => {
                self.cursors.remove(&k);
            }
        }
        Ok(())
    }

    /// The next batch: the lowest entries in view order across the queued logs, within
    /// the batch limits.
    fn next_batch<L: Log + ?Sized>(&mut self, log: &L) -> Result<Vec<Entry>, LogError> {
        for k in std::mem::take(&mut self.to_load) {
            self.load(log, k)?;
        }
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while let Some(Reverse((_, k))) = self.heap.peek() {
            let k = k.clone();
            let cur = self
                .cursors
                .get_mut(&k)
                .expect("invariant: every heap item has a loaded cursor");
            let len = cur.buf.front().map(Entry::encoded_len).unwrap_or(0);
            let full = batch.len() >= BATCH_MAX_ENTRIES || bytes + len > BATCH_MAX_BYTES;
            if !batch.is_empty() && full {
                break;
            }
            self.heap.pop();
            let e = cur
                .buf
                .pop_front()
                .expect("invariant: a heap item is its cursor's front");
            let sent = self.sent.entry(k.clone()).or_insert(0);
            // The peer may have sent us this very entry since it was read ahead.
            if e.seq > *sent {
                *sent = e.seq;
                bytes += len;
                batch.push(e);
            }
            match cur.buf.front() {
                Some(next) => self.heap.push(Reverse((next.view_key(), k))),
                None => self.load(log, k)?,
            }
        }
        Ok(batch)
    }
}
