//! Connection tasks spawned by the actor: serving an incoming connection (including the
//! node's side of pairing), dialing a contact, dialing a URL once, and accepting an
//! invitation. Each reports to the actor through [`TaskCtx`] and never touches the store.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::app::actor::{Inbound, Internal, TaskCtx, Verdict};
use crate::app::runtime::{now_secs, CommandError, Paired, Reply};
use crate::identity::{short_id, Profile};
use crate::net::conn::{self, ConnError, Link, HANDSHAKE_TIMEOUT, OUTBOX_CAPACITY};
use crate::net::handshake::PeerIdentity;
use crate::net::manager::DialRequest;
use crate::net::pairing::{node_on_confirm, ClientPairing, PairError};
use crate::net::wire::{CloseCode, WireMsg};

async fn ask_actor<T>(
    ctx: &TaskCtx,
    make: impl FnOnce(oneshot::Sender<T>) -> Internal,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    ctx.itx.send(make(tx)).await.ok()?;
    rx.await.ok()
}

/// Serve one incoming TCP connection: WebSocket, handshake, authorisation, and (for an
/// invitation) the node's side of pairing; then run it as a normal link.
pub async fn serve_incoming(
    ctx: TaskCtx,
    tcp: TcpStream,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
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
            reply,
        })
        .await;
        match verdict {
            Some(Verdict::Accept { known_profile }) => {
                link.send_hello(&ctx.me, known_profile).await?;
                Ok(Some(link))
            }
            Some(Verdict::Pair { token, profile, .. }) => {
                link.send_hello(&ctx.me, None).await?;
                link.send(&WireMsg::PairOffer { profile: *profile }).await?;
                let confirm = link.recv().await?;
                let commit = match node_on_confirm(
                    &ctx.me.person,
                    &link.peer,
                    &token,
                    confirm,
                    now_secs(),
                ) {
                    Ok(c) => c,
                    Err(e) => {
                        link.refuse(e.close_code(), &e.to_string()).await;
                        return Ok(None);
                    }
                };
                let verification = commit.verification.clone();
                match ask_actor(&ctx, |reply| Internal::NodeCommit { commit, reply }).await {
                    Some(Ok(())) => {
                        link.send(&WireMsg::PairDone { verification }).await?;
                        Ok(Some(link))
                    }
                    Some(Err(e)) => {
                        link.refuse(e.close_code(), &e.to_string()).await;
                        Ok(None)
                    }
                    None => {
                        link.refuse(CloseCode::Shutdown, "shutting down").await;
                        Ok(None)
                    }
                }
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
    let link = match timeout(HANDSHAKE_TIMEOUT, setup).await {
        Err(_) => {
            tracing::info!(%addr, "handshake timed out");
            return;
        }
        Ok(Err::<_, ConnError>(e)) => {
            tracing::info!(%addr, "incoming connection failed: {e}");
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Ok(Some(l))) => l,
    };
    drop(permit);
    let dialer = link.peer.instance_id.clone();
    run_registered(ctx, link, conn_id, dialer, cancel).await;
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
        r = conn::dial(&req.url, &ctx.me, Some(req.key), None, known_profile) => r,
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
    let link = match conn::dial(&url, &ctx.me, None, None, None).await {
        Ok(l) => l,
        Err(e) => {
            let _ = reply.send(Err(e.into()));
            return;
        }
    };
    let verdict = ask_actor(&ctx, |reply| Internal::Authorize {
        peer: link.peer.clone(),
        invite: None,
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
        Some(Verdict::Pair { .. }) | None => {
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
    via: String,
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
            Some(pairing.expected_key()),
            Some(pairing.token_hex()),
            None,
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
                last_err = Some(match PairError::from_close(code) {
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
    let Some(mut link) = link else {
        let _ = reply.send(Err(last_err.unwrap_or_else(|| {
            CommandError::BadArgument("the invitation carries no address".into())
        })));
        return;
    };
    let exchange = async {
        pairing.on_node_hello(link.peer.clone())?;
        let offer = link.recv().await.map_err(pair_conn_err)?;
        let confirm = pairing.on_offer(offer, &my_profile, replica)?;
        link.send(&confirm).await.map_err(pair_conn_err)?;
        let done = link.recv().await.map_err(pair_conn_err)?;
        pairing.on_done(done, &ctx.me.person, now_secs())
    };
    let commit = match timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            link.refuse(e.close_code(), &e.to_string()).await;
            let _ = reply.send(Err(e.into()));
            return;
        }
        Err(_) => {
            link.refuse(CloseCode::Timeout, "pairing timed out").await;
            let _ = reply.send(Err(ConnError::Timeout.into()));
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

fn pair_conn_err(e: ConnError) -> PairError {
    match e {
        ConnError::Closed {
            code: Some(code),
            reason,
        } => PairError::from_close(code).unwrap_or(PairError::Protocol(reason)),
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
    let _ = ctx
        .itx
        .send(Internal::LinkUp {
            peer: peer.clone(),
            conn_id,
            outbox: otx,
            cancel: cancel.clone(),
            dialer_instance: link_key,
            peer_known_profile: link.peer_known_profile,
        })
        .await;
    let forward = {
        let inbound = ctx.inbound.clone();
        let person_id = peer.person_id.clone();
        async move {
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
