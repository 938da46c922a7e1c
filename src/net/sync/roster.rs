//! Who may write to a group channel, and from which point of their log: the roster, derived
//! from the channel's membership entries (create, members) the same way on every instance.
//!
//! Membership is judged by **log position**, not by timestamp: an author chooses its own
//! HLC, so a removed member could otherwise stamp new entries into the time before its
//! removal. A `members` entry records, for every person it adds or removes, that person's
//! log head in the channel as the writer saw it (`heads`). A removal with head `h` refuses
//! the removed person's seqs above `h`; an add with head `h` admits them again. (Entries
//! written before `heads` existed apply by view position, the old rule.)
//!
//! A membership entry is itself judged by the roster of the *other* valid membership
//! entries, so a removed member cannot re-add herself or anyone else whatever its stamp,
//! and the roster is the same whether or not an instance stored such an entry before the
//! removal reached it (it is recomputed until it stops changing).

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::channel::direct_members;
use crate::domain::identity::Id;
use crate::domain::{Body, Entry, ViewKey};

/// Most passes of the fixpoint over a channel's membership entries. Each pass can only
/// change entries whose judge depends on an entry changed by the pass before; honest and
/// hostile histories alike settle in two or three. The result is deterministic either way.
const MAX_PASSES: usize = 16;

/// One membership change of one person.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    /// The view position of the entry that made it.
    at: ViewKey,
    /// Added (or listed at creation) rather than removed.
    add: bool,
    /// The person's seqs above this are governed by the event; `None` (entries from before
    /// `heads` existed): the person's entries after `at` in view order are.
    after_seq: Option<u64>,
}

impl Event {
    fn applies(&self, seq: u64, at: &ViewKey) -> bool {
        match self.after_seq {
            Some(h) => seq > h,
            None => *at > self.at,
        }
    }
}

/// The membership of one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    /// The channel's membership entries, in view order (all stored ones, valid or not).
    entries: Vec<Entry>,
    /// Per person, the events of the valid entries.
    events: BTreeMap<Id, Vec<Event>>,
    /// Whether a valid create entry (or a record standing in for one) exists.
    created: bool,
    /// The members now (kept with the events: every entry checked asks for it).
    members: Vec<Id>,
}

impl Roster {
    /// The roster of a 1:1 channel: its two members, always.
    pub fn direct(ch: &str) -> Option<Roster> {
        let members = direct_members(ch)?;
        Some(Roster::from_members(&members))
    }

    /// A roster seeded from a channel record with no create entry stored (a channel known
    /// before its history): its members, from their first entry on.
    pub fn from_members(members: &[Id]) -> Roster {
        let mut r = Roster {
            created: true,
            ..Roster::default()
        };
        for m in members {
            r.events.entry(m.clone()).or_default().push(Event {
                at: (Default::default(), String::new(), 0),
                add: true,
                after_seq: Some(0),
            });
        }
        r.compute_members();
        r
    }

    /// The roster of a group channel from its membership entries (any order).
    pub fn from_entries(entries: Vec<Entry>) -> Roster {
        let mut r = Roster {
            entries,
            ..Roster::default()
        };
        r.entries.sort_by_key(Entry::view_key);
        r.settle();
        r
    }

    /// Whether the channel exists (a valid create entry, or a record).
    pub fn exists(&self) -> bool {
        self.created
    }

    /// Add a membership entry (already checked) and recompute.
    pub fn apply(&mut self, e: &Entry) {
        if matches!(e.body, Body::Text { .. }) {
            return;
        }
        let vk = e.view_key();
        let at = self.entries.partition_point(|x| x.view_key() < vk);
        self.entries.insert(at, e.clone());
        self.settle();
    }

    /// Whether `author`'s entry `seq` at view position `at` is a member's.
    pub fn admits(&self, author: &str, seq: u64, at: &ViewKey) -> bool {
        self.admits_except(author, seq, at, None)
    }

    fn admits_except(&self, author: &str, seq: u64, at: &ViewKey, skip: Option<&ViewKey>) -> bool {
        let Some(evs) = self.events.get(author) else {
            return false;
        };
        evs.iter()
            .filter(|ev| skip != Some(&ev.at) && ev.applies(seq, at))
            .max_by(|a, b| a.at.cmp(&b.at))
            .is_some_and(|ev| ev.add)
    }

    /// The members now: everyone whose last change in view order is an add.
    pub fn current(&self) -> &[Id] {
        &self.members
    }

    fn compute_members(&mut self) {
        let last = |evs: &Vec<Event>| evs.iter().max_by(|a, b| a.at.cmp(&b.at)).map(|e| e.add);
        self.members = self
            .events
            .iter()
            .filter(|(_, evs)| last(evs) == Some(true))
            .map(|(id, _)| id.clone())
            .collect();
    }

    /// The log head to record for `person` in a members entry that adds or removes them:
    /// the highest seq of theirs this roster admits, given the head stored here. (A person
    /// re-added after a removal is admitted again from the removal's cut, so every instance
    /// can accept what follows, whatever it had stored beyond the cut.)
    pub fn head_to_record(&self, person: &str, stored_head: u64) -> u64 {
        let removed_at = self.events.get(person).and_then(|evs| {
            let last = evs.iter().max_by(|a, b| a.at.cmp(&b.at))?;
            (!last.add).then_some(last.after_seq).flatten()
        });
        match removed_at {
            Some(cut) => cut.min(stored_head),
            None => stored_head,
        }
    }

    /// Recompute the events of the valid entries until they stop changing.
    fn settle(&mut self) {
        let mut valid = vec![true; self.entries.len()];
        for _ in 0..MAX_PASSES {
            self.rebuild(&valid);
            let next: Vec<bool> = self.entries.iter().map(|e| self.judge(e)).collect();
            if next == valid {
                return;
            }
            valid = next;
        }
        self.rebuild(&valid);
    }

    /// Whether a stored membership entry stands, judged by the others.
    fn judge(&self, e: &Entry) -> bool {
        let vk = e.view_key();
        match &e.body {
            // The first create of the creator's log; a second (a fork) never stands.
            Body::Create { .. } => {
                e.seq == 1
                    && self
                        .entries
                        .iter()
                        .find(|x| matches!(x.body, Body::Create { .. }))
                        .is_some_and(|first| first.view_key() == vk)
            }
            Body::Members { .. } => self.admits_except(&e.author, e.seq, &vk, Some(&vk)),
            Body::Text { .. } => false,
        }
    }

    fn rebuild(&mut self, valid: &[bool]) {
        self.events.clear();
        self.created = false;
        for (e, ok) in self.entries.iter().zip(valid) {
            if !ok {
                continue;
            }
            let at = e.view_key();
            match &e.body {
                Body::Create { members, .. } => {
                    self.created = true;
                    for m in members.iter().collect::<BTreeSet<_>>() {
                        self.events.entry(m.clone()).or_default().push(Event {
                            at: at.clone(),
                            add: true,
                            after_seq: Some(0),
                        });
                    }
                }
                Body::Members { add, remove, heads } => {
                    let changes = add.iter().map(|m| (m, true));
                    for (m, is_add) in changes.chain(remove.iter().map(|m| (m, false))) {
                        self.events.entry(m.clone()).or_default().push(Event {
                            at: at.clone(),
                            add: is_add,
                            after_seq: heads.get(m).copied(),
                        });
                    }
                }
                Body::Text { .. } => {}
            }
        }
        self.compute_members();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::{LocalIdentity, Secrets};
    use crate::domain::{sign_entry, Hlc};

    const G: &str = "g-000102030405060708090a0b0c0d0e0f";

    fn who(seed: u8) -> LocalIdentity {
        let s = Secrets {
            person: [seed; 32],
            instance: [seed + 1; 32],
            transport: [seed + 2; 32],
        };
        LocalIdentity::from_secrets(&format!("p{seed}@x"), "i", s)
    }

    fn members(by: &LocalIdentity, seq: u64, ms: u64, add: &[&str], remove: &[&str]) -> Entry {
        let heads = add
            .iter()
            .chain(remove)
            .map(|p| (p.to_string(), 1))
            .collect();
        let body = Body::Members {
            add: add.iter().map(|s| s.to_string()).collect(),
            remove: remove.iter().map(|s| s.to_string()).collect(),
            heads,
        };
        // `prev` is not checked here: the roster judges membership only.
        sign_entry(by, G, seq, None, Hlc { ms, c: 0 }, body)
    }

    #[test]
    fn a_removal_cuts_by_seq_and_no_one_readds_themselves_in_any_order() {
        let (a, m, w) = (who(1), who(10), who(20));
        let (ap, mp, wp) = (a.person_id(), m.person_id(), w.person_id());
        let create = sign_entry(
            &a,
            G,
            1,
            None,
            Hlc { ms: 100, c: 0 },
            Body::Create {
                name: "g".into(),
                members: vec![ap.to_string(), mp.to_string()],
            },
        );
        // a removes m after m's seq 1; m, stamping before the removal, adds herself and w.
        let removal = members(&a, 2, 200, &[], &[&mp]);
        let self_add = members(&m, 2, 150, &[&mp, &wp], &[]);
        let all = [create, removal, self_add];
        let orders = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]];
        let mut seen = vec![];
        for order in orders {
            let mut r = Roster::default();
            for i in order {
                r.apply(&all[i]);
            }
            seen.push(r.current().to_vec());
            let at = (Hlc { ms: 150, c: 0 }, mp.to_string(), 2);
            assert!(!r.admits(&mp, 2, &at), "m's seq 2 after the cut");
            assert!(r.admits(&mp, 1, &(Hlc { ms: 120, c: 0 }, mp.to_string(), 1)));
            assert!(!r.admits(&wp, 1, &(Hlc { ms: 300, c: 0 }, wp.to_string(), 1)));
        }
        assert!(seen.iter().all(|s| *s == [ap.to_string()]), "{seen:?}");
    }

    #[test]
    fn a_readd_admits_again_and_old_entries_without_heads_apply_by_view_position() {
        let (a, m) = (who(1), who(10));
        let (ap, mp) = (a.person_id().to_string(), m.person_id().to_string());
        let create = sign_entry(
            &a,
            G,
            1,
            None,
            Hlc { ms: 100, c: 0 },
            Body::Create {
                name: "g".into(),
                members: vec![ap.clone(), mp.clone()],
            },
        );
        let removal = members(&a, 2, 200, &[], &[&mp]);
        let readd = members(&a, 3, 300, &[&mp], &[]);
        let r = Roster::from_entries(vec![create.clone(), removal, readd]);
        let at = |ms| (Hlc { ms, c: 0 }, mp.clone(), 2);
        assert!(
            r.admits(&mp, 2, &at(350)),
            "re-added from the recorded head on"
        );
        let mut both = [ap.clone(), mp.clone()];
        both.sort();
        assert_eq!(r.current(), both);
        // An old removal (no heads): the entries after it in view order are refused.
        let old = sign_entry(
            &a,
            G,
            2,
            None,
            Hlc { ms: 200, c: 0 },
            Body::Members {
                add: vec![],
                remove: vec![mp.clone()],
                heads: BTreeMap::new(),
            },
        );
        let r = Roster::from_entries(vec![create, old]);
        assert!(r.admits(&mp, 5, &at(199)));
        assert!(!r.admits(&mp, 2, &at(201)));
    }
}
