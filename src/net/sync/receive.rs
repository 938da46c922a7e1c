//! What a link receives: the peer's `have` (start the catch-up), a batch of entries (check,
//! store in one write, relay, acknowledge after the flush), an `ack`, and `done`.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::domain::log::{Log, LogError};
use crate::domain::{Body, Channel, Entry};
use crate::net::sync::rules::{
    channel_effect, check_entry, verify_signatures, CheckError, Overlay,
};
use crate::net::sync::{Check, Engine, Have, Invalid, Output, Rejection, SyncMsg};

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
        now_ms: u64,
    ) -> Result<Output, LogError> {
        let mut out = Output::default();
        if !self.sessions.contains_key(&link) {
            return Ok(out);
        }
        match msg {
            SyncMsg::Have(have) => self.on_have(log, link, have, &mut out)?,
            SyncMsg::Entries { batch, entries } => {
                self.on_entries(log, link, batch, entries, now_ms, &mut out)?
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
        // One `have` per link: a repeat would restart the whole catch-up, which a hostile
        // peer could do at will. It is ignored and counted.
        if s.started {
            self.stats.repeated_haves += 1;
            return Ok(());
        }
        s.sent.clear();
        for (ch, heads) in have.channels {
            for (author, seq) in heads {
                s.sent.insert((ch.clone(), author), seq);
            }
        }
        s.started = true;
        self.queue_all(log, link)?;
        self.fill(log, link, out)
    }

    fn on_entries<L: Log + ?Sized>(
        &mut self,
        log: &mut L,
        link: u64,
        batch: u64,
        entries: Vec<Entry>,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<(), LogError> {
        let (accepted, rejected) = self.check_batch(&*log, link, entries, now_ms)?;
        let stored = (|| {
            for (e, _) in &accepted {
                if let Some(p) = &e.person {
                    log.put_person(p)?;
                }
            }
            log.insert_many(&accepted)
        })();
        if let Err(e) = stored {
            // The cached rosters may hold entries that were not stored.
            self.rosters.clear();
            return Err(e);
        }
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
        now_ms: u64,
    ) -> Result<Checked, LogError> {
        let sig_ok = verify_signatures(log, &entries)?;
        let mut overlay = Overlay::new(log);
        let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
        for (e, sig) in entries.into_iter().zip(sig_ok) {
            let id = e.id();
            match self.check_one(&mut overlay, link, e, now_ms, sig, &mut accepted) {
                Ok(()) => {}
                // No verdict without a readable store: nothing of the batch is stored
                // or acknowledged, and the peer sends it again.
                Err(CheckError::Store(e)) => {
                    self.rosters.clear();
                    return Err(e);
                }
                Err(CheckError::Invalid(reason)) => {
                    self.stats.invalid += 1;
                    rejected.push(Rejection { entry: id, reason });
                }
            }
        }
        Ok((accepted, rejected))
    }

    /// Check one entry; a new one is added to `accepted` (or held back, when this instance
    /// may not hold its channel yet; or stored with the ones held back, once it may).
    fn check_one<L: Log + ?Sized>(
        &mut self,
        overlay: &mut Overlay<'_, L>,
        link: u64,
        e: Entry,
        now_ms: u64,
        sig: bool,
        accepted: &mut Vec<(Entry, Option<Channel>)>,
    ) -> Result<(), CheckError> {
        let known = self.roster(&*overlay, &e.channel)?.filter(|r| r.exists());
        let held_back = self
            .sessions
            .get(&link)
            .is_some_and(|s| s.pending.has(&e.channel));
        let Some(roster) = known.filter(|_| !held_back) else {
            return self.check_held_back(overlay, link, e, now_ms, sig, accepted);
        };
        if check_entry(&*overlay, Some(&roster), &e, now_ms, sig)? == Check::Duplicate {
            self.stats.duplicates += 1;
            return Ok(());
        }
        // Only a membership entry changes the roster: taken out of the cache, it is
        // changed in place (no copy of its entries); a refused entry leaves the cache
        // without it, to be reloaded from the log.
        let after = if matches!(e.body, Body::Text { .. }) {
            roster
        } else {
            self.rosters.remove(&e.channel);
            let mut r = roster;
            Arc::make_mut(&mut r).apply(&e);
            r
        };
        // Removed from the channel (or never in it, for a replica): nothing more is stored.
        if !self.may_hold(after.current()) {
            return Err(Invalid::NotShared.into());
        }
        self.charge(&e, false, now_ms)?;
        let ch = channel_effect(&*overlay, &e, &after)?;
        if !matches!(e.body, Body::Text { .. }) {
            self.rosters.insert(e.channel.clone(), after);
        }
        self.accept(overlay, e, ch, accepted);
        Ok(())
    }

    /// An entry of a channel the store does not know: checked against what this link sent
    /// of it and held back until this instance may hold the channel.
    fn check_held_back<L: Log + ?Sized>(
        &mut self,
        overlay: &mut Overlay<'_, L>,
        link: u64,
        e: Entry,
        now_ms: u64,
        sig: bool,
        accepted: &mut Vec<(Entry, Option<Channel>)>,
    ) -> Result<(), CheckError> {
        let Some(s) = self.sessions.get_mut(&link) else {
            return Ok(());
        };
        if !s.pending.has(&e.channel) && !matches!(e.body, Body::Create { .. }) {
            // Neither stored here nor begun on this link: not a channel we know.
            return Err(Invalid::NotMember.into());
        }
        if s.pending.check_and_hold(&e, now_ms, sig)? == Check::Duplicate {
            self.stats.duplicates += 1;
            return Ok(());
        }
        let members = s
            .pending
            .get(&e.channel)
            .map(|p| p.roster().current().to_vec())
            .unwrap_or_default();
        if !self.may_hold(&members) {
            return Ok(());
        }
        let Some(pc) = self
            .sessions
            .get_mut(&link)
            .and_then(|s| s.pending.take(&e.channel))
        else {
            return Ok(());
        };
        let (entries, roster) = pc.into_entries();
        for (i, x) in entries.iter().enumerate() {
            if let Err(reason) = self.charge(x, i == 0, now_ms) {
                // The channel stays out; what was held is dropped with the refusal.
                return Err(reason.into());
            }
        }
        for x in entries {
            let ch = channel_effect(&*overlay, &x, &roster)?;
            self.accept(overlay, x, ch, accepted);
        }
        self.rosters.insert(e.channel.clone(), Arc::new(roster));
        Ok(())
    }

    /// Count `e` against its author's quota (our own entries and those of persons we
    /// replicate are not counted).
    fn charge(&mut self, e: &Entry, new_channel: bool, now_ms: u64) -> Result<(), Invalid> {
        if e.author == self.me || self.replicated.contains(&e.author) {
            return Ok(());
        }
        self.usage
            .charge(&e.author, e.encoded_len(), new_channel, now_ms)
    }

    fn accept<L: Log + ?Sized>(
        &mut self,
        overlay: &mut Overlay<'_, L>,
        e: Entry,
        ch: Option<Channel>,
        accepted: &mut Vec<(Entry, Option<Channel>)>,
    ) {
        overlay.add(&e, ch.clone());
        self.hlc.observe(e.hlc);
        self.stats.received += 1;
        accepted.push((e, ch));
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
