//! What this instance keeps from a peer before storing it: channels it may not hold yet
//! (held in memory per link, bounded), and per-author quotas on what it stores.
//!
//! A member shares a channel's history with a new member in view order, so the entry that
//! adds the new member arrives after the history before it. Those entries are checked as
//! they come and held here; once the roster includes this instance (or a person it is the
//! replica of) they are stored together. A peer that sends channels we are not in fills
//! only this bounded buffer, which ends with the link, never the disk.

use std::collections::BTreeMap;

use crate::domain::identity::Id;
use crate::domain::log::{Log, LogError};
use crate::domain::Entry;
use crate::net::sync::rules::{check_entry, Check, CheckError, Invalid};
use crate::net::sync::{
    MemLog, Roster, PENDING_MAX_BYTES, PENDING_MAX_ENTRIES, QUOTA_BYTES, QUOTA_CHANNELS,
    QUOTA_WINDOW_MS,
};

/// One channel held back on one link: its entries so far, checked, in arrival order.
#[derive(Debug, Default)]
pub(super) struct PendingChannel {
    log: MemLog,
    roster: Roster,
    order: Vec<Entry>,
}

impl PendingChannel {
    /// The roster of what arrived so far.
    pub(super) fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The entries, in the order they were accepted (each author's log in seq order).
    pub(super) fn into_entries(self) -> (Vec<Entry>, Roster) {
        (self.order, self.roster)
    }
}

/// The channels held back on one link.
#[derive(Debug, Default)]
pub(super) struct Pending {
    channels: BTreeMap<String, PendingChannel>,
    entries: usize,
    bytes: usize,
}

impl Pending {
    /// Whether `ch` is held back here.
    pub(super) fn has(&self, ch: &str) -> bool {
        self.channels.contains_key(ch)
    }

    /// Check `e` (of a channel the store does not know) against what this link sent of
    /// its channel so far, and hold it if it is new and valid. Over the bounds: `quota`.
    pub(super) fn check_and_hold(
        &mut self,
        e: &Entry,
        now_ms: u64,
        sig_checked: bool,
    ) -> Result<Check, CheckError> {
        let len = e.encoded_len();
        let pc = self.channels.get(&e.channel);
        let roster = pc.map(|p| &p.roster).filter(|r| r.exists());
        let log = pc.map(|p| &p.log);
        let empty = MemLog::default();
        let check = check_entry(log.unwrap_or(&empty), roster, e, now_ms, sig_checked)?;
        if check == Check::Duplicate {
            return Ok(check);
        }
        if self.entries >= PENDING_MAX_ENTRIES || self.bytes + len > PENDING_MAX_BYTES {
            return Err(Invalid::Quota.into());
        }
        let pc = self.channels.entry(e.channel.clone()).or_default();
        if let Some(p) = &e.person {
            pc.log
                .put_person(p)
                .map_err(|_| LogError::new("an in-memory log refused a write"))?;
        }
        pc.log
            .insert(e, None)
            .map_err(|_| LogError::new("an in-memory log refused a write"))?;
        pc.roster.apply(e);
        pc.order.push(e.clone());
        self.entries += 1;
        self.bytes += len;
        Ok(check)
    }

    /// The channel, if held.
    pub(super) fn get(&self, ch: &str) -> Option<&PendingChannel> {
        self.channels.get(ch)
    }

    /// Take a channel out (to store it).
    pub(super) fn take(&mut self, ch: &str) -> Option<PendingChannel> {
        let pc = self.channels.remove(ch)?;
        self.entries -= pc.order.len();
        self.bytes -= pc.order.iter().map(Entry::encoded_len).sum::<usize>();
        Some(pc)
    }
}

/// What one author made this instance store in the current window.
#[derive(Debug, Default, Clone, Copy)]
struct AuthorUsage {
    window_start_ms: u64,
    channels: u32,
    bytes: u64,
}

/// Per-author quotas: new group channels and bytes stored per window. A refusal is not a
/// verdict on the entry (every instance may judge it differently): it is reported as
/// `quota` and the entry may be sent again on a later link.
#[derive(Debug, Default)]
pub(super) struct Usage {
    authors: BTreeMap<Id, AuthorUsage>,
}

impl Usage {
    /// Charge `author` for one entry of `bytes` (and a new channel when `new_channel`), or
    /// refuse it as over the quota.
    pub(super) fn charge(
        &mut self,
        author: &str,
        bytes: usize,
        new_channel: bool,
        now_ms: u64,
    ) -> Result<(), Invalid> {
        let u = self.authors.entry(author.to_string()).or_default();
        if now_ms.saturating_sub(u.window_start_ms) >= QUOTA_WINDOW_MS {
            *u = AuthorUsage {
                window_start_ms: now_ms,
                ..AuthorUsage::default()
            };
        }
        let channels = u.channels + u32::from(new_channel);
        let total = u.bytes + bytes as u64;
        if channels > QUOTA_CHANNELS || total > QUOTA_BYTES {
            return Err(Invalid::Quota);
        }
        u.channels = channels;
        u.bytes = total;
        Ok(())
    }
}
