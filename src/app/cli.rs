//! Command-line flags (clap) and their translation into a runtime [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::app::runtime::{Config, Role, TrustSecret};
use crate::net::discovery::Scope;

/// Default listen address of a node (shown as `ws://localhost:8765`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// The role flag; `browser` is accepted as an alias of `client` (the seed's name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Listens for peers on --listen and dials its contacts.
    Node,
    /// Only dials out, never listens.
    #[value(alias = "browser")]
    Client,
}

/// lama-tui: terminal peer-to-peer chat. Two instances pair, find each other's endpoints,
/// connect over an authenticated encrypted channel and keep channels in sync.
#[derive(Debug, Parser)]
#[command(name = "lama-tui", version, about, long_about = None)]
pub struct Args {
    /// Which role this instance plays: `node` listens for peers, `client` (alias `browser`)
    /// only dials out.
    #[arg(long, value_enum)]
    pub role: RoleArg,

    /// Where identity, keys, contacts and messages live. Default: the platform data
    /// directory, one per role (e.g. ~/.local/share/lama-tui/node), so a node and a client
    /// on one machine never share a store.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Person name for a new identity, e.g. demo@lama.local. Used on first start only; the
    /// id is derived from the name and fresh keys, so equal names never collide. Default:
    /// `<role>@lama.local`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Address a node listens on. Port 0 picks a free port (the `ready` event tells which).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// No terminal UI: speak the JSON-lines control protocol on stdin/stdout
    /// (docs/HEADLESS.md). Logs then also go to stderr.
    #[arg(long)]
    pub headless: bool,

    /// Headless only: keep serving when stdin closes (run as a service). Without it, end of
    /// stdin quits, so a provisioned child never outlives its parent.
    #[arg(long)]
    pub detach: bool,

    /// Node: the address this node gives out in invitations, its profile and discovery
    /// announcements, when peers reach it through something else than --listen (a port
    /// forward, a reverse proxy, a tunnel). Default: ws://<the --listen address>.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Let peers that are not contacts connect without an invitation. They get nothing
    /// that was not explicitly shared with them.
    #[arg(long)]
    pub accept_unknown: bool,

    /// Local discovery: `local` announces/listens on this machine only (loopback), `lan`
    /// uses multicast on the local network, `off` disables it.
    #[arg(long, value_enum, default_value = "local")]
    pub discovery: DiscoveryArg,

    /// Client only: start (or reuse) a node of our own as a child process on this machine,
    /// pair with it over its stdio and connect, with no user action.
    #[arg(long)]
    pub provision_node: bool,

    /// With --provision-node: leave the node running when this client quits.
    #[arg(long, requires = "provision_node")]
    pub keep_node: bool,

    /// Trust instances that know the same secret: asks for it on the terminal (not echoed)
    /// unless LAMA_TRUST_SECRET is set. A client with a secret and no contacts pairs with
    /// the node at --node-url on start; a node lets such clients pair. The secret never
    /// crosses the wire: both sides run a PAKE over it.
    #[arg(long)]
    pub trust_secret: bool,

    /// The node a client pairs with by trust secret, and where short codes are used when
    /// no address is given.
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE_URL)]
    pub node_url: String,
}

/// Where a client looks for its node by default.
pub const DEFAULT_NODE_URL: &str = "ws://localhost:8765";

/// Environment variable holding the trust secret.
pub const TRUST_SECRET_ENV: &str = "LAMA_TRUST_SECRET";

/// The `--discovery` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryArg {
    /// This machine only.
    Local,
    /// Local network multicast.
    Lan,
    /// No discovery.
    Off,
}

impl Args {
    /// The runtime configuration; the passphrase comes from `LAMA_PASSPHRASE`.
    pub fn config(&self) -> Result<Config, String> {
        if self.provision_node && self.role != RoleArg::Client {
            return Err("--provision-node is for a client: it starts a node of its own".into());
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) || u.len() > 200 {
                return Err(format!(
                    "--public-url must be a ws:// or wss:// URL of at most 200 bytes, e.g. ws://example.org:8765; got {u:?}"
                ));
            }
            if self.role != RoleArg::Node {
                return Err("--public-url is for a node: a client does not listen".into());
            }
        }
        let role = match self.role {
            RoleArg::Node => Role::Node,
            RoleArg::Client => Role::Client,
        };
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => directories::ProjectDirs::from("", "", "lama-tui")
                .ok_or("no home directory found to keep data in; pass --data-dir DIR")?
                .data_dir()
                .join(role.as_str()),
        };
        Ok(Config {
            role,
            data_dir,
            name: self.name.clone(),
            listen: self.listen,
            passphrase: std::env::var("LAMA_PASSPHRASE")
                .ok()
                .filter(|p| !p.is_empty()),
            accept_unknown: self.accept_unknown,
            trust_secret: std::env::var(TRUST_SECRET_ENV)
                .ok()
                .filter(|p| !p.is_empty())
                .map(|s| TrustSecret(zeroize::Zeroizing::new(s))),
            node_url: self.node_url.clone(),
            public_url: self.public_url.clone(),
            discovery: match self.discovery {
                DiscoveryArg::Local => Scope::Local,
                DiscoveryArg::Lan => Scope::Lan,
                DiscoveryArg::Off => Scope::Off,
            },
        })
    }
}

/// Ask for the trust secret on the terminal without echoing it. Only the edge calls this:
/// a secret passed as a flag value would stay in shell history.
pub fn prompt_trust_secret() -> Result<String, String> {
    use crossterm::event::{read, Event, KeyCode, KeyEventKind, KeyModifiers};
    use std::io::Write;
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(format!(
            "--trust-secret asks for the secret on a terminal, and stdin is not one; set {TRUST_SECRET_ENV} instead"
        ));
    }
    eprint!("trust secret (not shown): ");
    let _ = std::io::stderr().flush();
    crossterm::terminal::enable_raw_mode().map_err(|e| format!("cannot read the secret: {e}"))?;
    let mut secret = String::new();
    let result = loop {
        match read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err("cancelled".to_string())
                }
                KeyCode::Char(c) => secret.push(c),
                KeyCode::Backspace => {
                    secret.pop();
                }
                KeyCode::Esc => break Err("cancelled".to_string()),
                _ => {}
            },
            Ok(_) => {}
            Err(e) => break Err(format!("cannot read the secret: {e}")),
        }
    };
    let _ = crossterm::terminal::disable_raw_mode();
    eprintln!();
    result?;
    if secret.is_empty() {
        return Err(
            "an empty trust secret trusts no one; give a secret or drop --trust-secret".into(),
        );
    }
    Ok(secret)
}
