//! Connections per client address, counted at `accept()`.
//!
//! Every accepted connection is counted against its address before any
//! thread is started or any TLS byte is read, and stays counted until it
//! is gone (handshake, queue and session alike): [`IpGuard`] uncounts it on
//! drop. Counting only after the handshake let one address hold thousands
//! of front-door threads for the whole handshake timeout and lock everyone
//! else out.
//!
//! An address over its limit gets at most [`GOODBYES_PER_ADDRESS`] more
//! connections that are handshaken only to be told `too_many_connections`;
//! beyond those its connections are closed at once, unanswered. So one
//! address never holds more than `max + GOODBYES_PER_ADDRESS` threads.
//!
//! IPv6 addresses are grouped by their /64 prefix (one customer's usual
//! allocation, where every host address is free to pick), IPv4 by the full
//! address; an IPv4-mapped IPv6 address counts as its IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Connections of an address over its limit that are still answered (after
/// a handshake) with `too_many_connections`, at once.
pub const GOODBYES_PER_ADDRESS: usize = 4;

/// What a connection's address is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// One IPv4 address.
    V4(u32),
    /// One IPv6 /64 prefix.
    V6Prefix(u64),
}

impl AddressKey {
    /// The key an address is counted under.
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(u32::from(v4)),
                None => AddressKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    connections: usize,
    goodbyes: usize,
}

/// Concurrent connections per address (see the module doc).
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    counts: Mutex<HashMap<AddressKey, Count>>,
}

/// What to do with a newly accepted connection.
#[derive(Debug)]
pub enum Admission {
    /// Handshake it; the guard (none when there is no limit) keeps it
    /// counted. A guard that is [`IpGuard::over_limit`] is for a connection
    /// to be told `too_many_connections` and closed.
    Counted(Option<IpGuard>),
    /// Close at once, unanswered.
    Drop,
}

/// One counted connection; dropping it uncounts it.
#[derive(Debug)]
pub struct IpGuard {
    limit: Arc<PerIpLimit>,
    key: AddressKey,
    goodbye: bool,
}

impl IpGuard {
    /// Whether this connection is over its address's limit: it is only to
    /// be told so.
    pub fn over_limit(&self) -> bool {
        self.goodbye
    }
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self.limit.lock();
        if let Some(c) = counts.get_mut(&self.key) {
            if self.goodbye {
                c.goodbyes -= 1;
            } else {
                c.connections -= 1;
            }
            if c.connections == 0 && c.goodbyes == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl PerIpLimit {
    /// A limit of `max` connections per address; 0 = unlimited.
    pub fn new(max: usize) -> Arc<PerIpLimit> {
        Arc::new(PerIpLimit {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddressKey, Count>> {
        // Plain counters stay consistent even if a holder panicked.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection from `ip` and says what to do with it. With no
    /// limit, nothing is counted.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        if self.max == 0 {
            return Admission::Counted(None);
        }
        let key = AddressKey::of(ip);
        let mut counts = self.lock();
        let c = counts.entry(key).or_default();
        let goodbye = if c.connections < self.max {
            c.connections += 1;
            false
        } else if c.goodbyes < GOODBYES_PER_ADDRESS {
            c.goodbyes += 1;
            true
        } else {
            return Admission::Drop;
        };
        Admission::Counted(Some(IpGuard {
            limit: self.clone(),
            key,
            goodbye,
        }))
    }

    /// Addresses (keys) with a connection now.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_then_a_few_goodbyes_then_nothing() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = limit.admit(ip);
        let b = limit.admit(ip);
        let served = |a: &Admission| matches!(a, Admission::Counted(Some(g)) if !g.over_limit());
        assert!(served(&a) && served(&b));
        let goodbyes: Vec<Admission> = (0..GOODBYES_PER_ADDRESS).map(|_| limit.admit(ip)).collect();
        assert!(
            goodbyes
                .iter()
                .all(|g| matches!(g, Admission::Counted(Some(g)) if g.over_limit()))
        );
        assert!(matches!(limit.admit(ip), Admission::Drop));
        // Another address is unaffected.
        let other = limit.admit("10.0.0.2".parse().unwrap());
        assert!(served(&other));
        drop(a);
        let again = limit.admit(ip);
        assert!(served(&again), "a freed place is served again");
        drop((goodbyes, b, again));
        assert_eq!(limit.addresses(), 1);
        drop(other);
        assert_eq!(limit.addresses(), 0, "counts are released on drop");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            AddressKey::of(mapped),
            AddressKey::of("192.0.2.7".parse().unwrap())
        );
    }
}
