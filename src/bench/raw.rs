//! The raw limits of this machine, measured in the same run as the app's figures: ed25519
//! verification, store inserts and durable writes, WebSocket round trips.

use std::path::Path;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};

use crate::bench::pct;

/// Raw limit: ed25519 verifications per second (single, batched).
pub(super) fn raw_verify(n: usize) -> (f64, f64) {
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    let keys: Vec<SigningKey> = (0..64u8)
        .map(|i| SigningKey::from_bytes(&[i.wrapping_add(1); 32]))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("message {i} {}", "x".repeat(300)).into_bytes())
        .collect();
    let sigs: Vec<_> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 64].sign(m))
        .collect();
    let vks: Vec<_> = (0..n).map(|i| keys[i % 64].verifying_key()).collect();
    let t = Instant::now();
    for i in 0..n {
        vks[i].verify(&msgs[i], &sigs[i]).expect("valid");
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(128) {
        let (a, b) = (chunk[0], chunk[chunk.len() - 1] + 1);
        ed25519_dalek::verify_batch(&refs[a..b], &sigs[a..b], &vks[a..b]).expect("valid batch");
    }
    (single, n as f64 / t.elapsed().as_secs_f64())
}

/// Raw limit: redb inserts per second, durably committed every 128 (as sync does per
/// batch), with quick repair as the store commits.
pub(super) fn raw_insert(n: usize, dir: &Path) -> f64 {
    use super::engines::{batched_rate, BenchEngine, Redb};
    batched_rate(&Redb::open(&dir.join("raw-insert.redb")), n)
}

/// Raw limit: one small durable write (a redb commit with fsync), p50 in ms: the floor of
/// any path that must be on disk before it is reported.
pub(super) fn raw_durable_write(n: usize, dir: &Path) -> f64 {
    use super::engines::{single_p50, BenchEngine, Redb};
    single_p50(&Redb::open(&dir.join("raw-durable.redb")), n, 0)
}

/// Raw limit: WebSocket round trip (p50, p99 in ms) and one-way 200-byte messages/s.
pub(super) async fn raw_ws(n: usize) -> (f64, f64, f64) {
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        // Echo for the RTT phase, then count for the throughput phase.
        for phase in 0..2 {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("ws");
            let mut count = 0usize;
            while let Some(Ok(m)) = ws.next().await {
                match (phase, m) {
                    (0, Message::Binary(b))
                        if ws.send(Message::Binary(b.clone())).await.is_err() =>
                    {
                        break
                    }
                    (1, Message::Binary(_)) => {
                        count += 1;
                        if count == n * 10 {
                            let _ = ws.send(Message::Binary(vec![1u8].into())).await;
                        }
                    }
                    (_, Message::Close(_)) => break,
                    _ => {}
                }
            }
        }
    });
    let url = format!("ws://{addr}");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let payload = vec![42u8; 200];
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        ws.send(Message::Binary(payload.clone().into()))
            .await
            .expect("send");
        let _ = ws.next().await;
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = ws.close(None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let t = Instant::now();
    for _ in 0..n * 10 {
        ws.feed(Message::Binary(payload.clone().into()))
            .await
            .expect("feed");
    }
    ws.flush().await.expect("flush");
    let _ = ws.next().await;
    let rate = (n * 10) as f64 / t.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    let _ = server.await;
    (pct(&rtts, 0.5), pct(&rtts, 0.99), rate)
}
