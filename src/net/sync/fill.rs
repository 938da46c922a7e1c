//! What a link is sent: every entry the peer may see and lacks, in view order, in batches
//! within the window of unacknowledged ones; then `done`, once.

use std::collections::{BTreeSet, VecDeque};

use crate::domain::identity::Id;
use crate::domain::log::{Log, LogError};
use crate::domain::{Channel, Entry, ViewKey};
use crate::net::sync::{
    Engine, Output, Session, SyncMsg, BATCH_MAX_BYTES, BATCH_MAX_ENTRIES, CURSOR_CHUNK,
    CURSOR_MIN_CHUNK, WINDOW,
};

/// One author's log in one channel.
type LogKey = (String, Id);

impl Engine {
    /// Queue for `link` every entry it may see and lacks, in view order, within the window.
    pub(super) fn fill<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        out: &mut Output,
    ) -> Result<(), LogError> {
        self.fill_some(log, link, out, None)
    }

    /// As [`Engine::fill`], looking only at `only`'s channels when given (a write or a relay
    /// touches one channel; scanning every channel per link would make fan-out quadratic).
    pub(super) fn fill_some<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        out: &mut Output,
        only: Option<&BTreeSet<String>>,
    ) -> Result<(), LogError> {
        let Some(visible) = self.visible(log, link, only)? else {
            return Ok(());
        };
        let me = self.me.clone();
        let s = self
            .sessions
            .get_mut(&link)
            .expect("invariant: visible() found the session");
        let pending = pending_logs(log, s, &visible)?;
        let chunk = (CURSOR_CHUNK / pending.len().max(1)).max(CURSOR_MIN_CHUNK);
        while s.inflight.len() < WINDOW {
            let batch = next_batch(log, s, &pending, chunk)?;
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
        // Everything the peer lacked at the start is on its way: say so, once. (A partial
        // fill cannot tell.)
        if only.is_none() && !s.done_sent && caught_up(log, s, &pending)? {
            s.done_sent = true;
            out.send.push((link, SyncMsg::Done));
        }
        // Bound read-ahead memory: drop cursors of logs that are fully sent.
        s.cursors.retain(|_, c| !c.0.is_empty());
        Ok(())
    }

    /// The channels of `only` (or all) that the peer of `link` may see; `None` when the
    /// link has no started session.
    fn visible<L: Log + ?Sized>(
        &self,
        log: &L,
        link: u64,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Option<Vec<Channel>>, LogError> {
        let Some(s) = self.sessions.get(&link).filter(|s| s.started) else {
            return Ok(None);
        };
        let candidates = match only {
            Some(set) => {
                let mut v = Vec::new();
                for c in set {
                    v.extend(log.channel(c)?);
                }
                v
            }
            None => log.channels()?,
        };
        let visible = candidates
            .into_iter()
            .filter(|c| self.may_see(&s.peer, &c.members));
        Ok(Some(visible.collect()))
    }
}

/// The (channel, author) logs that are ahead of what the peer has.
fn pending_logs<L: Log + ?Sized>(
    log: &L,
    s: &Session,
    visible: &[Channel],
) -> Result<Vec<LogKey>, LogError> {
    let mut pending = Vec::new();
    for c in visible {
        for (author, seq) in log.heads(&c.id)? {
            let k = (c.id.clone(), author);
            if seq > *s.sent.get(&k).unwrap_or(&0) {
                pending.push(k);
            }
        }
    }
    Ok(pending)
}

/// The next batch: the lowest entries in view order across the pending logs, within the
/// batch limits.
fn next_batch<L: Log + ?Sized>(
    log: &L,
    s: &mut Session,
    pending: &[LogKey],
    chunk: usize,
) -> Result<Vec<Entry>, LogError> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(k) = lowest_next(log, s, pending, chunk)? {
        let cur = s
            .cursors
            .get_mut(&k)
            .expect("invariant: lowest_next loaded this cursor");
        let len = cur.0.front().map(Entry::encoded_len).unwrap_or(0);
        if !batch.is_empty() && (batch.len() >= BATCH_MAX_ENTRIES || bytes + len > BATCH_MAX_BYTES)
        {
            break;
        }
        let e = cur
            .0
            .pop_front()
            .expect("invariant: lowest_next picked a non-empty cursor");
        bytes += len;
        s.sent.insert(k, e.seq);
        batch.push(e);
    }
    Ok(batch)
}

/// Load the next entry of every pending log and pick the log whose next entry is lowest in
/// view order.
fn lowest_next<L: Log + ?Sized>(
    log: &L,
    s: &mut Session,
    pending: &[LogKey],
    chunk: usize,
) -> Result<Option<LogKey>, LogError> {
    let mut best: Option<(ViewKey, &LogKey)> = None;
    for k in pending {
        let sent = *s.sent.get(k).unwrap_or(&0);
        let cur = s
            .cursors
            .entry(k.clone())
            .or_insert((VecDeque::new(), sent));
        while cur.0.front().is_some_and(|e| e.seq <= sent) {
            cur.0.pop_front();
        }
        cur.1 = cur.1.max(sent);
        if cur.0.is_empty() {
            let more = log.range(&k.0, &k.1, cur.1 + 1, chunk)?;
            if let Some(last) = more.last() {
                cur.1 = last.seq;
            }
            cur.0.extend(more);
        }
        if let Some(e) = cur.0.front() {
            let vk = e.view_key();
            if best.as_ref().is_none_or(|(b, _)| vk < *b) {
                best = Some((vk, k));
            }
        }
    }
    Ok(best.map(|(_, k)| k.clone()))
}

/// The peer has (or has on its way) the head of every pending log.
fn caught_up<L: Log + ?Sized>(log: &L, s: &Session, pending: &[LogKey]) -> Result<bool, LogError> {
    for k in pending {
        let head = log.head(&k.0, &k.1)?.map(|h| h.0).unwrap_or(0);
        if head > *s.sent.get(k).unwrap_or(&0) {
            return Ok(false);
        }
    }
    Ok(true)
}
