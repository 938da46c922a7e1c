//! Who may connect, and pairing in one place: the admission rules for invitations, short
//! codes and the trust secret (with its lockout), the guesses counted on disk, the node's
//! side of every exchange (the step machines of `net::pairing::flow`) and its atomic
//! commit. The dialer's side is in `dial`.

use crate::core::links::link_key;
use crate::core::{Conn, ConnId, Event, NodeCore, PeerHello, Rng, MAX_PENDING_PAIRINGS};
use crate::domain::identity::short_id;
use crate::domain::invitation::PairingCommit;
use crate::domain::{ErrorKind, PeerIdentity, Via};
use crate::net::handshake::{hello_msg, HelloExtras};
use crate::net::link::HANDSHAKE_TIMEOUT;
use crate::net::pairing::flow::{NodeFlow, NodeStep};
use crate::net::pairing::{self, check_invite, NodeCommit, PairError};
use crate::net::pake::{self, PakeRequest, Password};
use crate::net::wire::{CloseCode, WireMsg};

/// How long a pairing exchange may take once both Hellos are through.
pub(super) const PAIRING_TIMEOUT_MS: u64 = HANDSHAKE_TIMEOUT.as_millis() as u64;

/// What a listener does with a verified peer.
pub(super) enum Verdict {
    /// A contact (or a stranger under `--accept-unknown`): a normal link.
    Accept { known_profile: Option<u64> },
    /// A stranger with an admissible invitation: the pairing exchange (for `owner`, when
    /// we carry the invitation as its home node).
    Pair {
        token: String,
        owner: Option<String>,
    },
    /// A stranger asking to pair by short code or trust secret: the PAKE, then pairing
    /// (for `owner`, when the short code is one we hold as its home node).
    Pake {
        password: Password,
        token: Option<String>,
        owner: Option<String>,
    },
    /// Refuse, with the reason.
    Refuse(CloseCode, String),
}

/// Our side of a pairing as the listener.
pub(super) struct NodeConn {
    pub(super) flow: NodeFlow,
    hello: PeerHello,
    pub(super) deadline: u64,
}

impl NodeCore {
    /// A peer dialed us and proved who it is: accept, pair or refuse it.
    pub(super) fn on_incoming(&mut self, conn: ConnId, hello: PeerHello, rng: &mut dyn Rng) {
        let verdict = self.authorize(&hello.peer, hello.invite.as_deref(), hello.pake.clone());
        let known_profile = match &verdict {
            Verdict::Refuse(code, why) => {
                tracing::info!(peer = %hello.peer.person_id, "refused: {why}");
                let (code, why) = (*code, why.clone());
                return self.close(conn, code, why);
            }
            Verdict::Accept { known_profile } => *known_profile,
            Verdict::Pair { .. } | Verdict::Pake { .. } => None,
        };
        let answer = match hello.short {
            // It knows us and proved the key we know it by: our key is our proof too.
            true => WireMsg::HelloKnown {
                version: crate::net::wire::PROTOCOL_VERSION,
                known_profile,
            },
            false => {
                let extras = HelloExtras {
                    known_profile,
                    ..HelloExtras::default()
                };
                hello_msg(&self.me, &hello.hash, extras)
            }
        };
        self.send(conn, answer);
        let profile = self.profile.clone();
        let flow = match verdict {
            Verdict::Accept { .. } => {
                let key = link_key(&hello.peer.instance_id, &hello.hash);
                return self.link_up(conn, hello.peer, key, hello.known_profile);
            }
            Verdict::Pair { token, owner: None } => {
                let (flow, offer) = NodeFlow::invite(hello.peer.clone(), token, profile, None);
                self.send(conn, offer);
                flow
            }
            Verdict::Pair {
                token,
                owner: Some(owner),
            } => {
                let (person, profile) = match self.owner_offer(&owner) {
                    Ok(o) => o,
                    Err(why) => return self.close(conn, CloseCode::InviteUnknown, why),
                };
                let peer = hello.peer.clone();
                let (flow, offer) = NodeFlow::invite(peer, token, profile, Some(person));
                self.send(conn, offer);
                flow
            }
            Verdict::Pake {
                password,
                token,
                owner,
            } => {
                let (person, profile) = match owner.map(|o| self.owner_offer(&o)).transpose() {
                    Ok(Some((person, profile))) => (Some(person), profile),
                    Ok(None) => (None, profile),
                    Err(why) => return self.close(conn, CloseCode::InviteUnknown, why),
                };
                let me = (&*self.me, &hello.hash[..]);
                let peer = hello.peer.clone();
                NodeFlow::pake(peer, token, &password, me, (profile, person), rng)
            }
            Verdict::Refuse(..) => unreachable!("invariant: refusals returned above"),
        };
        self.evict_oldest_pairing();
        let deadline = self.now + PAIRING_TIMEOUT_MS;
        let node = NodeConn {
            flow,
            hello,
            deadline,
        };
        self.conns.insert(conn, Conn::Node(Box::new(node)));
    }

    /// A flood of pairing attempts cannot grow without bound: the oldest gives way.
    fn evict_oldest_pairing(&mut self) {
        let pending = self.conns.iter().filter_map(|(id, c)| match c {
            Conn::Node(n) => Some((n.deadline, *id)),
            _ => None,
        });
        let pending: Vec<(u64, ConnId)> = pending.collect();
        if pending.len() >= MAX_PENDING_PAIRINGS {
            let oldest = pending
                .iter()
                .min()
                .expect("invariant: the list is not empty")
                .1;
            tracing::info!("pairing slots full: the oldest exchange is dropped");
            self.close(
                oldest,
                CloseCode::Timeout,
                "too many pairing exchanges at once",
            );
        }
    }

    pub(super) fn authorize(
        &mut self,
        peer: &PeerIdentity,
        invite: Option<&str>,
        pake: Option<PakeRequest>,
    ) -> Verdict {
        if self.store_full {
            let why = "this instance's disk is full; it accepts links again once it has room";
            return Verdict::Refuse(CloseCode::Shutdown, why.into());
        }
        if peer.person_id == self.me.person_id() {
            return Verdict::Accept {
                known_profile: None,
            };
        }
        if let Some(req) = pake {
            return match self.admit_pake(peer, req) {
                Ok(v) => v,
                Err(e) => Verdict::Refuse(e.close_code(), e.to_string()),
            };
        }
        // A presented invitation is honoured even for an existing contact: the exchange
        // refreshes both profiles, and the client gets the answer it asked for.
        if let Some(token) = invite {
            return self.admit_invite(peer, token);
        }
        match self.store.contact(&peer.person_id) {
            Ok(Some(c)) => {
                return Verdict::Accept {
                    known_profile: c.profile.map(|p| p.version),
                }
            }
            Ok(None) => {}
            Err(e) => return Verdict::Refuse(CloseCode::Shutdown, format!("store failure: {e}")),
        }
        // The home node of one of our contacts (or of our owners' contacts): it carries
        // their channels, as their signed profiles say.
        if self.homes.contains_key(peer.person_id.as_str()) {
            return Verdict::Accept {
                known_profile: None,
            };
        }
        if self.cfg.accept_unknown {
            return Verdict::Accept {
                known_profile: None,
            };
        }
        Verdict::Refuse(
            CloseCode::NotAContact,
            format!(
                "{} ({}) is not a contact of {}; pair first with an invitation code from this node",
                peer.person.name,
                short_id(&peer.person_id),
                self.me.person.name
            ),
        )
    }

    fn admit_invite(&mut self, peer: &PeerIdentity, token: &str) -> Verdict {
        let Some(token) = pairing::parse_token(token) else {
            return Verdict::Refuse(CloseCode::InviteUnknown, PairError::Unknown.to_string());
        };
        let rec = match self.store.invite(&token) {
            Ok(r) => r,
            Err(e) => return Verdict::Refuse(CloseCode::Shutdown, format!("store failure: {e}")),
        };
        let owner = rec.as_ref().and_then(|r| r.owner.clone());
        match check_invite(rec.as_ref(), &peer.person_id, self.now_secs()) {
            Ok(_) => Verdict::Pair { token, owner },
            Err(e) => Verdict::Refuse(e.close_code(), e.to_string()),
        }
    }

    /// A stranger asks to pair by PAKE: may the code or the secret be tried at all? Nothing
    /// is counted yet: a guess is counted when its confirmation arrives ([`Self::pake_guess`]).
    fn admit_pake(&mut self, peer: &PeerIdentity, req: PakeRequest) -> Result<Verdict, PairError> {
        let now = self.now_secs();
        match req {
            PakeRequest::Code { slot } => {
                let key = pairing::short_code_key(slot);
                let rec = self.store.invite(&key).map_err(pake_store_err)?;
                pairing::check_short_code(rec.as_ref(), slot, &peer.person_id, now)?;
                let rec = rec.expect("invariant: check_short_code admits only a stored code");
                Ok(Verdict::Pake {
                    password: Password::new(rec.code.clone().into_bytes()),
                    token: Some(key),
                    owner: rec.owner,
                })
            }
            PakeRequest::Secret => {
                let Some(pw) = self.secret_password.clone() else {
                    return Err(PairError::NoTrustSecret);
                };
                self.secret_locked(now)?;
                Ok(Verdict::Pake {
                    password: pw,
                    token: None,
                    owner: None,
                })
            }
        }
    }

    /// The trust secret is locked after too many wrong guesses in the lockout window.
    fn secret_locked(&mut self, now: u64) -> Result<(), PairError> {
        self.secret_attempts
            .retain(|t| now < t + pake::SECRET_LOCKOUT_SECS);
        if self.secret_attempts.len() >= pake::MAX_ATTEMPTS as usize {
            let until = self.secret_attempts[0] + pake::SECRET_LOCKOUT_SECS;
            return Err(PairError::CodeExhausted(format!(
                "{} wrong trust secrets in a row: this node tries the secret again from {}; check that both sides use the same secret",
                pake::MAX_ATTEMPTS,
                crate::net::pairing::utc_text(until)
            )));
        }
        Ok(())
    }

    /// A confirmation has arrived: count the guess durably before it is checked, or refuse
    /// to check it when no guess is left.
    fn pake_guess(&mut self, token: Option<&str>, peer: &PeerIdentity) -> Result<(), PairError> {
        let now = self.now_secs();
        match token {
            Some(key) => {
                let slot = key
                    .trim_start_matches("short:")
                    .parse()
                    .map_err(|_| PairError::CodeUnknown(None))?;
                let rec = self.store.invite(key).map_err(pake_store_err)?;
                let rec = pairing::code_guess_counted(rec, slot, &peer.person_id, now)?;
                self.store.put_invite(&rec).map_err(pake_store_err)
            }
            None => {
                self.secret_locked(now)?;
                self.secret_attempts.push(now);
                Ok(())
            }
        }
    }

    /// A PAKE confirmation failed: tell the owner (the guess is already spent), and give
    /// the refusal for the peer.
    fn pake_failed(&mut self, token: Option<&str>, peer: &PeerIdentity) -> PairError {
        let who = format!("{} ({})", peer.person.name, short_id(&peer.person_id));
        let (mine, theirs) = match token {
            Some(key) => {
                let left = match self.store.invite(key) {
                    Ok(Some(rec)) => pake::MAX_ATTEMPTS.saturating_sub(rec.attempts),
                    _ => 0,
                };
                let slot = key.trim_start_matches("short:");
                let left_text = if left == 0 {
                    "no attempts left: the code is destroyed".to_string()
                } else {
                    format!("{left} attempt(s) left")
                };
                (
                    format!("{who} tried short code {slot} with the wrong words; {left_text}"),
                    format!("check the words with the node's owner; {left_text}"),
                )
            }
            None => (
                format!("{who} tried to pair with a different trust secret"),
                "both instances must be started with the same trust secret".to_string(),
            ),
        };
        tracing::warn!("{mine}");
        self.emit(Event::Error {
            kind: ErrorKind::CodeMismatch,
            message: mine,
        });
        PairError::CodeMismatch(theirs)
    }

    /// The next message of a pairing we serve.
    pub(super) fn on_node_msg(&mut self, conn: ConnId, msg: WireMsg) {
        let Some(Conn::Node(mut node)) = self.conns.remove(&conn) else {
            return;
        };
        let now = self.now_secs();
        let step = node.flow.on_msg(msg, &self.me.person, now);
        let step = match step {
            Ok(NodeStep::CountGuess) => self.count_and_check(&mut node),
            other => other,
        };
        match step {
            Err(e) => self.close(conn, e.close_code(), e.to_string()),
            Ok(NodeStep::Send(msgs)) => {
                for m in msgs {
                    self.send(conn, m);
                }
                self.conns.insert(conn, Conn::Node(node));
            }
            Ok(NodeStep::CountGuess) => unreachable!("invariant: counted just above"),
            Ok(NodeStep::Commit(c)) => match self.commit_node(*c) {
                Ok(verification) => {
                    self.send(conn, NodeFlow::done(verification));
                    let h = node.hello;
                    let key = link_key(&h.peer.instance_id, &h.hash);
                    self.link_up(conn, h.peer, key, h.known_profile);
                }
                Err(e) => self.close(conn, e.close_code(), e.to_string()),
            },
        }
    }

    /// Count a PAKE guess on disk, then check it: what to send, or the refusal.
    fn count_and_check(&mut self, node: &mut NodeConn) -> Result<NodeStep, PairError> {
        let token = node.flow.token().map(str::to_string);
        let peer = node.flow.peer().clone();
        self.pake_guess(token.as_deref(), &peer)?;
        match node.flow.after_guess() {
            Ok(msgs) => Ok(NodeStep::Send(msgs)),
            Err(_) => Err(self.pake_failed(token.as_deref(), &peer)),
        }
    }

    /// Commit a node-side pairing atomically; the verification string for `pair_done`.
    fn commit_node(&mut self, c: NodeCommit) -> Result<String, PairError> {
        let pid = c.contact.person_id();
        let name = c.contact.person.name.clone();
        // Keep what we already know of a repeat pairing's contact (e.g. the replica flag).
        let mut contact = c.contact;
        if let Ok(Some(old)) = self.store.contact(&pid) {
            contact.replica = old.replica;
            contact.added_at = old.added_at;
        }
        let now = self.now_secs();
        let token = c.token.as_deref();
        match self.store.commit_pairing(token, &contact, &c.channel, now) {
            Ok(PairingCommit::Committed) => {}
            Ok(PairingCommit::InviteGone(refusal)) => {
                let short = token.is_some_and(|t| t.starts_with("short:"));
                return Err(PairError::refused(refusal, None, short));
            }
            Err(e) => {
                tracing::error!("pairing commit failed: {e}");
                let message = e.to_string();
                self.emit(Event::Error {
                    kind: ErrorKind::Store,
                    message,
                });
                return Err(PairError::Protocol(format!(
                    "the node could not store the contact: {e}"
                )));
            }
        }
        let targets = crate::core::links::dial_targets(&contact);
        self.manager.set_endpoints(&pid, targets, self.now);
        if contact.replica_for {
            self.refresh_replicated();
        }
        self.refresh_homes();
        // A pairing carried for our owner: hand it over now if the owner is linked.
        if let Some(owner) = contact.vouched_by.first().cloned() {
            if let Some(conn) = self.links.get(owner.as_str()).map(|s| s.conn) {
                self.send_home_paired(conn, &owner);
            }
        }
        if contact.via == Via::TrustSecret {
            // A successful exchange is not a guess against the lockout.
            self.secret_attempts.pop();
        }
        tracing::info!(peer = %pid, via = %contact.via, "paired");
        self.emit(Event::ContactAdded {
            person_id: pid.to_string(),
            name,
            via: contact.via,
            verification: c.verification.clone(),
        });
        Ok(c.verification)
    }

    /// Pairing exchanges past their deadline end.
    pub(super) fn expire_pairings(&mut self) {
        let now = self.now;
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| match c {
                Conn::Client(p) => p.deadline.is_some_and(|d| d <= now),
                Conn::Node(p) => p.deadline <= now,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in due {
            match self.conns.remove(&conn) {
                Some(Conn::Client(c)) => self.client_expired(conn, *c),
                Some(Conn::Node(n)) => {
                    let peer = &n.flow.peer().person_id;
                    tracing::info!(peer = %peer, "pairing timed out after {HANDSHAKE_TIMEOUT:?}");
                    self.close(conn, CloseCode::Timeout, "pairing timed out");
                }
                _ => {}
            }
        }
    }
}

fn pake_store_err(e: crate::domain::log::LogError) -> PairError {
    PairError::Protocol(format!("the node's store failed: {e}"))
}
