//! Server configuration: command-line flags, environment variables, a TOML
//! file, and defaults, in that order of precedence.
//!
//! Every setting has a flag (`confab-server --help` lists them), an
//! environment variable `CONFAB_<NAME>`, and a TOML key of the same name in
//! the file given by `--config`.

use clap::{Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file {path}: {err}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        err: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Command-line flags of `confab-server`.
#[derive(Debug, Parser, Default)]
#[command(
    name = "confab-server",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CONFAB_COMMIT"), ")"),
    about = "The confab secure chat server"
)]
pub struct ServerArgs {
    /// Print a man page or shell completions (man, bash, zsh, fish) and
    /// exit (`make man`).
    #[arg(long, hide = true, value_name = "WHAT")]
    pub generate: Option<String>,
    /// TOML file with settings (flags and environment override it).
    #[arg(long, env = "CONFAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (printed at start). [default: 127.0.0.1:7878]
    #[arg(long, env = "CONFAB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Also serve IRC clients (irssi, weechat, senpai) over TLS on this
    /// address, with the same certificate (docs/IRC.md); usually port 6697.
    /// Off unless given.
    #[arg(long, env = "CONFAB_IRC_LISTEN")]
    pub irc_listen: Option<SocketAddr>,
    /// Also serve IRC without TLS on this loopback address (127.0.0.1 or
    /// ::1 only; for tests, irctest and local bridges). Off unless given.
    #[arg(long, env = "CONFAB_IRC_LISTEN_PLAIN")]
    pub irc_listen_plain: Option<SocketAddr>,
    /// The server's name on IRC (the source of its numerics, PONG, the
    /// host part of every nick!user@host), usually its host name. [default: confab]
    #[arg(long, env = "CONFAB_IRC_SERVER_NAME")]
    pub irc_server_name: Option<String>,
    /// SQLite database file (created if missing), or a PostgreSQL URL
    /// (postgres://user@host/dbname; see docs/SCALING.md). [default: DATA_DIR/confab.db]
    #[arg(long, env = "CONFAB_DB")]
    pub db: Option<PathBuf>,
    /// Directory for server data: the database (unless --db) and shared
    /// files. [default: data]
    #[arg(long, env = "CONFAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain of the server. [default: certs/server.pem]
    #[arg(long, env = "CONFAB_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the server (PKCS#8, "BEGIN PRIVATE KEY"). [default: certs/server.key]
    #[arg(long, env = "CONFAB_KEY")]
    pub key: Option<PathBuf>,
    /// PBKDF2 iterations for new password hashes. [default: 600000]
    #[arg(long, env = "CONFAB_PASSWORD_ITERATIONS")]
    pub password_iterations: Option<u32>,
    /// Most sessions served at once (one thread each). [default: 256]
    #[arg(long, env = "CONFAB_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Seconds a client has to complete the TLS handshake. [default: 10]
    #[arg(long, env = "CONFAB_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<u64>,
    /// Bytes that may wait for a slow reader before it is disconnected. [default: 4194304]
    #[arg(long, env = "CONFAB_OUTBOX_LIMIT")]
    pub outbox_limit: Option<usize>,
    /// Clients that may wait in line when every session slot is taken. [default: 256]
    #[arg(long, env = "CONFAB_QUEUE_LIMIT")]
    pub queue_limit: Option<usize>,
    /// Seconds a client may wait in line before it is told to retry later. [default: 600]
    #[arg(long, env = "CONFAB_QUEUE_TIMEOUT")]
    pub queue_timeout: Option<u64>,
    /// Seconds an admitted client has to log in. [default: 30]
    #[arg(long, env = "CONFAB_LOGIN_TIMEOUT")]
    pub login_timeout: Option<u64>,
    /// Most concurrent connections from one IP address (0 = no limit). [default: 16]
    #[arg(long, env = "CONFAB_MAX_PER_IP")]
    pub max_per_ip: Option<usize>,
    /// Messages a session may send in a burst before flood control. [default: 10]
    #[arg(long, env = "CONFAB_FLOOD_BURST")]
    pub flood_burst: Option<u32>,
    /// Messages per second a session may sustain. [default: 5]
    #[arg(long, env = "CONFAB_FLOOD_RATE")]
    pub flood_rate: Option<f64>,
    /// Logins that may hash a password (PBKDF2) at once, each on its own
    /// session thread; the others wait in line instead of taking every core
    /// from chat. [default: 1]
    #[arg(long, env = "CONFAB_HASH_THREADS")]
    pub hash_threads: Option<usize>,
    /// Failed logins allowed per account and per address in ten minutes
    /// before attempts are delayed (0: no throttling). [default: 5]
    #[arg(long, env = "CONFAB_LOGIN_FAILURES")]
    pub login_failures: Option<usize>,
    /// Days a resume token stays valid. [default: 30]
    #[arg(long, env = "CONFAB_TOKEN_DAYS")]
    pub token_days: Option<u64>,
    /// Most rooms one user may be in. [default: 100]
    #[arg(long, env = "CONFAB_MAX_ROOMS_PER_USER")]
    pub max_rooms_per_user: Option<u32>,
    /// Most existing rooms one user (not an admin) may have created. [default: 20]
    #[arg(long, env = "CONFAB_MAX_ROOMS_CREATED")]
    pub max_rooms_created: Option<u32>,
    /// Rooms with more members than this send no presence events (members
    /// page through the member list instead). [default: 1000]
    #[arg(long, env = "CONFAB_PRESENCE_ROOM_LIMIT")]
    pub presence_room_limit: Option<usize>,
    /// Minutes after sending during which the author may edit a message. [default: 1440]
    #[arg(long, env = "CONFAB_EDIT_WINDOW_MINUTES")]
    pub edit_window_minutes: Option<u64>,
    /// Keep the earlier text of edited messages (an audit trail for
    /// admins, in the message_edits table). [default: false]
    #[arg(long, env = "CONFAB_KEEP_EDIT_HISTORY")]
    pub keep_edit_history: Option<bool>,
    /// Longest message body in bytes (at most 4096). [default: 4096]
    #[arg(long, env = "CONFAB_MAX_MESSAGE_LEN")]
    pub max_message_len: Option<usize>,
    /// Largest frame a client may send, in bytes (4096 to 1048576). [default: 65536]
    #[arg(long, env = "CONFAB_MAX_REQUEST_LEN")]
    pub max_request_len: Option<usize>,
    /// Largest file that may be shared, in bytes. [default: 26214400]
    #[arg(long, env = "CONFAB_MAX_FILE_SIZE")]
    pub max_file_size: Option<u64>,
    /// File types that may be shared, comma-separated: png, jpeg, gif,
    /// webp, pdf, zip, mp3, ogg, text.
    #[arg(long, env = "CONFAB_FILE_TYPES", value_delimiter = ',')]
    pub file_types: Vec<String>,
    /// User allowed to run admin requests such as `stats` (repeatable;
    /// comma-separated in the environment).
    #[arg(long = "admin", env = "CONFAB_ADMINS", value_delimiter = ',')]
    pub admins: Vec<String>,
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides). [default: info]
    #[arg(long, env = "CONFAB_LOG")]
    pub log: Option<String>,
    /// Instead of serving: an administration task on the database (works
    /// while the server runs).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `confab-server` does instead of serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Administration of users on the database.
    Admin {
        /// The task.
        #[command(subcommand)]
        action: AdminAction,
    },
}

/// Administration tasks (`confab-server admin ...`).
#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// Creates the account USER with a password read from standard input
    /// (one line), or a random one that is printed with --generate. It is
    /// an administrator if --admin is given or USER is in the `admins`
    /// setting (whose names `register` refuses, so this is how they are
    /// made).
    AddUser {
        /// User name.
        user: String,
        /// Make up a password and print it.
        #[arg(long)]
        generate: bool,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Makes USER an administrator.
    Grant {
        /// User name.
        user: String,
    },
    /// Takes administrator rights from USER.
    Revoke {
        /// User name.
        user: String,
    },
    /// Sets USER's password to one read from standard input (one line), or
    /// to a random one that is printed with --generate; revokes USER's
    /// resume tokens.
    ResetPassword {
        /// User name.
        user: String,
        /// Make up a password and print it.
        #[arg(long)]
        generate: bool,
    },
    /// Bans USER (for --minutes, or for good).
    Ban {
        /// User name.
        user: String,
        /// Why; shown to the user.
        #[arg(long, default_value = "banned by an administrator")]
        reason: String,
        /// How long.
        #[arg(long)]
        minutes: Option<u64>,
    },
    /// Lifts USER's ban.
    Unban {
        /// User name.
        user: String,
    },
    /// Lists bans in force.
    Bans,
}

/// The same settings as a TOML file holds them; all optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    irc_listen: Option<SocketAddr>,
    irc_listen_plain: Option<SocketAddr>,
    irc_server_name: Option<String>,
    db: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    password_iterations: Option<u32>,
    max_sessions: Option<usize>,
    handshake_timeout: Option<u64>,
    outbox_limit: Option<usize>,
    queue_limit: Option<usize>,
    queue_timeout: Option<u64>,
    login_timeout: Option<u64>,
    max_per_ip: Option<usize>,
    flood_burst: Option<u32>,
    flood_rate: Option<f64>,
    admins: Option<Vec<String>>,
    hash_threads: Option<usize>,
    login_failures: Option<usize>,
    token_days: Option<u64>,
    max_rooms_per_user: Option<u32>,
    max_rooms_created: Option<u32>,
    presence_room_limit: Option<usize>,
    edit_window_minutes: Option<u64>,
    keep_edit_history: Option<bool>,
    max_message_len: Option<usize>,
    max_request_len: Option<usize>,
    max_file_size: Option<u64>,
    file_types: Option<Vec<String>>,
    log: Option<String>,
}

/// The server's resolved settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// The IRC listener's address, if IRC is served.
    pub irc_listen: Option<SocketAddr>,
    /// The plaintext IRC listener's address (loopback only), if any.
    pub irc_listen_plain: Option<SocketAddr>,
    /// The server's name on IRC.
    pub irc_server_name: String,
    /// Database file.
    pub db: PathBuf,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// PBKDF2 iterations for new hashes.
    pub password_iterations: u32,
    /// Session threads.
    pub max_sessions: usize,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// Per-session outgoing buffer limit, bytes.
    pub outbox_limit: usize,
    /// Waiting clients allowed in the queue.
    pub queue_limit: usize,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
    /// Deadline to log in after admission.
    pub login_timeout: Duration,
    /// Concurrent connections per IP address; 0 = unlimited.
    pub max_per_ip: usize,
    /// Flood control burst.
    pub flood_burst: u32,
    /// Flood control rate, messages per second.
    pub flood_rate: f64,
    /// User names allowed to run admin requests.
    pub admins: Vec<String>,
    /// File size cap and allowed types.
    pub file_rules: crate::file_rules::FileRules,
    /// Logins that may hash a password at once.
    pub hash_threads: usize,
    /// Failed logins allowed before throttling (0: off).
    pub login_failures: usize,
    /// Resume token lifetime.
    pub token_lifetime: Duration,
    /// Rooms per user.
    pub max_rooms_per_user: u32,
    /// Most existing rooms one (non-admin) user may have created.
    pub max_rooms_created: u32,
    /// Rooms with more members than this send no presence events.
    pub presence_room_limit: usize,
    /// How long after sending the author may edit a message.
    pub edit_window: Duration,
    /// Whether the earlier text of edited messages is kept.
    pub keep_edit_history: bool,
    /// Longest message body.
    pub max_message_len: usize,
    /// Largest client frame.
    pub max_request_len: usize,
    /// Log level.
    pub log: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            irc_listen: None,
            irc_listen_plain: None,
            irc_server_name: "confab".into(),
            db: PathBuf::from("data/confab.db"),
            data_dir: PathBuf::from("data"),
            cert: PathBuf::from("certs/server.pem"),
            key: PathBuf::from("certs/server.key"),
            password_iterations: crate::password::DEFAULT_ITERATIONS,
            max_sessions: 256,
            handshake_timeout: Duration::from_secs(10),
            outbox_limit: 4 << 20,
            queue_limit: 256,
            queue_timeout: Duration::from_secs(600),
            login_timeout: Duration::from_secs(30),
            max_per_ip: 16,
            flood_burst: 10,
            flood_rate: 5.0,
            admins: Vec::new(),
            file_rules: crate::file_rules::FileRules::default(),
            hash_threads: 1,
            login_failures: 5,
            token_lifetime: Duration::from_secs(30 * 86400),
            max_rooms_per_user: 100,
            max_rooms_created: 20,
            presence_room_limit: 1000,
            edit_window: Duration::from_secs(24 * 3600),
            keep_edit_history: false,
            max_message_len: crate::protocol::MAX_BODY_LEN,
            max_request_len: crate::protocol::MAX_REQUEST_LEN,
            log: "info".into(),
        }
    }
}

impl ServerConfig {
    /// Resolves flags (which clap has already merged with the environment)
    /// over the config file over the defaults.
    pub fn from_args(args: ServerArgs) -> Result<ServerConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let d = ServerConfig::default();
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or(d.data_dir);
        let config = ServerConfig {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            irc_listen: args.irc_listen.or(file.irc_listen),
            irc_listen_plain: args.irc_listen_plain.or(file.irc_listen_plain),
            irc_server_name: args
                .irc_server_name
                .or(file.irc_server_name)
                .unwrap_or(d.irc_server_name),
            db: args
                .db
                .or(file.db)
                .unwrap_or_else(|| data_dir.join("confab.db")),
            data_dir,
            cert: args.cert.or(file.cert).unwrap_or(d.cert),
            key: args.key.or(file.key).unwrap_or(d.key),
            password_iterations: args
                .password_iterations
                .or(file.password_iterations)
                .unwrap_or(d.password_iterations),
            max_sessions: args
                .max_sessions
                .or(file.max_sessions)
                .unwrap_or(d.max_sessions),
            handshake_timeout: args
                .handshake_timeout
                .or(file.handshake_timeout)
                .map_or(d.handshake_timeout, Duration::from_secs),
            outbox_limit: args
                .outbox_limit
                .or(file.outbox_limit)
                .unwrap_or(d.outbox_limit),
            queue_limit: args
                .queue_limit
                .or(file.queue_limit)
                .unwrap_or(d.queue_limit),
            queue_timeout: args
                .queue_timeout
                .or(file.queue_timeout)
                .map_or(d.queue_timeout, Duration::from_secs),
            login_timeout: args
                .login_timeout
                .or(file.login_timeout)
                .map_or(d.login_timeout, Duration::from_secs),
            max_per_ip: args.max_per_ip.or(file.max_per_ip).unwrap_or(d.max_per_ip),
            flood_burst: args
                .flood_burst
                .or(file.flood_burst)
                .unwrap_or(d.flood_burst),
            flood_rate: args.flood_rate.or(file.flood_rate).unwrap_or(d.flood_rate),
            admins: if args.admins.is_empty() {
                file.admins.unwrap_or(d.admins)
            } else {
                args.admins
            }
            .into_iter()
            .map(|a| a.to_ascii_lowercase())
            .collect(),
            file_rules: crate::file_rules::FileRules {
                max_size: args
                    .max_file_size
                    .or(file.max_file_size)
                    .unwrap_or(d.file_rules.max_size),
                allowed: {
                    let names = if args.file_types.is_empty() {
                        file.file_types
                    } else {
                        Some(args.file_types)
                    };
                    match names {
                        None => d.file_rules.allowed,
                        Some(names) => names
                            .iter()
                            .map(|n| {
                                crate::file_rules::FileKind::from_name(n).ok_or_else(|| {
                                    ConfigError::Invalid(format!(
                                        "unknown file type {n:?}; known: png, jpeg, gif, webp, pdf, zip, mp3, ogg, text"
                                    ))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    }
                },
            },
            hash_threads: args
                .hash_threads
                .or(file.hash_threads)
                .unwrap_or(d.hash_threads),
            login_failures: args
                .login_failures
                .or(file.login_failures)
                .unwrap_or(d.login_failures),
            token_lifetime: args
                .token_days
                .or(file.token_days)
                .map_or(d.token_lifetime, |days| Duration::from_secs(days * 86400)),
            max_rooms_per_user: args
                .max_rooms_per_user
                .or(file.max_rooms_per_user)
                .unwrap_or(d.max_rooms_per_user),
            max_rooms_created: args
                .max_rooms_created
                .or(file.max_rooms_created)
                .unwrap_or(d.max_rooms_created),
            presence_room_limit: args
                .presence_room_limit
                .or(file.presence_room_limit)
                .unwrap_or(d.presence_room_limit),
            edit_window: args
                .edit_window_minutes
                .or(file.edit_window_minutes)
                .map_or(d.edit_window, |m| Duration::from_secs(m * 60)),
            keep_edit_history: args
                .keep_edit_history
                .or(file.keep_edit_history)
                .unwrap_or(d.keep_edit_history),
            max_message_len: args
                .max_message_len
                .or(file.max_message_len)
                .unwrap_or(d.max_message_len),
            max_request_len: args
                .max_request_len
                .or(file.max_request_len)
                .unwrap_or(d.max_request_len),
            log: args.log.or(file.log).unwrap_or(d.log),
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.password_iterations == 0 {
            return Err(ConfigError::Invalid(
                "password_iterations must be at least 1".into(),
            ));
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::Invalid(
                "max_sessions must be at least 1".into(),
            ));
        }
        if self.flood_burst == 0 || self.flood_rate.is_nan() || self.flood_rate <= 0.0 {
            return Err(ConfigError::Invalid(
                "flood_burst and flood_rate must be positive".into(),
            ));
        }
        if !(1..=crate::protocol::MAX_BODY_LEN).contains(&self.max_message_len) {
            return Err(ConfigError::Invalid(format!(
                "max_message_len must be 1 to {}",
                crate::protocol::MAX_BODY_LEN
            )));
        }
        if !(4096..=crate::protocol::MAX_FRAME_LEN).contains(&self.max_request_len) {
            return Err(ConfigError::Invalid(format!(
                "max_request_len must be 4096 to {}",
                crate::protocol::MAX_FRAME_LEN
            )));
        }
        let name = &self.irc_server_name;
        if name.is_empty()
            || name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(ConfigError::Invalid(format!(
                "irc_server_name {name:?} must be 1 to 63 letters, digits, dots and dashes (a host name)"
            )));
        }
        if self.outbox_limit < crate::protocol::MAX_FRAME_LEN {
            return Err(ConfigError::Invalid(format!(
                "outbox_limit must be at least one frame ({} bytes)",
                crate::protocol::MAX_FRAME_LEN
            )));
        }
        Ok(())
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.to_owned(),
        err,
    })?;
    toml::from_str(&text).map_err(|err| ConfigError::Parse {
        path: path.to_owned(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_that_help_shows_are_the_defaults() {
        use clap::CommandFactory;
        let help = ServerArgs::command().render_long_help().to_string();
        let d = ServerConfig::default();
        for (flag, value) in [
            ("listen", d.listen.to_string()),
            ("irc-server-name", d.irc_server_name.clone()),
            ("password-iterations", d.password_iterations.to_string()),
            ("max-sessions", d.max_sessions.to_string()),
            (
                "handshake-timeout",
                d.handshake_timeout.as_secs().to_string(),
            ),
            ("outbox-limit", d.outbox_limit.to_string()),
            ("queue-limit", d.queue_limit.to_string()),
            ("queue-timeout", d.queue_timeout.as_secs().to_string()),
            ("login-timeout", d.login_timeout.as_secs().to_string()),
            ("max-per-ip", d.max_per_ip.to_string()),
            ("flood-burst", d.flood_burst.to_string()),
            ("flood-rate", d.flood_rate.to_string()),
            ("hash-threads", d.hash_threads.to_string()),
            ("login-failures", d.login_failures.to_string()),
            (
                "token-days",
                (d.token_lifetime.as_secs() / 86400).to_string(),
            ),
            ("max-rooms-per-user", d.max_rooms_per_user.to_string()),
            ("max-rooms-created", d.max_rooms_created.to_string()),
            ("presence-room-limit", d.presence_room_limit.to_string()),
            (
                "edit-window-minutes",
                (d.edit_window.as_secs() / 60).to_string(),
            ),
            ("keep-edit-history", d.keep_edit_history.to_string()),
            ("max-message-len", d.max_message_len.to_string()),
            ("max-request-len", d.max_request_len.to_string()),
            ("max-file-size", d.file_rules.max_size.to_string()),
            ("log", d.log.clone()),
        ] {
            let at = help
                .find(&format!("--{flag} "))
                .unwrap_or_else(|| panic!("--{flag} is not in the help"));
            let entry = &help[at..];
            let entry = &entry[..entry[2..].find("\n  -").map_or(entry.len(), |e| e + 2)];
            assert!(
                entry.contains(&format!("[default: {value}]")),
                "--{flag} should say [default: {value}]:\n{entry}"
            );
        }
    }

    #[test]
    fn flags_beat_file_which_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("confab-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nmax_sessions = 7\ndata_dir = \"/srv/c\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(file.clone()),
            max_sessions: Some(3),
            ..Default::default()
        };
        let c = ServerConfig::from_args(args).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_sessions, 3);
        assert_eq!(c.db, PathBuf::from("/srv/c/confab.db"));
        assert_eq!(c.password_iterations, 600_000);

        std::fs::write(&file, "bogus = 1\n").unwrap();
        let args = ServerArgs {
            config: Some(file),
            ..Default::default()
        };
        assert!(matches!(
            ServerConfig::from_args(args),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
