//! The flood stage: one authenticated contact pushes many channels' worth of entries at a
//! node as fast as the window allows, while the shell's handle asks the node a command
//! every few milliseconds; then the contact reconnects with an empty `have` and the node
//! refills it. What it shows: what the node stores is bounded by the quota, the core keeps
//! answering while it is flooded, and the refill is bounded by what was stored.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::runtime::Role;
use crate::bench::stages::{start, stop};
use crate::domain::identity::{parse_hex, LocalIdentity, Secrets};
use crate::domain::{sign_entry, Body, Card, Code, Entry, Hlc};
use crate::net::conn::{self, Link};
use crate::net::handshake::HelloExtras;
use crate::net::sync::{Have, Invalid, SyncMsg, BATCH_MAX_BYTES, BATCH_MAX_ENTRIES, WINDOW};
use crate::net::wire::WireMsg;

type Stream = tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>;

/// What the stage measured.
pub(super) struct Flood {
    /// Entries pushed.
    pub pushed: usize,
    /// Entries refused as over the quota.
    pub over_quota: usize,
    /// Channels the node holds afterwards.
    pub channels_held: usize,
    /// Command round trips during the flood, ms.
    pub command_ms: Vec<f64>,
    /// Time from the empty `have` to `done`, ms.
    pub refill_ms: f64,
    /// Entries in the refill.
    pub refilled: usize,
}

fn card(k: &LocalIdentity) -> String {
    Code::Card(Card {
        name: k.person.name.clone(),
        person_key: k.person.verifying_key().expect("own key").to_bytes(),
        instance_id: parse_hex::<32>(&k.instance_id(), "instance").expect("own id"),
        transport_key: k.instance.transport_key_bytes().expect("own key"),
        urls: vec![],
    })
    .encode()
}

/// Each channel: a group with the node and the flooder, and one message.
fn entries(k: &LocalIdentity, node: &str, channels: usize) -> Vec<Entry> {
    let t0 = crate::app::clock::now_ms() - 2 * channels as u64 - 60_000;
    let members = vec![k.person_id().to_string(), node.to_string()];
    let mut out = Vec::with_capacity(channels * 2);
    for i in 0..channels {
        let ch = format!("g-{i:032x}");
        let ms = t0 + 2 * i as u64;
        let body = Body::Create {
            name: format!("flood {i}"),
            members: members.clone(),
        };
        let create = sign_entry(k, &ch, 1, None, Hlc { ms, c: 0 }, body);
        let text = Body::Text {
            text: format!("flood message {i} lorem ipsum dolor sit amet"),
        };
        let hlc = Hlc { ms: ms + 1, c: 0 };
        let message = sign_entry(k, &ch, 2, Some(create.id()), hlc, text);
        out.push(create);
        out.push(message);
    }
    out
}

async fn recv(link: &mut Link<Stream>) -> SyncMsg {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(120), link.recv())
            .await
            .expect("bench: the node went silent")
            .expect("bench: the link broke");
        if let WireMsg::Sync { msg } = m {
            return msg;
        }
    }
}

async fn send(link: &mut Link<Stream>, msg: SyncMsg) {
    link.send(&WireMsg::Sync { msg })
        .await
        .expect("bench: send");
}

/// Batches within the protocol's limits (entries and bytes), as a sender makes them.
fn batches(all: &[Entry]) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = vec![];
    let mut bytes = 0;
    for e in all {
        let len = e.encoded_len();
        let full = out
            .last()
            .is_none_or(|b| b.len() >= BATCH_MAX_ENTRIES || bytes + len > BATCH_MAX_BYTES);
        if full {
            out.push(vec![]);
            bytes = 0;
        }
        bytes += len;
        out.last_mut()
            .expect("invariant: pushed above")
            .push(e.clone());
    }
    out
}

/// Push everything within the window; the refusals as over the quota.
async fn push_all(link: &mut Link<Stream>, all: &[Entry]) -> usize {
    let all = batches(all);
    let mut batches = all.iter().enumerate();
    let (mut inflight, mut over) = (0usize, 0usize);
    loop {
        while inflight < WINDOW {
            let Some((i, b)) = batches.next() else { break };
            let msg = SyncMsg::Entries {
                batch: i as u64 + 1,
                entries: b.to_vec(),
            };
            send(link, msg).await;
            inflight += 1;
        }
        if inflight == 0 {
            return over;
        }
        match recv(link).await {
            SyncMsg::Ack { rejected, .. } => {
                inflight -= 1;
                over += rejected
                    .iter()
                    .filter(|r| r.reason == Invalid::Quota)
                    .count();
            }
            SyncMsg::Entries { batch, .. } => {
                let ack = SyncMsg::Ack {
                    batch,
                    rejected: vec![],
                };
                send(link, ack).await;
            }
            _ => {}
        }
    }
}

/// Reconnect with an empty `have`; the entries until `done`, and the time.
async fn refill(url: &str, k: &LocalIdentity) -> (usize, f64) {
    let mut link = conn::dial(url, k, None, HelloExtras::default())
        .await
        .expect("bench: the node lets its contact in");
    let t = Instant::now();
    send(&mut link, SyncMsg::Have(Have::default())).await;
    let mut n = 0;
    loop {
        match recv(&mut link).await {
            SyncMsg::Entries { batch, entries } => {
                n += entries.len();
                let ack = SyncMsg::Ack {
                    batch,
                    rejected: vec![],
                };
                send(&mut link, ack).await;
            }
            SyncMsg::Done => return (n, t.elapsed().as_secs_f64() * 1e3),
            _ => {}
        }
    }
}

pub(super) async fn bench_flood(tmp: &Path, channels: usize) -> Flood {
    let node = start(Role::Node, &tmp.join("flood-n")).await;
    let url = node.info.endpoint.clone().expect("a node listens");
    let k = LocalIdentity::from_secrets("flood@lama.local", "flood/1", Secrets::generate());
    node.handle
        .add_contact(card(&k))
        .await
        .expect("add contact");
    let all = entries(&k, &node.info.person_id, channels);
    let mut link = conn::dial(&url, &k, None, HelloExtras::default())
        .await
        .expect("bench: the node lets its contact in");
    send(&mut link, SyncMsg::Have(Have::default())).await;
    // The shell's view: a command every 5 ms while the flood runs.
    let flooding = Arc::new(AtomicBool::new(true));
    let (h, on) = (node.handle.clone(), flooding.clone());
    let probe = tokio::spawn(async move {
        let mut v = Vec::new();
        while on.load(Ordering::Relaxed) {
            let t = Instant::now();
            let _ = h.identity().await;
            v.push(t.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        v
    });
    let over_quota = push_all(&mut link, &all).await;
    flooding.store(false, Ordering::Relaxed);
    let command_ms = probe.await.expect("bench: probe");
    drop(link);
    let (refilled, refill_ms) = refill(&url, &k).await;
    let channels_held = node.handle.channels().await.expect("channels").len();
    stop(node).await;
    Flood {
        pushed: all.len(),
        over_quota,
        channels_held,
        command_ms,
        refill_ms,
        refilled,
    }
}
