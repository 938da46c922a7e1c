//! The config file: what a user sets once (name, default role, node URL, listen address,
//! discovery, key bindings, accent colour, time format). TOML, in the platform config
//! directory (`~/.config/lama-tui/config.toml`) or at `--config PATH`. Command-line flags
//! win over the file; the file wins over built-in defaults. Unknown keys are an error naming
//! the key, so a typo is not silently ignored. `docs/config.example.toml` is the commented
//! example (a unit test parses it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Name of the config file inside the platform config directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that cannot be read.
    #[error("cannot read the config file {path}: {source}; fix the path given to --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type.
    #[error("the config file {path} is not valid: {message}; see docs/config.example.toml")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// A key binding names an unknown action or a key that is not one character.
    #[error("the config file {path}: {message}; see docs/config.example.toml")]
    Keys {
        /// The file.
        path: PathBuf,
        /// Which binding is wrong.
        message: String,
    },
}

/// The file's contents; every field optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `node` or `client` (or `browser`).
    pub role: Option<String>,
    /// Person name for a new identity.
    pub name: Option<String>,
    /// The node a client pairs with by trust secret / short code.
    pub node_url: Option<String>,
    /// Node listen address.
    pub listen: Option<String>,
    /// `local`, `lan` or `off`.
    pub discovery: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// PEM certificates trusted for `wss://` besides the system's roots (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Terminal UI preferences.
    #[serde(default)]
    pub ui: UiConfig,
    /// Main-screen key bindings: action name -> one character.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

/// `[ui]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Accent colour of focused borders and names: a colour name or `#rrggbb`.
    pub accent: Option<String>,
    /// `24h` (default), `12h` or `24h-seconds`.
    pub time_format: Option<TimeFormat>,
}

/// How message times are shown.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum TimeFormat {
    /// `14:05`.
    #[default]
    #[serde(rename = "24h")]
    H24,
    /// `2:05pm`.
    #[serde(rename = "12h")]
    H12,
    /// `14:05:09`.
    #[serde(rename = "24h-seconds")]
    H24Seconds,
}

/// Main-screen actions that can be bound, with their default keys. The help popup and the
/// footer show whatever is bound.
pub const ACTIONS: &[(&str, char)] = &[
    ("quit", 'q'),
    ("help", '?'),
    ("pair", 'p'),
    ("accept", 'a'),
    ("export_card", 'e'),
    ("import_card", 'c'),
    ("remove_contact", 'd'),
    ("new_group", 'g'),
    ("members", 'm'),
    ("contact_info", 'i'),
    ("network", 'n'),
];

/// The default key of `action`, if it is one.
pub fn default_key(action: &str) -> Option<char> {
    ACTIONS.iter().find(|(a, _)| *a == action).map(|(_, k)| *k)
}

/// The platform's config file (`~/.config/lama-tui/config.toml` on Linux), if there is a
/// home directory.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "lama-tui").map(|d| d.config_dir().join(CONFIG_FILE))
}

/// Read the config: `explicit` must exist; the default path may be absent (an empty config).
pub fn load(explicit: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>), ConfigError> {
    let (path, must_exist) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok((FileConfig::default(), None)),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((FileConfig::default(), None))
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let cfg = parse(&text, &path)?;
    Ok((cfg, Some(path)))
}

/// Parse and check the text of a config file.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    let cfg: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    let keys_error = |message: String| ConfigError::Keys {
        path: path.to_path_buf(),
        message,
    };
    let mut seen = BTreeMap::new();
    for (action, key) in &cfg.keys {
        if default_key(action).is_none() {
            let known: Vec<&str> = ACTIONS.iter().map(|(a, _)| *a).collect();
            return Err(keys_error(format!(
                "[keys] has an unknown action `{action}`; known: {}",
                known.join(", ")
            )));
        }
        let mut chars = key.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_graphic() => {
                if let Some(other) = seen.insert(c, action.clone()) {
                    return Err(keys_error(format!(
                        "[keys] binds `{c}` to both `{other}` and `{action}`"
                    )));
                }
            }
            _ => {
                return Err(keys_error(format!(
                    "[keys] {action} = {key:?}: a binding is one printable ASCII character"
                )))
            }
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_says_what_it_sets() {
        let text = include_str!("../../docs/config.example.toml");
        let cfg = parse(text, Path::new("docs/config.example.toml")).expect("example is valid");
        assert_eq!(cfg.role.as_deref(), Some("client"));
        assert_eq!(cfg.ui.time_format, Some(TimeFormat::H24));
        assert_eq!(cfg.keys.get("new_group").map(String::as_str), Some("N"));
    }

    #[test]
    fn unknown_keys_and_bad_bindings_are_named() {
        let p = Path::new("c.toml");
        let e = parse("rol = \"node\"", p).unwrap_err().to_string();
        assert!(e.contains("unknown field `rol`"), "{e}");
        let e = parse("[keys]\nfly = \"x\"", p).unwrap_err().to_string();
        assert!(e.contains("unknown action `fly`"), "{e}");
        let e = parse("[keys]\nquit = \"xx\"", p).unwrap_err().to_string();
        assert!(e.contains("one printable ASCII character"), "{e}");
        let e = parse("[keys]\nquit = \"x\"\nhelp = \"x\"", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both `help` and `quit`"), "{e}");
        let e = parse("[ui]\ntime_format = \"13h\"", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("13h"), "{e}");
    }
}
