//! Command-line flags (clap), subcommands, and their merge with the config file into a
//! runtime [`Config`]: a flag wins over the file, the file over the default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::config::{self, FileConfig};

use crate::app::runtime::{Config, Role, TrustSecret};
use crate::net::discovery::Scope;
use crate::net::tls::TlsFiles;

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

/// `--version`: the program's version and the wire protocol it speaks (docs/PROTOCOL.md).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (protocol 1)");

/// Shown by a bare `lama-tui` (no role on the command line or in the config file).
pub const QUICK_START: &str = "\
lama-tui: terminal peer-to-peer chat. Two ways to begin:

  lama-tui --role client --provision-node
      a client that starts a node of its own on this machine, pairs with it and connects
      (the usual start: press p to invite a contact, a to accept a code)

  lama-tui --role node
      an always-on node that listens on ws://localhost:8765 (put it on a machine that
      stays up; its clients and contacts dial it)

Set `role = \"client\"` in the config file to skip this (lama-tui paths shows where it is).
More: lama-tui -h (short), lama-tui --help (everything), lama-tui doctor (checks).
";

/// Printed after the full `--help`.
const LONG_AFTER: &str = "\
ENVIRONMENT:
  LAMA_PASSPHRASE     seals the secret keys (Argon2id + ChaCha20-Poly1305); needed on every start
  LAMA_TRUST_SECRET   the shared trust secret (instead of the --trust-secret prompt)
  LAMA_CONFIG         the config file, when --config is not given
  RUST_LOG            log filter (default: info), e.g. RUST_LOG=debug

FILES (`lama-tui paths` prints them for this machine):
  config    ~/.config/lama-tui/config.toml (TOML; see docs/config.example.toml)
  data      ~/.local/share/lama-tui/<role>/: identity.key (mode 0600) and the store
  logs      ~/.local/state/lama-tui/<role>/lama-tui.YYYY-MM-DD.log, one file a day, 7 kept;
            with --data-dir the logs go to <DIR>/lama-tui.YYYY-MM-DD.log instead

Subcommands: doctor (check this machine, each failure with its fix), paths, completions
bash|zsh|fish|elvish|powershell, man (a roff man page on stdout).";

/// lama-tui: terminal peer-to-peer chat
///
/// Instances pair, find each other's endpoints, connect over an authenticated encrypted
/// channel (Noise over WebSocket) and keep chat channels in sync. A node listens and is
/// always on; a client only dials out.
#[derive(Debug, Parser)]
#[command(
    name = "lama-tui",
    version = VERSION,
    after_help = "Run `lama-tui --help` for the environment, the files and every detail.",
    after_long_help = LONG_AFTER
)]
pub struct Args {
    /// A tool instead of the chat (doctor, paths, completions, man).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// node (listens) or client (alias browser; only dials out)
    ///
    /// Which role this instance plays: `node` listens for peers, `client` (alias `browser`)
    /// only dials out. Default: `role` in the config file; with neither, a quick start is
    /// printed.
    #[arg(long, value_enum, global = true)]
    pub role: Option<RoleArg>,

    /// Config file (TOML)
    ///
    /// The config file to read instead of the platform one (~/.config/lama-tui/config.toml,
    /// or $LAMA_CONFIG). It must exist. Flags given on the command line win over it.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// Where identity, keys, contacts and messages live
    ///
    /// Default: the platform data directory, one per role (e.g.
    /// ~/.local/share/lama-tui/node), so a node and a client on one machine never share a
    /// store.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Person name for a new identity
    ///
    /// E.g. demo@lama.local. Used on first start only; the id is derived from the name and
    /// fresh keys, so equal names never collide. Default: `<role>@lama.local`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Address a node listens on [default: 127.0.0.1:8765]
    ///
    /// Port 0 picks a free port (the `ready` event tells which). Default: `listen` in the
    /// config file, else 127.0.0.1:8765.
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub listen: Option<SocketAddr>,

    /// JSON lines on stdin/stdout instead of the terminal UI
    ///
    /// Speak the control protocol of docs/HEADLESS.md on stdin/stdout. Logs then also go to
    /// stderr.
    #[arg(long)]
    pub headless: bool,

    /// Headless: keep serving when stdin closes
    ///
    /// Run as a service. Without it, end of stdin quits, so a provisioned child never
    /// outlives its parent.
    #[arg(long)]
    pub detach: bool,

    /// Node: the URL given out in invitations and announcements
    ///
    /// For peers that reach this node through something else than --listen (a port
    /// forward, a reverse proxy, a tunnel). Default: ws://<the --listen address>.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Let peers that are not contacts connect
    ///
    /// They connect without an invitation and get nothing that was not explicitly shared
    /// with them.
    #[arg(long)]
    pub accept_unknown: bool,

    /// Local discovery: local, lan or off [default: local]
    ///
    /// `local` announces/listens on this machine only (loopback), `lan` uses multicast on
    /// the local network, `off` disables it. Default: `discovery` in the config file, else
    /// local.
    #[arg(long, value_enum, global = true)]
    pub discovery: Option<DiscoveryArg>,

    /// Client: start a node of our own and pair with it
    ///
    /// Start (or reuse) a node as a child process on this machine, pair with it over its
    /// stdio and connect, with no user action.
    #[arg(long)]
    pub provision_node: bool,

    /// With --provision-node: leave the node running on quit
    #[arg(long, requires = "provision_node")]
    pub keep_node: bool,

    /// With --provision-node: where the node listens [default: a free loopback port]
    ///
    /// e.g. 0.0.0.0:8765 so other machines can reach it (its codes then carry this
    /// machine's addresses).
    #[arg(long, value_name = "HOST:PORT", requires = "provision_node")]
    pub node_listen: Option<std::net::SocketAddr>,

    /// With --provision-node: the URL the node gives out (its --public-url)
    #[arg(long, value_name = "URL", requires = "provision_node")]
    pub node_public_url: Option<String>,

    /// Trust instances that know the same secret
    ///
    /// Asks for it on the terminal (not echoed) unless LAMA_TRUST_SECRET is set. A client
    /// with a secret and no contacts pairs with the node at --node-url on start; a node lets
    /// such clients pair. The secret never crosses the wire: both sides run a PAKE over it.
    #[arg(long)]
    pub trust_secret: bool,

    /// Trust the certificates in this PEM file for wss:// endpoints
    ///
    /// Besides the system's roots: a private CA, or a node's self-signed certificate (then
    /// trusted as exactly itself). Default: `ca_file` in the config file.
    #[arg(long, value_name = "PEM", global = true)]
    pub ca_file: Option<PathBuf>,

    /// Node: serve wss:// with this certificate chain (PEM, leaf first)
    ///
    /// Needs --tls-key. The node's URLs then start with wss://. Behind a reverse proxy that
    /// ends TLS, use --public-url wss://… instead.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Node: the private key of --tls-cert (PEM)
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The node a client pairs with [default: ws://localhost:8765]
    ///
    /// The node a client pairs with by trust secret, and where short codes are used when no
    /// address is given. Default: `node_url` in the config file, else ws://localhost:8765.
    #[arg(long, value_name = "URL")]
    pub node_url: Option<String>,
}

/// The tools beside the chat.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check this machine: data dir, keys, store, port, contacts' endpoints, clock, terminal
    ///
    /// Each check prints ok, warn or FAIL, and a failure says how to fix it. The exit
    /// status is 1 when a check fails. Uses --role (default client), --data-dir and the
    /// config file like the chat does; LAMA_PASSPHRASE if the keys are sealed.
    Doctor,
    /// Print the files and directories lama-tui uses
    Paths,
    /// Print a shell completion script (e.g. `lama-tui completions bash > ~/.local/share/bash-completion/completions/lama-tui`)
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `lama-tui man | man -l -`
    Man,
}

/// Where a client looks for its node by default.
pub const DEFAULT_NODE_URL: &str = "ws://localhost:8765";

/// Environment variable holding the trust secret.
pub const TRUST_SECRET_ENV: &str = "LAMA_TRUST_SECRET";

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "LAMA_CONFIG";

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

/// Everything a start needs: the runtime config and the UI preferences, after flags, the
/// config file and defaults are merged (in that order of precedence).
#[derive(Debug)]
pub struct Settings {
    /// The runtime configuration.
    pub config: Config,
    /// The config file's `[ui]` and `[keys]` (and where it was read from).
    pub file: FileConfig,
    /// The config file read, if any.
    pub file_path: Option<PathBuf>,
}

/// The config file to read: `--config`, else `$LAMA_CONFIG`, else the platform one.
pub fn config_path(args: &Args) -> Option<PathBuf> {
    args.config.clone().or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

impl Args {
    /// Read the config file and merge. `Ok(None)`: no role anywhere (print the quick start).
    pub fn settings(&self) -> Result<Option<Settings>, String> {
        let explicit = config_path(self);
        let (file, file_path) = config::load(explicit.as_deref()).map_err(|e| e.to_string())?;
        let role = match (self.role, &file.role) {
            (Some(r), _) => r,
            (None, Some(r)) => RoleArg::from_str(r, true).map_err(|_| {
                format!("the config file says role = {r:?}; use \"node\" or \"client\"")
            })?,
            (None, None) => return Ok(None),
        };
        let config = self.config_with(role, &file)?;
        Ok(Some(Settings {
            config,
            file,
            file_path,
        }))
    }

    /// The runtime configuration for `role`, flags first, then `file`, then defaults; the
    /// passphrase comes from `LAMA_PASSPHRASE`.
    pub fn config_with(&self, role: RoleArg, file: &FileConfig) -> Result<Config, String> {
        if self.provision_node && role != RoleArg::Client {
            return Err("--provision-node is for a client: it starts a node of its own".into());
        }
        if let Some(u) = &self.node_public_url {
            check_public_url("--node-public-url", u)?;
        }
        if let Some(u) = &self.public_url {
            check_public_url("--public-url", u)?;
            if role != RoleArg::Node {
                return Err("--public-url is for a node: a client does not listen".into());
            }
        }
        if self.tls_cert.is_some() && role != RoleArg::Node {
            return Err("--tls-cert and --tls-key are for a node: a client does not listen (it trusts a node's certificate with --ca-file)".into());
        }
        let role = match role {
            RoleArg::Node => Role::Node,
            RoleArg::Client => Role::Client,
        };
        let listen = match (self.listen, &file.listen) {
            (Some(l), _) => l,
            (None, Some(l)) => l.parse().map_err(|_| {
                format!("the config file says listen = {l:?}; give HOST:PORT, e.g. 127.0.0.1:8765")
            })?,
            (None, None) => DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is an address"),
        };
        let discovery = match (self.discovery, &file.discovery) {
            (Some(d), _) => d,
            (None, Some(d)) => DiscoveryArg::from_str(d, true).map_err(|_| {
                format!("the config file says discovery = {d:?}; use local, lan or off")
            })?,
            (None, None) => DiscoveryArg::Local,
        };
        let data_dir = match self.data_dir.as_ref().or(file.data_dir.as_ref()) {
            Some(d) => d.clone(),
            None => default_data_dir(role)?,
        };
        Ok(Config {
            role,
            data_dir,
            name: self.name.clone().or_else(|| file.name.clone()),
            listen,
            passphrase: std::env::var("LAMA_PASSPHRASE")
                .ok()
                .filter(|p| !p.is_empty()),
            accept_unknown: self.accept_unknown,
            trust_secret: std::env::var(TRUST_SECRET_ENV)
                .ok()
                .filter(|p| !p.is_empty())
                .map(|s| TrustSecret(zeroize::Zeroizing::new(s))),
            node_url: self
                .node_url
                .clone()
                .or_else(|| file.node_url.clone())
                .unwrap_or_else(|| DEFAULT_NODE_URL.into()),
            public_url: self.public_url.clone(),
            tls: TlsFiles {
                ca_file: self.ca_file.clone().or_else(|| file.ca_file.clone()),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            },
            discovery: match discovery {
                DiscoveryArg::Local => Scope::Local,
                DiscoveryArg::Lan => Scope::Lan,
                DiscoveryArg::Off => Scope::Off,
            },
        })
    }
}

/// A URL given out to peers (`flag` names where it came from): ws:// or wss://, short.
fn check_public_url(flag: &str, u: &str) -> Result<(), String> {
    if !(u.starts_with("ws://") || u.starts_with("wss://")) || u.len() > 200 {
        return Err(format!(
            "{flag} must be a ws:// or wss:// URL of at most 200 bytes, e.g. ws://example.org:8765; got {u:?}"
        ));
    }
    Ok(())
}

/// The platform data directory of `role` (`~/.local/share/lama-tui/<role>`).
pub fn default_data_dir(role: Role) -> Result<PathBuf, String> {
    Ok(project_dirs()?.data_dir().join(role.as_str()))
}

/// Where logs go: `<data dir>` when `--data-dir` (or the file's `data_dir`) chose one, so
/// one instance's files stay together; else the platform state directory
/// (`~/.local/state/lama-tui/<role>`).
pub fn log_dir(cfg: &Config, data_dir_chosen: bool) -> PathBuf {
    if data_dir_chosen {
        return cfg.data_dir.clone();
    }
    match project_dirs() {
        Ok(d) => d
            .state_dir()
            .unwrap_or_else(|| d.data_local_dir())
            .join(cfg.role.as_str()),
        Err(_) => cfg.data_dir.clone(),
    }
}

fn project_dirs() -> Result<directories::ProjectDirs, String> {
    directories::ProjectDirs::from("", "", "lama-tui")
        .ok_or_else(|| "no home directory found to keep data in; pass --data-dir DIR".into())
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
