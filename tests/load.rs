//! Load: 100 clients each send 100 messages through one node into one group channel. Every
//! member must end up with every message exactly once, the node's memory stays bounded, and
//! a member that stops reading its socket does not hold up the others.
//!
//! The node is a real process (its peak RSS is read from /proc); the clients are instances
//! of the library in this process, each with its own store and its own WebSocket to the
//! node. `LAMA_LOAD_CLIENTS` and `LAMA_LOAD_MSGS` change the scale (default 100 x 100).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{ident, Peer};
use lama_tui::app::runtime::{self, Config, Event, Role, Running};
use lama_tui::domain::{Card, Code};
use lama_tui::net::conn;
use lama_tui::net::handshake::HelloExtras;
use serde_json::json;

fn scale(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client_cfg(dir: &std::path::Path, i: usize) -> Config {
    Config {
        role: Role::Client,
        data_dir: dir.to_path_buf(),
        name: Some(format!("load{i}@lama.local")),
        listen: "127.0.0.1:0".parse().unwrap(),
        passphrase: None,
        accept_unknown: false,
        discovery: lama_tui::net::discovery::Scope::Off,
        trust_secret: None,
        node_url: "ws://127.0.0.1:1".into(),
        public_url: None,
        tls: Default::default(),
    }
}

fn vm(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn wait_connected(r: &mut Running) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = r.events.recv().await {
            if matches!(e, Event::Connected { .. }) {
                return;
            }
        }
    })
    .await
    .expect("a client never connected");
}

#[test]
fn a_hundred_clients_send_a_hundred_messages_each_through_one_node() {
    let clients_n = scale("LAMA_LOAD_CLIENTS", 100);
    let msgs_n = scale("LAMA_LOAD_MSGS", 100);
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start(
        "node",
        &tmp.path().join("node"),
        &["--discovery", "off", "--name", "hub@lama.local"],
    );
    let node_pid = node.child.id();
    let url = node.endpoint();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Pair every client with the node.
    let mut clients: Vec<Running> = Vec::with_capacity(clients_n);
    for i in 0..clients_n {
        let inv = node.ask(json!({"cmd":"invite"}), 10 + i as u64);
        let code = inv["code"].as_str().unwrap().to_string();
        let mut c = rt
            .block_on(runtime::start(client_cfg(
                &tmp.path().join(format!("c{i}")),
                i,
            )))
            .unwrap();
        rt.block_on(async {
            c.handle
                .accept(code, lama_tui::domain::Via::Invite, false)
                .await
                .unwrap();
            wait_connected(&mut c).await;
        });
        clients.push(c);
    }
    // A member that will stop reading: its keys are the test's, its card is on the node.
    let slow = ident(77, "slow@lama.local");
    let card = Code::Card(Card {
        name: slow.person.name.clone(),
        person_key: slow.person.verifying_key().unwrap().to_bytes(),
        instance_id: lama_tui::domain::identity::parse_hex::<32>(&slow.instance_id(), "i").unwrap(),
        transport_key: slow.instance.transport_key_bytes().unwrap(),
        urls: vec![],
    })
    .encode();
    let r = node.ask(json!({"cmd":"add_contact","card":card}), 5000);
    assert_eq!(r["event"], "contact_added", "{r}");
    let mut members: Vec<String> = clients.iter().map(|c| c.info.person_id.clone()).collect();
    members.push(slow.person_id().to_string());
    let r = node.ask(
        json!({"cmd":"create_channel","name":"load","members":members}),
        5001,
    );
    let ch = r["channel"].as_str().unwrap().to_string();
    rt.block_on(async {
        for c in &clients {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !c
                .handle
                .channels()
                .await
                .unwrap()
                .iter()
                .any(|(x, _)| x.id == ch)
            {
                assert!(
                    Instant::now() < deadline,
                    "the group never reached a client"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    // The slow member connects, then never reads again (its socket buffers fill up).
    let slow_link = rt
        .block_on(conn::dial(&url, &slow, None, HelloExtras::default()))
        .unwrap();
    let rss_before = vm(node_pid, "VmRSS:");

    // Everyone writes at once.
    let started = Instant::now();
    let handles: Vec<_> = clients.iter().map(|c| c.handle.clone()).collect();
    let sent: Vec<Vec<String>> = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, h) in handles.into_iter().enumerate() {
            let ch = ch.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::with_capacity(msgs_n);
                for m in 0..msgs_n {
                    ids.push(h.send(ch.clone(), format!("c{i} m{m}")).await.unwrap());
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    let written = started.elapsed();
    let want: HashSet<String> = sent.iter().flatten().cloned().collect();
    assert_eq!(want.len(), clients_n * msgs_n);

    // Every member gets every message, once.
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut peak = 0;
    rt.block_on(async {
        for (i, c) in clients.iter().enumerate() {
            loop {
                peak = peak.max(vm(node_pid, "VmRSS:"));
                let h = c.handle.history(ch.clone(), want.len() + 10).await.unwrap();
                let ids: Vec<&str> = h.iter().map(|m| m.entry.as_str()).collect();
                let set: HashSet<&str> = ids.iter().copied().collect();
                assert_eq!(set.len(), ids.len(), "client {i} holds a message twice");
                if set.len() == want.len() {
                    assert!(want.iter().all(|w| set.contains(w.as_str())));
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "client {i} has {} of {} messages",
                    set.len(),
                    want.len()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let delivered = started.elapsed();
    let h = node.ask(
        json!({"cmd":"history","channel":ch,"limit":want.len() + 10}),
        6000,
    );
    assert_eq!(h["messages"].as_array().unwrap().len(), want.len());
    let hwm = vm(node_pid, "VmHWM:");
    let stores = (clients_n + 1) * want.len();
    eprintln!(
        "load: {clients_n} clients x {msgs_n} messages: written in {written:?}, in every store after {delivered:?} \
         ({:.0} stored entries/s over {} stores); node RSS {} MiB before, {} MiB peak sampled, VmHWM {} MiB",
        stores as f64 / delivered.as_secs_f64(),
        clients_n + 1,
        rss_before / 1024,
        peak / 1024,
        hwm / 1024
    );
    // Bounded: per link the node holds at most WINDOW batches in flight and about
    // CURSOR_CHUNK entries of read-ahead, whatever the number of authors; it never holds
    // per-client copies of what it relayed (which would be 100 x 10,000 entries).
    assert!(
        hwm < 250 * 1024,
        "node peak RSS {} MiB for {} relayed messages",
        hwm / 1024,
        want.len()
    );
    // The node dropped the member that stopped reading (keepalive after 45 s, or a full
    // outbox), rather than waiting on it; the others got everything meanwhile (above).
    let slow_pid = slow.person_id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let dropped = loop {
        let log = lama_tui::app::logging::read_logs(&tmp.path().join("node"));
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("disconnected") && l.contains(slow_pid.as_str()))
        {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the node never dropped the member that stopped reading"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("slow member: {dropped}");
    drop(slow_link);
    rt.block_on(async {
        for c in clients {
            c.handle.shutdown();
            let _ = c.done.await;
        }
    });
    assert!(node.quit().success());
}
