//! What every server thread shares: the handlers' [`Services`], and the
//! accept loop's own state (TLS acceptor, session pool, session ids,
//! per-address connection counts).

use super::per_ip::PerIpLimit;
use super::services::Services;
use super::spare_threads::SpareThreads;
use native_tls::TlsAcceptor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use threadpool::ThreadPool;

/// Shared by every server thread: the request handlers' [`Services`] plus
/// what only the accept loop, the front door and the session threads use.
pub struct ServerContext {
    /// What request handlers use (database, hub, writer, ...).
    pub services: Services,
    /// TLS acceptor with the server's certificate.
    pub acceptor: TlsAcceptor,
    /// Threads that run admitted sessions (`max_sessions` of them).
    pub pool: ThreadPool,
    /// Source of session ids.
    pub next_session: AtomicU64,
    /// Connections per client address, counted at accept.
    pub per_ip: Arc<PerIpLimit>,
    /// Connections doing handshakes or waiting in line now (each on a
    /// front-door thread).
    pub front_door_threads: AtomicUsize,
    /// The front door's threads, kept between connections.
    pub front_door: SpareThreads,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext").finish_non_exhaustive()
    }
}
