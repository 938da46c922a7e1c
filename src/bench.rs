//! Benchmarks: the app's figures beside the raw limits of the same machine, measured in the
//! same run, reported as ratios. Driven by `lama-bench` (full or `--quick`); the test suite
//! runs the quick mode as a smoke test so this code cannot rot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::app::runtime::{self, Config, Event, Role, Running};
use crate::domain::identity::LocalIdentity;
use crate::domain::log::Log;
use crate::domain::{sign_entry, Body, Hlc};
use crate::net::discovery::Scope;
use crate::store::Store;

/// Sizes of one benchmark run.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Repetitions of each measurement (min/median/max over them).
    pub runs: usize,
    /// Signatures verified for the raw limit.
    pub verify_n: usize,
    /// Records inserted for the raw limit.
    pub insert_n: usize,
    /// Round trips for the WebSocket limit.
    pub rtt_n: usize,
    /// Live messages measured.
    pub live_n: usize,
    /// Entries for the catch-up measurement.
    pub catchup_n: usize,
    /// History sizes for the reconnect-cost measurement.
    pub reconnect_sizes: Vec<usize>,
    /// Clients for the fan-out measurement.
    pub fanout_clients: usize,
    /// Messages for the fan-out measurement.
    pub fanout_msgs: usize,
    /// Entries held for the memory and start-up measurement.
    pub memory_n: usize,
    /// Messages in the channel for the render measurement.
    pub render_n: usize,
}

impl Sizes {
    /// The full run (issue targets).
    pub fn full() -> Sizes {
        Sizes {
            runs: 3,
            verify_n: 20_000,
            insert_n: 50_000,
            rtt_n: 2_000,
            live_n: 300,
            catchup_n: 100_000,
            reconnect_sizes: vec![10_000, 100_000, 1_000_000],
            fanout_clients: 100,
            fanout_msgs: 20,
            memory_n: 1_000_000,
            render_n: 100_000,
        }
    }

    /// A few seconds: the smoke test.
    pub fn quick() -> Sizes {
        Sizes {
            runs: 1,
            verify_n: 500,
            insert_n: 1_000,
            rtt_n: 100,
            live_n: 20,
            catchup_n: 1_000,
            reconnect_sizes: vec![500],
            fanout_clients: 4,
            fanout_msgs: 3,
            memory_n: 1_000,
            render_n: 2_000,
        }
    }
}

/// min / median / max of samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Stat {
    /// From samples (at least one).
    pub fn of(mut v: Vec<f64>) -> Stat {
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return Stat {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        Stat {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }
}

/// A percentile of samples.
pub fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// Section.
    pub group: &'static str,
    /// What.
    pub name: String,
    /// Unit.
    pub unit: &'static str,
    /// Value over runs.
    pub stat: Stat,
    /// Target, as text (empty for raw limits).
    pub target: String,
    /// Ratio to a raw limit, as text.
    pub ratio: String,
}

impl Row {
    /// The row with its target.
    fn with_target(mut self, target: impl Into<String>) -> Row {
        self.target = target.into();
        self
    }

    /// The row with its ratio to a raw limit.
    fn with_ratio(mut self, ratio: impl Into<String>) -> Row {
        self.ratio = ratio.into();
        self
    }
}

fn row(group: &'static str, name: impl Into<String>, unit: &'static str, v: Vec<f64>) -> Row {
    Row {
        group,
        name: name.into(),
        unit,
        stat: Stat::of(v),
        target: String::new(),
        ratio: String::new(),
    }
}

fn cfg(role: Role, dir: &Path) -> Config {
    Config {
        role,
        data_dir: dir.to_path_buf(),
        name: Some(format!("bench-{}@lama.local", role.as_str())),
        listen: "127.0.0.1:0".parse().expect("invariant: a valid address"),
        passphrase: None,
        accept_unknown: false,
        discovery: Scope::Off,
        trust_secret: None,
        node_url: crate::app::cli::DEFAULT_NODE_URL.into(),
        public_url: None,
    }
}

async fn start(role: Role, dir: &Path) -> Running {
    runtime::start(cfg(role, dir))
        .await
        .expect("bench instance must start")
}

async fn stop(r: Running) {
    r.handle.shutdown();
    let _ = r.done.await;
}

async fn wait_event(rx: &mut mpsc::Receiver<Event>, pred: impl Fn(&Event) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return,
            Ok(Some(_)) => {}
            _ => panic!("bench: expected event did not arrive"),
        }
    }
}

async fn pair(node: &mut Running, client: &mut Running) -> String {
    let inv = node.handle.invite(600).await.expect("invite");
    client
        .handle
        .accept(inv.code, crate::domain::Via::Invite, false)
        .await
        .expect("accept");
    wait_event(&mut client.events, |e| matches!(e, Event::Connected { .. })).await;
    wait_event(&mut node.events, |e| matches!(e, Event::Connected { .. })).await;
    crate::net::pairing::direct_channel_id(&node.info.person_id, &client.info.person_id)
}

/// Write `n` entries by the instance in `dir` into `ch` (stopped instance, one flush).
fn fill(dir: &Path, ch: &str, n: usize, start_ms: u64) {
    let store = Store::open(dir).expect("bench store");
    let kf = crate::store::keyfile::read(dir, None)
        .expect("key file")
        .expect("identity exists");
    let (p, i) = store
        .identity()
        .expect("identity")
        .expect("identity stored");
    let me = LocalIdentity::from_secrets(&p.name, &i.name, kf.secrets);
    let mut log = store.clone();
    let head = log.head(ch, &me.person_id());
    let mut seq = head.as_ref().map(|h| h.0).unwrap_or(0);
    let mut prev = head.map(|h| h.1);
    if seq == 0 {
        let _ = log.put_person(&me.person);
    }
    let mut chunk = Vec::with_capacity(1000);
    for k in 0..n {
        seq += 1;
        let e = sign_entry(
            &me,
            ch,
            seq,
            prev.take(),
            Hlc {
                ms: start_ms + k as u64,
                c: 0,
            },
            Body::Text {
                text: format!("bench message {k:07} lorem ipsum dolor sit amet"),
            },
        );
        prev = Some(e.id());
        chunk.push((e, None));
        if chunk.len() == 1000 {
            log.insert_many(&chunk).expect("bench insert");
            chunk.clear();
        }
    }
    log.insert_many(&chunk).expect("bench insert");
    log.flush().expect("bench flush");
}

/// Raw limit: ed25519 verifications per second (single, batched).
fn raw_verify(n: usize) -> (f64, f64) {
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

/// Raw limit: sled inserts per second, flushed every 128 (as sync does per batch).
fn raw_insert(n: usize, dir: &Path) -> f64 {
    let db = sled::Config::new()
        .path(dir.join("raw-sled"))
        .cache_capacity(crate::store::STORE_CACHE_BYTES)
        .open()
        .expect("raw sled");
    let val = vec![7u8; 400];
    let t = Instant::now();
    for i in 0..n {
        db.insert((i as u64).to_be_bytes(), val.as_slice())
            .expect("insert");
        if i % 128 == 127 {
            db.flush().expect("flush");
        }
    }
    db.flush().expect("flush");
    n as f64 / t.elapsed().as_secs_f64()
}

/// Raw limit: one small durable write (sled insert + flush), p50 in ms: the floor of any
/// path that must be on disk before it is reported.
fn raw_durable_write(n: usize, dir: &Path) -> f64 {
    let db = sled::Config::new()
        .path(dir.join("raw-durable"))
        .cache_capacity(crate::store::STORE_CACHE_BYTES)
        .open()
        .expect("raw sled");
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        db.insert((i as u64).to_be_bytes(), vec![7u8; 400])
            .expect("insert");
        db.flush().expect("flush");
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    pct(&v, 0.5)
}

/// Raw limit: WebSocket round trip (p50, p99 in ms) and one-way 200-byte messages/s.
async fn raw_ws(n: usize) -> (f64, f64, f64) {
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

/// Pairing: from `accept` to both sides connected, ms.
async fn bench_pairing(tmp: &Path, run: usize) -> f64 {
    let mut node = start(Role::Node, &tmp.join(format!("pair{run}-n"))).await;
    let mut client = start(Role::Client, &tmp.join(format!("pair{run}-c"))).await;
    let inv = node.handle.invite(600).await.expect("invite");
    let t = Instant::now();
    client
        .handle
        .accept(inv.code, crate::domain::Via::Invite, false)
        .await
        .expect("accept");
    wait_event(&mut client.events, |e| matches!(e, Event::Connected { .. })).await;
    wait_event(&mut node.events, |e| matches!(e, Event::Connected { .. })).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    stop(client).await;
    stop(node).await;
    ms
}

/// Live latency through a node, client to client: samples in ms.
async fn bench_live(tmp: &Path, n: usize) -> Vec<f64> {
    let mut node = start(Role::Node, &tmp.join("live-n")).await;
    let mut a = start(Role::Client, &tmp.join("live-a")).await;
    let mut b = start(Role::Client, &tmp.join("live-b")).await;
    pair(&mut node, &mut a).await;
    pair(&mut node, &mut b).await;
    let g = node
        .handle
        .create_channel(
            "bench".into(),
            vec![a.info.person_id.clone(), b.info.person_id.clone()],
        )
        .await
        .expect("channel");
    // Both clients must hold the channel before anyone writes.
    for c in [&a.handle, &b.handle] {
        while !c
            .channels()
            .await
            .expect("channels")
            .iter()
            .any(|(ch, _)| ch.id == g)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        a.handle
            .send(g.clone(), format!("live {i}"))
            .await
            .expect("send");
        let want = format!("live {i}");
        wait_event(
            &mut b.events,
            |e| matches!(e, Event::Message(m) if m.text.as_deref() == Some(want.as_str())),
        )
        .await;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stop(a).await;
    stop(b).await;
    stop(node).await;
    out
}

/// Catch-up: an empty client syncs `n` messages from a node; entries/s.
async fn bench_catchup(tmp: &Path, n: usize, run: usize) -> f64 {
    let (nd, cd) = (
        tmp.join(format!("cu{run}-n")),
        tmp.join(format!("cu{run}-c")),
    );
    let mut node = start(Role::Node, &nd).await;
    let mut client = start(Role::Client, &cd).await;
    let ch = pair(&mut node, &mut client).await;
    stop(client).await;
    stop(node).await;
    fill(&nd, &ch, n, 1_800_000_000_000);
    let node = restart_node(&nd, &cd).await;
    let t = Instant::now();
    let mut client = start(Role::Client, &cd).await;
    wait_event(&mut client.events, |e| matches!(e, Event::Synced { .. })).await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    stop(client).await;
    stop(node).await;
    rate
}

/// Reconnect with `held` entries on both sides and `new` new ones: (bytes, ms).
async fn bench_reconnect(tmp: &Path, held: usize, new_entries: usize) -> Vec<(u64, f64)> {
    let (nd, cd) = (
        tmp.join(format!("rc{held}-n")),
        tmp.join(format!("rc{held}-c")),
    );
    let mut node = start(Role::Node, &nd).await;
    let mut client = start(Role::Client, &cd).await;
    let ch = pair(&mut node, &mut client).await;
    stop(client).await;
    stop(node).await;
    // The same history on both sides: written once on the node, then synced once.
    fill(&nd, &ch, held, 1_800_000_000_000);
    let node = restart_node(&nd, &cd).await;
    let mut client = start(Role::Client, &cd).await;
    wait_event(&mut client.events, |e| matches!(e, Event::Synced { .. })).await;
    let mut out = Vec::new();
    // Nothing new: the link drops and comes back in the same processes (no store reopen).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    client.handle.reconnect().await.expect("reconnect");
    // Count from the old link's end: its close is not part of the reconnect.
    wait_event(&mut client.events, |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let (_, out0) = crate::net::conn::wire_bytes();
    wait_event(&mut client.events, |e| matches!(e, Event::Synced { .. })).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, out1) = crate::net::conn::wire_bytes();
    out.push((out1 - out0, ms));
    // Ten new entries written while the client was away.
    stop(client).await;
    for i in 0..new_entries {
        node.handle
            .send(ch.clone(), format!("new {i}"))
            .await
            .expect("send");
    }
    let (_, out0) = crate::net::conn::wire_bytes();
    let t = Instant::now();
    client = start(Role::Client, &cd).await;
    wait_event(&mut client.events, |e| matches!(e, Event::Synced { .. })).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, out1) = crate::net::conn::wire_bytes();
    out.push((out1 - out0, ms));
    stop(client).await;
    stop(node).await;
    out
}

/// Restart a stopped node on a fresh port and point the (stopped) client's contact at it.
/// (Reusing the old port races with other processes that may have taken it meanwhile.)
async fn restart_node(nd: &Path, client_dir: &Path) -> Running {
    let node = start(Role::Node, nd).await;
    let url = node.info.endpoint.clone().expect("a node has an endpoint");
    repoint(client_dir, &node.info.person_id, &url);
    node
}

/// Point a stopped client's contact at `url`.
fn repoint(client_dir: &Path, node_pid: &str, url: &str) {
    let store = Store::open(client_dir).expect("client store");
    let mut c = store
        .contact(node_pid)
        .expect("client store readable")
        .expect("the client has the node as a contact");
    for e in c.endpoints.iter_mut() {
        e.url = url.to_string();
    }
    store.put_contact(&c).expect("client store writable");
}

/// Fan-out: one node, `k` clients in one group; per message, ms until the last has it.
async fn bench_fanout(tmp: &Path, k: usize, msgs: usize) -> Vec<f64> {
    let mut node = start(Role::Node, &tmp.join("fan-n")).await;
    let mut clients = Vec::with_capacity(k);
    for i in 0..k {
        let mut c = start(Role::Client, &tmp.join(format!("fan-c{i}"))).await;
        pair(&mut node, &mut c).await;
        clients.push(c);
    }
    let members: Vec<String> = clients.iter().map(|c| c.info.person_id.clone()).collect();
    let g = node
        .handle
        .create_channel("fan".into(), members)
        .await
        .expect("channel");
    for c in &clients {
        while !c
            .handle
            .channels()
            .await
            .expect("channels")
            .iter()
            .any(|(ch, _)| ch.id == g)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut out = Vec::with_capacity(msgs);
    for i in 0..msgs {
        let want = format!("fan {i}");
        let t = Instant::now();
        node.handle
            .send(g.clone(), want.clone())
            .await
            .expect("send");
        for c in clients.iter_mut() {
            wait_event(
                &mut c.events,
                |e| matches!(e, Event::Message(m) if m.text.as_deref() == Some(want.as_str())),
            )
            .await;
        }
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for c in clients {
        stop(c).await;
    }
    stop(node).await;
    out
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(f64::NAN)
}

/// Memory and start-up of the real binary holding `n` entries: (ms to ready, RSS MiB after
/// ready, RSS MiB after a client caught up).
async fn bench_memory(tmp: &Path, bin: &Path, n: usize) -> (f64, f64, f64) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let nd = tmp.join("mem-n");
    let cd = tmp.join("mem-c");
    let mut node = start(Role::Node, &nd).await;
    let mut client = start(Role::Client, &cd).await;
    let ch = pair(&mut node, &mut client).await;
    let node_pid = node.info.person_id.clone();
    stop(client).await;
    stop(node).await;
    fill(&nd, &ch, n, 1_800_000_000_000);
    let t = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "--role",
            "node",
            "--headless",
            "--discovery",
            "off",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&nd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines.next_line().await.ok().flatten().unwrap_or_default();
    let ready_ms = t.elapsed().as_secs_f64() * 1000.0;
    let url = serde_json::from_str::<Value>(&ready)
        .ok()
        .and_then(|v| v["endpoint"].as_str().map(str::to_string))
        .expect("the node's ready line names its endpoint");
    repoint(&cd, &node_pid, &url);
    let pid = child.id().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_ready = rss_kib(pid) / 1024.0;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut client = start(Role::Client, &cd).await;
    wait_event(&mut client.events, |e| matches!(e, Event::Synced { .. })).await;
    let rss_after = rss_kib(pid) / 1024.0;
    stop(client).await;
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    (ready_ms, rss_ready, rss_after)
}

/// Rendering: (ms per frame of a channel that received `n` messages, ms to apply and draw a
/// burst of `n` incoming messages).
fn bench_render(n: usize) -> (f64, f64) {
    use crate::app::runtime::{IdentityInfo, MessageView};
    use crate::ui::state::{update, Action, State};
    let info = IdentityInfo {
        role: Role::Client,
        name: "bench@lama.local".into(),
        person_id: "a".repeat(64),
        instance_id: "b".repeat(64),
        endpoint: None,
    };
    let mut s = State::new(info, 0);
    let ch = format!("{}<->{}", "a".repeat(64), "c".repeat(64));
    update(
        &mut s,
        Action::Channels(vec![(
            crate::domain::Channel {
                id: ch.clone(),
                name: "bench".into(),
                members: vec!["a".repeat(64), "c".repeat(64)],
                created_at: 0,
            },
            0,
        )]),
    );
    let mut term =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).expect("term");
    let t = Instant::now();
    for i in 0..n {
        update(
            &mut s,
            Action::Runtime(Event::Message(MessageView {
                channel: ch.clone(),
                entry: format!("{i:064}"),
                author: "c".repeat(64),
                author_name: "peer".into(),
                ts: 1_800_000_000_000 + i as u64,
                text: Some(format!("message {i}")),
                kind: "text",
            })),
        );
    }
    term.draw(|f| crate::ui::view::render(&s, f)).expect("draw");
    let burst_ms = t.elapsed().as_secs_f64() * 1000.0;
    let frames = 200;
    let t = Instant::now();
    for _ in 0..frames {
        term.draw(|f| crate::ui::view::render(&s, f)).expect("draw");
    }
    (t.elapsed().as_secs_f64() * 1000.0 / frames as f64, burst_ms)
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Run everything; returns the rows and the JSON report.
pub async fn run_all(
    sizes: &Sizes,
    tmp: &Path,
    bin: Option<&Path>,
    progress: impl FnMut(&str),
) -> (Vec<Row>, Value) {
    run_some(sizes, tmp, bin, None, progress).await
}

/// The raw limits, then only the stage named `only` (`pairing`, `live`, `catchup`,
/// `reconnect`, `fanout`, `memory`, `render`), or every stage: for profiling one stage.
pub async fn run_some(
    sizes: &Sizes,
    tmp: &Path,
    bin: Option<&Path>,
    only: Option<&str>,
    mut progress: impl FnMut(&str),
) -> (Vec<Row>, Value) {
    let on = |stage: &str| only.is_none_or(|o| o == stage);
    let mut rows = Vec::new();
    let r = sizes.runs;
    progress("raw limits");
    let (mut vs, mut vb, mut ins, mut rtt50, mut rtt99, mut ows) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut dw = vec![];
    for i in 0..r {
        let (a, b) = raw_verify(sizes.verify_n);
        vs.push(a);
        vb.push(b);
        ins.push(raw_insert(sizes.insert_n, &tmp.join(format!("raw{i}"))));
        dw.push(raw_durable_write(
            (sizes.rtt_n / 4).max(20),
            &tmp.join(format!("raw{i}")),
        ));
        let (p50, p99, rate) = raw_ws(sizes.rtt_n).await;
        rtt50.push(p50);
        rtt99.push(p99);
        ows.push(rate);
    }
    let verify = Stat::of(vs.clone()).median;
    let insert = Stat::of(ins.clone()).median;
    let rtt = Stat::of(rtt50.clone()).median;
    rows.push(row("raw", "ed25519 verify, single", "1/s", vs));
    rows.push(row("raw", "ed25519 verify, batched (128)", "1/s", vb));
    rows.push(row("raw", "sled insert, flushed every 128", "1/s", ins));
    let durable = Stat::of(dw.clone()).median;
    rows.push(row(
        "raw",
        "durable small write (insert + flush) p50",
        "ms",
        dw,
    ));
    rows.push(row("raw", "WebSocket round trip p50 (200 B)", "ms", rtt50));
    rows.push(row("raw", "WebSocket round trip p99 (200 B)", "ms", rtt99));
    rows.push(row("raw", "WebSocket one-way 200 B messages", "1/s", ows));

    if on("pairing") {
        progress("pairing");
        let mut p = vec![];
        for i in 0..r {
            p.push(bench_pairing(tmp, i).await);
        }
        let x = row("app", "pairing: accept to both connected", "ms", p);
        let ratio = format!("{:.1}x RTT", x.stat.median / rtt);
        rows.push(x.with_target("median < 10 ms").with_ratio(ratio));
    }

    if on("live") {
        progress("live latency");
        let live = bench_live(tmp, sizes.live_n).await;
        let (l50, l99) = (pct(&live, 0.5), pct(&live, 0.99));
        rows.push(
            row(
                "app",
                "live latency client→node→client p50",
                "ms",
                vec![l50],
            )
            .with_target("< 1 ms")
            .with_ratio(format!(
                "{:.1}x RTT; {:.2}x the floor 2 durable writes + 2 RTT",
                l50 / rtt,
                l50 / (2.0 * durable + 2.0 * rtt)
            )),
        );
        rows.push(
            row(
                "app",
                "live latency client→node→client p99",
                "ms",
                vec![l99],
            )
            .with_target("< 5 ms")
            .with_ratio(format!("{:.1}x RTT", l99 / rtt)),
        );
    }

    if on("catchup") {
        progress("catch-up");
        let mut c = vec![];
        for i in 0..r {
            c.push(bench_catchup(tmp, sizes.catchup_n, i).await);
        }
        let limit = verify.min(insert);
        let x = row(
            "app",
            format!("catch-up of {} entries", sizes.catchup_n),
            "1/s",
            c,
        );
        let ratio = format!("{:.2}x of min(verify, insert)", x.stat.median / limit);
        rows.push(
            x.with_target(format!(
                ">= {:.0}/s (half the lower raw limit)",
                limit / 2.0
            ))
            .with_ratio(ratio),
        );
    }

    if on("reconnect") {
        progress("reconnect cost");
        for &held in &sizes.reconnect_sizes {
            let res = bench_reconnect(tmp, held, 10).await;
            rows.push(
                row(
                    "app",
                    format!("reconnect, nothing new, {held} held"),
                    "bytes",
                    vec![res[0].0 as f64],
                )
                .with_target("< 2048 B, flat"),
            );
            rows.push(
                row(
                    "app",
                    format!("reconnect to synced, nothing new, {held} held"),
                    "ms",
                    vec![res[0].1],
                )
                .with_target("< 10 ms")
                .with_ratio(format!("{:.1}x RTT", res[0].1 / rtt)),
            );
            rows.push(
                row(
                    "app",
                    format!("restart and catch up 10 new, {held} held"),
                    "bytes",
                    vec![res[1].0 as f64],
                )
                .with_ratio(format!(
                    "+{} B over nothing new",
                    res[1].0 as i64 - res[0].0 as i64
                )),
            );
            rows.push(row(
                "app",
                format!("client restart to synced, 10 new, {held} held"),
                "ms",
                vec![res[1].1],
            ));
        }
    }

    if on("fanout") {
        progress("fan-out");
        let fan = bench_fanout(tmp, sizes.fanout_clients, sizes.fanout_msgs).await;
        rows.push(
            row(
                "app",
                format!("fan-out to {} clients p99", sizes.fanout_clients),
                "ms",
                vec![pct(&fan, 0.99)],
            )
            .with_target("p99 < 20 ms")
            .with_ratio(format!("{:.1}x RTT", pct(&fan, 0.99) / rtt)),
        );
        rows.push(row(
            "app",
            format!("fan-out to {} clients p50", sizes.fanout_clients),
            "ms",
            vec![pct(&fan, 0.5)],
        ));
    }

    if let (Some(bin), true) = (bin, on("memory")) {
        progress("memory and start-up");
        let (ready, rss0, rss1) = bench_memory(tmp, bin, sizes.memory_n).await;
        rows.push(
            row(
                "app",
                format!("start to ready, {} entries", sizes.memory_n),
                "ms",
                vec![ready],
            )
            .with_target("< 300 ms"),
        );
        rows.push(
            row(
                "app",
                format!("node RSS after start, {} entries", sizes.memory_n),
                "MiB",
                vec![rss0],
            )
            .with_target("< 150 MB"),
        );
        rows.push(
            row(
                "app",
                format!("node RSS after a catch-up, {} entries", sizes.memory_n),
                "MiB",
                vec![rss1],
            )
            .with_target("< 150 MB"),
        );
    }

    if on("render") {
        progress("rendering");
        let (mut fr, mut bu) = (vec![], vec![]);
        for _ in 0..r {
            let (f, b) = bench_render(sizes.render_n);
            fr.push(f);
            bu.push(b);
        }
        rows.push(
            row(
                "app",
                format!("render one frame, channel of {} messages", sizes.render_n),
                "ms",
                fr,
            )
            .with_target("< 1 ms"),
        );
        rows.push(row(
            "app",
            format!("apply and draw a burst of {} messages", sizes.render_n),
            "ms",
            bu,
        ));
    }

    let json = json!({
        "rows": rows.iter().map(|r| json!({
            "group": r.group, "name": r.name, "unit": r.unit,
            "min": r.stat.min, "median": r.stat.median, "max": r.stat.max,
            "target": r.target, "ratio": r.ratio,
        })).collect::<Vec<_>>(),
    });
    (rows, json)
}

/// The report as a Markdown table.
pub fn markdown(rows: &[Row], header: &str) -> String {
    let mut s = format!("{header}\n\n| group | measure | unit | min | median | max | target | ratio |\n|---|---|---|---:|---:|---:|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.group,
            r.name,
            r.unit,
            fmt(r.stat.min),
            fmt(r.stat.median),
            fmt(r.stat.max),
            r.target,
            r.ratio
        ));
    }
    s
}

/// The machine, for the report header.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cores} cores ({cpu}), {mem} memory")
}

/// Default output directory.
pub fn results_dir() -> PathBuf {
    PathBuf::from("bench/results")
}
