//! Noise message 1 in the WebSocket upgrade request (PROTOCOL.md section 3), over real
//! loopback sockets: taken when both sides know the header, and each side still works with
//! a peer that predates it; and the short greeting between contacts (section 4).

mod common;

use lama_tui::domain::identity::LocalIdentity;
use lama_tui::domain::PeerIdentity;
use lama_tui::net::conn::{self, ConnError};
use lama_tui::net::handshake::HelloExtras;
use lama_tui::net::wire::WireMsg;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn ident(seed: u8) -> LocalIdentity {
    common::ident(seed, "x@lama.local")
}

/// How a test server accepts one connection.
#[derive(Clone, Copy)]
enum Server {
    /// This version: message 1 may come in the upgrade request.
    Current,
    /// A responder that predates the header: plain upgrade, message 1 as a frame.
    Old,
}

/// Accept one connection on a fresh port; the task yields whether message 1 came in the
/// request, and the handshake's outcome.
async fn serve_one(
    how: Server,
) -> (
    String,
    tokio::task::JoinHandle<(bool, Result<String, ConnError>)>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let me = ident(20);
        let (tcp, _) = l.accept().await.unwrap();
        let (ws, m1) = match how {
            Server::Current => conn::accept_upgrade(tcp).await.unwrap(),
            Server::Old => (tokio_tungstenite::accept_async(tcp).await.unwrap(), None),
        };
        let taken = m1.is_some();
        let linked = match conn::respond_with(ws, &me, m1, &conn::KnownPeers::default()).await {
            Ok(mut link) => {
                link.send_hello(&me, None).await.unwrap();
                Ok(link.peer.person_id.to_string())
            }
            Err(e) => Err(e),
        };
        (taken, linked)
    });
    (url, task)
}

#[tokio::test]
async fn message_one_rides_in_the_upgrade_request() {
    let (url, server) = serve_one(Server::Current).await;
    let me = ident(1);
    let link = conn::dial(&url, &me, None, Default::default())
        .await
        .expect("dial");
    let (taken, linked) = server.await.unwrap();
    assert!(taken, "the responder did not find message 1 in the request");
    assert_eq!(linked.expect("responder side"), me.person_id().to_string());
    assert_eq!(link.peer.person_id, ident(20).person_id());
}

#[tokio::test]
async fn a_responder_that_predates_the_header_still_links() {
    let (url, server) = serve_one(Server::Old).await;
    let me = ident(2);
    let link = conn::dial(&url, &me, None, Default::default())
        .await
        .expect("dial an old responder");
    let (taken, linked) = server.await.unwrap();
    assert!(!taken);
    assert_eq!(linked.expect("responder side"), me.person_id().to_string());
    assert_eq!(link.peer.person_id, ident(20).person_id());
}

#[tokio::test]
async fn an_initiator_that_predates_the_header_still_links() {
    let (url, server) = serve_one(Server::Current).await;
    let me = ident(3);
    let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let link = conn::initiate(ws, &me, None, Default::default())
        .await
        .expect("old-style initiator");
    let (taken, linked) = server.await.unwrap();
    assert!(!taken);
    assert_eq!(linked.expect("responder side"), me.person_id().to_string());
    assert_eq!(link.peer.person_id, ident(20).person_id());
}

/// Send a raw upgrade request with `header` as the message 1 value; the server's view, or
/// (not taken, timeout) if it is still waiting after `wait` seconds.
async fn raw_upgrade(header: &str, wait: u64) -> (bool, Result<String, ConnError>) {
    let (url, server) = serve_one(Server::Current).await;
    let addr = url.trim_start_matches("ws://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {}: {header}\r\n\r\n",
        conn::NOISE1_HEADER
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Then nothing: a message 1 not taken from the header would be waited for as a frame.
    let out = tokio::time::timeout(std::time::Duration::from_secs(wait), server).await;
    drop(s);
    match out {
        Ok(r) => r.unwrap(),
        Err(_) => (false, Err(ConnError::Timeout)),
    }
}

#[tokio::test]
async fn a_garbage_header_is_not_taken_and_a_wrong_message_fails_the_handshake() {
    // Not base64url: left alone, so the responder waits for message 1 as a frame.
    let (taken, linked) = raw_upgrade("not base64 !!", 1).await;
    assert!(!taken);
    assert!(linked.is_err());
    // Too long to be a message 1: left alone.
    let (taken, _) = raw_upgrade(&"A".repeat(200), 1).await;
    assert!(!taken);
    // Decodes, but is not a Noise message 1 (too short): taken, and the handshake fails
    // with an error rather than a panic.
    let (taken, linked) = raw_upgrade("AAAA", 15).await;
    assert!(taken);
    assert!(linked.is_err(), "a 3-byte message 1 was accepted");
}

fn peer_of(who: &LocalIdentity) -> PeerIdentity {
    PeerIdentity {
        person: who.person.clone(),
        instance: who.instance.clone(),
        person_id: who.person_id(),
        instance_id: who.instance_id(),
    }
}

/// A reconnect between contacts: `hello_known` both ways when the responder knows the
/// dialer's key; the full Hello (after `hello_again`) when it does not.
#[tokio::test]
async fn a_contact_greets_with_hello_known_and_an_unknown_key_gets_hello_again() {
    let (me, them) = (ident(1), ident(20));
    for responder_knows in [true, false] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", l.local_addr().unwrap());
        let known = conn::KnownPeers::default();
        if responder_knows {
            known.replace(vec![peer_of(&me)]);
        }
        let server = tokio::spawn(async move {
            let them = ident(20);
            let (tcp, _) = l.accept().await.unwrap();
            let (ws, m1) = conn::accept_upgrade(tcp).await.unwrap();
            let mut link = conn::respond_with(ws, &them, m1, &known).await.unwrap();
            // The core answers a short greeting with its own (core::pair).
            if link.short {
                let answer = WireMsg::HelloKnown {
                    version: 1,
                    known_profile: None,
                };
                link.send(&answer).await.unwrap();
            } else {
                link.send_hello(&them, None).await.unwrap();
            }
            (link.short, link.peer.person_id.to_string())
        });
        let extras = HelloExtras {
            known_peer: Some(Box::new(peer_of(&them))),
            ..HelloExtras::default()
        };
        let key = them.instance.transport_key_bytes().unwrap();
        let link = conn::dial(&url, &me, Some(key), extras)
            .await
            .expect("linked");
        let (short, pid) = server.await.unwrap();
        assert_eq!(short, responder_knows);
        assert_eq!(pid, me.person_id().to_string());
        assert_eq!(link.peer, peer_of(&them));
    }
}
