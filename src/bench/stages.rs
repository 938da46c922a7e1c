//! The app's figures: real instances in this process (and one node process for memory),
//! driven through the same handle the shells use.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::app::runtime::{self, Config, Event, Role, Running};
use crate::domain::identity::LocalIdentity;
use crate::domain::log::Log;
use crate::domain::{sign_entry, Body, Hlc};
use crate::net::discovery::Scope;
use crate::store::Store;

pub(super) fn cfg(role: Role, dir: &Path) -> Config {
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
        tls: Default::default(),
    }
}

fn open_store(dir: &Path) -> Store {
    Store::open(dir).expect("bench store")
}

/// Start an instance on `dir`. A restart needs no wait for the previous one's store: `stop`
/// returns once the actor has ended, and the actor owns the only handle of the database,
/// whose file lock is released when that handle is dropped (redb has no background threads
/// that outlive it, as sled had).
pub(super) async fn start(role: Role, dir: &Path) -> Running {
    runtime::start(cfg(role, dir))
        .await
        .expect("bench instance must start")
}

/// Wait until the instance behind `h` holds channel `g`.
async fn holds_channel(h: &runtime::Handle, g: &str) {
    while !h
        .channels()
        .await
        .expect("channels")
        .iter()
        .any(|(ch, _)| ch.id == g)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) async fn stop(r: Running) {
    r.handle.shutdown();
    let _ = r.done.await;
}

pub(super) async fn wait_event(rx: &mut mpsc::Receiver<Event>, pred: impl Fn(&Event) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return,
            Ok(Some(_)) => {}
            _ => panic!("bench: expected event did not arrive"),
        }
    }
}

pub(super) async fn pair(node: &mut Running, client: &mut Running) -> String {
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
pub(super) fn fill(dir: &Path, ch: &str, n: usize, start_ms: u64) {
    let store = open_store(dir);
    let kf = crate::store::keyfile::read(dir, None)
        .expect("key file")
        .expect("identity exists");
    let (p, i) = store
        .identity()
        .expect("identity")
        .expect("identity stored");
    let me = LocalIdentity::from_secrets(&p.name, &i.name, kf.secrets);
    let mut log = store.clone();
    let head = log.head(ch, &me.person_id()).expect("the store reads");
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

/// Pairing: from `accept` to both sides connected, ms.
pub(super) async fn bench_pairing(tmp: &Path, run: usize) -> f64 {
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
pub(super) async fn bench_live(tmp: &Path, n: usize) -> Vec<f64> {
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
        holds_channel(c, &g).await;
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

/// A node in `nd` paired with a client in `cd`, both stopped, the node holding `n` entries
/// in their 1:1 channel: (channel id, node person id).
async fn stopped_pair_with_history(nd: &Path, cd: &Path, n: usize) -> (String, String) {
    let mut node = start(Role::Node, nd).await;
    let mut client = start(Role::Client, cd).await;
    let ch = pair(&mut node, &mut client).await;
    let node_pid = node.info.person_id.clone();
    stop(client).await;
    stop(node).await;
    // Stamped in the past (one per ms, ending a minute ago): receivers refuse stamps more
    // than the allowed skew ahead of their clock.
    let start_ms = crate::app::clock::now_ms() - n as u64 - 60_000;
    fill(nd, &ch, n, start_ms);
    (ch, node_pid)
}

/// Catch-up: an empty client syncs `n` messages from a node; entries/s.
pub(super) async fn bench_catchup(tmp: &Path, n: usize, run: usize) -> f64 {
    let (nd, cd) = (
        tmp.join(format!("cu{run}-n")),
        tmp.join(format!("cu{run}-c")),
    );
    stopped_pair_with_history(&nd, &cd, n).await;
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
pub(super) async fn bench_reconnect(
    tmp: &Path,
    held: usize,
    new_entries: usize,
) -> Vec<(u64, f64)> {
    let (nd, cd) = (
        tmp.join(format!("rc{held}-n")),
        tmp.join(format!("rc{held}-c")),
    );
    // The same history on both sides: written once on the node, then synced once.
    let (ch, _) = stopped_pair_with_history(&nd, &cd, held).await;
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
pub(super) async fn restart_node(nd: &Path, client_dir: &Path) -> Running {
    let node = start(Role::Node, nd).await;
    let url = node.info.endpoint.clone().expect("a node has an endpoint");
    repoint(client_dir, &node.info.person_id, &url);
    node
}

/// Point a stopped client's contact at `url`.
pub(super) fn repoint(client_dir: &Path, node_pid: &str, url: &str) {
    let store = open_store(client_dir);
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
pub(super) async fn bench_fanout(tmp: &Path, k: usize, msgs: usize) -> Vec<f64> {
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
        holds_channel(&c.handle, &g).await;
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

pub(super) fn rss_kib(pid: u32) -> f64 {
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
pub(super) async fn bench_memory(tmp: &Path, bin: &Path, n: usize) -> (f64, f64, f64) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let nd = tmp.join("mem-n");
    let cd = tmp.join("mem-c");
    let (_, node_pid) = stopped_pair_with_history(&nd, &cd, n).await;
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
pub(super) fn bench_render(n: usize) -> (f64, f64) {
    use crate::app::runtime::{IdentityInfo, MessageView};
    use crate::ui::state::{Action, State};
    use crate::ui::update::update;
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
