//! The I/O shell of a connection's start: the WebSocket upgrade, driving the pure
//! handshake and the Hellos to an established [`Link`]. The running link is `live`.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::WebSocketStream;

use crate::domain::identity::LocalIdentity;
use crate::domain::PeerIdentity;
use crate::net::frames::{self, recv_binary, send_binary};
pub use crate::net::frames::{wire_bytes, ws_close};
use crate::net::handshake::{Handshake, HandshakeError, HelloExtras, Session};
pub use crate::net::link::{
    ConnError, KnownPeers, LinkEnd, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
    OUTBOX_CAPACITY,
};
use crate::net::pake::PakeRequest;
use crate::net::tls::TlsClient;
use crate::net::upgrade::upgrade_request;
pub use crate::net::upgrade::{accept_upgrade, ws_config, NOISE1_HEADER, NOISE1_TAKEN};
use crate::net::wire::{CloseCode, WireMsg, PROTOCOL_VERSION};

/// A connection whose handshake and identity proof are done.
pub struct Link<S> {
    /// The WebSocket.
    pub ws: WebSocketStream<S>,
    /// The Noise session.
    pub session: Session,
    /// Who is on the other side.
    pub peer: PeerIdentity,
    /// Responder side: the invitation token the initiator presented, if any.
    pub invite: Option<String>,
    /// Responder side: the short code or trust secret pairing the initiator asked for.
    pub pake: Option<PakeRequest>,
    /// The version of our profile the peer says it holds.
    pub peer_known_profile: Option<u64>,
    /// One network round trip, timed over the handshake (our Noise message to the
    /// peer's next one: the peer answers at once, so this is the path's delay).
    pub rtt: Duration,
    /// Responder side: the initiator sent `hello_known` (it knows us; we answer in kind).
    pub short: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    /// Send a Close inside the session, then close the WebSocket.
    pub async fn refuse(mut self, code: CloseCode, reason: &str) {
        if let Ok(f) = self.session.seal(&WireMsg::Close {
            code,
            reason: reason.into(),
        }) {
            let _ = timeout(Duration::from_secs(1), send_binary(&mut self.ws, f)).await;
        }
        ws_close(&mut self.ws, code, "").await;
    }

    /// Send our Hello (the responder does this after deciding to accept).
    pub async fn send_hello(
        &mut self,
        me: &LocalIdentity,
        known_profile: Option<u64>,
    ) -> Result<(), ConnError> {
        let hello = self.session.hello_with(
            me,
            HelloExtras {
                known_profile,
                ..HelloExtras::default()
            },
        );
        self.send(&hello).await
    }

    /// Send one message in the session.
    pub async fn send(&mut self, msg: &WireMsg) -> Result<(), ConnError> {
        let f = self.session.seal(msg)?;
        send_binary(&mut self.ws, f).await
    }

    /// Receive one message in the session (keepalives are answered and skipped); a `close`
    /// from the peer becomes [`ConnError::Closed`].
    pub async fn recv(&mut self) -> Result<WireMsg, ConnError> {
        loop {
            let frame = recv_binary(&mut self.ws).await?;
            match self.session.open(&frame)? {
                WireMsg::Close { code, reason } => {
                    return Err(ConnError::Closed {
                        code: Some(code),
                        reason,
                    })
                }
                WireMsg::Ping { n } => self.send(&WireMsg::Pong { n }).await?,
                WireMsg::Pong { .. } => {}
                m => return Ok(m),
            }
        }
    }
}

/// Dial side: Noise XX as initiator, send our Hello (with `extras` when pairing), wait for
/// the peer's Hello (or Close).
pub async fn dial(
    url: &str,
    me: &LocalIdentity,
    expected_remote: Option<[u8; 32]>,
    extras: HelloExtras,
) -> Result<Link<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, ConnError> {
    dial_tls(url, &TlsClient::system(), me, expected_remote, extras).await
}

/// [`dial`], checking a `wss://` URL's certificate against `tls`.
pub async fn dial_tls(
    url: &str,
    tls: &TlsClient,
    me: &LocalIdentity,
    expected_remote: Option<[u8; 32]>,
    extras: HelloExtras,
) -> Result<Link<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, ConnError> {
    let fut = async {
        let connector = url
            .starts_with("wss://")
            .then(|| tokio_tungstenite::Connector::Rustls(tls.config()));
        // Noise message 1 rides in the upgrade request: the responder's message 2 comes
        // back right behind its 101, saving the round trip a first frame would cost.
        let mut hs = Handshake::initiator(&me.secrets.transport, expected_remote)?;
        let m1 = hs.write()?;
        let request = upgrade_request(url, &m1)?;
        let (ws, response) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(ws_config()),
            true,
            connector,
        )
        .await
        .map_err(|e| match crate::net::tls::untrusted_why(&e) {
            Some(why) => ConnError::TlsUntrusted {
                url: url.into(),
                why,
            },
            None => ConnError::Unreachable {
                url: url.into(),
                why: e.to_string(),
            },
        })?;
        let taken = response
            .headers()
            .get(NOISE1_HEADER)
            .is_some_and(|v| v.as_bytes() == NOISE1_TAKEN.as_bytes());
        // A responder that predates the header did not take it: message 1 goes as a frame.
        let m1 = if taken {
            frames::count_out(m1.len());
            None
        } else {
            Some(m1)
        };
        initiate_after(ws, hs, m1, me, extras).await
    };
    timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| ConnError::Timeout)?
}

/// The initiator's part over an open WebSocket.
pub async fn initiate<S>(
    ws: WebSocketStream<S>,
    me: &LocalIdentity,
    expected_remote: Option<[u8; 32]>,
    extras: HelloExtras,
) -> Result<Link<S>, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = Handshake::initiator(&me.secrets.transport, expected_remote)?;
    let m1 = hs.write()?;
    initiate_after(ws, hs, Some(m1), me, extras).await
}

/// The initiator's part once message 1 is written: sent here as a frame when `m1` is
/// given, or already delivered in the upgrade request.
async fn initiate_after<S>(
    mut ws: WebSocketStream<S>,
    mut hs: Handshake,
    m1: Option<Vec<u8>>,
    me: &LocalIdentity,
    extras: HelloExtras,
) -> Result<Link<S>, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let in_header = m1.is_none();
    if let Some(m1) = m1 {
        send_binary(&mut ws, m1).await?;
    }
    let sent = Instant::now();
    let m2 = recv_binary(&mut ws).await?;
    let mut rtt = sent.elapsed();
    if let Err(e) = hs.read(&m2) {
        ws_close(&mut ws, CloseCode::BadProof, "handshake failed").await;
        return Err(e.into());
    }
    send_binary(&mut ws, hs.write()?).await?;
    let mut session = hs.into_session()?;
    let mut extras = extras;
    let then = extras.then.take();
    // A responder of this version (it took message 1 from the header) that is the contact
    // we dialed, by the key it just proved: it knows us, so our proof is only the key.
    let mut known = extras.known_peer.take().filter(|k| {
        in_header
            && extras.invite.is_none()
            && extras.pake.is_none()
            && then.is_none()
            && k.instance.transport_key_bytes().ok() == Some(session.remote_static())
    });
    let first = match known {
        Some(_) => WireMsg::HelloKnown {
            version: PROTOCOL_VERSION,
            known_profile: extras.known_profile,
        },
        None => session.hello_with(me, extras.clone()),
    };
    let first = session.seal(&first)?;
    send_binary(&mut ws, first).await?;
    if let Some(m) = then {
        let f = session.seal(&m)?;
        send_binary(&mut ws, f).await?;
    }
    let hello_sent = Instant::now();
    let reply = recv_binary(&mut ws).await?;
    if in_header {
        // Message 2 came with the upgrade's answer, which also held TCP's and TLS's set-up:
        // time the Hello's answer instead (the peer answers it at once).
        rtt = hello_sent.elapsed();
    }
    let mut msg = session.open(&reply)?;
    if known.is_some() && msg == WireMsg::HelloAgain {
        // It does not know our key (yet): the full proof.
        known = None;
        let hello = session.seal(&session.hello_with(me, extras))?;
        send_binary(&mut ws, hello).await?;
        msg = session.open(&recv_binary(&mut ws).await?)?;
    }
    if let WireMsg::Close { code, reason } = msg {
        return Err(ConnError::Closed {
            code: Some(code),
            reason,
        });
    }
    let (peer, peer_known_profile) = match (&msg, known) {
        (
            WireMsg::HelloKnown {
                version,
                known_profile,
            },
            Some(peer),
        ) => {
            if *version != PROTOCOL_VERSION {
                return Err(HandshakeError::Version(*version).into());
            }
            (*peer, *known_profile)
        }
        (WireMsg::Hello { known_profile, .. }, _) => (session.verify_hello(&msg)?, *known_profile),
        _ => (session.verify_hello(&msg)?, None),
    };
    Ok(Link {
        ws,
        session,
        peer,
        invite: None,
        pake: None,
        peer_known_profile,
        rtt,
        short: false,
    })
}

/// Accept side: Noise XX as responder and the peer's Hello verified. The caller decides
/// whether to accept (then [`Link::send_hello`]) or refuse ([`Link::refuse`]).
pub async fn respond<S>(ws: WebSocketStream<S>, me: &LocalIdentity) -> Result<Link<S>, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    respond_with(ws, me, None, &KnownPeers::default()).await
}

/// [`respond`], with Noise message 1 already taken from the upgrade request when `m1` is
/// given (see [`accept_upgrade`]), and a `hello_known` taken from the instances in
/// `known`.
pub async fn respond_with<S>(
    mut ws: WebSocketStream<S>,
    me: &LocalIdentity,
    m1: Option<Vec<u8>>,
    known: &KnownPeers,
) -> Result<Link<S>, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = Handshake::responder(&me.secrets.transport)?;
    let step = async {
        let m1 = match m1 {
            Some(m1) => {
                frames::count_in(m1.len());
                m1
            }
            None => recv_binary(&mut ws).await?,
        };
        hs.read(&m1)?;
        send_binary(&mut ws, hs.write()?).await?;
        let sent = Instant::now();
        let m3 = recv_binary(&mut ws).await?;
        let rtt = sent.elapsed();
        hs.read(&m3)?;
        Ok::<Duration, ConnError>(rtt)
    };
    let rtt = match step.await {
        Ok(rtt) => rtt,
        Err(e) => {
            let code = match e {
                ConnError::BadFrame(_) => CloseCode::ProtocolError,
                _ => CloseCode::BadProof,
            };
            ws_close(&mut ws, code, "handshake failed").await;
            return Err(e);
        }
    };
    let mut session = hs.into_session()?;
    let frame = recv_binary(&mut ws).await?;
    let mut hello = session.open(&frame);
    if let Ok(WireMsg::HelloKnown {
        version,
        known_profile,
    }) = &hello
    {
        match known.get(&session.remote_static()) {
            Some(peer) if *version == PROTOCOL_VERSION => {
                return Ok(Link {
                    ws,
                    session,
                    peer,
                    invite: None,
                    pake: None,
                    peer_known_profile: *known_profile,
                    rtt,
                    short: true,
                })
            }
            _ => {
                let again = session.seal(&WireMsg::HelloAgain)?;
                send_binary(&mut ws, again).await?;
                hello = session.open(&recv_binary(&mut ws).await?);
            }
        }
    }
    let verified = hello.map_err(ConnError::from).and_then(|m| {
        let (invite, known, pake) = match &m {
            WireMsg::Hello {
                invite,
                known_profile,
                pake,
                ..
            } => (invite.clone(), *known_profile, pake.clone()),
            _ => (None, None, None),
        };
        Ok((session.verify_hello(&m)?, invite, known, pake))
    });
    let (peer, invite, peer_known_profile, pake) = match verified {
        Ok(p) => p,
        Err(e) => {
            if let Ok(f) = session.seal(&WireMsg::Close {
                code: CloseCode::BadProof,
                reason: e.to_string(),
            }) {
                let _ = send_binary(&mut ws, f).await;
            }
            ws_close(&mut ws, CloseCode::BadProof, "").await;
            return Err(e);
        }
    };
    Ok(Link {
        ws,
        session,
        peer,
        invite,
        pake,
        peer_known_profile,
        rtt,
        short: false,
    })
}
