//! A link while it runs: encrypt and send what the core gives it, pass on what arrives,
//! answer and send keepalives, notice a dead peer, and close in order with the reason.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::net::conn::Link;
use crate::net::frames::{recv_binary, send_binary, ws_close};
use crate::net::handshake::{msg_name, Session};
use crate::net::link::{ConnError, LinkEnd, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::net::wire::{CloseCode, WireMsg};

/// Run an established link until it ends: encrypt `outbox` messages, pass application
/// messages to `inbound`, answer keepalives, detect a dead peer, and report why it ended.
pub async fn run_link<S>(
    link: Link<S>,
    mut outbox: mpsc::Receiver<WireMsg>,
    inbound: mpsc::Sender<WireMsg>,
    cancel: CancellationToken,
) -> LinkEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut l = LiveLink {
        ws: link.ws,
        session: link.session,
        last_rx: Instant::now(),
        last_tx: Instant::now(),
        ping_n: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(KEEPALIVE_INTERVAL));
    loop {
        let ended = tokio::select! {
            _ = cancel.cancelled() => {
                Some(l.close(CloseCode::Shutdown, "the peer is shutting down").await)
            }
            out = outbox.recv() => match out {
                Some(msg) => l.send_out(msg).await,
                None => Some(l.close(CloseCode::Shutdown, "link closed locally").await),
            },
            frame = recv_binary(&mut l.ws) => l.on_frame(frame, &inbound).await,
            _ = tick.tick() => l.on_tick().await,
        };
        if let Some(end) = ended {
            return end;
        }
    }
}

/// A link while it runs: the socket, the session and the keepalive clocks.
struct LiveLink<S> {
    ws: WebSocketStream<S>,
    session: Session,
    last_rx: Instant,
    last_tx: Instant,
    ping_n: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LiveLink<S> {
    async fn close(&mut self, code: CloseCode, reason: &str) -> LinkEnd {
        close_with(&mut self.ws, &mut self.session, code, reason).await
    }

    /// Send one message of ours; a `close` ends the link after it is sent.
    async fn send_out(&mut self, msg: WireMsg) -> Option<LinkEnd> {
        match self.session.seal(&msg) {
            Ok(f) => {
                if let Err(e) = send_binary(&mut self.ws, f).await {
                    return Some(LinkEnd {
                        code: None,
                        reason: e.to_string(),
                    });
                }
                self.last_tx = Instant::now();
            }
            Err(e) => tracing::warn!("dropping unsendable {}: {e}", msg_name(&msg)),
        }
        let WireMsg::Close { code, reason } = msg else {
            return None;
        };
        ws_close(&mut self.ws, code, "").await;
        Some(LinkEnd {
            code: Some(code),
            reason,
        })
    }

    /// One frame from the peer: keepalives are answered here, the rest goes `inbound`.
    async fn on_frame(
        &mut self,
        frame: Result<Vec<u8>, ConnError>,
        inbound: &mpsc::Sender<WireMsg>,
    ) -> Option<LinkEnd> {
        let frame = match frame {
            Ok(f) => f,
            Err(ConnError::Closed { code, reason }) => return Some(LinkEnd { code, reason }),
            Err(ConnError::Ws(reason)) => {
                let reason = format!("connection lost: {reason}");
                return Some(LinkEnd { code: None, reason });
            }
            Err(e) => {
                ws_close(&mut self.ws, CloseCode::ProtocolError, "").await;
                let code = Some(CloseCode::ProtocolError);
                return Some(LinkEnd {
                    code,
                    reason: e.to_string(),
                });
            }
        };
        self.last_rx = Instant::now();
        match self.session.open(&frame) {
            Ok(WireMsg::Ping { n }) => {
                if let Ok(f) = self.session.seal(&WireMsg::Pong { n }) {
                    let _ = send_binary(&mut self.ws, f).await;
                    self.last_tx = Instant::now();
                }
                None
            }
            Ok(WireMsg::Pong { .. }) => None,
            Ok(WireMsg::Close { code, reason }) => Some(LinkEnd {
                code: Some(code),
                reason,
            }),
            Ok(WireMsg::Hello { .. }) => {
                let why = "hello repeated after the handshake";
                Some(self.close(CloseCode::ProtocolError, why).await)
            }
            // Backpressure: a slow consumer slows this peer, never grows memory.
            Ok(m) => match inbound.send(m).await {
                Ok(()) => None,
                Err(_) => {
                    let why = "the instance is shutting down";
                    Some(self.close(CloseCode::Shutdown, why).await)
                }
            },
            Err(e) => {
                // An unauthenticated or undecodable frame: the session cannot be trusted
                // any more, so this connection (only) ends.
                let reason = format!("undecodable frame: {e}");
                ws_close(&mut self.ws, CloseCode::ProtocolError, "").await;
                Some(LinkEnd {
                    code: Some(CloseCode::ProtocolError),
                    reason,
                })
            }
        }
    }

    /// Keepalive: a ping after a quiet spell, and the end of a peer silent for too long.
    async fn on_tick(&mut self) -> Option<LinkEnd> {
        if self.last_rx.elapsed() >= IDLE_TIMEOUT {
            let why = "no traffic from the peer; presumed dead";
            return Some(self.close(CloseCode::Timeout, why).await);
        }
        if self.last_tx.elapsed() >= KEEPALIVE_INTERVAL {
            self.ping_n += 1;
            if let Ok(f) = self.session.seal(&WireMsg::Ping { n: self.ping_n }) {
                if let Err(e) = send_binary(&mut self.ws, f).await {
                    return Some(LinkEnd {
                        code: None,
                        reason: e.to_string(),
                    });
                }
                self.last_tx = Instant::now();
            }
        }
        None
    }
}

async fn close_with<S>(
    ws: &mut WebSocketStream<S>,
    session: &mut Session,
    code: CloseCode,
    reason: &str,
) -> LinkEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Ok(f) = session.seal(&WireMsg::Close {
        code,
        reason: reason.into(),
    }) {
        let _ = timeout(Duration::from_secs(1), send_binary(ws, f)).await;
    }
    ws_close(ws, code, "").await;
    LinkEnd {
        code: Some(code),
        reason: reason.into(),
    }
}
