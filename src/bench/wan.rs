//! Two people on two machines, across links with a 20 ms one-way delay: Alice's and Bob's
//! clients, each with a home node, every connection to a node passing a relay that holds
//! each byte for [`ONE_WAY`] in each direction (the delay `tc netem` would add; a relay in
//! this process works on any kernel and measures the same). Pairing through Alice's
//! client's code, and live messages laptop → home → home → laptop, as multiples of the
//! link's round trip measured through the same relay in the same run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::app::runtime::{self, Event, Role, Running};
use crate::domain::Via;

/// The delay each link adds, each way.
pub const ONE_WAY: Duration = Duration::from_millis(20);

/// Chunks in flight per direction of one relayed connection.
const RELAY_QUEUE: usize = 1024;

/// A relay on a free loopback port to `target` (set once the target is known), holding
/// every chunk for `ONE_WAY` in each direction, in order, after a round trip for TCP's
/// handshake.
async fn relay(target: Arc<OnceLock<SocketAddr>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("relay bind");
    let addr = l.local_addr().expect("relay address");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = l.accept().await {
            let Some(to) = target.get().copied() else {
                continue;
            };
            tokio::spawn(async move {
                // TCP's own handshake: the kernel completed it here at once, but across the
                // link the dialer's first byte could leave only after a round trip (SYN,
                // SYN-ACK). Holding everything for that round trip counts it.
                tokio::time::sleep(2 * ONE_WAY).await;
                let Ok(outbound) = TcpStream::connect(to).await else {
                    return;
                };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let (ir, iw) = inbound.into_split();
                let (or, ow) = outbound.into_split();
                tokio::join!(delayed(ir, ow), delayed(or, iw));
            });
        }
    });
    addr
}

/// Copy `r` to `w`, each chunk written `ONE_WAY` after it was read.
async fn delayed(
    mut r: impl AsyncReadExt + Unpin,
    mut w: impl AsyncWriteExt + Unpin + Send + 'static,
) {
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(RELAY_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some((at, b)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let at = tokio::time::Instant::now() + ONE_WAY;
        if tx.send((at, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The link's round trip: one byte to an echo server and back, through a relay (median).
async fn link_rtt(n: usize) -> f64 {
    let echo = TcpListener::bind("127.0.0.1:0").await.expect("echo bind");
    let target = Arc::new(OnceLock::new());
    let _ = target.set(echo.local_addr().expect("echo address"));
    tokio::spawn(async move {
        if let Ok((mut s, _)) = echo.accept().await {
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).await.is_ok() && s.write_all(&b).await.is_ok() {}
        }
    });
    let mut s = TcpStream::connect(relay(target).await)
        .await
        .expect("relay");
    let _ = s.set_nodelay(true);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&[7]).await.expect("echo write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("echo read");
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    super::pct(&v, 0.5)
}

/// A node reached only through a relay: its profile and codes name the relay.
async fn home_node(dir: &Path) -> Running {
    let target = Arc::new(OnceLock::new());
    let at = relay(target.clone()).await;
    let mut cfg = super::stages::cfg(Role::Node, dir);
    cfg.public_url = Some(format!("ws://127.0.0.1:{}", at.port()));
    let node = runtime::start(cfg).await.expect("bench node");
    let view = node.handle.endpoints().await.expect("endpoints");
    let bound: SocketAddr = view
        .me
        .listening
        .expect("a node listens")
        .parse()
        .expect("a socket address");
    let _ = target.set(bound);
    node
}

async fn event(rx: &mut mpsc::Receiver<Event>, pred: impl Fn(&Event) -> bool) {
    super::stages::wait_event(rx, pred).await;
}

/// A client paired with `home` as its home node.
async fn client_of(home: &mut Running, dir: &Path) -> Running {
    let client = super::stages::start(Role::Client, dir).await;
    let code = home.handle.invite(600).await.expect("invite").code;
    client
        .handle
        .accept(code, Via::Invite, true)
        .await
        .expect("pair with the home node");
    client
}

/// One scenario: (pairing until the acceptor has the contact, until the inviter has it,
/// live latencies), in ms.
async fn scenario(tmp: &Path, run: usize, live_n: usize) -> (f64, f64, Vec<f64>) {
    let d = tmp.join(format!("wan-{run}"));
    let mut ha = home_node(&d.join("ha")).await;
    let mut hb = home_node(&d.join("hb")).await;
    let mut a = client_of(&mut ha, &d.join("a")).await;
    let mut b = client_of(&mut hb, &d.join("b")).await;
    // Alice's code, once her home node holds it (it goes over the open link).
    let code = a.handle.invite(600).await.expect("client invite").code;
    while ha.handle.invites().await.map_or(0, |v| v.len()) < 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = Instant::now();
    let paired = b
        .handle
        .accept(code, Via::Invite, false)
        .await
        .expect("accept");
    let to_bob = t.elapsed().as_secs_f64() * 1000.0;
    let bob = b.info.person_id.clone();
    event(
        &mut a.events,
        |e| matches!(e, Event::ContactAdded { person_id, .. } if *person_id == bob),
    )
    .await;
    let to_alice = t.elapsed().as_secs_f64() * 1000.0;
    // The home nodes linked to each other: the path laptop → home → home → laptop is up.
    let hb_id = hb.info.person_id.clone();
    event(
        &mut ha.events,
        |e| matches!(e, Event::Connected { person_id, .. } if *person_id == hb_id),
    )
    .await;
    let ch = crate::net::pairing::direct_channel_id(&paired.person_id, &bob);
    let mut live = Vec::with_capacity(live_n);
    for i in 0..live_n {
        let text = format!("across the links {i}");
        let t = Instant::now();
        a.handle.send(ch.clone(), text.clone()).await.expect("send");
        event(
            &mut b.events,
            |e| matches!(e, Event::Message(m) if m.text.as_deref() == Some(text.as_str())),
        )
        .await;
        live.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for r in [a, b, ha, hb] {
        super::stages::stop(r).await;
    }
    (to_bob, to_alice, live)
}

/// The stage's rows.
pub(super) async fn rows(sizes: &super::Sizes, tmp: &Path) -> Vec<super::Row> {
    let rtt = link_rtt(20).await;
    let (mut bob, mut alice, mut live) = (vec![], vec![], vec![]);
    for run in 0..sizes.runs {
        let (b, a, l) = scenario(tmp, run, sizes.live_n.min(50)).await;
        bob.push(b);
        alice.push(a);
        live.extend(l);
    }
    let in_rtt = |v: f64| format!("{:.1}x RTT", v / rtt);
    let (l50, l99) = (super::pct(&live, 0.5), super::pct(&live, 0.99));
    let bob_row = super::row("wan", "pairing, accept to contact (acceptor)", "ms", bob);
    let alice_row = super::row("wan", "pairing, accept to contact (inviter)", "ms", alice);
    let (rb, ra) = (in_rtt(bob_row.stat.median), in_rtt(alice_row.stat.median));
    vec![
        super::row("wan", "link round trip (20 ms each way)", "ms", vec![rtt]),
        bob_row.with_target("≤ 4 RTT").with_ratio(rb),
        alice_row.with_target("≤ 4 RTT").with_ratio(ra),
        super::row(
            "wan",
            "live message laptop → laptop p50 (via home nodes)",
            "ms",
            vec![l50],
        )
        .with_target("≤ 3 RTT + 5 ms")
        .with_ratio(format!(
            "{}; {:.1} ms over 3 RTT",
            in_rtt(l50),
            l50 - 3.0 * rtt
        )),
        super::row(
            "wan",
            "live message laptop → laptop p99 (via home nodes)",
            "ms",
            vec![l99],
        )
        .with_target("≤ 3 RTT + 5 ms")
        .with_ratio(in_rtt(l99)),
    ]
}
