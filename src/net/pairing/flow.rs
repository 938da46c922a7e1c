//! The pairing exchanges as pure step machines, one per side, for all three ways in:
//! an invitation, a short code and the trust secret. Each message sequence is written once
//! here; the core moves the messages, counts guesses and makes the commits they ask for.
//!
//! Node (listener), after admitting the peer and sending its Hello:
//! - invitation: `pair_offer` →, ← `pair_confirm`, commit, `pair_done` →;
//! - PAKE: ← `pake`, `pake` →, ← `pake_confirm` (the guess is counted durably, then
//!   checked), `pake_confirm` →, then as for an invitation.
//!
//! Client (dialer), after the node's Hello:
//! - invitation: the node must be the Person the code names; ← `pair_offer`,
//!   `pair_confirm` →, ← `pair_done`, commit;
//! - PAKE: `pake` →, ← `pake`, `pake_confirm` →, ← `pake_confirm` (checked: a node that
//!   does not know the code is refused before anything is stored), then as above.

use crate::domain::identity::{LocalIdentity, Person, Profile};
use crate::domain::{PeerIdentity, Via};
use crate::net::pairing::{node_on_confirm, ClientCommit, ClientPairing, NodeCommit, PairError};
use crate::net::pake::{PakeError, PakeExchange, Password, Side};
use crate::net::wire::WireMsg;

/// The rng a step machine draws its SPAKE2 scalar from.
pub trait Rng: rand_core::RngCore + rand_core::CryptoRng {}
impl<R: rand_core::RngCore + rand_core::CryptoRng + ?Sized> Rng for R {}

/// Decode the hex of a `pake` or `pake_confirm` message.
fn pake_bytes(name: &str, hex_text: &str) -> Result<Vec<u8>, PairError> {
    crate::domain::hex::decode(hex_text)
        .map_err(|e| PairError::Protocol(format!("{name} is not hex: {e}")))
}

fn unexpected(want: &str, got: &WireMsg) -> PairError {
    PairError::Protocol(format!(
        "expected {want}, got {}",
        crate::net::handshake::msg_name(got)
    ))
}

/// What the node side asks of the core after a message.
#[derive(Debug)]
pub enum NodeStep {
    /// Send these, in order.
    Send(Vec<WireMsg>),
    /// A PAKE confirmation arrived: count the guess durably, then call
    /// [`NodeFlow::after_guess`] (or refuse when no guess is left).
    CountGuess,
    /// Commit this pairing, then send `pair_done` (see [`NodeFlow::done`]).
    Commit(Box<NodeCommit>),
}

enum NodeState {
    AwaitPake(PakeExchange, Vec<u8>),
    AwaitPakeConfirm(PakeExchange, Vec<u8>),
    GuessPending(PakeExchange, Vec<u8>, Vec<u8>),
    AwaitConfirm,
    Done,
}

/// The node's side of one pairing exchange.
pub struct NodeFlow {
    peer: PeerIdentity,
    token: Option<String>,
    via: Via,
    profile: Profile,
    /// A home node pairing for its owner: the owner (the profile is the owner's).
    owner: Option<Person>,
    state: NodeState,
}

impl std::fmt::Debug for NodeFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFlow")
            .field("peer", &self.peer.person_id)
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

impl NodeFlow {
    /// An admitted invitation: the first message to send is the offer. `owner`: a home
    /// node carries the invitation of this person, and `profile` is that person's.
    pub fn invite(
        peer: PeerIdentity,
        token: String,
        profile: Profile,
        owner: Option<Person>,
    ) -> (NodeFlow, WireMsg) {
        let offer = WireMsg::PairOffer {
            profile: profile.clone(),
            person: owner.clone(),
        };
        let flow = NodeFlow {
            peer,
            token: Some(token),
            via: Via::Invite,
            profile,
            owner,
            state: NodeState::AwaitConfirm,
        };
        (flow, offer)
    }

    /// The person whose invitation a home node carries in this exchange.
    pub fn owner(&self) -> Option<&Person> {
        self.owner.as_ref()
    }

    /// An admitted PAKE (a short code's key in `token`, or `None` for the trust secret): we
    /// wait for the dialer's SPAKE2 message. `(profile, owner)`: ours and `None`, or for a
    /// short code a home node holds for its owner, the owner's profile and Person.
    pub fn pake(
        peer: PeerIdentity,
        token: Option<String>,
        password: &Password,
        (me, hash): (&LocalIdentity, &[u8]),
        (profile, owner): (Profile, Option<Person>),
        rng: &mut dyn Rng,
    ) -> NodeFlow {
        let ids = (peer.instance_id.as_str(), me.instance_id());
        let (ex, ours) =
            PakeExchange::start_with_rng(Side::Listener, password, (ids.0, &ids.1), hash, rng);
        let via = if token.is_some() {
            Via::ShortCode
        } else {
            Via::TrustSecret
        };
        NodeFlow {
            peer,
            token,
            via,
            profile,
            owner,
            state: NodeState::AwaitPake(ex, ours),
        }
    }

    /// The peer being paired.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The invitation or short code key being used; `None` for the trust secret.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The peer's next message.
    pub fn on_msg(&mut self, msg: WireMsg, me: &Person, now: u64) -> Result<NodeStep, PairError> {
        match (std::mem::replace(&mut self.state, NodeState::Done), msg) {
            (NodeState::AwaitPake(mut ex, ours), WireMsg::Pake { msg }) => {
                let my_mac = ex
                    .on_peer_msg(&pake_bytes("pake", &msg)?)
                    .map_err(|e| PairError::Protocol(e.to_string()))?;
                self.state = NodeState::AwaitPakeConfirm(ex, my_mac);
                Ok(NodeStep::Send(vec![WireMsg::Pake {
                    msg: crate::domain::hex::encode(ours),
                }]))
            }
            (NodeState::AwaitPakeConfirm(ex, my_mac), WireMsg::PakeConfirm { mac }) => {
                let mac = pake_bytes("pake_confirm", &mac)?;
                self.state = NodeState::GuessPending(ex, my_mac, mac);
                Ok(NodeStep::CountGuess)
            }
            (NodeState::AwaitConfirm, confirm @ WireMsg::PairConfirm { .. }) => {
                let token = self.token.as_deref();
                let with = self.owner.as_ref().unwrap_or(me);
                let mut c = node_on_confirm(with, &self.peer, token, self.via, confirm, now)?;
                if let Some(owner) = &self.owner {
                    // Our owner's contact, not ours: it may reach the owner's channels here.
                    c.contact.via = Via::Vouched;
                    c.contact.vouched_by = vec![owner.id().to_string()];
                    c.contact.replica_for = false;
                }
                Ok(NodeStep::Commit(Box::new(c)))
            }
            (NodeState::AwaitPake(..), m) => Err(unexpected("the next PAKE message", &m)),
            (NodeState::AwaitPakeConfirm(..), m) => Err(unexpected("the next PAKE message", &m)),
            (NodeState::AwaitConfirm, m) => Err(unexpected("pair_confirm", &m)),
            (NodeState::GuessPending(..) | NodeState::Done, m) => Err(unexpected("nothing", &m)),
        }
    }

    /// The guess was counted: check the confirmation. `Ok`: what to send (our confirmation
    /// and our offer); `Err`: the code or secret did not match.
    pub fn after_guess(&mut self) -> Result<Vec<WireMsg>, PakeError> {
        let NodeState::GuessPending(ex, my_mac, mac) =
            std::mem::replace(&mut self.state, NodeState::Done)
        else {
            return Err(PakeError::Malformed("no confirmation to check".into()));
        };
        ex.check_confirm(&mac)?;
        self.state = NodeState::AwaitConfirm;
        Ok(vec![
            WireMsg::PakeConfirm {
                mac: crate::domain::hex::encode(my_mac),
            },
            WireMsg::PairOffer {
                profile: self.profile.clone(),
                person: self.owner.clone(),
            },
        ])
    }

    /// The commit is stored: the message that tells the client.
    pub fn done(verification: String) -> WireMsg {
        WireMsg::PairDone { verification }
    }
}

/// How a client pairs.
pub enum ClientWay {
    /// An invitation code (its step machine knows the node to expect).
    Invite(ClientPairing),
    /// A short code checked by the PAKE; the password is its text.
    Code(Password),
    /// The trust secret; the password is the secret stretched for the node's Person id,
    /// which is known only once the node answered (see [`ClientStep::Stretch`]).
    Secret,
}

/// What the client side asks of the core after a message.
#[derive(Debug)]
pub enum ClientStep {
    /// Send these, in order.
    Send(Vec<WireMsg>),
    /// Stretch the trust secret for this node Person id, then call
    /// [`ClientFlow::on_stretched`].
    Stretch(String),
    /// Commit this pairing: the exchange is complete.
    Commit(Box<ClientCommit>),
}

enum ClientState {
    /// Waiting for the node's Hello.
    Dial(ClientWay),
    /// Trust secret: waiting for the stretched password.
    Stretching(PeerIdentity),
    AwaitPake(PakeExchange, PeerIdentity),
    AwaitPakeConfirm(PakeExchange, PeerIdentity),
    /// The node is proven (by its key and the invitation, or by the PAKE): the offer,
    /// our confirmation and `pair_done` follow.
    Pairing(ClientPairing),
    Done,
}

/// The client's side of one pairing exchange.
pub struct ClientFlow {
    state: ClientState,
    hash: Vec<u8>,
    profile: Profile,
    replica: bool,
    /// Our `pair_confirm` went out with our Hello ([`ClientFlow::pipelined_confirm`]).
    confirm_sent: bool,
}

impl std::fmt::Debug for ClientFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFlow").finish_non_exhaustive()
    }
}

impl ClientFlow {
    /// A flow that starts when the node's Hello arrives. `profile`: ours, sent in
    /// `pair_confirm`; `replica`: ask the node to be our home node.
    pub fn new(way: ClientWay, profile: Profile, replica: bool) -> ClientFlow {
        ClientFlow {
            state: ClientState::Dial(way),
            hash: Vec::new(),
            profile,
            replica,
            confirm_sent: false,
        }
    }

    /// An invitation: our `pair_confirm`, to send right after our Hello. It commits
    /// nothing on our side, and the node the code names is proven by its key before our
    /// Hello is sent (Noise XX, the expected responder key), so waiting for its offer
    /// would only cost a round trip. We still check the offer and `pair_done` before our
    /// own commit. `None` for the PAKE ways, which must prove the code first.
    pub fn pipelined_confirm(&mut self) -> Option<WireMsg> {
        if !matches!(self.state, ClientState::Dial(ClientWay::Invite(_))) {
            return None;
        }
        self.confirm_sent = true;
        Some(WireMsg::PairConfirm {
            profile: self.profile.clone(),
            replica: self.replica,
        })
    }

    /// The node's Hello verified in the session with handshake hash `hash`.
    pub fn on_hello(
        &mut self,
        peer: PeerIdentity,
        hash: &[u8],
        me: &LocalIdentity,
        rng: &mut dyn Rng,
    ) -> Result<ClientStep, PairError> {
        self.hash = hash.to_vec();
        match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::Dial(ClientWay::Invite(mut p)) => {
                p.on_node_hello(peer)?;
                self.state = ClientState::Pairing(p);
                Ok(ClientStep::Send(vec![]))
            }
            ClientState::Dial(ClientWay::Code(pw)) => Ok(self.start_pake(&pw, peer, me, rng)),
            ClientState::Dial(ClientWay::Secret) => {
                let node = peer.person_id.clone();
                self.state = ClientState::Stretching(peer);
                Ok(ClientStep::Stretch(node.to_string()))
            }
            _ => Err(PairError::Protocol("unexpected hello".into())),
        }
    }

    /// The trust secret, stretched for the node.
    pub fn on_stretched(
        &mut self,
        pw: &Password,
        me: &LocalIdentity,
        rng: &mut dyn Rng,
    ) -> Result<ClientStep, PairError> {
        match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::Stretching(peer) => Ok(self.start_pake(pw, peer, me, rng)),
            _ => Err(PairError::Protocol("a stretched secret out of turn".into())),
        }
    }

    fn start_pake(
        &mut self,
        pw: &Password,
        peer: PeerIdentity,
        me: &LocalIdentity,
        rng: &mut dyn Rng,
    ) -> ClientStep {
        let ids = (me.instance_id(), peer.instance_id.clone());
        let (ex, ours) =
            PakeExchange::start_with_rng(Side::Dialer, pw, (&ids.0, &ids.1), &self.hash, rng);
        self.state = ClientState::AwaitPake(ex, peer);
        ClientStep::Send(vec![WireMsg::Pake {
            msg: crate::domain::hex::encode(ours),
        }])
    }

    /// The node's next message.
    pub fn on_msg(&mut self, msg: WireMsg, me: &Person, now: u64) -> Result<ClientStep, PairError> {
        match (std::mem::replace(&mut self.state, ClientState::Done), msg) {
            (ClientState::AwaitPake(mut ex, peer), WireMsg::Pake { msg }) => {
                let mac = ex
                    .on_peer_msg(&pake_bytes("pake", &msg)?)
                    .map_err(|e| PairError::Protocol(e.to_string()))?;
                self.state = ClientState::AwaitPakeConfirm(ex, peer);
                Ok(ClientStep::Send(vec![WireMsg::PakeConfirm {
                    mac: crate::domain::hex::encode(mac),
                }]))
            }
            (ClientState::AwaitPakeConfirm(ex, peer), WireMsg::PakeConfirm { mac }) => {
                ex.check_confirm(&pake_bytes("pake_confirm", &mac)?)
                    .map_err(|_| {
                        PairError::CodeMismatch(
                            "the node did not prove that it knows the code: possible man-in-the-middle; nothing was stored"
                                .into(),
                        )
                    })?;
                self.state = ClientState::Pairing(ClientPairing::confirmed_by_pake(peer));
                Ok(ClientStep::Send(vec![]))
            }
            (ClientState::Pairing(mut p), done @ WireMsg::PairDone { .. }) => {
                let commit = p.on_done(done, me, now)?;
                Ok(ClientStep::Commit(Box::new(commit)))
            }
            (ClientState::Pairing(mut p), offer) => {
                let confirm = p.on_offer(offer, &self.profile, self.replica)?;
                self.state = ClientState::Pairing(p);
                let send = if self.confirm_sent {
                    vec![]
                } else {
                    vec![confirm]
                };
                Ok(ClientStep::Send(send))
            }
            (ClientState::AwaitPake(..) | ClientState::AwaitPakeConfirm(..), m) => {
                Err(unexpected("the next PAKE message", &m))
            }
            (_, m) => Err(unexpected("nothing", &m)),
        }
    }
}
