//! Where connections happen: the tasks that accept and dial them, run the Noise handshake
//! and the Hello exchange (`net::conn`), report each verified peer, every message and the
//! end to the core as inputs, and carry the core's messages out. They decide nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::core::{ConnId, Input, PeerHello};
use crate::domain::identity::LocalIdentity;
use crate::net::conn::{self, ConnError, Link, LinkEnd, HANDSHAKE_TIMEOUT, OUTBOX_CAPACITY};
use crate::net::handshake::HelloExtras;
use crate::net::tls::TlsClient;
use crate::net::wire::{CloseCode, WireMsg};

/// Capacity of the queue of connection inputs into the shell (messages included: a slow
/// core slows the peers down rather than grow memory).
pub const CONN_INPUT_CAPACITY: usize = 1024;

/// What every connection task needs, cheaply cloned.
#[derive(Clone)]
pub struct Ctx {
    /// Our identity (the handshake's keys).
    pub me: Arc<LocalIdentity>,
    /// Into the shell, for the core.
    pub tx: mpsc::Sender<Input>,
    /// What `wss://` dials trust, and a node's own TLS (if it serves TLS itself).
    pub tls: Arc<Tls>,
    /// Instances that may greet us with `hello_known` (the core's list).
    pub known: Arc<conn::KnownPeers>,
}

/// The TLS of one instance.
pub struct Tls {
    /// Checks the certificates of `wss://` endpoints we dial.
    pub client: TlsClient,
    /// Wraps each accepted connection, when the node serves TLS itself (`--tls-cert`).
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
}

/// The shell's hold on one connection task.
pub struct ConnHandle {
    /// Messages to send.
    pub outbox: mpsc::Sender<WireMsg>,
    /// Ends the connection (`shutdown`).
    pub cancel: CancellationToken,
}

/// A new connection's outbox and cancel token, and the shell's handle on them.
pub fn conn_parts(
    parent: &CancellationToken,
) -> (ConnHandle, mpsc::Receiver<WireMsg>, CancellationToken) {
    let (outbox, rx) = mpsc::channel(OUTBOX_CAPACITY);
    let cancel = parent.child_token();
    let handle = ConnHandle {
        outbox,
        cancel: cancel.clone(),
    };
    (handle, rx, cancel)
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

fn hello_of<S>(link: &Link<S>) -> PeerHello {
    PeerHello {
        peer: link.peer.clone(),
        hash: link.session.handshake_hash().to_vec(),
        invite: link.invite.clone(),
        pake: link.pake.clone(),
        known_profile: link.peer_known_profile,
        rtt_ms: u32::try_from(link.rtt.as_millis()).unwrap_or(u32::MAX),
        short: link.short,
    }
}

/// Serve one incoming TCP connection: TLS (when the node serves it), WebSocket, Noise, the
/// dialer's Hello; then the core decides (it answers with our Hello or a Close) and the
/// connection runs.
pub async fn serve(
    ctx: Ctx,
    tcp: TcpStream,
    addr: SocketAddr,
    slot: PendingSlot,
    conn: ConnId,
    outbox: mpsc::Receiver<WireMsg>,
    cancel: CancellationToken,
) {
    // Small protocol messages must not wait for Nagle's algorithm (40 ms per round trip
    // against delayed ACKs).
    let _ = tcp.set_nodelay(true);
    let parts = (addr, slot, conn, outbox, cancel);
    match ctx.tls.acceptor.clone() {
        None => serve_on(ctx, async { Ok(tcp) }, parts).await,
        Some(acceptor) => {
            let tls = async move {
                acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| ConnError::Ws(format!("TLS handshake failed: {e}")))
            };
            serve_on(ctx, tls, parts).await
        }
    }
}

type ServeParts = (
    SocketAddr,
    PendingSlot,
    ConnId,
    mpsc::Receiver<WireMsg>,
    CancellationToken,
);

/// [`serve`] over the stream `stream` yields (TCP, or TLS over it): all of it within the
/// handshake timeout and the slot's life.
async fn serve_on<S>(
    ctx: Ctx,
    stream: impl std::future::Future<Output = Result<S, ConnError>>,
    (addr, slot, conn, outbox, cancel): ServeParts,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let setup = async {
        let s = stream.await?;
        let (ws, m1) = conn::accept_upgrade(s).await?;
        conn::respond_with(ws, &ctx.me, m1, &ctx.known).await
    };
    let evicted = slot.evicted.clone();
    let outcome = tokio::select! {
        _ = evicted.cancelled() => {
            tracing::info!(%addr, "handshake dropped: all handshake slots are taken and this was the oldest");
            return ended(&ctx, conn, "evicted by newer handshakes").await;
        }
        _ = cancel.cancelled() => return ended(&ctx, conn, "shutting down").await,
        o = timeout(HANDSHAKE_TIMEOUT, setup) => o,
    };
    let link = match outcome {
        Err(_) => {
            tracing::info!(%addr, "handshake timed out after {HANDSHAKE_TIMEOUT:?}: slot freed");
            return ended(&ctx, conn, "handshake timed out").await;
        }
        Ok(Err(e)) => {
            tracing::info!(%addr, "incoming connection failed: {e}");
            return ended(&ctx, conn, &e.to_string()).await;
        }
        Ok(Ok(l)) => l,
    };
    drop(slot);
    if ctx
        .tx
        .send(Input::Incoming {
            conn,
            hello: hello_of(&link),
        })
        .await
        .is_err()
    {
        return link.refuse(CloseCode::Shutdown, "shutting down").await;
    }
    run(ctx, link, conn, outbox, cancel).await;
}

/// A connection that ended before the core heard of it: the shell forgets its handle.
async fn ended(ctx: &Ctx, conn: ConnId, why: &str) {
    let end = LinkEnd {
        code: None,
        reason: why.to_string(),
    };
    let _ = ctx.tx.send(Input::Closed { conn, end }).await;
}

/// Dial `url` for the core: Noise (expecting `expected_key`, when known), our Hello with
/// `extras`, the peer's Hello; then the connection runs.
pub async fn dial(
    ctx: Ctx,
    conn: ConnId,
    (url, expected_key, extras): (String, Option<[u8; 32]>, HelloExtras),
    outbox: mpsc::Receiver<WireMsg>,
    cancel: CancellationToken,
) {
    let r = tokio::select! {
        _ = cancel.cancelled() => Err(ConnError::Closed { code: Some(CloseCode::Shutdown), reason: "the dial was cancelled".into() }),
        r = conn::dial_tls(&url, &ctx.tls.client, &ctx.me, expected_key, extras) => r,
    };
    let link = match r {
        Ok(l) => l,
        Err(error) => {
            let _ = ctx.tx.send(Input::DialFailed { conn, error }).await;
            return;
        }
    };
    let hello = hello_of(&link);
    if ctx.tx.send(Input::Dialed { conn, hello }).await.is_err() {
        return link.refuse(CloseCode::Shutdown, "shutting down").await;
    }
    run(ctx, link, conn, outbox, cancel).await;
}

/// Run an established connection: the core's messages out, the peer's in, and its end.
async fn run<S>(
    ctx: Ctx,
    link: Link<S>,
    conn: ConnId,
    outbox: mpsc::Receiver<WireMsg>,
    cancel: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (in_tx, mut in_rx) = mpsc::channel::<WireMsg>(OUTBOX_CAPACITY);
    let forward = {
        let tx = ctx.tx.clone();
        async move {
            while let Some(msg) = in_rx.recv().await {
                if tx.send(Input::Msg { conn, msg }).await.is_err() {
                    break;
                }
            }
        }
    };
    let (end, ()) = tokio::join!(
        crate::net::live::run_link(link, outbox, in_tx, cancel),
        forward
    );
    let _ = ctx.tx.send(Input::Closed { conn, end }).await;
}
