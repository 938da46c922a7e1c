//! Our dials and what comes of them: a contact's link, a `connect`, and the client's side
//! of every pairing exchange (dial each address in turn, the step machine, the commit,
//! the answer or, for the pairing a client starts by itself, an event).

use crate::core::links::link_key;
use crate::core::pair::{Verdict, PAIRING_TIMEOUT_MS};
use crate::core::{
    Answer, ArgError, CommandError, CommandId, Conn, ConnId, Event, NodeCore, Output, Paired,
    PeerHello, Rng, Role,
};
use crate::domain::identity::short_id;
use crate::domain::{Code, ShortCode, Via};
use crate::net::handshake::HelloExtras;
use crate::net::link::{ConnError, LinkEnd};
use crate::net::pairing::flow::{ClientFlow, ClientStep, ClientWay};
use crate::net::pairing::{ClientCommit, ClientPairing, PairError};
use crate::net::pake::{PakeRequest, Password};
use crate::net::wire::{CloseCode, WireMsg};

/// Our side of a pairing as the dialer.
pub(super) struct ClientConn {
    flow: ClientFlow,
    /// The command to answer; `None` for the pairing a client starts by itself.
    reply: Option<CommandId>,
    via: Via,
    replica: bool,
    /// Addresses still to try, in order.
    urls: Vec<String>,
    /// The address dialed now.
    dialed: String,
    expected_key: Option<[u8; 32]>,
    extras: HelloExtras,
    hello: Option<PeerHello>,
    /// Set once the node answered: the exchange must end by then.
    pub(super) deadline: Option<u64>,
    last_err: Option<CommandError>,
    /// An invitation whose every URL is loopback: unreachable means "made on another
    /// machine", and the error says so.
    only_local: bool,
}

impl NodeCore {
    /// `accept`: decode the invitation (a typo never reaches the network) and dial it.
    pub(super) fn start_accept(&mut self, id: CommandId, code: String, replica: bool, via: Via) {
        let invite = match Code::decode(&code) {
            Ok(Code::Invite(i)) => i,
            Ok(Code::Card(_)) => return self.reply(id, Err(ArgError::CardNotInvite.into())),
            Err(e) => return self.reply(id, Err(e.into())),
        };
        let pairing = match ClientPairing::start(invite, self.now_secs()) {
            Ok(p) => p,
            Err(e) => return self.reply(id, Err(e.into())),
        };
        let urls = pairing.urls().to_vec();
        if urls.is_empty() {
            return self.reply(id, Err(ArgError::NoAddress.into()));
        }
        let expected_key = pairing.expected_key();
        let token = pairing.token_hex();
        let mut flow = ClientFlow::new(ClientWay::Invite(pairing), self.profile.clone(), replica);
        let extras = HelloExtras {
            invite: token,
            then: flow.pipelined_confirm().map(Box::new),
            ..HelloExtras::default()
        };
        let only_local = crate::core::CodeReach::of(&urls) == crate::core::CodeReach::Local;
        self.client_dial(ClientConn {
            only_local,
            flow,
            reply: Some(id),
            via,
            replica,
            urls,
            dialed: String::new(),
            expected_key,
            extras,
            hello: None,
            deadline: None,
            last_err: None,
        });
    }

    /// `accept_short` (a code) and `pair_secret` (no code: the trust secret). `reply`:
    /// `None` for the pairing a client starts by itself, which reports by events.
    pub(super) fn start_accept_pake(
        &mut self,
        reply: Option<CommandId>,
        code: Option<String>,
        url: Option<String>,
        replica: bool,
    ) {
        let (way, req, via) = match code {
            Some(c) => match ShortCode::parse(&c) {
                Ok(sc) => {
                    let pw = Password::new(sc.reveal().into_bytes());
                    let req = PakeRequest::Code { slot: sc.slot };
                    (ClientWay::Code(pw), req, Via::ShortCode)
                }
                Err(e) => return self.finish_client(reply, Via::ShortCode, Err(e.into())),
            },
            None if self.cfg.trust_secret.is_some() => {
                (ClientWay::Secret, PakeRequest::Secret, Via::TrustSecret)
            }
            None => {
                let e = ArgError::NoTrustSecret.into();
                return self.finish_client(reply, Via::TrustSecret, Err(e));
            }
        };
        let url = url.unwrap_or_else(|| self.cfg.node_url.clone());
        self.client_dial(ClientConn {
            only_local: false,
            flow: ClientFlow::new(way, self.profile.clone(), replica),
            reply,
            via,
            replica,
            urls: vec![url],
            dialed: String::new(),
            expected_key: None,
            extras: HelloExtras {
                pake: Some(req),
                ..HelloExtras::default()
            },
            hello: None,
            deadline: None,
            last_err: None,
        });
    }

    /// A client with a trust secret and no contacts pairs with its node on start, as the
    /// seed's shared-login trust intends; the outcome arrives as an event.
    pub(super) fn auto_pair_by_secret(&mut self) {
        if self.cfg.role != Role::Client || self.cfg.trust_secret.is_none() {
            return;
        }
        if !matches!(self.store.contacts(), Ok(c) if c.is_empty()) {
            return;
        }
        self.start_accept_pake(None, None, None, true);
    }

    /// Dial the next address of a client pairing.
    fn client_dial(&mut self, mut c: ClientConn) {
        let url = c.urls.remove(0);
        c.dialed.clone_from(&url);
        let conn = self.next_conn_id();
        self.out.push(Output::Dial {
            conn,
            url,
            expected_key: c.expected_key,
            extras: c.extras.clone(),
        });
        self.conns.insert(conn, Conn::Client(Box::new(c)));
    }

    /// A pairing dial failed: a node that answered ends it; an unreachable address gives
    /// way to the next one.
    pub(super) fn client_dial_failed(&mut self, mut c: ClientConn, error: ConnError) {
        let err: CommandError = match error {
            ConnError::Closed {
                code: Some(code),
                reason,
            } => match PairError::from_close(code, &reason) {
                Some(p) => p.into(),
                None => ConnError::Closed {
                    code: Some(code),
                    reason,
                }
                .into(),
            },
            e @ (ConnError::Unreachable { .. } | ConnError::TlsUntrusted { .. })
                if !c.urls.is_empty() =>
            {
                c.last_err = Some(e.into());
                return self.client_dial(c);
            }
            ConnError::Unreachable { url, why } if c.only_local => ConnError::Unreachable {
                url,
                why: format!(
                    "{why}; this code names only localhost, so it works only on the machine whose node made it: ask for a code from a node that listens on the network (--listen 0.0.0.0:PORT, or --public-url)"
                ),
            }
            .into(),
            e => e.into(),
        };
        self.finish_client(c.reply, c.via, Err(err));
    }

    pub(super) fn on_client_hello(
        &mut self,
        conn: ConnId,
        mut c: Box<ClientConn>,
        hello: PeerHello,
        rng: &mut dyn Rng,
    ) {
        c.deadline = Some(self.now + PAIRING_TIMEOUT_MS);
        let step = c
            .flow
            .on_hello(hello.peer.clone(), &hello.hash, &self.me, rng);
        c.hello = Some(hello);
        self.client_step(conn, c, step);
    }

    pub(super) fn on_client_msg(&mut self, conn: ConnId, msg: WireMsg, _rng: &mut dyn Rng) {
        let Some(Conn::Client(mut c)) = self.conns.remove(&conn) else {
            return;
        };
        let step = c.flow.on_msg(msg, &self.me.person, self.now_secs());
        self.client_step(conn, c, step);
    }

    pub(super) fn on_stretched(&mut self, conn: ConnId, pw: Password, rng: &mut dyn Rng) {
        let Some(Conn::Client(mut c)) = self.conns.remove(&conn) else {
            return; // the exchange ended meanwhile
        };
        let step = c.flow.on_stretched(&pw, &self.me, rng);
        self.client_step(conn, c, step);
    }

    fn client_step(
        &mut self,
        conn: ConnId,
        c: Box<ClientConn>,
        step: Result<ClientStep, PairError>,
    ) {
        match step {
            Err(e) => {
                self.close(conn, e.close_code(), e.to_string());
                self.finish_client(c.reply, c.via, Err(e.into()));
            }
            Ok(ClientStep::Send(msgs)) => {
                for m in msgs {
                    self.send(conn, m);
                }
                self.conns.insert(conn, Conn::Client(c));
            }
            Ok(ClientStep::Stretch(node)) => {
                let secret = self
                    .cfg
                    .trust_secret
                    .clone()
                    .expect("invariant: trust-secret pairing starts only with a secret");
                self.out.push(Output::Stretch { conn, secret, node });
                self.conns.insert(conn, Conn::Client(c));
            }
            Ok(ClientStep::Commit(commit)) => self.client_commit(conn, c, *commit),
        }
    }

    fn client_commit(&mut self, conn: ConnId, c: Box<ClientConn>, commit: ClientCommit) {
        let paired = Paired {
            person_id: commit.contact.person_id().to_string(),
            name: commit.contact.person.name.clone(),
            verification: commit.verification.clone(),
        };
        let mut contact = commit.contact;
        let now = self.now_secs();
        if contact.via != c.via {
            contact.via = c.via;
            contact.endpoint_notes.clear();
            contact.note_endpoints(crate::domain::contact::source_of(c.via), now);
        }
        contact.replica = c.replica;
        let pid = contact.person_id();
        if let Err(e) = self
            .store
            .commit_pairing(None, &contact, &commit.channel, now)
        {
            self.close(
                conn,
                CloseCode::Shutdown,
                "the client could not store the contact",
            );
            return self.finish_client(c.reply, c.via, Err(e.into()));
        }
        let targets = crate::core::links::dial_targets(&contact);
        self.manager.set_endpoints(&pid, targets, self.now);
        tracing::info!(peer = %pid, via = %c.via, "paired: accepted invitation");
        self.finish_client(c.reply, c.via, Ok(paired));
        let h = c
            .hello
            .expect("invariant: a commit follows the node's hello");
        let key = link_key(&self.me.instance_id(), &h.hash);
        let linked = h.peer.person_id.clone();
        self.refresh_homes();
        if c.replica {
            // A new home node: our profile names it from now on.
            self.refresh_profile();
        }
        self.link_up(conn, h.peer, key, h.known_profile);
        // The pairing's connection is the first link (to the node that carried it, for a
        // client's invitation): over the address it dialed.
        self.note_dial_ok(&linked, &c.dialed, h.rtt_ms, conn);
        if !c.replica {
            self.vouch_all();
        }
    }

    /// The connection of a client pairing ended before its commit.
    pub(super) fn client_closed(&mut self, c: ClientConn, end: LinkEnd) {
        let e = match end.code {
            Some(code) => {
                PairError::from_close(code, &end.reason).unwrap_or(PairError::Protocol(end.reason))
            }
            None => PairError::Protocol(end.reason),
        };
        self.finish_client(c.reply, c.via, Err(e.into()));
    }

    /// The outcome of a client pairing: the command's answer, or (started by ourselves)
    /// an event.
    fn finish_client(
        &mut self,
        reply: Option<CommandId>,
        via: Via,
        result: Result<Paired, CommandError>,
    ) {
        match (reply, result) {
            (Some(id), r) => self.reply(id, r.map(Answer::Paired)),
            (None, Ok(p)) => self.emit(Event::ContactAdded {
                person_id: p.person_id,
                name: p.name,
                via,
                verification: p.verification,
            }),
            (None, Err(e)) => self.emit(Event::Error {
                kind: e.kind(),
                message: format!("pairing with the node by trust secret failed: {e}"),
            }),
        }
    }

    /// A dial of ours reached a peer that proved who it is.
    pub(super) fn on_dialed(&mut self, conn: ConnId, hello: PeerHello, rng: &mut dyn Rng) {
        match self.conns.remove(&conn) {
            Some(Conn::DialContact { person_id, url }) => {
                if hello.peer.person_id != person_id {
                    let got = short_id(&hello.peer.person_id).to_string();
                    self.close(
                        conn,
                        CloseCode::WrongPeer,
                        "you are not the person expected here",
                    );
                    let error = format!("{url} answered as another person ({got})");
                    return self.dial_failed_for(&person_id, &url, error);
                }
                let key = link_key(&self.me.instance_id(), &hello.hash);
                self.link_up(conn, hello.peer, key, hello.known_profile);
                self.note_dial_ok(&person_id, &url, hello.rtt_ms, conn);
            }
            Some(Conn::DialOnce(id)) => self.connect_answered(conn, id, hello),
            Some(Conn::Client(c)) => self.on_client_hello(conn, c, hello, rng),
            Some(other) => {
                self.conns.insert(conn, other);
            }
            // The dial was given up meanwhile (its pairing ended): nothing to keep.
            None => self.out.push(Output::Disconnect { conn }),
        }
    }

    /// `connect`: the peer answered; it must be one we accept.
    fn connect_answered(&mut self, conn: ConnId, id: CommandId, hello: PeerHello) {
        match self.authorize(&hello.peer, None, None) {
            Verdict::Accept { .. } => {
                self.reply(id, Ok(Answer::Connected(Box::new(hello.peer.clone()))));
                let key = link_key(&self.me.instance_id(), &hello.hash);
                self.link_up(conn, hello.peer, key, hello.known_profile);
            }
            Verdict::Refuse(code, why) => {
                self.close(conn, code, why.clone());
                let peer = hello.peer;
                self.reply(
                    id,
                    Err(CommandError::Refused {
                        name: peer.person.name,
                        short: short_id(&peer.person_id).into(),
                        reason: why,
                    }),
                );
            }
            Verdict::Pair { .. } | Verdict::Pake { .. } => {
                unreachable!("invariant: no invitation or PAKE was asked for")
            }
        }
    }

    pub(super) fn on_dial_failed(&mut self, conn: ConnId, error: ConnError) {
        match self.conns.remove(&conn) {
            Some(Conn::DialContact { person_id, url }) => {
                let not_theirs = match &error {
                    ConnError::Closed {
                        code: Some(CloseCode::NotAContact),
                        reason,
                    } => Some(reason.clone()),
                    _ => None,
                };
                self.live.entry(person_id.clone()).or_default().refused_us = not_theirs;
                self.dial_failed_for(&person_id, &url, error.to_string())
            }
            Some(Conn::DialOnce(id)) => self.reply(id, Err(error.into())),
            Some(Conn::Client(c)) => self.client_dial_failed(*c, error),
            Some(other) => {
                self.conns.insert(conn, other);
            }
            None => {}
        }
    }

    fn dial_failed_for(&mut self, person_id: &str, url: &str, error: String) {
        tracing::debug!(peer = %person_id, "dial failed: {error}");
        self.note_dial_failed(person_id, url, &error);
        self.live
            .entry(person_id.to_string())
            .or_default()
            .last_error = Some(error);
        self.manager.dial_failed(person_id, self.now);
    }

    /// A client pairing past its deadline: refused on the wire, answered as a timeout.
    pub(super) fn client_expired(&mut self, conn: ConnId, c: ClientConn) {
        self.close(conn, CloseCode::Timeout, "pairing timed out");
        self.finish_client(c.reply, c.via, Err(ConnError::Timeout.into()));
    }
}
