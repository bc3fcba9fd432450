//! What every server thread shares: the handlers' [`Services`], and the
//! accept loop's own state (TLS acceptor, session pool, session ids,
//! per-address connection counts).

use super::services::Services;
use native_tls::TlsAcceptor;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
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
    /// Per-IP connection counts.
    pub per_ip: PerIpLimit,
    /// Threads doing handshakes or waiting in line now.
    pub front_door_threads: AtomicUsize,
}

/// Concurrent connections per IP address.
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it uncounts it.
#[derive(Debug)]
pub struct IpGuard {
    limit: Arc<ServerContext>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self
            .limit
            .per_ip
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext").finish_non_exhaustive()
    }
}

impl PerIpLimit {
    /// A limit of `max` connections per address; 0 = unlimited.
    pub fn new(max: usize) -> PerIpLimit {
        PerIpLimit {
            max,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a connection from `ip`, or returns `None` if the address is
    /// at its limit. With no limit, nothing is counted.
    pub fn acquire(ctx: &Arc<ServerContext>, ip: IpAddr) -> Option<Option<IpGuard>> {
        let limit = &ctx.per_ip;
        if limit.max == 0 {
            return Some(None);
        }
        let mut counts = limit.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit.max {
            return None;
        }
        *n += 1;
        Some(Some(IpGuard {
            limit: ctx.clone(),
            ip,
        }))
    }
}
