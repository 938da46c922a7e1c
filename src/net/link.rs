//! What a connection is, independent of the socket under it: how long its phases may take,
//! how it fails and how it ended. Pure: the tokio shell (`conn`) and the core share these.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use crate::domain::PeerIdentity;
use crate::net::handshake::HandshakeError;
use crate::net::wire::CloseCode;

/// Time allowed from TCP accept (or dial) to both Hellos exchanged.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A ping is sent after this long without sending anything.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// A peer silent for this long is considered dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Capacity of a link's outgoing queue.
pub const OUTBOX_CAPACITY: usize = 256;

/// Errors of the connection boundary.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The endpoint could not be reached.
    #[error("cannot reach {url}: {why}; check that the node is running and the address is right")]
    Unreachable {
        /// The URL dialed.
        url: String,
        /// The OS or WebSocket error.
        why: String,
    },
    /// A `wss://` node's certificate is not trusted here.
    #[error("the TLS certificate of {url} is not trusted ({why}); if the node uses a private CA or a self-signed certificate, start with --ca-file PATH naming that certificate; otherwise check the node's certificate and this machine's clock")]
    TlsUntrusted {
        /// The URL dialed.
        url: String,
        /// rustls's verdict.
        why: String,
    },
    /// The WebSocket broke.
    #[error("connection lost: {0}")]
    Ws(String),
    /// The peer sent something that is not a protocol frame.
    #[error("bad frame from peer: {0}")]
    BadFrame(String),
    /// The handshake or the identity proof failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The handshake did not complete in time.
    #[error("handshake did not complete within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    /// The peer closed the connection, giving a reason.
    #[error("peer closed the connection ({}): {reason}", code.map(CloseCode::as_str).unwrap_or("no code"))]
    Closed {
        /// The peer's reason code, if it sent one inside the session.
        code: Option<CloseCode>,
        /// Human sentence.
        reason: String,
    },
}

/// How a link ended.
#[derive(Clone, Debug)]
pub struct LinkEnd {
    /// Reason code, if known.
    pub code: Option<CloseCode>,
    /// Human sentence.
    pub reason: String,
}

/// The instances whose Person we hold and whose key a full Hello once proved, by Noise
/// static key: a responder takes a `hello_known` from these. Written by the shell from the
/// core's list; read by each accepting connection.
#[derive(Debug, Default)]
pub struct KnownPeers(RwLock<HashMap<[u8; 32], PeerIdentity>>);

impl KnownPeers {
    /// The peer whose instance has this transport key.
    pub fn get(&self, key: &[u8; 32]) -> Option<PeerIdentity> {
        self.0.read().ok()?.get(key).cloned()
    }

    /// Replace the list.
    pub fn replace(&self, peers: Vec<PeerIdentity>) {
        let map = peers
            .into_iter()
            .filter_map(|p| Some((p.instance.transport_key_bytes().ok()?, p)))
            .collect();
        if let Ok(mut m) = self.0.write() {
            *m = map;
        }
    }
}
