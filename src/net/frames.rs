//! Binary WebSocket frames under a connection: read and write one, count the bytes, close
//! the socket with a status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::net::link::ConnError;
use crate::net::wire::CloseCode;

static BYTES_IN: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);

/// Payload bytes of binary WebSocket messages received and sent by this process so far
/// (handshake included), for the `stats` command and the reconnect-cost measurements.
pub fn wire_bytes() -> (u64, u64) {
    (
        BYTES_IN.load(Ordering::Relaxed),
        BYTES_OUT.load(Ordering::Relaxed),
    )
}

/// Read the next binary message, skipping WebSocket pings/pongs.
pub(crate) async fn recv_binary<S>(ws: &mut WebSocketStream<S>) -> Result<Vec<u8>, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None => {
                return Err(ConnError::Closed {
                    code: None,
                    reason: "connection closed".into(),
                })
            }
            Some(Err(e)) => return Err(ConnError::Ws(e.to_string())),
            Some(Ok(Message::Binary(b))) => {
                BYTES_IN.fetch_add(b.len() as u64, Ordering::Relaxed);
                return Ok(b.to_vec());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(f))) => {
                return Err(ConnError::Closed {
                    code: None,
                    reason: f
                        .map(|f| f.reason.to_string())
                        .unwrap_or_else(|| "closed".into()),
                })
            }
            Some(Ok(other)) => {
                return Err(ConnError::BadFrame(format!(
                    "expected a binary frame, got {}",
                    match other {
                        Message::Text(_) => "text",
                        _ => "another kind",
                    }
                )))
            }
        }
    }
}

pub(crate) async fn send_binary<S>(ws: &mut WebSocketStream<S>, b: Vec<u8>) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    BYTES_OUT.fetch_add(b.len() as u64, Ordering::Relaxed);
    ws.send(Message::Binary(b.into()))
        .await
        .map_err(|e| ConnError::Ws(e.to_string()))
}

/// Close a WebSocket with a status code; the reason text travels encrypted, not here.
pub async fn ws_close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason_in_clear: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: WsCloseCode::from(code.ws_status()),
        reason: reason_in_clear.into(),
    };
    let _ = timeout(CLOSE_DRAIN, ws.close(Some(frame))).await;
    // Read until the peer's closing reply ends the stream (bounded): a socket dropped with
    // unread bytes in its receive buffer is reset, and a reset can discard our close
    // message at the peer before it reads it, leaving it a "broken pipe" instead of why.
    let _ = timeout(CLOSE_DRAIN, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// How long a closing link waits for its close frame to go out, then for the peer's reply.
pub(crate) const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// Count `n` bytes received outside a frame (Noise message 1 in the upgrade request).
pub(crate) fn count_in(n: usize) {
    BYTES_IN.fetch_add(n as u64, Ordering::Relaxed);
}

/// Count `n` bytes sent outside a frame (Noise message 1 in the upgrade request).
pub(crate) fn count_out(n: usize) {
    BYTES_OUT.fetch_add(n as u64, Ordering::Relaxed);
}
