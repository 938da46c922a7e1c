//! Local discovery: a node announces its current endpoint in UDP datagrams signed by its
//! instance key; a contact that lost track of it (say, after a restart on another port)
//! accepts a correctly signed announcement and dials the new URL.
//!
//! Scope `local` (the default) never leaves the machine: datagrams go to 127.0.0.1 on a
//! small range of ports, where each listening instance binds the first free one. Scope
//! `lan` uses a multicast group. The rules ([`Announcement::verify`]) are pure; the UDP
//! tasks at the bottom are the shell.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::identity::{parse_hex, verify_hex_sig, Id, LocalIdentity};
use crate::domain::Contact;

/// First port of the loopback discovery range (override with `LAMA_DISCOVERY_PORT`).
pub const DEFAULT_DISCOVERY_PORT: u16 = 48770;
/// Number of ports in the loopback range: how many instances on one machine can listen.
pub const DISCOVERY_PORTS: u16 = 16;
/// Multicast group for `--discovery lan`.
pub const LAN_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 76, 77);
/// Time between announcements.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);
/// Announcements older or newer than this (vs. our clock) are ignored: limits replay.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;
/// Largest datagram read.
pub const MAX_DATAGRAM: usize = 2048;
/// Capacity of the queue from the listener to the runtime.
pub const DISCOVERY_CAPACITY: usize = 64;

/// Domain separator for announcement signatures.
pub const ANNOUNCE_CONTEXT: &[u8] = b"lama-tui/1 announce\0";

/// Where discovery datagrams go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// This machine only (loopback).
    Local,
    /// The local network (multicast).
    Lan,
    /// No discovery.
    Off,
}

impl Scope {
    /// `local`, `lan` or `off`, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Lan => "lan",
            Scope::Off => "off",
        }
    }
}

/// One announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Announcing Person.
    pub person_id: Id,
    /// Announcing Instance.
    pub instance_id: Id,
    /// Its current `ws://` URL.
    pub url: String,
    /// Unix milliseconds when sent.
    pub ts: u64,
    /// Instance-key signature over context + canonical JSON with `sig` empty, hex.
    pub sig: String,
}

/// Why an announcement was ignored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// Not a valid announcement.
    #[error("malformed announcement")]
    Malformed,
    /// From someone who is not a contact.
    #[error("announcement from a stranger")]
    Stranger,
    /// From an instance of a contact we do not know yet.
    #[error("announcement from an unknown instance of a contact")]
    UnknownInstance,
    /// Signature does not verify.
    #[error("announcement with a bad signature")]
    BadSignature,
    /// Too old or too far in the future, or not newer than the last one.
    #[error("stale or replayed announcement")]
    Stale,
}

impl Announcement {
    /// A signed announcement.
    pub fn signed(me: &LocalIdentity, url: &str, ts: u64) -> Announcement {
        let mut a = Announcement {
            person_id: me.person_id().to_string(),
            instance_id: me.instance_id().to_string(),
            url: url.into(),
            ts,
            sig: String::new(),
        };
        a.sig = crate::domain::hex::encode(me.sign_as_instance(&a.signed_bytes()).to_bytes());
        a
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut u = self.clone();
        u.sig.clear();
        let mut m = ANNOUNCE_CONTEXT.to_vec();
        m.extend(serde_json::to_vec(&u).expect("invariant: announcements serialise"));
        m
    }

    /// Encode as a datagram.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: announcements serialise")
    }

    /// Decode a datagram.
    pub fn decode(b: &[u8]) -> Result<Announcement, Ignored> {
        if b.len() > MAX_DATAGRAM {
            return Err(Ignored::Malformed);
        }
        let a: Announcement = serde_json::from_slice(b).map_err(|_| Ignored::Malformed)?;
        if crate::domain::identity::check_endpoint_url(&a.url).is_err() {
            return Err(Ignored::Malformed);
        }
        Ok(a)
    }

    /// Accept only a fresh announcement signed by a known instance of `contact`.
    /// `last_ts` is the newest timestamp already accepted from that instance.
    pub fn verify(
        &self,
        contact: Option<&Contact>,
        now_ms: u64,
        last_ts: Option<u64>,
    ) -> Result<(), Ignored> {
        let c = contact.ok_or(Ignored::Stranger)?;
        if c.person_id() != self.person_id {
            return Err(Ignored::Stranger);
        }
        let inst = c
            .instances
            .iter()
            .find(|i| i.id() == self.instance_id)
            .ok_or(Ignored::UnknownInstance)?;
        let key = parse_hex::<32>(&inst.sign_key, "sign_key").map_err(|_| Ignored::BadSignature)?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| Ignored::BadSignature)?;
        verify_hex_sig(&key, &self.signed_bytes(), &self.sig, "announcement")
            .map_err(|_| Ignored::BadSignature)?;
        if self.ts + MAX_SKEW_MS < now_ms || self.ts > now_ms + MAX_SKEW_MS {
            return Err(Ignored::Stale);
        }
        if last_ts.is_some_and(|t| self.ts <= t) {
            return Err(Ignored::Stale);
        }
        Ok(())
    }
}

/// The first port of the loopback range (env `LAMA_DISCOVERY_PORT` overrides, for tests
/// that must not hear each other).
pub fn base_port() -> u16 {
    std::env::var("LAMA_DISCOVERY_PORT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_DISCOVERY_PORT)
}

/// Bind the listening socket for `scope`.
pub async fn bind_listener(scope: Scope) -> Option<UdpSocket> {
    match scope {
        Scope::Off => None,
        Scope::Local => {
            let base = base_port();
            for p in base..base.saturating_add(DISCOVERY_PORTS) {
                if let Ok(s) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p)).await {
                    return Some(s);
                }
            }
            tracing::warn!("all local discovery ports are taken; discovery listening is off");
            None
        }
        Scope::Lan => {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, base_port()))
                .await
                .ok()?;
            s.join_multicast_v4(LAN_GROUP, Ipv4Addr::UNSPECIFIED).ok()?;
            Some(s)
        }
    }
}

/// Forward every datagram received on `sock` as an announcement (pre-decoded).
pub async fn listen(sock: UdpSocket, tx: mpsc::Sender<Announcement>, cancel: CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, _)) => {
                    if let Ok(a) = Announcement::decode(&buf[..n]) {
                        // Drop when the runtime is busy: announcements repeat.
                        let _ = tx.try_send(a);
                    }
                }
                Err(e) => {
                    tracing::debug!("discovery receive failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Announce `url` every [`ANNOUNCE_INTERVAL`] until cancelled.
pub async fn announce(
    me: std::sync::Arc<LocalIdentity>,
    url: String,
    scope: Scope,
    cancel: CancellationToken,
) {
    let Ok(sock) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).await else {
        return;
    };
    let targets: Vec<SocketAddr> = match scope {
        Scope::Off => return,
        Scope::Local => {
            let base = base_port();
            (base..base.saturating_add(DISCOVERY_PORTS))
                .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
                .collect()
        }
        Scope::Lan => vec![SocketAddr::from((LAN_GROUP, base_port()))],
    };
    let sock = if scope == Scope::Lan {
        match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).await {
            Ok(s) => s,
            Err(_) => return,
        }
    } else {
        sock
    };
    let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                let d = Announcement::signed(&me, &url, unix_ms()).encode();
                for t in &targets {
                    let _ = sock.send_to(&d, t).await;
                }
            }
        }
    }
}

/// The wall clock in unix milliseconds, for the announcements this shell signs.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
