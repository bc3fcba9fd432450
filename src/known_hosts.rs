//! Trust on first use, as ssh does it: the certificate fingerprints of
//! servers the user has accepted, in `~/.config/confab/known_hosts`.
//!
//! One line per server: `host:port SHA256-fingerprint` (the fingerprint as
//! `AA:BB:...`, see `tls::fingerprint`). Lines starting with `#` and blank
//! lines are ignored. A host whose certificate no longer matches is refused
//! until the user removes its line.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What the file says about a server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStatus {
    /// The fingerprint matches the remembered one.
    Trusted,
    /// The server is not in the file.
    Unknown,
    /// The server is in the file with another fingerprint.
    Changed {
        /// The remembered fingerprint.
        expected: String,
        /// The line number of the entry, for the message telling how to fix it.
        line: usize,
    },
}

/// The known-hosts file, loaded.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<(usize, String, String)>,
}

impl KnownHosts {
    /// `$XDG_CONFIG_HOME/confab/known_hosts`, or `~/.config/confab/known_hosts`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("confab").join("known_hosts"))
    }

    /// Loads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> std::io::Result<KnownHosts> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    return None;
                }
                let (host, fp) = line.split_once(char::is_whitespace)?;
                Some((i + 1, host.to_owned(), fp.trim().to_owned()))
            })
            .collect();
        Ok(KnownHosts {
            path: path.to_owned(),
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `fingerprint` for `host_port` (e.g. `chat.example.org:7878`).
    pub fn check(&self, host_port: &str, fingerprint: &str) -> HostStatus {
        match self.entries.iter().find(|(_, h, _)| h == host_port) {
            None => HostStatus::Unknown,
            Some((_, _, fp)) if fp.eq_ignore_ascii_case(fingerprint) => HostStatus::Trusted,
            Some((line, _, fp)) => HostStatus::Changed {
                expected: fp.clone(),
                line: *line,
            },
        }
    }

    /// Remembers `fingerprint` for `host_port`, appending to the file
    /// (created with its directory if needed, readable by the user only).
    pub fn add(&mut self, host_port: &str, fingerprint: &str) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&self.path)?;
        writeln!(file, "{host_port} {fingerprint}")?;
        let line = std::fs::read_to_string(&self.path)?.lines().count();
        self.entries
            .push((line, host_port.to_owned(), fingerprint.to_owned()));
        Ok(())
    }
}

/// The loud refusal shown when a server's certificate changed, modelled on
/// ssh's "REMOTE HOST IDENTIFICATION HAS CHANGED".
pub fn changed_warning(
    host_port: &str,
    expected: &str,
    got: &str,
    path: &Path,
    line: usize,
) -> String {
    format!(
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: SERVER CERTIFICATE HAS CHANGED!             @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
         It is also possible that the server's certificate has just been replaced.\n\
         The SHA-256 fingerprint of the certificate sent by {host_port} is\n  {got}\n\
         but {} line {line} remembers\n  {expected}\n\
         If you know the change is legitimate, remove line {line} from that file\n\
         and connect again. Connection refused.",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_is_unknown_then_trusted_and_a_change_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let mut kh = KnownHosts::load(&path).unwrap();
        assert_eq!(kh.check("h:1", "AA:BB"), HostStatus::Unknown);
        kh.add("other:2", "CC:DD").unwrap();
        kh.add("h:1", "AA:BB").unwrap();
        let kh = KnownHosts::load(&path).unwrap();
        assert_eq!(kh.check("h:1", "aa:bb"), HostStatus::Trusted);
        assert_eq!(
            kh.check("h:1", "EE:FF"),
            HostStatus::Changed {
                expected: "AA:BB".into(),
                line: 2
            }
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        std::fs::write(&path, "# confab known hosts\n\nh:1 AA\n").unwrap();
        let kh = KnownHosts::load(&path).unwrap();
        assert_eq!(kh.check("h:1", "AA"), HostStatus::Trusted);
        assert!(changed_warning("h:1", "AA", "BB", &path, 3).contains("remove line 3"));
    }
}
