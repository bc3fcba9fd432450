//! What every server thread shares: settings, the database, the hub, the
//! writer, the wait queue, the session pool, and the counters behind
//! `stats`.

use super::hub::Hub;
use super::wait_queue::WaitQueue;
use super::writer::WriterHandle;
use crate::protocol::ServerStats;
use crate::store::SharedStore;
use native_tls::TlsAcceptor;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use threadpool::ThreadPool;

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
    /// Longest message body, bytes.
    pub max_message_len: usize,
    /// Largest frame payload a client may send, bytes.
    pub max_request_len: usize,
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

/// Shared by every server thread.
pub struct ServerContext {
    /// The database.
    pub store: SharedStore,
    /// Shared in-memory state.
    pub hub: Arc<Hub>,
    /// The message writer.
    pub writer: WriterHandle,
    /// TLS acceptor with the server's certificate.
    pub acceptor: TlsAcceptor,
    /// Session slots and the wait queue.
    pub queue: Arc<WaitQueue>,
    /// Threads that run admitted sessions (`max_sessions` of them).
    pub pool: ThreadPool,
    /// Settings.
    pub limits: Limits,
    /// Users allowed admin requests.
    pub admins: Vec<String>,
    /// Shared files on disk.
    pub files: super::file_store::FileStore,
    /// What may be shared.
    pub file_rules: crate::file_rules::FileRules,
    /// Password hashing, login throttling, resume tokens.
    pub auth: super::auth::Auth,
    /// Source of session ids.
    pub next_session: AtomicU64,
    /// Per-IP connection counts.
    pub per_ip: PerIpLimit,
    /// Threads doing handshakes or waiting in line now.
    pub front_door_threads: AtomicUsize,
    /// Counters.
    pub counters: Counters,
}

impl ServerContext {
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
