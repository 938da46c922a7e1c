//! The link shell over an in-memory duplex pipe with paused time: keepalive and dead-peer
//! detection run on a virtual clock, so minutes of silence take no time.

mod common;

use std::time::Duration;

use lama_tui::domain::identity::LocalIdentity;
use lama_tui::net::conn::{self, IDLE_TIMEOUT};
use lama_tui::net::live::run_link;
use lama_tui::net::wire::CloseCode;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

fn ident(seed: u8) -> LocalIdentity {
    common::ident(seed, "x@lama.local")
}

async fn pair() -> (
    conn::Link<tokio::io::DuplexStream>,
    conn::Link<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let wa = WebSocketStream::from_raw_socket(a, Role::Client, Some(conn::ws_config())).await;
    let wb = WebSocketStream::from_raw_socket(b, Role::Server, Some(conn::ws_config())).await;
    let (ia, ib) = (ident(1), ident(10));
    let resp = tokio::spawn(async move {
        let mut l = conn::respond(wb, &ib).await.unwrap();
        l.send_hello(&ib, None).await.unwrap();
        l
    });
    let la = conn::initiate(wa, &ia, None, Default::default())
        .await
        .unwrap();
    (la, resp.await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn keepalive_holds_an_idle_link_and_a_vanished_peer_is_noticed() {
    let (la, lb) = pair().await;
    // Both sides run: pings keep the idle link up well past the idle timeout.
    let (_ta, ra) = mpsc::channel(4);
    let (_tb, rb) = mpsc::channel(4);
    let ca = CancellationToken::new();
    let cb = CancellationToken::new();
    let ha = tokio::spawn(run_link(la, ra, mpsc::channel(4).0, ca.clone()));
    let hb = tokio::spawn(run_link(lb, rb, mpsc::channel(4).0, cb.clone()));
    tokio::time::sleep(IDLE_TIMEOUT * 3).await;
    assert!(
        !ha.is_finished() && !hb.is_finished(),
        "idle link with keepalive died"
    );
    // Side b vanishes (its socket is dropped): a sees the connection lost, not a protocol error.
    hb.abort();
    let end = tokio::time::timeout(IDLE_TIMEOUT * 2, ha)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.code, None, "unexpected end: {end:?}");
    let _ = cb;
}

#[tokio::test(start_paused = true)]
async fn a_frozen_peer_is_declared_dead_after_the_idle_timeout() {
    let (la, lb_frozen) = pair().await;
    let (_ta, ra) = mpsc::channel(4);
    let start = tokio::time::Instant::now();
    let end = run_link(la, ra, mpsc::channel(4).0, CancellationToken::new()).await;
    assert_eq!(end.code, Some(CloseCode::Timeout), "{end:?}");
    let waited = start.elapsed();
    assert!(
        waited >= IDLE_TIMEOUT && waited < IDLE_TIMEOUT + Duration::from_secs(3),
        "{waited:?}"
    );
    drop(lb_frozen);
}

#[tokio::test(start_paused = true)]
async fn cancellation_closes_with_shutdown_and_the_peer_learns_why() {
    let (la, lb) = pair().await;
    let (_ta, ra) = mpsc::channel(4);
    let (_tb, rb) = mpsc::channel(4);
    let ca = CancellationToken::new();
    let ha = tokio::spawn(run_link(la, ra, mpsc::channel(4).0, ca.clone()));
    let hb = tokio::spawn(run_link(
        lb,
        rb,
        mpsc::channel(4).0,
        CancellationToken::new(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    ca.cancel();
    let end_a = ha.await.unwrap();
    let end_b = tokio::time::timeout(Duration::from_secs(5), hb)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end_a.code, Some(CloseCode::Shutdown));
    assert_eq!(end_b.code, Some(CloseCode::Shutdown), "{end_b:?}");
}
