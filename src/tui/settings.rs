//! The client's settings file, `~/.config/confab/config.toml`:
//!
//! ```toml
//! ignore = ["spammer"]  # /ignore: their room messages are not shown
//!
//! [notifications]
//! sound = "mentions"   # "off", "mentions" (mentions and direct messages) or "all"
//! dnd = false          # do not disturb: no sounds at all
//! muted = ["#random"]  # windows that never make a sound
//! desktop = false      # also ask the terminal for a desktop notification
//!                      # (OSC 777 / OSC 9) on mentions and direct messages
//!
//! [server]
//! default = "alice@chat.example.org"  # what `confab` alone connects to
//!
//! [servers."chat.example.org"]        # per server, as ssh's Host sections
//! user = "alice"
//! ca = "/home/alice/chat-ca.pem"      # as --ca
//!
//! [display]
//! timestamp = "%H:%M"  # strftime, as irssi's timestamp_format
//! borders = true       # false: no frames (copying wrapped URLs is clean)
//!
//! [theme]                          # colour names: red, light blue, #ff8800
//! nicks = ["light green", "light blue", "light magenta"]
//! mention = "light yellow"
//! alert = "light red"
//! link = "light cyan"
//!
//! [paste]
//! confirm_lines = 2    # a paste of this many lines or more asks first
//!
//! [terminal]
//! mouse = false        # capture the mouse (click, wheel); off keeps the
//!                      # terminal's own selection and URL clicking
//! hyperlinks = true    # web addresses as OSC 8 links (whole when wrapped)
//! ```
//!
//! `/sound`, `/mute`, `/unmute`, `/dnd`, `/ignore` and `/unignore` change
//! it and save it.

use super::notify::NotifyRules;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Users whose room messages are hidden (`/ignore`).
    pub ignore: std::collections::BTreeSet<String>,
    /// Sound rules.
    pub notifications: NotifyRules,
    /// Where `confab` alone connects.
    pub server: DefaultServer,
    /// Per-server user names and CAs, by host name.
    pub servers: std::collections::BTreeMap<String, KnownServer>,
    /// How lines look.
    pub display: DisplaySettings,
    /// When pastes ask first.
    pub paste: PasteSettings,
    /// Colours.
    pub theme: ThemeSettings,
    /// How the terminal is used.
    pub terminal: TerminalSettings,
}

/// The `[server]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DefaultServer {
    /// Where `confab` alone connects: `[user@]host[:port]`.
    pub default: Option<String>,
}

/// A `[servers."host"]` section: what to use for that server when the
/// command line does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KnownServer {
    /// The user name there.
    pub user: Option<String>,
    /// A CA certificate to trust for it (as `--ca`).
    pub ca: Option<PathBuf>,
}

/// The `[display]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DisplaySettings {
    /// The timestamp of each line, strftime-style (irssi's
    /// `timestamp_format`): `%H:%M` by default, `%H:%M:%S`, `%d %b %H:%M`...
    pub timestamp: String,
    /// Frames around the window and user lists (off: a borderless layout,
    /// whose lines copy without frame characters).
    pub borders: bool,
}

impl Default for DisplaySettings {
    fn default() -> Self {
        DisplaySettings {
            timestamp: "%H:%M".into(),
            borders: true,
        }
    }
}

/// The `[theme]` section: colour names as cursive reads them (`red`,
/// `light blue`, `#ff8800`, `default`); unset ones keep the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThemeSettings {
    /// Nick colours (each nick always gets the same one of these).
    pub nicks: Vec<String>,
    /// Messages that mention you.
    pub mention: Option<String>,
    /// The "new messages" divider, errors, failed sends.
    pub alert: Option<String>,
    /// File links and search results' window names.
    pub link: Option<String>,
}

impl ThemeSettings {
    /// The colours to draw with, or which name is not a colour.
    pub fn colors(&self) -> Result<crate::tui::view::Colors, String> {
        use cursive::theme::Color;
        let parse = |name: &str| {
            Color::parse(name).ok_or_else(|| format!("[theme]: {name:?} is not a colour"))
        };
        let mut c = crate::tui::view::Colors::default();
        if !self.nicks.is_empty() {
            c.nicks = self
                .nicks
                .iter()
                .map(|n| parse(n))
                .collect::<Result<_, _>>()?;
        }
        for (name, slot) in [
            (&self.mention, &mut c.mention),
            (&self.alert, &mut c.alert),
            (&self.link, &mut c.link),
        ] {
            if let Some(name) = name {
                *slot = parse(name)?;
            }
        }
        Ok(c)
    }
}

/// The `[paste]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasteSettings {
    /// A paste of this many lines or more asks before it is sent (irssi's
    /// `paste_verify_line_count`); a shorter one of several lines is sent
    /// at once as one message. 2 (the default) always asks.
    pub confirm_lines: usize,
}

impl Default for PasteSettings {
    fn default() -> Self {
        PasteSettings { confirm_lines: 2 }
    }
}

/// The `[terminal]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TerminalSettings {
    /// Capture the mouse (off by default, so that selecting text and
    /// clicking URLs work as in any terminal program).
    pub mouse: bool,
    /// Web addresses in messages as OSC 8 hyperlinks (on by default;
    /// terminals that do not know OSC 8 ignore it).
    pub hyperlinks: bool,
}

impl Default for TerminalSettings {
    fn default() -> Self {
        TerminalSettings {
            mouse: false,
            hyperlinks: true,
        }
    }
}

/// `$XDG_CONFIG_HOME/confab/config.toml`, or `~/.config/confab/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    crate::known_hosts::KnownHosts::default_path()
        .and_then(|p| p.parent().map(|d| d.join("config.toml")))
}

impl Settings {
    /// Loads the file; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Settings, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file (creating its directory).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::notify::SoundLevel;

    #[test]
    fn theme_colours_parse_and_a_bad_name_is_an_error() {
        let theme: ThemeSettings =
            toml::from_str("nicks = [\"red\", \"#00ff00\"]\nmention = \"light blue\"\n").unwrap();
        let c = theme.colors().unwrap();
        assert_eq!(c.nicks.len(), 2);
        assert_eq!(
            c.mention,
            cursive::theme::Color::Light(cursive::theme::BaseColor::Blue)
        );
        assert_eq!(c.alert, crate::tui::view::Colors::default().alert);
        let bad: ThemeSettings = toml::from_str("link = \"sparkly\"").unwrap();
        assert!(bad.colors().unwrap_err().contains("sparkly"));
    }

    #[test]
    fn settings_round_trip_and_missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confab/config.toml");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        let mut s = Settings::default();
        s.notifications.sound = SoundLevel::All;
        s.notifications.muted.insert("#random".into());
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), s);
        std::fs::write(&path, "[notifications]\nsound = \"off\"\n").unwrap();
        assert_eq!(
            Settings::load(&path).unwrap().notifications.sound,
            SoundLevel::Off
        );
        std::fs::write(&path, "[notifications]\nsound = \"loud\"\n").unwrap();
        assert!(Settings::load(&path).is_err());
    }
}
