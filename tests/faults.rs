//! Fault injection: every client reaches the node through a TCP proxy that, driven by a
//! seed, delays, stalls and cuts connections at random byte offsets (so in the middle of
//! frames and of sync batches). All instances write into one group channel meanwhile; once
//! the faults stop they must hold identical views with nothing lost and nothing twice.
//!
//! Replay a failure with `LAMA_FAULT_SEED=<seed printed by the failing run>`.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Peer;
use serde_json::json;

struct Shared {
    faults: AtomicBool,
    cuts: AtomicU64,
    stalls: AtomicU64,
    connections: AtomicU64,
    rng: Mutex<common::Rng>,
}

impl Shared {
    fn draw(&self, n: u64) -> u64 {
        self.rng.lock().unwrap().below(n)
    }
}

/// Forwards 127.0.0.1:`port` to `target`, injecting faults while `faults` is set.
struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    fn start(target: u16, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            faults: AtomicBool::new(false),
            cuts: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            rng: Mutex::new(common::Rng::new(seed)),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                sh.connections.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                // Each connection lives for a random number of bytes and milliseconds.
                let cut_bytes = 200 + sh.draw(40_000);
                let life = Duration::from_millis(100 + sh.draw(900));
                let born = Instant::now();
                let cut = Arc::new(AtomicBool::new(false));
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (sh, cut) = (sh.clone(), cut.clone());
                    std::thread::spawn(move || pump(from, to, &sh, &cut, cut_bytes, born, life));
                }
            }
        });
        Proxy { port, shared }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn set_faults(&self, on: bool) {
        self.shared.faults.store(on, Ordering::SeqCst);
    }

    fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::Relaxed)
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    sh: &Shared,
    cut: &AtomicBool,
    cut_bytes: u64,
    born: Instant,
    life: Duration,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut moved = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if cut.load(Ordering::SeqCst) {
            break;
        }
        let faulty = sh.faults.load(Ordering::SeqCst);
        if faulty && born.elapsed() > life {
            if !cut.swap(true, Ordering::SeqCst) {
                sh.cuts.fetch_add(1, Ordering::Relaxed);
            }
            break;
        }
        // Small reads split frames across writes, so cuts and stalls land inside them.
        let want = if faulty {
            1 + sh.draw(buf.len() as u64) as usize
        } else {
            buf.len()
        };
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => break,
        };
        if faulty {
            match sh.draw(100) {
                0..=1 => {
                    sh.stalls.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100 + sh.draw(500)));
                }
                2..=11 => std::thread::sleep(Duration::from_millis(sh.draw(5))),
                _ => {}
            }
            if moved + n as u64 > cut_bytes {
                // Forward part of this read, then cut: the peer sees half a frame.
                let part = (cut_bytes - moved.min(cut_bytes)) as usize;
                let _ = to.write_all(&buf[..part.min(n)]);
                if !cut.swap(true, Ordering::SeqCst) {
                    sh.cuts.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        moved += n as u64;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    cut.store(true, Ordering::SeqCst);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn instances_writing_through_a_cutting_proxy_converge_without_loss_or_duplicates() {
    let seed = common::seed_from_env("LAMA_FAULT_SEED");
    const CLIENTS: usize = 5;
    const MIN_CUTS: u64 = 300;

    let tmp = tempfile::tempdir().unwrap();
    let node_port = free_port();
    let proxy = Proxy::start(node_port, seed);
    let listen = format!("127.0.0.1:{node_port}");
    let mut node = Peer::start(
        "node",
        &tmp.path().join("node"),
        &[
            "--listen",
            &listen,
            "--public-url",
            &proxy.url(),
            "--discovery",
            "off",
            "--name",
            "node@lama.local",
        ],
    );
    assert_eq!(node.endpoint(), proxy.url(), "the node gives out the proxy");
    let mut clients: Vec<Peer> = (0..CLIENTS)
        .map(|i| {
            Peer::start(
                "client",
                &tmp.path().join(format!("c{i}")),
                &["--discovery", "off", "--name", &format!("c{i}@lama.local")],
            )
        })
        .collect();
    let mut id = 10;
    let mut next = || {
        id += 1;
        id
    };
    for c in clients.iter_mut() {
        let inv = node.ask(json!({"cmd":"invite"}), next());
        let r = c.ask(json!({"cmd":"accept","code":inv["code"]}), next());
        assert_eq!(r["event"], "contact_added", "{r}");
    }
    let members: Vec<String> = clients.iter().map(Peer::person_id).collect();
    let r = node.ask(
        json!({"cmd":"create_channel","name":"storm","members":members}),
        next(),
    );
    let ch = r["channel"].as_str().unwrap().to_string();
    for c in clients.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c
            .ask(json!({"cmd":"channels"}), next())
            .to_string()
            .contains(&ch)
        {
            assert!(
                Instant::now() < deadline,
                "the group never reached a client"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The storm: every instance writes while connections are delayed, stalled and cut.
    proxy.set_faults(true);
    let mut sent: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut round = 0u64;
    while proxy.cuts() < MIN_CUTS {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} cuts in 120 s (seed {seed})",
            proxy.cuts()
        );
        round += 1;
        for (i, p) in std::iter::once(&mut node)
            .chain(clients.iter_mut())
            .enumerate()
        {
            let r = p.ask(
                json!({"cmd":"send","channel":ch,"text":format!("r{round} from {i}")}),
                next(),
            );
            assert_eq!(r["event"], "sent", "{r}");
            sent.push(r["entry"].as_str().unwrap().to_string());
            texts.push(format!("r{round} from {i}"));
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    proxy.set_faults(false);
    let storm = started.elapsed();
    let (cuts, stalls, conns) = (
        proxy.cuts(),
        proxy.shared.stalls.load(Ordering::Relaxed),
        proxy.shared.connections.load(Ordering::Relaxed),
    );
    eprintln!(
        "storm: {storm:?}, {} messages written by {} instances, {cuts} cuts, {stalls} stalls, {conns} connections (seed {seed})",
        sent.len(),
        CLIENTS + 1
    );

    // Calm: everyone converges.
    let want: HashSet<String> = sent.iter().cloned().collect();
    assert_eq!(want.len(), sent.len(), "entry ids are unique");
    let deadline = Instant::now() + Duration::from_secs(60);
    let reference = loop {
        let views: Vec<Vec<String>> = std::iter::once(&mut node)
            .chain(clients.iter_mut())
            .map(|p| common::history_ids(p, &ch, 1_000_000 + u64::from(rand_id())))
            .collect();
        let complete = views.iter().all(|v| v.len() == sent.len());
        if complete && views.windows(2).all(|w| w[0] == w[1]) {
            break views[0].clone();
        }
        if Instant::now() >= deadline {
            let mut diag = String::new();
            for (i, p) in std::iter::once(&mut node)
                .chain(clients.iter_mut())
                .enumerate()
            {
                let c = p.ask(json!({"cmd":"contacts"}), 2_000_000 + u64::from(rand_id()));
                let states: Vec<String> = c["contacts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| format!("{}:{}:{}", c["name"], c["state"], c["last_error"]))
                    .collect();
                let missing: Vec<&String> = sent
                    .iter()
                    .zip(&texts)
                    .filter(|(e, _)| !views[i].contains(e))
                    .map(|(_, t)| t)
                    .collect();
                diag += &format!("\ninstance {i}: missing {missing:?}; contacts {states:?}");
            }
            panic!(
                "no convergence 60 s after the storm (seed {seed}): view sizes {:?} of {}{diag}",
                views.iter().map(Vec::len).collect::<Vec<_>>(),
                sent.len()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let got: HashSet<String> = reference.iter().cloned().collect();
    assert_eq!(got.len(), reference.len(), "a message twice (seed {seed})");
    assert_eq!(got, want, "lost or foreign messages (seed {seed})");
    let stats = node.ask(json!({"cmd":"stats"}), next());
    assert_eq!(stats["invalid"], 0, "{stats}");
}

/// Ids for history requests that cannot collide with the counter's.
fn rand_id() -> u32 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u32
}
