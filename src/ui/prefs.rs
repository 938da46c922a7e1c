//! What the config file sets for the terminal UI: the accent colour, the time format and
//! the main-screen key bindings. The footer and the help popup read the bindings from here,
//! so what they advertise is what works.

use std::str::FromStr;

use ratatui::style::Color;

use crate::app::config::{FileConfig, TimeFormat, ACTIONS};

/// The UI's preferences (defaults: cyan, 24h, the built-in keys).
#[derive(Clone, Debug, PartialEq)]
pub struct Prefs {
    /// Focused borders, the role label, our own name.
    pub accent: Color,
    /// Message times.
    pub time_format: TimeFormat,
    /// Main-screen bindings.
    pub keys: Keymap,
    /// Times are shown in this zone: the system's in the app (set by the terminal
    /// shell), UTC until then, so tests and snapshots do not depend on the machine.
    pub tz: jiff::tz::TimeZone,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            accent: Color::Cyan,
            time_format: TimeFormat::H24,
            keys: Keymap::default(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }
}

impl Prefs {
    /// From the config file (already checked by `config::parse`, except the colour).
    pub fn from_file(file: &FileConfig) -> Result<Prefs, String> {
        let accent = match &file.ui.accent {
            None => Color::Cyan,
            Some(a) => Color::from_str(a).map_err(|_| {
                format!("the config file's [ui] accent = {a:?} is not a colour; use a name such as \"cyan\" or \"#rrggbb\"")
            })?,
        };
        let mut keys = Keymap::default();
        for (action, key) in &file.keys {
            let c = key.chars().next().ok_or("[keys]: an empty binding")?;
            keys.bind(action, c)?;
        }
        if let Some((a, b, k)) = keys.conflict() {
            return Err(format!(
                "[keys]: `{k}` would start both {a} and {b}; bind one of them to another key"
            ));
        }
        Ok(Prefs {
            accent,
            time_format: file.ui.time_format.unwrap_or_default(),
            keys,
            tz: jiff::tz::TimeZone::UTC,
        })
    }
}

/// Action -> key, starting from [`ACTIONS`].
#[derive(Clone, Debug, PartialEq)]
pub struct Keymap {
    bound: Vec<(&'static str, char)>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap {
            bound: ACTIONS.to_vec(),
        }
    }
}

impl Keymap {
    /// Bind `action` to `key`.
    pub fn bind(&mut self, action: &str, key: char) -> Result<(), String> {
        let slot = self
            .bound
            .iter_mut()
            .find(|(a, _)| *a == action)
            .ok_or_else(|| format!("[keys]: unknown action `{action}`"))?;
        slot.1 = key;
        Ok(())
    }

    /// The key bound to `action`.
    pub fn key(&self, action: &str) -> char {
        self.bound
            .iter()
            .find(|(a, _)| *a == action)
            .map(|(_, k)| *k)
            .expect("every key lookup names an action of ACTIONS")
    }

    /// Two actions on one key (a binding that takes another action's default, say).
    pub fn conflict(&self) -> Option<(&'static str, &'static str, char)> {
        self.bound.iter().enumerate().find_map(|(i, (a, k))| {
            self.bound[i + 1..]
                .iter()
                .find(|(_, k2)| k2 == k)
                .map(|(b, _)| (*a, *b, *k))
        })
    }

    /// The built-in key of the action `c` is bound to, or `None` when `c` starts no action
    /// (a rebound default key then moves and navigates as any other key).
    pub fn action_key(&self, c: char) -> Option<char> {
        let i = self.bound.iter().position(|(_, k)| *k == c)?;
        Some(ACTIONS[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebound_action_moves_and_its_old_key_starts_nothing() {
        let mut k = Keymap::default();
        k.bind("new_group", 'N').expect("known action");
        assert_eq!(k.action_key('N'), Some('g'));
        assert_eq!(k.action_key('g'), None);
        assert_eq!(k.action_key('q'), Some('q'));
        assert_eq!(k.key("new_group"), 'N');
        assert_eq!(k.conflict(), None);
    }

    #[test]
    fn a_key_that_would_start_two_actions_is_refused_by_name() {
        let mut f = FileConfig::default();
        // `n` is the network view's key unless that moves too.
        f.keys.insert("new_group".into(), "n".into());
        let e = Prefs::from_file(&f).unwrap_err();
        assert!(
            e.contains("`n`") && e.contains("new_group") && e.contains("network"),
            "{e}"
        );
        f.keys.insert("network".into(), "w".into());
        assert!(Prefs::from_file(&f).is_ok());
    }

    #[test]
    fn colours_by_name_and_hex() {
        let mut f = FileConfig::default();
        f.ui.accent = Some("#ff8800".into());
        assert_eq!(
            Prefs::from_file(&f).expect("hex").accent,
            Color::Rgb(255, 136, 0)
        );
        f.ui.accent = Some("chartreuse-ish".into());
        let e = Prefs::from_file(&f).unwrap_err();
        assert!(e.contains("not a colour"), "{e}");
    }
}
