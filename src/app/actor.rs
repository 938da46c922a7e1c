//! The shell around the core: one task owning the [`NodeCore`], the connection tasks'
//! handles and the pending replies. Its one `select!` turns commands, connection events,
//! discovery announcements and the core's timer into inputs, and carries out every output.
//! It decides nothing itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::clock::now_ms;
use crate::app::connections::{self, ConnHandle, Ctx, PendingHandshakes};
use crate::core::{
    Answer, Command, CommandError, CommandId, ConnId, Event, Input, NodeCore, Output, Role,
};
use crate::net::discovery::{self, Scope, DISCOVERY_CAPACITY};
use crate::net::pake::{stretch_secret, Password};
use crate::net::wire::WireMsg;

/// Handshakes in progress at once; a further connection evicts the oldest of them.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// Events held back while the shell's queue is full (a burst of a catch-up emits
/// thousands at once); past this many a shell is taken as no longer reading.
pub const EVENT_BACKLOG_MAX: usize = 1 << 18;
/// Most actor turns received entries wait for their commit while more messages keep
/// arriving: bounds the acknowledgement delay under a steady stream.
pub const GROUP_COMMIT_MAX_TURNS: usize = 64;

/// A command and where its answer goes.
pub type Request = (Command, oneshot::Sender<Result<Answer, CommandError>>);

/// The clock the core sees: unix milliseconds that never go backwards.
#[derive(Default)]
struct Clock(u64);

impl Clock {
    fn now(&mut self) -> u64 {
        self.0 = self.0.max(now_ms());
        self.0
    }
}

/// What the shell listens on besides its queues.
pub struct Sockets {
    /// Nodes: the TCP listener.
    pub listener: Option<TcpListener>,
    /// Local discovery: the UDP socket announcements arrive on.
    pub discovery: Option<UdpSocket>,
    /// Where this node announces itself, and in which scope.
    pub announce: Option<(String, Scope)>,
}

/// The shell.
pub struct Actor {
    core: NodeCore,
    rng: rand_core::OsRng,
    clock: Clock,
    commands: mpsc::Receiver<Request>,
    conn_rx: mpsc::Receiver<Input>,
    ctx: Ctx,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Where connection tasks and slow work run.
    rt: tokio::runtime::Handle,
    conns: HashMap<ConnId, ConnHandle>,
    pending: HashMap<CommandId, oneshot::Sender<Result<Answer, CommandError>>>,
    next_cmd: CommandId,
    /// Accepted connections get odd ids; the core names its dials with even ones.
    next_accept: ConnId,
    slots: PendingHandshakes,
    /// Events waiting for room in the shell's queue, oldest first: none is dropped
    /// because a burst outran the shell, and the core never waits for the shell.
    backlog: VecDeque<Event>,
}

impl Actor {
    /// A shell around `core`.
    pub fn new(
        core: NodeCore,
        commands: mpsc::Receiver<Request>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
        rt: tokio::runtime::Handle,
        tls: connections::Tls,
    ) -> Actor {
        let (tx, conn_rx) = mpsc::channel(connections::CONN_INPUT_CAPACITY);
        let me = core.identity();
        Actor {
            core,
            rng: rand_core::OsRng,
            clock: Clock::default(),
            commands,
            conn_rx,
            ctx: Ctx {
                me,
                tx,
                tls: Arc::new(tls),
                known: Arc::default(),
            },
            events,
            cancel,
            tasks: TaskTracker::new(),
            rt,
            conns: HashMap::new(),
            pending: HashMap::new(),
            next_cmd: 0,
            next_accept: 1,
            slots: PendingHandshakes::default(),
            backlog: VecDeque::new(),
        }
    }

    /// Run until cancelled, then close the connections and flush the store.
    pub async fn run(mut self, sockets: Sockets) {
        let (atx, mut arx) = mpsc::channel(DISCOVERY_CAPACITY);
        if let Some(sock) = sockets.discovery {
            let listen = discovery::listen(sock, atx, self.cancel.child_token());
            self.tasks.spawn_on(listen, &self.rt);
        }
        if let (Role::Node, Some((url, scope))) = (self.core.info().role, sockets.announce) {
            let me = self.ctx.me.clone();
            let announce = discovery::announce(me, url, scope, self.cancel.child_token());
            self.tasks.spawn_on(announce, &self.rt);
        }
        self.input(Input::Start);
        let listener = sockets.listener;
        // One timer, moved only when the core's deadline moves (a fresh timer on every
        // turn would cost a timer-wheel insert and removal per message).
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<u64> = None;
        // A second handle on the shell's queue: waiting for room in it must not hold
        // `self`, which every other branch needs.
        let events = self.events.clone();
        let mut uncommitted_turns = 0usize;
        loop {
            // Checked first on every turn: after a lost store nothing else may run.
            if self.cancel.is_cancelled() {
                break;
            }
            let deadline = self.core.poll_timeout();
            if deadline != armed {
                armed = deadline;
                if let Some(d) = deadline {
                    let wait = Duration::from_millis(d.saturating_sub(now_ms()));
                    timer.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                Some((cmd, reply)) = self.commands.recv() => {
                    self.next_cmd += 1;
                    self.pending.insert(self.next_cmd, reply);
                    self.input(Input::Command { id: self.next_cmd, cmd });
                }
                Some(input) = self.conn_rx.recv() => self.input(input),
                Some(a) = arx.recv() => self.input(Input::Announcement(a)),
                Ok(permit) = events.reserve(), if !self.backlog.is_empty() => {
                    if let Some(e) = self.backlog.pop_front() {
                        permit.send(e);
                    }
                }
                // tokio's sleep may wake a little early or late: the clock decides.
                () = &mut timer, if deadline.is_some() => {
                    if deadline.is_some_and(|d| now_ms() >= d) {
                        self.input(Input::Timeout);
                    } else {
                        armed = None; // woke early: arm it again
                    }
                }
                acc = accept(&listener) => match acc {
                    Ok((tcp, addr)) => self.spawn_accept(tcp, addr),
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
            // The group commit: entries received on every link are made durable together
            // once no further message is waiting (or after a bounded number of turns), and
            // only then acknowledged.
            if self.core.wants_commit() {
                uncommitted_turns += 1;
                if self.conn_rx.is_empty() || uncommitted_turns >= GROUP_COMMIT_MAX_TURNS {
                    uncommitted_turns = 0;
                    self.input(Input::Commit);
                }
            }
        }
        // Orderly shutdown: every connection sends its Close, then the store is flushed.
        for h in self.conns.values() {
            h.cancel.cancel();
        }
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.tasks.wait()).await;
        if let Err(e) = self.core.flush() {
            tracing::error!("final flush failed: {e}");
        }
        tracing::info!("instance stopped");
    }

    fn input(&mut self, input: Input) {
        if let Input::Closed { conn, .. } | Input::DialFailed { conn, .. } = &input {
            self.conns.remove(conn);
        }
        let now = self.clock.now();
        for out in self.core.handle(input, now, &mut self.rng) {
            self.execute(out);
        }
    }

    fn execute(&mut self, out: Output) {
        match out {
            Output::Dial {
                conn,
                url,
                expected_key,
                extras,
            } => {
                let (handle, rx, cancel) = connections::conn_parts(&self.cancel);
                self.conns.insert(conn, handle);
                let task = connections::dial(
                    self.ctx.clone(),
                    conn,
                    (url, expected_key, extras),
                    rx,
                    cancel,
                );
                self.tasks.spawn_on(task, &self.rt);
            }
            Output::Send { conn, msg } => self.send(conn, msg),
            Output::Close { conn, code, reason } => {
                self.send(conn, WireMsg::Close { code, reason })
            }
            Output::Disconnect { conn } => {
                if let Some(h) = self.conns.get(&conn) {
                    h.cancel.cancel();
                }
            }
            Output::Reply { id, result } => {
                if let Some(tx) = self.pending.remove(&id) {
                    let _ = tx.send(result);
                }
            }
            Output::Event(e) => self.emit(e),
            Output::KnownPeers(peers) => self.ctx.known.replace(peers),
            Output::Stretch { conn, secret, node } => {
                let tx = self.ctx.tx.clone();
                self.tasks.spawn_on(
                    async move {
                        // Argon2 takes tens of milliseconds of CPU: off the async workers.
                        let stretched = tokio::task::spawn_blocking(move || {
                            stretch_secret(secret.0.as_bytes(), &node)
                        });
                        if let Ok(pw) = stretched.await {
                            let password = Password(pw);
                            let _ = tx.send(Input::Stretched { conn, password }).await;
                        }
                    },
                    &self.rt,
                );
            }
            Output::Stop => self.cancel.cancel(),
        }
    }

    /// Hand an event to the shell, in order; when its queue is full, hold it back.
    fn emit(&mut self, e: Event) {
        if self.backlog.is_empty() {
            match self.events.try_send(e) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(e)) => self.backlog.push_back(e),
            }
        } else {
            self.backlog.push_back(e);
        }
        if self.backlog.len() > EVENT_BACKLOG_MAX {
            self.backlog.pop_front();
            tracing::warn!(
                "the shell has not read {EVENT_BACKLOG_MAX} events: the oldest is dropped"
            );
        }
    }

    fn send(&mut self, conn: ConnId, msg: WireMsg) {
        let Some(h) = self.conns.get(&conn) else {
            return; // the connection ended; the core hears of it
        };
        if h.outbox.try_send(msg).is_err() {
            // The sync window bounds what is queued; a full outbox means a stuck link. The
            // next link resumes from the peer's state.
            tracing::warn!("link outbox full; the sync resumes on reconnect");
            h.cancel.cancel();
        }
    }

    fn spawn_accept(&mut self, tcp: TcpStream, addr: std::net::SocketAddr) {
        let conn = self.next_accept;
        self.next_accept += 2;
        let (slot, evicted) = self.slots.admit(conn, MAX_PENDING_HANDSHAKES);
        if evicted.is_some() {
            tracing::debug!(%addr, "handshake slots full: evicted the oldest handshake");
        }
        let (handle, rx, cancel) = connections::conn_parts(&self.cancel);
        self.conns.insert(conn, handle);
        let task = connections::serve(self.ctx.clone(), tcp, addr, slot, conn, rx, cancel);
        self.tasks.spawn_on(task, &self.rt);
    }
}

async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}
