//! Connection tasks spawned by the actor: serving an incoming connection (including the
//! node's side of pairing), dialing a contact, dialing a URL once, and accepting an
//! invitation. Each reports to the actor through [`TaskCtx`] and never touches the store.

use std::net::SocketAddr;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;

use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::app::actor::{Inbound, Internal, LinkUp, TaskCtx, Verdict};
use crate::app::runtime::{now_secs, CommandError, Paired, Reply, TrustSecret};
use crate::domain::identity::{short_id, Profile};
use crate::domain::PeerIdentity;
use crate::domain::ShortCode;
use crate::domain::Via;
use crate::net::conn::{self, ConnError, Link, HANDSHAKE_TIMEOUT, OUTBOX_CAPACITY};
use crate::net::handshake::{msg_name, HelloExtras};
use crate::net::manager::DialRequest;
use crate::net::pairing::{node_on_confirm, ClientPairing, NodeCommit, PairError};
use crate::net::pake::{stretch_secret, PakeExchange, PakeRequest, Side};
use crate::net::wire::{CloseCode, WireMsg};

async fn ask_actor<T>(
    ctx: &TaskCtx,
    make: impl FnOnce(oneshot::Sender<T>) -> Internal,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    ctx.itx.send(make(tx)).await.ok()?;
    rx.await.ok()
}

/// Handshakes in progress, oldest first. When all slots are taken a new connection evicts
/// the oldest one instead of being turned away: a flood of stalled handshakes then cannot
/// lock contacts out for a whole handshake timeout, since a contact's handshake takes
/// milliseconds while the flood's connections wait to be evicted.
#[derive(Clone, Default)]
pub struct PendingHandshakes(Arc<Mutex<VecDeque<(u64, CancellationToken)>>>);

impl PendingHandshakes {
    /// Take a slot for `conn_id`, evicting the oldest handshake when `max` are in progress.
    /// Returns the slot and the evicted connection, if any.
    pub fn admit(&self, conn_id: u64, max: usize) -> (PendingSlot, Option<u64>) {
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let evicted = if q.len() >= max {
            q.pop_front().map(|(id, cancel)| {
                cancel.cancel();
                id
            })
        } else {
            None
        };
        let cancel = CancellationToken::new();
        q.push_back((conn_id, cancel.clone()));
        let slot = PendingSlot {
            set: self.clone(),
            conn_id,
            evicted: cancel,
        };
        (slot, evicted)
    }

    /// Handshakes in progress.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// No handshake in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One handshake's slot; dropping it frees the slot.
pub struct PendingSlot {
    set: PendingHandshakes,
    conn_id: u64,
    /// Cancelled when a newer connection evicts this handshake.
    pub evicted: CancellationToken,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut q = self
            .set
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.retain(|(id, _)| *id != self.conn_id);
    }
}

/// Serve one incoming TCP connection: WebSocket, handshake, authorisation, and (for an
/// invitation) the node's side of pairing; then run it as a normal link.
pub async fn serve_incoming(
    ctx: TaskCtx,
    tcp: TcpStream,
    addr: SocketAddr,
    slot: PendingSlot,
    conn_id: u64,
    cancel: CancellationToken,
) {
    // Small protocol messages must not wait for Nagle's algorithm (40 ms per round trip
    // against delayed ACKs).
    let _ = tcp.set_nodelay(true);
    let setup = async {
        let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(conn::ws_config()))
            .await
            .map_err(|e| ConnError::Ws(e.to_string()))?;
        let mut link = conn::respond(ws, &ctx.me).await?;
        let verdict = ask_actor(&ctx, |reply| Internal::Authorize {
            peer: link.peer.clone(),
            invite: link.invite.clone(),
            pake: link.pake.clone(),
            reply,
        })
        .await;
        match verdict {
            Some(Verdict::Accept { known_profile }) => {
                link.send_hello(&ctx.me, known_profile).await?;
                Ok(Some((link, None)))
            }
            Some(Verdict::Pair { token, profile, .. }) => {
                link.send_hello(&ctx.me, None).await?;
                node_pair(&ctx, link, Some(token), Via::Invite, *profile).await
            }
            Some(Verdict::Pake {
                password,
                token,
                profile,
            }) => {
                link.send_hello(&ctx.me, None).await?;
                let Some(link) = node_pake(&ctx, link, &password, token.clone()).await? else {
                    return Ok(None);
                };
                let via = if token.is_some() {
                    Via::ShortCode
                } else {
                    Via::TrustSecret
                };
                node_pair(&ctx, link, token, via, *profile).await
            }
            Some(Verdict::Refuse(code, why)) => {
                link.refuse(code, &why).await;
                Ok(None)
            }
            None => {
                link.refuse(CloseCode::Shutdown, "shutting down").await;
                Ok(None)
            }
        }
    };
    let evicted = slot.evicted.clone();
    let outcome = tokio::select! {
        _ = evicted.cancelled() => {
            tracing::info!(%addr, "handshake dropped: all handshake slots are taken and this was the oldest");
            return;
        }
        o = timeout(HANDSHAKE_TIMEOUT, setup) => o,
    };
    let (link, commit) = match outcome {
        Err(_) => {
            tracing::info!(%addr, "handshake timed out after {HANDSHAKE_TIMEOUT:?}: slot freed");
            return;
        }
        Ok(Err::<_, ConnError>(e)) => {
            tracing::info!(%addr, "incoming connection failed: {e}");
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Ok(Some(l))) => l,
    };
    drop(slot);
    // The commit and its `pair_done` run outside the eviction and the handshake timeout:
    // once the node commits, the client must hear of it.
    let link = match commit {
        None => link,
        Some(c) => match node_pair_finish(&ctx, link, c).await {
            Some(l) => l,
            None => return,
        },
    };
    let dialer = link.peer.instance_id.clone();
    run_registered(ctx, link, conn_id, dialer, cancel).await;
}

/// A link ready to run, with the pairing commit still to make (when pairing).
type SetupDone<S> = (Link<S>, Option<NodeCommit>);

/// Node side of the pairing exchange, once the peer is admitted: offer our profile and take
/// its confirmation; the commit itself is [`node_pair_finish`].
async fn node_pair<S>(
    ctx: &TaskCtx,
    mut link: Link<S>,
    token: Option<String>,
    via: Via,
    profile: Profile,
) -> Result<Option<SetupDone<S>>, ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    link.send(&WireMsg::PairOffer { profile }).await?;
    let confirm = link.recv().await?;
    let commit = match node_on_confirm(
        &ctx.me.person,
        &link.peer,
        token.as_deref(),
        via,
        confirm,
        now_secs(),
    ) {
        Ok(c) => c,
        Err(e) => {
            link.refuse(e.close_code(), &e.to_string()).await;
            return Ok(None);
        }
    };
    Ok(Some((link, Some(commit))))
}

/// Commit a pairing atomically and answer `pair_done`.
async fn node_pair_finish<S>(
    ctx: &TaskCtx,
    mut link: Link<S>,
    commit: NodeCommit,
) -> Option<Link<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let verification = commit.verification.clone();
    match ask_actor(ctx, |reply| Internal::NodeCommit { commit, reply }).await {
        Some(Ok(())) => {
            let done = WireMsg::PairDone { verification };
            // A client that stopped reading retries with the same code (admitted again).
            match timeout(HANDSHAKE_TIMEOUT, link.send(&done)).await {
                Ok(Ok(())) => Some(link),
                _ => None,
            }
        }
        Some(Err(e)) => {
            link.refuse(e.close_code(), &e.to_string()).await;
            None
        }
        None => {
            link.refuse(CloseCode::Shutdown, "shutting down").await;
            None
        }
    }
}

/// Node side of the PAKE: the dialer's SPAKE2 message, ours, the dialer's confirmation
/// checked first (so a wrong guess learns nothing but "no"), then ours.
async fn node_pake<S>(
    ctx: &TaskCtx,
    mut link: Link<S>,
    password: &[u8],
    token: Option<String>,
) -> Result<Option<Link<S>>, ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut ex, ours) = PakeExchange::start(
        Side::Listener,
        password,
        &link.peer.instance_id,
        &ctx.me.instance_id(),
        link.session.handshake_hash(),
    );
    let step = async {
        let theirs = recv_pake(&mut link, PakeStep::Msg).await?;
        link.send(&WireMsg::Pake {
            msg: hex::encode(ours),
        })
        .await
        .map_err(pair_conn_err)?;
        let my_mac = ex
            .on_peer_msg(&theirs)
            .map_err(|e| PairError::Protocol(e.to_string()))?;
        let mac = recv_pake(&mut link, PakeStep::Confirm).await?;
        // The guess is counted (durably) before it is checked; none left: not checked.
        let peer = link.peer.clone();
        let token = token.clone();
        ask_actor(ctx, |reply| Internal::PakeGuess { token, peer, reply })
            .await
            .unwrap_or_else(|| Err(PairError::Protocol("the node is shutting down".into())))?;
        Ok::<_, PairError>((my_mac, ex.check_confirm(&mac).is_ok()))
    };
    let (my_mac, ok) = match step.await {
        Ok(r) => r,
        Err(e) => {
            link.refuse(e.close_code(), &e.to_string()).await;
            return Ok(None);
        }
    };
    if !ok {
        let peer = link.peer.clone();
        let refusal = ask_actor(ctx, |reply| Internal::PakeFailed { token, peer, reply })
            .await
            .unwrap_or(PairError::CodeMismatch(String::new()));
        link.refuse(refusal.close_code(), &refusal.to_string())
            .await;
        return Ok(None);
    }
    link.send(&WireMsg::PakeConfirm {
        mac: hex::encode(my_mac),
    })
    .await?;
    Ok(Some(link))
}

/// Dial a contact for the connection manager.
pub async fn dial_contact(
    ctx: TaskCtx,
    req: DialRequest,
    known_profile: Option<u64>,
    conn_id: u64,
    cancel: CancellationToken,
) {
    let r = tokio::select! {
        _ = cancel.cancelled() => return,
        r = conn::dial(&req.url, &ctx.me, Some(req.key), HelloExtras { known_profile, ..HelloExtras::default() }) => r,
    };
    let link = match r {
        Ok(l) if l.peer.person_id == req.person_id => l,
        Ok(l) => {
            let got = short_id(&l.peer.person_id).to_string();
            l.refuse(CloseCode::WrongPeer, "you are not the person expected here")
                .await;
            let _ = ctx
                .itx
                .send(Internal::DialFailed {
                    person_id: req.person_id,
                    error: format!("{} answered as another person ({got})", req.url),
                })
                .await;
            return;
        }
        Err(e) => {
            let _ = ctx
                .itx
                .send(Internal::DialFailed {
                    person_id: req.person_id,
                    error: e.to_string(),
                })
                .await;
            return;
        }
    };
    let me = ctx.me.instance_id();
    run_registered(ctx, link, conn_id, me, cancel).await;
}

/// Dial a URL once for the `connect` command.
pub async fn dial_once(
    ctx: TaskCtx,
    url: String,
    reply: Reply<PeerIdentity>,
    conn_id: u64,
    cancel: CancellationToken,
) {
    let link = match conn::dial(&url, &ctx.me, None, HelloExtras::default()).await {
        Ok(l) => l,
        Err(e) => {
            let _ = reply.send(Err(e.into()));
            return;
        }
    };
    let verdict = ask_actor(&ctx, |reply| Internal::Authorize {
        peer: link.peer.clone(),
        invite: None,
        pake: None,
        reply,
    })
    .await;
    match verdict {
        Some(Verdict::Accept { .. }) => {}
        Some(Verdict::Refuse(code, why)) => {
            let peer = link.peer.clone();
            link.refuse(code, &why).await;
            let _ = reply.send(Err(CommandError::Refused {
                name: peer.person.name,
                short: short_id(&peer.person_id).into(),
                reason: why,
            }));
            return;
        }
        Some(Verdict::Pair { .. } | Verdict::Pake { .. }) | None => {
            let _ = reply.send(Err(CommandError::ShuttingDown));
            return;
        }
    }
    let _ = reply.send(Ok(link.peer.clone()));
    let me = ctx.me.instance_id();
    run_registered(ctx, link, conn_id, me, cancel).await;
}

/// Accept an invitation: dial each URL of the invite until one answers, run the client's
/// side of pairing, commit, and keep the link.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub async fn accept_invite(
    ctx: TaskCtx,
    mut pairing: ClientPairing,
    my_profile: Profile,
    via: Via,
    replica: bool,
    reply: Reply<Paired>,
    conn_id: u64,
    cancel: CancellationToken,
) {
    let mut last_err: Option<CommandError> = None;
    let mut link = None;
    for url in pairing.urls().to_vec() {
        match conn::dial(
            &url,
            &ctx.me,
            pairing.expected_key(),
            HelloExtras {
                invite: pairing.token_hex(),
                ..HelloExtras::default()
            },
        )
        .await
        {
            Ok(l) => {
                link = Some(l);
                break;
            }
            Err(ConnError::Closed {
                code: Some(code),
                reason,
            }) => {
                last_err = Some(match PairError::from_close(code, &reason) {
                    Some(p) => p.into(),
                    None => ConnError::Closed {
                        code: Some(code),
                        reason,
                    }
                    .into(),
                });
                break; // the node answered: other URLs lead to the same node
            }
            Err(e @ ConnError::Unreachable { .. }) => last_err = Some(e.into()),
            Err(e) => {
                last_err = Some(e.into());
                break;
            }
        }
    }
    let Some(link) = link else {
        let _ = reply.send(Err(last_err.unwrap_or_else(|| {
            CommandError::BadArgument("the invitation carries no address".into())
        })));
        return;
    };
    if let Err(e) = pairing.on_node_hello(link.peer.clone()) {
        link.refuse(e.close_code(), &e.to_string()).await;
        let _ = reply.send(Err(e.into()));
        return;
    }
    client_finish(
        ctx, link, pairing, my_profile, via, replica, reply, conn_id, cancel,
    )
    .await;
}

/// The client's side after the node is known to be the right one: take its offer, confirm
/// with our profile, commit on `pair_done`, and keep the link.
#[allow(clippy::too_many_arguments)] // two call sites; a struct would only rename them
async fn client_finish<S>(
    ctx: TaskCtx,
    mut link: Link<S>,
    mut pairing: ClientPairing,
    my_profile: Profile,
    via: Via,
    replica: bool,
    reply: Reply<Paired>,
    conn_id: u64,
    cancel: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let exchange = async {
        let offer = link.recv().await.map_err(pair_conn_err)?;
        let confirm = pairing.on_offer(offer, &my_profile, replica)?;
        link.send(&confirm).await.map_err(pair_conn_err)?;
        let done = link.recv().await.map_err(pair_conn_err)?;
        pairing.on_done(done, &ctx.me.person, now_secs())
    };
    let outcome = timeout(HANDSHAKE_TIMEOUT, exchange).await;
    let (link, commit) = match settle(link, outcome).await {
        Ok(r) => r,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    let paired = Paired {
        person_id: commit.contact.person_id(),
        name: commit.contact.person.name.clone(),
        verification: commit.verification.clone(),
    };
    let stored = ask_actor(&ctx, |reply| Internal::ClientCommit {
        commit,
        via,
        replica,
        reply,
    })
    .await;
    match stored {
        Some(Ok(())) => {
            let _ = reply.send(Ok(paired));
        }
        Some(Err(e)) => {
            link.refuse(
                CloseCode::Shutdown,
                "the client could not store the contact",
            )
            .await;
            let _ = reply.send(Err(e));
            return;
        }
        None => {
            let _ = reply.send(Err(CommandError::ShuttingDown));
            return;
        }
    }
    let me = ctx.me.instance_id();
    run_registered(ctx, link, conn_id, me, cancel).await;
}

/// What a client pairs with over a PAKE.
pub enum PakeSecret {
    /// A short code the node showed.
    Code(ShortCode),
    /// The shared trust secret.
    Trust(TrustSecret),
}

/// Pair by short code or trust secret: dial, run the PAKE bound to this session, then the
/// pairing exchange, commit, and keep the link.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub async fn accept_pake(
    ctx: TaskCtx,
    url: String,
    secret: PakeSecret,
    my_profile: Profile,
    replica: bool,
    reply: Reply<Paired>,
    conn_id: u64,
    cancel: CancellationToken,
) {
    let (req, via) = match &secret {
        PakeSecret::Code(c) => (PakeRequest::Code { slot: c.slot }, Via::ShortCode),
        PakeSecret::Trust(_) => (PakeRequest::Secret, Via::TrustSecret),
    };
    let extras = HelloExtras {
        pake: Some(req),
        ..HelloExtras::default()
    };
    let mut link = match conn::dial(&url, &ctx.me, None, extras).await {
        Ok(l) => l,
        Err(ConnError::Closed {
            code: Some(code),
            reason,
        }) => {
            let err = match PairError::from_close(code, &reason) {
                Some(p) => p.into(),
                None => ConnError::Closed {
                    code: Some(code),
                    reason,
                }
                .into(),
            };
            let _ = reply.send(Err(err));
            return;
        }
        Err(e) => {
            let _ = reply.send(Err(e.into()));
            return;
        }
    };
    let password = match secret {
        PakeSecret::Code(c) => Zeroizing::new(c.reveal().into_bytes()),
        PakeSecret::Trust(t) => {
            let node = link.peer.person_id.clone();
            // Argon2 takes tens of milliseconds of CPU: off the async workers.
            match tokio::task::spawn_blocking(move || stretch_secret(t.0.as_bytes(), &node)).await {
                Ok(p) => p,
                Err(_) => {
                    let _ = reply.send(Err(CommandError::ShuttingDown));
                    return;
                }
            }
        }
    };
    let exchange = async {
        let (mut ex, ours) = PakeExchange::start(
            Side::Dialer,
            &password,
            &ctx.me.instance_id(),
            &link.peer.instance_id,
            link.session.handshake_hash(),
        );
        link.send(&WireMsg::Pake {
            msg: hex::encode(ours),
        })
        .await
        .map_err(pair_conn_err)?;
        let theirs = recv_pake(&mut link, PakeStep::Msg).await?;
        let mac = ex
            .on_peer_msg(&theirs)
            .map_err(|e| PairError::Protocol(e.to_string()))?;
        link.send(&WireMsg::PakeConfirm {
            mac: hex::encode(mac),
        })
        .await
        .map_err(pair_conn_err)?;
        let node_mac = recv_pake(&mut link, PakeStep::Confirm).await?;
        ex.check_confirm(&node_mac).map_err(|_| {
                PairError::CodeMismatch(
                    "the node did not prove that it knows the code: possible man-in-the-middle; nothing was stored"
                        .into(),
                )
            })?;
        Ok::<(), PairError>(())
    };
    let outcome = timeout(HANDSHAKE_TIMEOUT, exchange).await;
    let (link, ()) = match settle(link, outcome).await {
        Ok(r) => r,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    let pairing = ClientPairing::confirmed_by_pake(link.peer.clone());
    client_finish(
        ctx, link, pairing, my_profile, via, replica, reply, conn_id, cancel,
    )
    .await;
}

/// The outcome of a client pairing step run under the handshake timeout: on failure the
/// link is closed with the reason, and the error is what the command answers.
async fn settle<S, T>(
    link: Link<S>,
    outcome: Result<Result<T, PairError>, tokio::time::error::Elapsed>,
) -> Result<(Link<S>, T), CommandError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match outcome {
        Ok(Ok(t)) => Ok((link, t)),
        Ok(Err(e)) => {
            link.refuse(e.close_code(), &e.to_string()).await;
            Err(e.into())
        }
        Err(_) => {
            link.refuse(CloseCode::Timeout, "pairing timed out").await;
            Err(ConnError::Timeout.into())
        }
    }
}

/// The two PAKE messages, in the order they arrive.
#[derive(Clone, Copy)]
enum PakeStep {
    /// `pake`: a SPAKE2 message.
    Msg,
    /// `pake_confirm`: a key confirmation MAC.
    Confirm,
}

/// The next message, which must be the PAKE step `want`: its bytes.
async fn recv_pake<S>(link: &mut Link<S>, want: PakeStep) -> Result<Vec<u8>, PairError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (name, hex) = match (want, link.recv().await.map_err(pair_conn_err)?) {
        (PakeStep::Msg, WireMsg::Pake { msg }) => ("pake", msg),
        (PakeStep::Confirm, WireMsg::PakeConfirm { mac }) => ("pake_confirm", mac),
        (_, other) => {
            return Err(PairError::Protocol(format!(
                "expected the next PAKE message, got {}",
                msg_name(&other)
            )))
        }
    };
    hex::decode(&hex).map_err(|e| PairError::Protocol(format!("{name} is not hex: {e}")))
}

fn pair_conn_err(e: ConnError) -> PairError {
    match e {
        ConnError::Closed {
            code: Some(code),
            reason,
        } => PairError::from_close(code, &reason).unwrap_or(PairError::Protocol(reason)),
        other => PairError::Protocol(other.to_string()),
    }
}

/// Register a link with the actor, run it, and report its end.
pub async fn run_registered<S>(
    ctx: TaskCtx,
    link: Link<S>,
    conn_id: u64,
    dialer_instance: String,
    cancel: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (otx, orx) = mpsc::channel(OUTBOX_CAPACITY);
    let (in_tx, mut in_rx) = mpsc::channel::<WireMsg>(OUTBOX_CAPACITY);
    let peer = link.peer.clone();
    // Both ends know who dialed and the handshake hash: together they order two links of
    // the same pair the same way on both sides, even two dialed by the same instance.
    let link_key = format!(
        "{dialer_instance}/{}",
        hex::encode(link.session.handshake_hash())
    );
    let (reg_tx, reg_rx) = oneshot::channel();
    let _ = ctx
        .itx
        .send(Internal::LinkUp {
            up: LinkUp {
                peer: peer.clone(),
                conn_id,
                outbox: otx,
                cancel: cancel.clone(),
                dialer_instance: link_key,
                peer_known_profile: link.peer_known_profile,
            },
            registered: reg_tx,
        })
        .await;
    let forward = {
        let inbound = ctx.inbound.clone();
        let person_id = peer.person_id.clone();
        async move {
            // The peer's first message (its `have`) must not reach the actor before the link
            // does: it would be dropped and this side would never send the peer anything.
            if reg_rx.await.is_err() {
                return;
            }
            while let Some(msg) = in_rx.recv().await {
                let m = Inbound {
                    person_id: person_id.clone(),
                    conn_id,
                    msg,
                };
                if inbound.send(m).await.is_err() {
                    break;
                }
            }
        }
    };
    let (end, ()) = tokio::join!(conn::run_link(link, orx, in_tx, cancel), forward);
    let _ = ctx
        .itx
        .send(Internal::LinkDown {
            person_id: peer.person_id,
            conn_id,
            end,
        })
        .await;
}
