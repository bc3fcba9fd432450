//! The confab server: an accept loop feeding a pool of session threads.
//!
//! - `hub`: shared in-memory state (sessions, rooms, outboxes) and fan-out.
//! - `session`: one connection's thread: handshake, requests, deliveries.
//! - `writer`: the thread that stores chat messages, then delivers them.
//!
//! The accept loop only accepts and hands off: the TLS handshake happens on
//! the session's pool thread, so a client that stalls cannot block anyone
//! else. Each session runs inside `catch_unwind` (rouille's habit), so a
//! bug that panics costs one client, never the server.

mod hub;
mod session;
mod writer;

pub use hub::{Hub, Outbox, SessionId};

use crate::config::ServerConfig;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsSetupError};
use session::SessionContext;
use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use threadpool::ThreadPool;

/// Stack size of session threads. Stacks are committed lazily, so this
/// bounds virtual memory, not RSS; session code needs little stack.
const SESSION_STACK: usize = 512 * 1024;

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The database could not be opened or migrated.
    #[error("cannot open database {path}: {err}")]
    Store {
        /// The database file.
        path: std::path::PathBuf,
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

/// A bound, ready server; [`Server::run`] serves clients.
pub struct Server {
    /// The listening socket; bound in [`Server::bind`] so the caller can
    /// learn the real port before serving.
    listener: TcpListener,
    /// Shared by every session thread.
    ctx: Arc<SessionContext>,
    /// Session threads; one per connected client, `max_sessions` at most.
    pool: ThreadPool,
}

impl Server {
    /// Loads TLS material, opens the database, starts the message writer
    /// and binds the listen address.
    pub fn bind(config: &ServerConfig) -> Result<Server, ServerError> {
        let acceptor = tls::server_acceptor(&config.cert, &config.key)?;
        if let Some(dir) = config.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| ServerError::Io {
                what: format!("cannot create {}", dir.display()),
                err,
            })?;
        }
        let store_err = |err| ServerError::Store {
            path: config.db.clone(),
            err,
        };
        let store = Store::open(&config.db, 8).map_err(store_err)?;
        let hub = Arc::new(Hub::new(store.load_rooms().map_err(store_err)?));
        let (writer, _writer_thread) =
            writer::spawn(store.clone(), hub.clone()).map_err(|err| ServerError::Io {
                what: "cannot start the message writer".into(),
                err,
            })?;
        let listener = TcpListener::bind(config.listen).map_err(|err| ServerError::Io {
            what: format!("cannot listen on {}", config.listen),
            err,
        })?;
        let ctx = Arc::new(SessionContext {
            store,
            hub,
            writer,
            acceptor,
            password_iterations: config.password_iterations,
            dummy_hash: crate::password::dummy_hash(config.password_iterations),
            handshake_timeout: config.handshake_timeout,
            outbox_limit: config.outbox_limit,
            next_session: AtomicU64::new(1),
        });
        let pool = threadpool::Builder::new()
            .num_threads(config.max_sessions)
            .thread_name("session".into())
            .thread_stack_size(SESSION_STACK)
            .build();
        Ok(Server {
            listener,
            ctx,
            pool,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts clients forever. Errors on single connections are handled
    /// (logged) in their sessions and never come back here.
    pub fn run(self) -> Result<(), ServerError> {
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.listener.accept() {
                Ok((tcp, peer)) => {
                    backoff = Duration::from_millis(5);
                    let ctx = self.ctx.clone();
                    self.pool.execute(move || {
                        let served =
                            catch_unwind(AssertUnwindSafe(|| session::serve(tcp, peer, &ctx)));
                        if served.is_err() {
                            log::error!(
                                "session from {peer} panicked; other sessions are unaffected"
                            );
                        }
                    });
                }
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
}
