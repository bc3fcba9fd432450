//! What request handlers share: the database, the hub, the message writer,
//! password hashing and throttling, the file store and its rules, the
//! settings, the wait queue (for `stats`) and the counters.
//!
//! [`Services`] holds no socket and no TLS material, so a handler can be
//! run against it in a unit test with a temporary database and an outbox
//! without a connection. The accept loop's own state (the TLS acceptor,
//! the session pool, per-address counts) lives in `context`, above this.

use super::auth::Auth;
use super::cluster;
use super::file_store::FileStore;
use super::hub::Hub;
use super::mutes::Mutes;
use super::wait_queue::WaitQueue;
use super::writer::{self, WriterHandle};
use crate::config::ServerConfig;
use crate::file_rules::FileRules;
use crate::protocol::ServerStats;
use crate::store::{RoomId, SharedStore, Store, StoreError, UserId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Settings a session or front-door thread consults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// Deadline to log in after admission.
    pub login_timeout: Duration,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
    /// Per-session outbox limit in bytes.
    pub outbox_limit: usize,
    /// Flood control burst.
    pub flood_burst: u32,
    /// Flood control rate per second.
    pub flood_rate: f64,
    /// Session slots.
    pub max_sessions: usize,
    /// How long a resume token stays valid.
    pub token_lifetime: Duration,
    /// Most rooms one user may be in.
    pub max_rooms_per_user: u32,
    /// Most existing rooms one (non-admin) user may have created.
    pub max_rooms_created: u32,
    /// How long after sending the author may edit a message.
    pub edit_window: Duration,
    /// Whether edits keep the earlier text (message_edits).
    pub keep_edit_history: bool,
    /// Longest message body, bytes.
    pub max_message_len: usize,
    /// Largest frame payload a client may send, bytes.
    pub max_request_len: usize,
}

impl Limits {
    /// The limits a configuration sets.
    pub fn from_config(config: &ServerConfig) -> Limits {
        Limits {
            handshake_timeout: config.handshake_timeout,
            login_timeout: config.login_timeout,
            queue_timeout: config.queue_timeout,
            outbox_limit: config.outbox_limit,
            flood_burst: config.flood_burst,
            flood_rate: config.flood_rate,
            max_sessions: config.max_sessions,
            token_lifetime: config.token_lifetime,
            max_rooms_per_user: config.max_rooms_per_user,
            max_rooms_created: config.max_rooms_created,
            edit_window: config.edit_window,
            keep_edit_history: config.keep_edit_history,
            max_message_len: config.max_message_len,
            max_request_len: config.max_request_len,
        }
    }
}

/// Counters since start, for `stats` and the minute log line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages refused by flood control.
    pub rate_limited: AtomicU64,
    /// Sessions dropped for reading too slowly.
    pub slow_consumers: AtomicU64,
    /// Connections refused by the per-IP limit.
    pub per_ip_rejected: AtomicU64,
}

/// Shared by every request handler (and, through `context`, by every
/// server thread).
pub struct Services {
    /// The database.
    pub store: SharedStore,
    /// With other nodes on the database (PostgreSQL): this node's link
    /// with them (`cluster`).
    pub link: Option<Arc<cluster::Link>>,
    /// Shared in-memory state.
    pub hub: Arc<Hub>,
    /// The message writer.
    pub writer: WriterHandle,
    /// Session slots and the wait queue.
    pub queue: Arc<WaitQueue>,
    /// Settings.
    pub limits: Limits,
    /// The `admins` setting: names granted admin rights at start if their
    /// account exists, and reserved (not open to `register`) if not.
    pub admins: Vec<String>,
    /// Shared files on disk.
    pub files: FileStore,
    /// What may be shared.
    pub file_rules: FileRules,
    /// Password hashing, login throttling, resume tokens.
    pub auth: Arc<Auth>,
    /// Mutes in force.
    pub mutes: Arc<Mutes>,
    /// Counters.
    pub counters: Counters,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// Why the services could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file store could not be opened.
    #[error("cannot open the file store in {path}: {err}")]
    Files {
        /// The data directory.
        path: std::path::PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// A thread of the services (the message writer and its delivery
    /// helpers, or the presence thread) could not start.
    #[error("cannot start the {what}: {err}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The cause.
        err: std::io::Error,
    },
}

impl Services {
    /// Loads the hub from `store`, opens the file store and starts the
    /// message writer (whose thread handle is returned, to be joined at
    /// shutdown).
    pub fn start(
        config: &ServerConfig,
        store: SharedStore,
    ) -> Result<(Services, JoinHandle<()>), StartError> {
        let secret = store.server_secret()?;
        grant_configured_admins(&*store, &config.admins)?;
        let files = FileStore::open(&config.data_dir).map_err(|err| StartError::Files {
            path: config.data_dir.clone(),
            err,
        })?;
        // Several nodes on one database: where the shared logs stand, read
        // before the rooms are loaded, so that nothing committed in between
        // is missed.
        let watch = match store.message_watch()? {
            Some(mut watch) => {
                let heads = watch.wait(Duration::ZERO)?;
                Some((watch, heads))
            }
            None => None,
        };
        let hub = Arc::new(Hub::new(store.load_rooms()?, config.presence_room_limit));
        let mutes = Arc::new(Mutes::load(&*store)?);
        spawn_presence(hub.clone()).map_err(|err| StartError::Thread {
            what: "presence thread",
            err,
        })?;
        let auth = Arc::new(Auth::new(
            config.hash_threads,
            config.password_iterations,
            secret,
            config.login_failures,
        ));
        // Deliver every node's messages here, in id order, starting after
        // those committed before this start; play the other nodes' changes.
        let (order, link) = match watch {
            Some((watch, heads)) => {
                let order = Arc::new(cluster::Order::new(heads.messages));
                let link = cluster::Link::start(
                    store.clone(),
                    cluster::Local {
                        hub: hub.clone(),
                        auth: auth.clone(),
                        mutes: mutes.clone(),
                        files: files.clone(),
                    },
                    order.clone(),
                    heads.events,
                    watch,
                )?;
                (Some(order), Some(link))
            }
            None => (None, None),
        };
        let (writer, writer_thread) =
            writer::spawn(store.clone(), hub.clone(), order).map_err(|err| StartError::Thread {
                what: "message writer",
                err,
            })?;
        let services = Services {
            link,
            store,
            hub,
            writer,
            queue: WaitQueue::new(config.max_sessions, config.queue_limit),
            limits: Limits::from_config(config),
            admins: config.admins.clone(),
            files,
            file_rules: config.file_rules.clone(),
            auth,
            mutes,
            counters: Counters::default(),
        };
        Ok((services, writer_thread))
    }

    /// With other nodes: writes this node's changes for them to see
    /// (called before a request is answered; see `cluster::Link::flush`).
    pub fn share_changes(&self) {
        if let Some(link) = &self.link {
            link.flush();
        }
    }

    /// With other nodes: plays what they changed up to now (before a
    /// login, so it sees rooms and members made elsewhere).
    pub fn catch_up(&self) {
        if let Some(link) = &self.link {
            link.catch_up();
        }
    }

    /// A mute was stored: in force here at once, and on other nodes.
    pub fn muted(&self, room: RoomId, user: UserId, until: Option<i64>) {
        self.mutes.set(room, user, until);
        if let Some(link) = &self.link {
            link.share(cluster::Shared::Muted { room, user, until });
        }
    }

    /// A mute was lifted in the database: here at once, and on other nodes.
    pub fn unmuted(&self, room: RoomId, user: UserId) {
        self.mutes.clear(room, user);
        if let Some(link) = &self.link {
            link.share(cluster::Shared::Unmuted { room, user });
        }
    }

    /// With other nodes: copies a verified upload's content into the
    /// database, so every node can serve it.
    pub fn share_content(&self, sha256: &str) -> Result<(), StoreError> {
        if self.link.is_none() {
            return Ok(());
        }
        let bytes = std::fs::read(self.files.path_of(sha256))
            .map_err(|e| StoreError::File(format!("reading back upload {sha256}: {e}")))?;
        self.store.put_file_content(sha256, &bytes)
    }

    /// Opens a file's content; with other nodes, one this node has no copy
    /// of is fetched from the database first (and kept).
    pub fn open_content(&self, sha256: &str) -> std::io::Result<std::fs::File> {
        match self.files.open_content(sha256) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.link.is_some() => {
                let bytes = self
                    .store
                    .file_content(sha256)
                    .map_err(std::io::Error::other)?
                    .ok_or(e)?;
                self.files.put_content(sha256, &bytes)?;
                self.files.open_content(sha256)
            }
            other => other,
        }
    }

    /// Removes content no file record uses any more, here and (with other
    /// nodes) from their copies.
    pub fn forget_content(&self, sha256: &str) {
        if let Err(e) = self.files.remove_content(sha256) {
            log::warn!("removing the content of file {sha256}: {e}");
        }
        if let Some(link) = &self.link {
            link.share(cluster::Shared::FileGone {
                sha256: sha256.to_owned(),
            });
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ServerStats {
        let (active, queued, q) = self.queue.snapshot();
        ServerStats {
            active: active as u32,
            queued: queued as u32,
            max_sessions: self.limits.max_sessions as u32,
            admitted_total: q.admitted_total,
            queued_total: q.queued_total,
            rejected_total: q.full_total + self.counters.per_ip_rejected.load(Ordering::Relaxed),
            rate_limited_total: self.counters.rate_limited.load(Ordering::Relaxed),
            slow_consumers_total: self.counters.slow_consumers.load(Ordering::Relaxed),
        }
    }
}

/// Starts the thread that delivers coalesced presence (see `presence`); it
/// ends when the hub's presence queue is closed.
fn spawn_presence(hub: Arc<Hub>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("presence".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            while let Some(batch) = hub.presence_queue().next_batch() {
                hub.deliver_presence(batch);
            }
        })
        .map(drop)
}

/// Applies the `admins` setting: an existing account named there gets the
/// admin flag (audited); a name without an account stays reserved until an
/// operator creates it (`confab-server admin add-user NAME`).
fn grant_configured_admins(store: &dyn Store, admins: &[String]) -> Result<(), StoreError> {
    for name in admins {
        let Some(user) = store.find_user(name)? else {
            log::warn!(
                "admin {name:?} has no account; the name is reserved: create it with `confab-server admin add-user {name}`"
            );
            continue;
        };
        if !store.is_admin(user.id)? {
            store.set_admin(&user.name, true)?;
            store.audit(Some(&user.name), None, "grant", "from the admins setting")?;
            log::info!("{} is an administrator (admins setting)", user.name);
        }
    }
    Ok(())
}
