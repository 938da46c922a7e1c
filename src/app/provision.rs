//! Local trust (the seed's `provision:node`): a client starts a node of its own as a child
//! process, talks to it over its stdin/stdout (the trusted channel), takes an invitation
//! from it and accepts it. The child quits when its stdin closes, i.e. when we quit.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;

use crate::app::runtime::{CommandError, Handle};
use crate::domain::Via;

/// Time allowed for the child to print `ready` and answer `invite`.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(15);
/// Sub-directory of the client's data dir that holds the provisioned node.
pub const NODE_SUBDIR: &str = "node";

/// Errors of provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The child could not be started.
    #[error("cannot start the node process ({0}); is the lama-tui binary still in place?")]
    Spawn(std::io::Error),
    /// The child exited before it was ready.
    #[error("the provisioned node failed to start: {0}")]
    ChildFailed(String),
    /// The child did not answer in time.
    #[error("the provisioned node did not answer within {CHILD_TIMEOUT:?}; see the newest lama-tui.*.log in {0}")]
    Timeout(PathBuf),
    /// A node runs for this data dir already but we hold no pairing with it.
    #[error("a node is already running for {0} but this client is not paired with it; stop that node and try again")]
    ForeignNode(PathBuf),
    /// Pairing with the child failed.
    #[error("pairing with the provisioned node failed: {0}")]
    Pairing(#[from] CommandError),
}

/// The outcome of provisioning.
#[derive(Debug)]
pub struct Provisioned {
    /// The node's person id.
    pub person_id: String,
    /// Its endpoint, if we started it.
    pub endpoint: Option<String>,
    /// Verification string of a fresh pairing.
    pub verification: Option<String>,
    /// Whether an already running node was reused.
    pub reused: bool,
    /// The child, if we started one.
    pub guard: Option<NodeGuard>,
}

/// Owns the child process; dropping its stdin stops it.
#[derive(Debug)]
pub struct NodeGuard {
    stdin: Option<ChildStdin>,
    /// Resolves when the child exits.
    pub exited: oneshot::Receiver<std::io::Result<ExitStatus>>,
    keep: bool,
}

impl NodeGuard {
    /// Stop the child (close its stdin) and wait for it, unless it is to keep running.
    pub async fn stop(mut self) {
        if self.keep {
            return;
        }
        self.stdin = None;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.exited).await;
    }
}

async fn read_event(
    lines: &mut tokio::io::Lines<BufReader<ChildStdout>>,
    dir: &Path,
    want: impl Fn(&Value) -> bool,
) -> Result<Option<Value>, ProvisionError> {
    let step = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if want(&v) {
                    return Some(v);
                }
            }
        }
        None
    };
    tokio::time::timeout(CHILD_TIMEOUT, step)
        .await
        .map_err(|_| ProvisionError::Timeout(dir.to_path_buf()))
}

/// What `--provision-node` asks of the shell.
#[derive(Clone, Debug)]
pub struct ProvisionCfg {
    /// The client's data dir (the node lives beneath it).
    pub client_dir: PathBuf,
    /// Leave the node running after we quit.
    pub keep: bool,
    /// Where the node listens (`--node-listen`; default a free loopback port).
    pub listen: Option<std::net::SocketAddr>,
    /// How the node is reached from outside (`--node-public-url`).
    pub public_url: Option<String>,
    /// What the node trusts for `wss://` (our `--ca-file`, passed on).
    pub ca_file: Option<PathBuf>,
}

/// Start (or reuse) our node and pair with it.
pub async fn provision(handle: &Handle, p: &ProvisionCfg) -> Result<Provisioned, ProvisionError> {
    let dir = p.client_dir.join(NODE_SUBDIR);
    let mut child = spawn_node(&dir, p)?;
    let stdout = child.stdout.take().expect("invariant: stdout was piped");
    let mut stderr = child.stderr.take().expect("invariant: stderr was piped");
    let mut stdin = child.stdin.take();
    let mut lines = BufReader::new(stdout).lines();
    let ready = read_event(&mut lines, &dir, |v| v["event"] == "ready").await?;
    let Some(ready) = ready else {
        let mut err = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut err)).await;
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("no reason given")
            .trim_start_matches("error: ")
            .to_string();
        if line.contains("in use by another running lama-tui") {
            return reuse(handle, &dir).await;
        }
        return Err(ProvisionError::ChildFailed(line));
    };
    // The child's stderr carries its log lines; drain it so it never blocks on a full pipe.
    tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut stderr, &mut sink).await;
    });
    let person_id = ready["person_id"].as_str().unwrap_or_default().to_string();
    let endpoint = ready["endpoint"].as_str().map(str::to_string);
    let known = handle
        .contacts()
        .await?
        .into_iter()
        .any(|c| c.contact.person_id() == person_id);
    let mut verification = None;
    if known {
        if let Some(url) = &endpoint {
            handle.trust_endpoint(person_id.clone(), url.clone()).await;
        }
    } else {
        let w = stdin.as_mut().expect("invariant: stdin was piped");
        verification = Some(pair_over_stdio(handle, w, &mut lines, &dir).await?);
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        // Drain stdout (the node's events) so the child never blocks, then report its exit.
        while let Ok(Some(_)) = lines.next_line().await {}
        let _ = tx.send(child.wait().await);
    });
    Ok(Provisioned {
        person_id,
        endpoint,
        verification,
        reused: false,
        guard: Some(NodeGuard {
            stdin,
            exited: rx,
            keep: p.keep,
        }),
    })
}

/// The node process: headless, in `dir`, listening where `p` says (default a free loopback
/// port); killed with the client unless `p.keep`.
fn spawn_node(dir: &Path, p: &ProvisionCfg) -> Result<Child, ProvisionError> {
    let exe = std::env::current_exe().map_err(ProvisionError::Spawn)?;
    let mut cmd = Command::new(exe);
    let listen = p
        .listen
        .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
    cmd.args([
        "--role",
        "node",
        "--headless",
        "--listen",
        &listen,
        "--data-dir",
    ])
    .arg(dir)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(!p.keep);
    if let Some(u) = &p.public_url {
        cmd.args(["--public-url", u]);
    }
    if let Some(f) = &p.ca_file {
        cmd.arg("--ca-file").arg(f);
    }
    if p.keep {
        cmd.arg("--detach");
    }
    cmd.spawn().map_err(ProvisionError::Spawn)
}

/// Ask the node for an invitation over its stdin (the trusted channel) and accept it as
/// our replica; the verification string.
async fn pair_over_stdio(
    handle: &Handle,
    stdin: &mut ChildStdin,
    lines: &mut tokio::io::Lines<BufReader<ChildStdout>>,
    dir: &Path,
) -> Result<String, ProvisionError> {
    let ask = b"{\"cmd\":\"invite\",\"id\":\"provision\",\"ttl_secs\":60}\n";
    let _ = stdin.write_all(ask).await;
    let _ = stdin.flush().await;
    let ev = read_event(lines, dir, |v| v["id"] == "provision").await?;
    let code = ev
        .as_ref()
        .and_then(|v| v["code"].as_str())
        .ok_or_else(|| ProvisionError::ChildFailed("the node gave no invitation".into()))?
        .to_string();
    let paired = handle.accept(code, Via::Provision, true).await?;
    Ok(paired.verification)
}

async fn reuse(handle: &Handle, dir: &Path) -> Result<Provisioned, ProvisionError> {
    let contact = handle
        .contacts()
        .await?
        .into_iter()
        .find(|c| c.contact.via == Via::Provision)
        .ok_or_else(|| ProvisionError::ForeignNode(dir.to_path_buf()))?;
    Ok(Provisioned {
        person_id: contact.contact.person_id().to_string(),
        endpoint: contact.contact.endpoints.first().map(|e| e.url.clone()),
        verification: None,
        reused: true,
        guard: None,
    })
}
