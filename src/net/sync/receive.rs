//! What a link receives: the peer's `have` (start the catch-up), a batch of entries (check,
//! store in one write, relay, acknowledge after the flush), an `ack`, and `done`.

use std::collections::BTreeSet;

use crate::domain::log::{Log, LogError};
use crate::domain::{Channel, Entry};
use crate::net::sync::rules::{
    channel_effect, check_entry_pre, verify_signatures, CheckError, Overlay,
};
use crate::net::sync::{Check, Engine, Have, Output, Rejection, SyncMsg};

/// A checked batch: the entries to store (each with the channel record it changes) and the
/// refusals to report.
type Checked = (Vec<(Entry, Option<Channel>)>, Vec<Rejection>);

impl Engine {
    /// Handle a sync message from `link`.
    pub fn handle<L: Log + ?Sized>(
        &mut self,
        log: &mut L,
        link: u64,
        msg: SyncMsg,
    ) -> Result<Output, LogError> {
        let mut out = Output::default();
        if !self.sessions.contains_key(&link) {
            return Ok(out);
        }
        match msg {
            SyncMsg::Have(have) => self.on_have(log, link, have, &mut out)?,
            SyncMsg::Entries { batch, entries } => {
                self.on_entries(log, link, batch, entries, &mut out)?
            }
            SyncMsg::Ack { batch, rejected } => {
                self.on_ack(link, batch, rejected, &mut out);
                self.fill(log, link, &mut out)?;
            }
            SyncMsg::Done => self.on_done(link, &mut out),
        }
        Ok(out)
    }

    fn on_have<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        have: Have,
        out: &mut Output,
    ) -> Result<(), LogError> {
        let s = self
            .sessions
            .get_mut(&link)
            .expect("invariant: the caller checked the session");
        s.sent.clear();
        s.cursors.clear();
        for (ch, heads) in have.channels {
            for (author, seq) in heads {
                s.sent.insert((ch.clone(), author), seq);
            }
        }
        s.started = true;
        self.fill(log, link, out)
    }

    fn on_entries<L: Log + ?Sized>(
        &mut self,
        log: &mut L,
        link: u64,
        batch: u64,
        entries: Vec<Entry>,
        out: &mut Output,
    ) -> Result<(), LogError> {
        let (accepted, rejected) = self.check_batch(&*log, link, entries)?;
        for (e, _) in &accepted {
            if let Some(p) = &e.person {
                log.put_person(p)?;
            }
        }
        log.insert_many(&accepted)?;
        if let Some(s) = self.sessions.get_mut(&link) {
            // The sender has them: never echo them back on this link.
            for (e, _) in &accepted {
                let k = (e.channel.clone(), e.author.clone());
                let v = s.sent.entry(k).or_insert(0);
                *v = (*v).max(e.seq);
            }
        }
        out.stored.extend(accepted.into_iter().map(|(e, _)| e));
        out.rejected.extend(rejected.iter().cloned());
        self.relay(&*log, link, out)?;
        // The ack waits for the caller's flush: durable before acknowledged.
        out.after_flush
            .push((link, SyncMsg::Ack { batch, rejected }));
        Ok(())
    }

    /// Check a batch against the log plus what the batch already added, so it can be
    /// stored in one write.
    fn check_batch<L: Log + ?Sized>(
        &mut self,
        log: &L,
        link: u64,
        entries: Vec<Entry>,
    ) -> Result<Checked, LogError> {
        let sender = self
            .sessions
            .get(&link)
            .map(|s| s.peer.person_id.clone())
            .unwrap_or_default();
        let sig_ok = verify_signatures(log, &entries)?;
        let mut overlay = Overlay::new(log);
        let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
        for (e, sig) in entries.into_iter().zip(sig_ok) {
            // We hold a channel we are a member of (or replicate a member of), or one a
            // member shares with us: a new member receives the channel's history before
            // the entry that adds them.
            let may_hold = |m: &[String]| self.may_hold(m) || m.contains(&sender);
            match check_entry_pre(&overlay, &e, may_hold, sig) {
                Ok(Check::New) => {
                    let ch = channel_effect(&overlay, &e)?;
                    overlay.add(&e, ch.clone());
                    self.hlc.observe(e.hlc);
                    self.stats.received += 1;
                    accepted.push((e, ch));
                }
                Ok(Check::Duplicate) => self.stats.duplicates += 1,
                // No verdict without a readable store: nothing of the batch is stored
                // or acknowledged, and the peer sends it again.
                Err(CheckError::Store(e)) => return Err(e),
                Err(CheckError::Invalid(reason)) => {
                    self.stats.invalid += 1;
                    rejected.push(Rejection {
                        entry: e.id(),
                        reason,
                    });
                }
            }
        }
        Ok((accepted, rejected))
    }

    /// New entries go on at once to every other link entitled to them.
    fn relay<L: Log + ?Sized>(
        &mut self,
        log: &L,
        from: u64,
        out: &mut Output,
    ) -> Result<(), LogError> {
        let touched: BTreeSet<String> = out.stored.iter().map(|e| e.channel.clone()).collect();
        if touched.is_empty() {
            return Ok(());
        }
        let others: Vec<u64> = self
            .sessions
            .keys()
            .copied()
            .filter(|l| *l != from)
            .collect();
        for l in others {
            self.fill_some(log, l, out, Some(&touched))?;
        }
        Ok(())
    }

    fn on_ack(&mut self, link: u64, batch: u64, rejected: Vec<Rejection>, out: &mut Output) {
        let s = self
            .sessions
            .get_mut(&link)
            .expect("invariant: the caller checked the session");
        if let Some(i) = s.inflight.iter().position(|(b, _, _)| *b == batch) {
            let (_, ours, _) = s
                .inflight
                .remove(i)
                .expect("invariant: index from position");
            let delivered = ours
                .into_iter()
                .filter(|id| !rejected.iter().any(|r| r.entry == *id));
            out.delivered.extend(delivered);
        }
        out.peer_rejected.extend(rejected);
    }

    fn on_done(&mut self, link: u64, out: &mut Output) {
        let s = self
            .sessions
            .get_mut(&link)
            .expect("invariant: the caller checked the session");
        if !s.their_done {
            s.their_done = true;
            out.synced.push(s.peer.person_id.clone());
        }
    }
}
