//! The confab server: an accept loop, front-door threads, a wait queue, and
//! a pool of session threads.
//!
//! From the accept loop down (the arrows between these files run one way):
//!
//! - `front_door`: a connection's life before it has a slot: handshake,
//!   per-IP limit, waiting in line.
//! - `context`: what all server threads share: the handlers' `Services`,
//!   the TLS acceptor, the session pool, the per-IP limit.
//! - `session`: an admitted connection's thread: the loop that moves bytes,
//!   the phase, and routing each request to its handler.
//! - `handlers`: what each request means, one module per concern
//!   (`account`, `rooms`, `messages`, `files`, `moderation`).
//! - `services`: what handlers share (store, hub, writer, limits, auth,
//!   files, counters), free of sockets so handlers are testable alone.
//! - `writer`: the thread that stores chat messages, then delivers them;
//!   `delivery`: its helper threads.
//! - `hub`: shared in-memory state (sessions, rooms, outboxes) and fan-out.
//! - `outbox`: one session's queue of bytes, and its connection while it
//!   sleeps.
//! - `wire`: a session's wire format; events encoded once per format.
//! - `wait_queue`: session slots and the FIFO queue (`Mutex` + `Condvar`).
//! - `auth`, `file_store`, `transfer`: password hashing and throttling,
//!   shared files on disk, one session's upload and download.
//!
//! The accept loop only accepts and hands off, so a client that stalls
//! cannot block anyone else. Every thread that serves one client runs
//! inside `catch_unwind` (rouille's habit): a bug that panics costs that
//! client, never the server. Shutdown is requested through a
//! [`ShutdownHandle`] (the binary wires SIGINT and SIGTERM to it).

pub mod allocator;
mod auth;
mod cluster;
mod context;
mod delivery;
mod file_store;
mod front_door;
mod handlers;
mod hub;
mod irc_session;
mod mutes;
mod outbox;
mod per_ip;
mod presence;
mod services;
mod session;
mod spare_threads;
mod transfer;
mod wait_queue;
mod wire;
mod writer;

pub use hub::{Hub, SessionId};
pub use outbox::Outbox;

use crate::config::ServerConfig;
use crate::protocol::{ErrorCode, ServerMsg};
use crate::store::{self, StoreError};
use crate::tls::{self, TlsSetupError};
use context::ServerContext;
use per_ip::PerIpLimit;
use services::{Services, StartError};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wire::{Outgoing, Wire};

/// Stack size of session threads. Stacks are committed lazily, so this
/// bounds virtual memory, not RSS; session code needs little stack.
const SESSION_STACK: usize = 512 * 1024;
/// How long shutdown waits for sessions to flush and close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// How often the server logs its counters.
const STATS_INTERVAL: Duration = Duration::from_secs(60);
/// How often the database is checked for bans made outside the server (by
/// `confab-server admin ban`), whose users' live sessions must end.
const BAN_POLL: Duration = Duration::from_secs(2);

/// Ends the live sessions of users banned from the command line: the admin
/// tool writes the `bans` table of a running server's database, and the
/// server notices within [`BAN_POLL`]. (A ban made through the protocol
/// ends the sessions at once; seeing it here again finds none.)
struct BanWatch {
    /// Bans created before this (ms) have been handled.
    since: i64,
    /// Users whose bans created at exactly `since` were handled.
    at_since: Vec<i64>,
}

impl BanWatch {
    fn new() -> BanWatch {
        BanWatch {
            since: crate::store::now_ms(),
            at_since: Vec::new(),
        }
    }

    fn enforce(&mut self, services: &Services) {
        let found = match services.store.bans_created_since(self.since) {
            Ok(found) => found,
            Err(err) => {
                log::warn!("checking for new bans failed: {err}");
                return;
            }
        };
        for ban in found {
            if ban.created_at == self.since && self.at_since.contains(&ban.user_id) {
                continue;
            }
            if ban.created_at > self.since {
                self.since = ban.created_at;
                self.at_since.clear();
            }
            self.at_since.push(ban.user_id);
            let goodbye = Outgoing::event(ServerMsg::Closing {
                code: ErrorCode::Banned,
                message: format!("banned by {}: {}", ban.by, ban.reason),
            });
            let ended = services.hub.close_user(ban.user_id, &goodbye);
            if ended > 0 {
                log::info!("ended {ended} session(s) of a user banned by {}", ban.by);
            }
        }
    }
}

/// Ends the live sessions of users whose password an operator reset with
/// `confab-server admin reset-password` (seen in the audit table within
/// [`BAN_POLL`]), as `change_password` ends the user's other sessions: the
/// old password must not keep a session open.
struct ResetWatch {
    /// The newest audit row id seen.
    after: Option<i64>,
    /// Rows up to this id were there at start: not new.
    floor: i64,
    /// Resets handled with ids within [`LATE_AUDIT`] of `after`.
    handled: std::collections::BTreeSet<i64>,
}

/// On PostgreSQL, audit ids come from a sequence: an id is taken when the
/// row is inserted, so a row can commit after rows with higher ids. The
/// reset watch therefore looks again at this many ids below the newest it
/// has seen (resets are rare: the answer is a few rows at most).
const LATE_AUDIT: i64 = 1000;

impl ResetWatch {
    fn new(services: &Services) -> ResetWatch {
        let after = match services.store.last_audit_id() {
            Ok(id) => Some(id),
            Err(err) => {
                log::warn!("reading the audit table failed: {err}");
                None
            }
        };
        ResetWatch {
            after,
            floor: after.unwrap_or(i64::MAX),
            handled: std::collections::BTreeSet::new(),
        }
    }

    fn enforce(&mut self, services: &Services) {
        let Some(after) = self.after else {
            *self = ResetWatch::new(services);
            return;
        };
        let rows = match services
            .store
            .audit_after(after - LATE_AUDIT, "password_reset")
        {
            Ok(rows) => rows,
            Err(err) => {
                log::warn!("checking for password resets failed: {err}");
                return;
            }
        };
        let low = after - LATE_AUDIT;
        self.handled.retain(|id| *id > low);
        for (id, user) in rows {
            if id <= self.floor || id <= after - LATE_AUDIT || !self.handled.insert(id) {
                continue;
            }
            self.after = Some(self.after.map_or(id, |a| a.max(id)));
            let Some(user) = user.and_then(|u| services.store.find_user(&u).ok().flatten()) else {
                continue;
            };
            let goodbye = Outgoing::event(ServerMsg::Closing {
                code: ErrorCode::AuthFailed,
                message: "an administrator reset your password; log in with the new one".into(),
            });
            let ended = services.hub.close_user(user.id, &goodbye);
            if ended > 0 {
                log::info!(
                    "ended {ended} session(s) of {} after a password reset",
                    user.name
                );
            }
        }
    }
}

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The database could not be opened or migrated.
    #[error("cannot open database {path}: {err}")]
    Store {
        /// The database file or URL (its password hidden).
        path: String,
        /// The cause.
        err: StoreError,
    },
    /// Binding the listen address or starting a thread failed.
    #[error("{what}: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        err: std::io::Error,
    },
}

/// Asks a running server to shut down; cheap to clone, usable from any
/// thread (e.g. a signal-handling one).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    /// A duplicate of the listening socket: shutting it down wakes the
    /// accept loop (accept() fails with EINVAL on Linux).
    listener: Arc<TcpListener>,
    /// The same for the IRC listeners.
    irc_listeners: Vec<Arc<TcpListener>>,
}

impl ShutdownHandle {
    /// Requests shutdown; returns at once. [`Server::run`] then stops
    /// accepting, tells every client, stores what was sent, and returns.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) on a descriptor we own (our dup); no memory
        // is involved.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        for irc in &self.irc_listeners {
            // SAFETY: as above, on our dup of an IRC listener.
            unsafe {
                libc::shutdown(irc.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// A bound, ready server; [`Server::run`] serves clients.
pub struct Server {
    /// The listening socket; bound in [`Server::bind`] so the caller can
    /// learn the real port before serving.
    listener: TcpListener,
    /// The IRC listeners, with whether each speaks TLS (`--irc-listen`,
    /// `--irc-listen-plain`).
    irc_listeners: Vec<(TcpListener, bool)>,
    /// Shared by every server thread.
    ctx: Arc<ServerContext>,
    /// Raised by [`ShutdownHandle::shutdown`].
    shutdown: ShutdownHandle,
    /// The message writer thread, joined at shutdown.
    writer_thread: JoinHandle<()>,
}

impl Server {
    /// Loads TLS material, opens the database, starts the message writer
    /// and binds the listen address.
    pub fn bind(config: &ServerConfig) -> Result<Server, ServerError> {
        raise_descriptor_limit(config.max_sessions);
        let acceptor = tls::server_acceptor(&config.cert, &config.key)?;
        if let Some(dir) = config
            .db
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !store::is_postgres(&config.db))
        {
            std::fs::create_dir_all(dir).map_err(|err| ServerError::Io {
                what: format!("cannot create {}", dir.display()),
                err,
            })?;
        }
        let store_err = |err| ServerError::Store {
            path: store::describe(&config.db),
            err,
        };
        let store = store::open(&config.db, 8).map_err(store_err)?;
        let (services, writer_thread) =
            Services::start(config, store).map_err(|err| match err {
                StartError::Store(err) => store_err(err),
                StartError::Files { path, err } => ServerError::Io {
                    what: format!("cannot open the file store in {}", path.display()),
                    err,
                },
                StartError::Thread { what, err } => ServerError::Io {
                    what: format!("cannot start the {what}"),
                    err,
                },
            })?;
        let listener = TcpListener::bind(config.listen).map_err(|err| ServerError::Io {
            what: format!("cannot listen on {}", config.listen),
            err,
        })?;
        let dup = listener.try_clone().map_err(|err| ServerError::Io {
            what: "cannot duplicate the listening socket".into(),
            err,
        })?;
        let mut irc_listeners = Vec::new();
        let mut irc_dups = Vec::new();
        // One server per process: its IRC name is process-wide.
        crate::irc::events::set_server_name(&config.irc_server_name);
        for (addr, tls) in [(config.irc_listen, true), (config.irc_listen_plain, false)] {
            let Some(addr) = addr else { continue };
            let what = if tls { "IRC" } else { "plaintext IRC" };
            if !tls && !addr.ip().is_loopback() {
                return Err(ServerError::Io {
                    what: format!("refusing to serve plaintext IRC on {addr}"),
                    err: std::io::Error::other(
                        "the plaintext IRC listener binds loopback addresses only (127.0.0.1, ::1); use --irc-listen for TLS",
                    ),
                });
            }
            let listener = TcpListener::bind(addr).map_err(|err| ServerError::Io {
                what: format!("cannot listen for {what} on {addr}"),
                err,
            })?;
            irc_dups.push(Arc::new(listener.try_clone().map_err(|err| {
                ServerError::Io {
                    what: format!("cannot duplicate the {what} listening socket"),
                    err,
                }
            })?));
            irc_listeners.push((listener, tls));
        }
        let pool = threadpool::Builder::new()
            .num_threads(config.max_sessions)
            .thread_name("session".into())
            .thread_stack_size(SESSION_STACK)
            .build();
        let ctx = Arc::new(ServerContext {
            services,
            acceptor,
            pool,
            // 0 is hub::NO_SESSION.
            next_session: AtomicU64::new(1),
            per_ip: PerIpLimit::new(config.max_per_ip),
            front_door_threads: AtomicUsize::new(0),
            front_door: spare_threads::SpareThreads::new(
                "front-door",
                front_door::STACK,
                front_door::KEEP_SPARE,
            )
            .nicer_by(front_door::NICER),
        });
        Ok(Server {
            listener,
            irc_listeners,
            ctx,
            shutdown: ShutdownHandle {
                requested: Arc::new(AtomicBool::new(false)),
                listener: Arc::new(dup),
                irc_listeners: irc_dups,
            },
            writer_thread,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The IRC listener's address, if IRC is served over TLS.
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        self.irc_listener_addr(true)
    }

    /// The plaintext IRC listener's address, if there is one.
    pub fn irc_plain_addr(&self) -> Option<SocketAddr> {
        self.irc_listener_addr(false)
    }

    fn irc_listener_addr(&self, tls: bool) -> Option<SocketAddr> {
        let (l, _) = self.irc_listeners.iter().find(|(_, t)| *t == tls)?;
        l.local_addr().ok()
    }

    /// A handle to stop [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Accepts clients until shutdown is requested, then shuts down
    /// cleanly: stop accepting, turn away the queue, store every message
    /// already sent, tell every session, let them flush, checkpoint the
    /// database. Errors on single connections never come back here.
    pub fn run(mut self) -> Result<(), ServerError> {
        let (stop_stats, stats_thread) = self.spawn_stats_logger();
        let mut irc_threads = Vec::new();
        for (listener, tls) in std::mem::take(&mut self.irc_listeners) {
            let (ctx, shutdown) = (self.ctx.clone(), self.shutdown.clone());
            let kind = front_door::Listener {
                wire: Wire::Irc(Default::default()),
                tls,
            };
            let spawned = std::thread::Builder::new()
                .name("irc-accept".into())
                .spawn(move || accept_loop(&listener, &shutdown, &ctx, kind));
            irc_threads.push(spawned.map_err(|err| ServerError::Io {
                what: "cannot start an IRC accept thread".into(),
                err,
            })?);
        }
        let confab = front_door::Listener {
            wire: Wire::Confab,
            tls: true,
        };
        accept_loop(&self.listener, &self.shutdown, &self.ctx, confab);
        for thread in irc_threads {
            let _ = thread.join();
        }
        drop(stop_stats);
        let _ = stats_thread.join();
        self.shut_down();
        Ok(())
    }

    fn shut_down(self) {
        let started = Instant::now();
        log::info!("shutting down");
        let ctx = &self.ctx.services;
        // Queued clients are told and dropped; no newcomer gets a slot.
        ctx.queue.shut_down();
        // Every message sent before this point is stored and its ack
        // queued; later ones are refused with `shutting_down`.
        ctx.writer.close();
        let goodbye = Outgoing::event(ServerMsg::Closing {
            code: ErrorCode::ShuttingDown,
            message: "the server is shutting down".into(),
        });
        ctx.hub.presence_queue().close();
        ctx.hub.close_all(&goodbye);
        if !ctx.queue.wait_idle(Instant::now() + SHUTDOWN_GRACE) {
            log::warn!("some sessions did not close in time");
        }
        if let Err(err) = ctx.store.checkpoint() {
            log::warn!("final database checkpoint failed: {err}");
        }
        let Server {
            ctx, writer_thread, ..
        } = self;
        drop(ctx);
        // The writer ends when the last handle is gone; sessions that are
        // still finishing hold one, so do not wait for it forever.
        if writer_thread.is_finished() {
            let _ = writer_thread.join();
        }
        log::info!("stopped in {:?}", started.elapsed());
    }

    fn spawn_stats_logger(&self) -> (mpsc::Sender<()>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<()>();
        let ctx = self.ctx.clone();
        let handle = std::thread::Builder::new()
            .name("stats".into())
            .spawn(move || {
                let mut bans = BanWatch::new();
                let mut resets = ResetWatch::new(&ctx.services);
                let mut next_stats = Instant::now() + STATS_INTERVAL;
                // Sleeps until the next tick or until the sender is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(BAN_POLL) {
                    bans.enforce(&ctx.services);
                    resets.enforce(&ctx.services);
                    if Instant::now() < next_stats {
                        continue;
                    }
                    next_stats += STATS_INTERVAL;
                    let s = ctx.services.stats();
                    log::info!(
                        "stats: {} active / {} slots, {} queued, {} logged in; front door: {} connections, {} threads ({} spare); totals: {} admitted, {} queued, {} rejected, {} rate-limited, {} slow consumers",
                        s.active,
                        s.max_sessions,
                        s.queued,
                        ctx.services.hub.logged_in_count(),
                        ctx.front_door_threads.load(Ordering::Relaxed),
                        ctx.front_door.alive(),
                        ctx.front_door.idle(),
                        s.admitted_total,
                        s.queued_total,
                        s.rejected_total,
                        s.rate_limited_total,
                        s.slow_consumers_total
                    );
                }
            })
            .expect("spawning the stats thread at start-up");
        (tx, handle)
    }
}

/// Accepts connections of `kind` until shutdown is requested, handing each
/// to the front door.
fn accept_loop(
    listener: &TcpListener,
    shutdown: &ShutdownHandle,
    ctx: &Arc<ServerContext>,
    kind: front_door::Listener,
) {
    let mut backoff = Duration::from_millis(5);
    while !shutdown.is_requested() {
        match listener.accept() {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                if shutdown.is_requested() {
                    break;
                }
                front_door::admit(tcp, peer, kind, ctx);
            }
            Err(_) if shutdown.is_requested() => break,
            Err(err) => {
                // Typically EMFILE: back off instead of spinning, and
                // keep serving the clients we have.
                log::warn!("accept failed: {err}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Descriptors each session holds: its socket (its waker is a signal, not
/// a descriptor; see `poller::ThreadWaker`).
const FDS_PER_SESSION: u64 = 1;

/// Raises this process's open-file limit as far as it may go (the soft
/// limit to the hard one; as root, both to the kernel's `nr_open`), since
/// every session holds [`FDS_PER_SESSION`] descriptors and the default
/// soft limit (often 1,024) would cap a server at a few hundred clients.
/// Warns when `max_sessions` still cannot fit.
fn raise_descriptor_limit(max_sessions: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(lim.rlim_max);
    let wanted = (max_sessions as u64 * FDS_PER_SESSION + 4096).min(nr_open);
    for (cur, max) in [
        (wanted.max(lim.rlim_cur), wanted.max(lim.rlim_max)),
        (lim.rlim_max.max(lim.rlim_cur), lim.rlim_max),
    ] {
        let next = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: setrlimit only reads the struct; raising the hard limit
        // fails without privilege, and then the next, lower try is made.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &next) } == 0 {
            lim = next;
            break;
        }
    }
    let needed = max_sessions as u64 * FDS_PER_SESSION + 64;
    if lim.rlim_cur < needed {
        log::warn!(
            "open-file limit {} is below the {needed} that {max_sessions} sessions need; raise it (ulimit -n, or LimitNOFILE= in a systemd unit)",
            lim.rlim_cur
        );
    }
}

/// The set {SIGINT, SIGTERM}.
fn termination_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before
    // the signals are added.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it
/// starts afterwards, so they can be received with [`wait_for_signal`].
/// Call it first thing in `main`, before any thread exists.
pub fn block_termination_signals() -> std::io::Result<()> {
    let set = termination_signals();
    // SAFETY: pthread_sigmask only reads the set.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM (blocked beforehand with
/// [`block_termination_signals`]) and returns its number.
pub fn wait_for_signal() -> std::io::Result<i32> {
    let set = termination_signals();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads the set and writes the signal number into `sig`.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}
