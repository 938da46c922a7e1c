//! Connection manager rules, pure: which contacts to dial when (exponential backoff with
//! jitter, reset on success and on new endpoints), and which of two simultaneous links to
//! keep. Time is milliseconds passed in by the caller.

use std::collections::BTreeMap;

use crate::domain::identity::Id;

/// First retry delay.
pub const BACKOFF_BASE_MS: u64 = 500;
/// Longest retry delay.
pub const BACKOFF_CAP_MS: u64 = 30_000;
/// Two links to the same peer that came up within this window are "simultaneous": the
/// deterministic rule picks one. Outside it, the newer link wins (the older is likely a
/// dead socket not yet noticed).
pub const SIMULTANEOUS_WINDOW_MS: u64 = 5_000;
/// A link that lost the duplicate rule stays open this long before it is closed: the peer
/// may have taken it first and be using it, and when the kept link reaches the peer it
/// switches by the same rule itself instead of seeing its link drop (and flap).
pub const RETIRE_GRACE_MS: u64 = 2_000;

/// Delay before retry number `attempt` (0-based), with `jitter` in [0, 1): between half and
/// all of `min(cap, base * 2^attempt)`, so many clients do not retry in lockstep.
pub fn backoff_delay(attempt: u32, jitter: f64) -> u64 {
    let full = BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempt.min(20))
        .min(BACKOFF_CAP_MS);
    let j = jitter.clamp(0.0, 0.999_999);
    full / 2 + ((full / 2) as f64 * j) as u64
}

/// A link's identity for the duplicate rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkMeta {
    /// Instance id of the side that dialed this link, then `/` and the link's handshake
    /// hash (hex): both ends hold the same value for the same link.
    pub dialer_instance: Id,
    /// When it came up (ms).
    pub up_at_ms: u64,
}

/// With `existing` up and `new` arriving at `now_ms` for the same peer: keep `new`?
/// Both ends evaluate this with the same inputs, so they keep the same link.
pub fn keep_new_link(existing: &LinkMeta, new: &LinkMeta, now_ms: u64) -> bool {
    if now_ms.saturating_sub(existing.up_at_ms) < SIMULTANEOUS_WINDOW_MS {
        new.dialer_instance < existing.dialer_instance
    } else {
        true
    }
}

/// State of one dial target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialState {
    /// Not connected; next attempt at `next_at_ms`.
    Waiting {
        /// When to dial next.
        next_at_ms: u64,
    },
    /// A dial is in flight.
    Dialing,
    /// A link is up.
    Connected,
}

/// One dial target: a contact with endpoints.
#[derive(Clone, Debug)]
pub struct Target {
    /// URLs with the transport key expected at each.
    pub urls: Vec<(String, [u8; 32])>,
    /// Which URL to try next.
    pub next_url: usize,
    /// Failed attempts since the last success.
    pub attempt: u32,
    /// State.
    pub state: DialState,
}

/// A dial the shell should start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialRequest {
    /// Contact person id.
    pub person_id: Id,
    /// URL to dial.
    pub url: String,
    /// Transport key expected there.
    pub key: [u8; 32],
}

/// The manager: targets and a deterministic jitter source.
#[derive(Debug)]
pub struct Manager {
    targets: BTreeMap<Id, Target>,
    rng: u64,
}

impl Manager {
    /// A manager with a jitter seed (use a random one in production).
    pub fn new(seed: u64) -> Self {
        Manager {
            targets: BTreeMap::new(),
            rng: seed | 1,
        }
    }

    fn jitter(&mut self) -> f64 {
        // xorshift64*: plenty for jitter, and reproducible in tests.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Set (or replace) the endpoints of a contact. New endpoints mean a fresh chance:
    /// the backoff resets and a waiting contact is dialed at once.
    pub fn set_endpoints(&mut self, person_id: &str, urls: Vec<(String, [u8; 32])>, now_ms: u64) {
        if urls.is_empty() {
            self.targets.remove(person_id);
            return;
        }
        match self.targets.get_mut(person_id) {
            Some(t) if t.urls == urls => {}
            Some(t) => {
                t.urls = urls;
                t.next_url = 0;
                t.attempt = 0;
                if let DialState::Waiting { .. } = t.state {
                    t.state = DialState::Waiting { next_at_ms: now_ms };
                }
            }
            None => {
                self.targets.insert(
                    person_id.to_string(),
                    Target {
                        urls,
                        next_url: 0,
                        attempt: 0,
                        state: DialState::Waiting { next_at_ms: now_ms },
                    },
                );
            }
        }
    }

    /// Forget a contact.
    pub fn remove(&mut self, person_id: &str) {
        self.targets.remove(person_id);
    }

    /// Dials due at `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> Vec<DialRequest> {
        let mut out = Vec::new();
        for (pid, t) in self.targets.iter_mut() {
            if let DialState::Waiting { next_at_ms } = t.state {
                if now_ms >= next_at_ms {
                    let (url, key) = t.urls[t.next_url % t.urls.len()].clone();
                    t.state = DialState::Dialing;
                    out.push(DialRequest {
                        person_id: pid.clone(),
                        url,
                        key,
                    });
                }
            }
        }
        out
    }

    /// When the next dial is due, if any is waiting.
    pub fn next_due(&self) -> Option<u64> {
        self.targets
            .values()
            .filter_map(|t| match t.state {
                DialState::Waiting { next_at_ms } => Some(next_at_ms),
                _ => None,
            })
            .min()
    }

    /// A dial failed: try the next URL, later.
    pub fn dial_failed(&mut self, person_id: &str, now_ms: u64) -> Option<u64> {
        let j = self.jitter();
        let t = self.targets.get_mut(person_id)?;
        if t.state == DialState::Connected {
            return None; // an incoming link won meanwhile
        }
        t.next_url += 1;
        // A full round over all URLs counts as one attempt.
        if t.next_url % t.urls.len() == 0 {
            t.attempt = t.attempt.saturating_add(1);
        }
        let delay = if t.next_url % t.urls.len() == 0 {
            backoff_delay(t.attempt.saturating_sub(1), j)
        } else {
            0
        };
        t.state = DialState::Waiting {
            next_at_ms: now_ms + delay,
        };
        Some(delay)
    }

    /// A link to this contact is up (dialed or accepted): backoff resets.
    pub fn link_up(&mut self, person_id: &str) {
        if let Some(t) = self.targets.get_mut(person_id) {
            t.state = DialState::Connected;
            t.attempt = 0;
        }
    }

    /// The link went down: redial soon (after a short jittered pause).
    pub fn link_down(&mut self, person_id: &str, now_ms: u64) {
        let j = self.jitter();
        if let Some(t) = self.targets.get_mut(person_id) {
            if t.state == DialState::Connected {
                t.state = DialState::Waiting {
                    next_at_ms: now_ms + backoff_delay(0, j),
                };
            }
        }
    }

    /// Dial this contact again at once (a link was dropped on purpose).
    pub fn redial_now(&mut self, person_id: &str, now_ms: u64) {
        if let Some(t) = self.targets.get_mut(person_id) {
            t.attempt = 0;
            t.state = DialState::Waiting { next_at_ms: now_ms };
        }
    }

    /// A contact's target: its addresses, which is next, its state.
    pub fn target(&self, person_id: &str) -> Option<&Target> {
        self.targets.get(person_id)
    }

    /// The state of a target, if it is one.
    pub fn state(&self, person_id: &str) -> Option<&DialState> {
        self.targets.get(person_id).map(|t| &t.state)
    }
}
