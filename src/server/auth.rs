//! Authentication work: password hashing on a small bounded pool, login
//! throttling per account and per address, and resume tokens.
//!
//! - PBKDF2 (~70 ms per hash at 600,000 iterations) runs on `hash_threads`
//!   threads only, never on more: a storm of logins queues there instead of
//!   taking every core from the sessions that are chatting.
//! - [`Throttle`] counts failed logins per account name and per IP address
//!   over ten minutes; from the fifth on, further attempts wait 1, 2, 4 ...
//!   seconds (at most 15 minutes) and are refused with `too_many_attempts`
//!   without checking the password. Unknown names are throttled the same way,
//!   so the answer never tells whether an account exists.
//! - A resume token is 32 random bytes given to the client after a password
//!   login; the server stores only HMAC-SHA256(server secret, token), so a
//!   stolen database does not yield usable tokens.

use crate::password;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::sync_channel;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use threadpool::ThreadPool;

/// Failures within this window count.
const WINDOW: Duration = Duration::from_secs(600);
/// Failures allowed before attempts are delayed.
const FREE_FAILURES: usize = 5;
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(900);

/// Failed-login bookkeeping for one key (an account name or an address).
#[derive(Debug, Default, Clone)]
struct Failures {
    times: VecDeque<Instant>,
}

impl Failures {
    fn prune(&mut self, now: Instant) {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            self.times.pop_front();
        }
    }

    /// When the next attempt is allowed, if not now.
    fn locked_until(&self, free: usize) -> Option<Instant> {
        let n = self.times.len();
        if free == 0 || n < free {
            return None;
        }
        let exp = (n - free).min(20) as u32;
        let delay = Duration::from_secs(1u64 << exp).min(MAX_DELAY);
        self.times.back().map(|last| *last + delay)
    }
}

/// Failed logins per account and per address. Time is passed in.
#[derive(Debug)]
pub struct Throttle {
    by_user: HashMap<String, Failures>,
    by_ip: HashMap<IpAddr, Failures>,
    /// Failures allowed before delays start; 0 turns throttling off.
    free: usize,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(FREE_FAILURES)
    }
}

impl Throttle {
    /// A throttle allowing `free` failures in ten minutes before delays
    /// start (0: never throttle).
    pub fn new(free: usize) -> Throttle {
        Throttle {
            by_user: HashMap::new(),
            by_ip: HashMap::new(),
            free,
        }
    }

    /// `Err(wait)` if an attempt for `user` from `ip` must wait.
    pub fn check(&mut self, user: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut until = None;
        if let Some(f) = self.by_user.get_mut(user) {
            f.prune(now);
            until = until.max(f.locked_until(self.free));
        }
        if let Some(f) = self.by_ip.get_mut(&ip) {
            f.prune(now);
            until = until.max(f.locked_until(self.free));
        }
        match until {
            Some(t) if t > now => Err(t - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt.
    pub fn failure(&mut self, user: &str, ip: IpAddr, now: Instant) {
        for f in [
            self.by_user.entry(user.to_owned()).or_default(),
            self.by_ip.entry(ip).or_default(),
        ] {
            f.prune(now);
            f.times.push_back(now);
        }
        // Keep the maps from growing without bound under a spray of names.
        if self.by_user.len() > 100_000 {
            self.by_user.retain(|_, f| {
                f.prune(now);
                !f.times.is_empty()
            });
        }
    }

    /// A successful login clears the account's failures (not the
    /// address's: one good password must not unlock guessing at others).
    pub fn success(&mut self, user: &str) {
        self.by_user.remove(user);
    }
}

/// The server's authentication helper; shared by all sessions.
pub struct Auth {
    pool: Mutex<ThreadPool>,
    throttle: Mutex<Throttle>,
    secret: Vec<u8>,
    /// Iterations for new hashes.
    pub iterations: u32,
    dummy_hash: String,
}

impl Auth {
    /// An authenticator with `threads` hashing threads and the server's
    /// token secret, allowing `free_failures` failed logins per ten minutes
    /// before throttling (0: off).
    pub fn new(threads: usize, iterations: u32, secret: Vec<u8>, free_failures: usize) -> Auth {
        Auth {
            pool: Mutex::new(
                threadpool::Builder::new()
                    .num_threads(threads.max(1))
                    .thread_name("pbkdf2".into())
                    .build(),
            ),
            throttle: Mutex::new(Throttle::new(free_failures)),
            secret,
            iterations,
            dummy_hash: password::dummy_hash(iterations),
        }
    }

    fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = sync_channel(1);
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .execute(move || {
                let _ = tx.send(job());
            });
        rx.recv().ok()
    }

    /// Hashes a new password on the hashing pool.
    pub fn hash(&self, pw: &str) -> Result<String, password::PasswordError> {
        let (pw, iterations) = (pw.to_owned(), self.iterations);
        self.run(move || password::hash(&pw, iterations))
            .unwrap_or(Err(password::PasswordError::Random))
    }

    /// Checks a password on the hashing pool. `stored` is `None` for an
    /// unknown user: a dummy hash is checked, so both cost the same.
    pub fn verify(&self, pw: &str, stored: Option<&str>) -> bool {
        let stored = stored.unwrap_or(&self.dummy_hash).to_owned();
        let known = stored != self.dummy_hash;
        let pw = pw.to_owned();
        let ok = self
            .run(move || password::verify(&pw, &stored).unwrap_or(false))
            .unwrap_or(false);
        ok && known
    }

    /// Whether a stored hash uses fewer iterations than configured now.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        password::iterations_of(stored).is_some_and(|n| n < self.iterations)
    }

    /// See [`Throttle::check`].
    pub fn check(&self, user: &str, ip: IpAddr) -> Result<(), Duration> {
        self.throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(user, ip, Instant::now())
    }

    /// See [`Throttle::failure`].
    pub fn failure(&self, user: &str, ip: IpAddr) {
        self.throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failure(user, ip, Instant::now());
    }

    /// See [`Throttle::success`].
    pub fn success(&self, user: &str) {
        self.throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .success(user);
    }

    /// A new resume token (hex, for the client) and its digest (to store).
    pub fn new_token(&self) -> Option<(String, String)> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).ok()?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let digest = self.digest(&token);
        Some((token, digest))
    }

    /// HMAC-SHA256(secret, token), hex: what is stored and looked up.
    pub fn digest(&self, token: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes keys of any length");
        mac.update(token.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        IpAddr::from([10, 0, 0, 1])
    }

    #[test]
    fn five_failures_are_free_then_the_wait_doubles() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..5 {
            assert_eq!(t.check("alice", ip(), t0), Ok(()), "attempt {i}");
            t.failure("alice", ip(), t0);
        }
        assert_eq!(t.check("alice", ip(), t0), Err(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(t.check("alice", ip(), t1), Ok(()));
        t.failure("alice", ip(), t1);
        assert_eq!(t.check("alice", ip(), t1), Err(Duration::from_secs(2)));
        // Ten minutes later the slate is clean.
        assert_eq!(
            t.check("alice", ip(), t1 + WINDOW + Duration::from_secs(1)),
            Ok(())
        );
    }

    #[test]
    fn an_address_guessing_many_accounts_is_throttled_too() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..5 {
            t.failure(&format!("user{i}"), ip(), t0);
        }
        assert!(t.check("someone-else", ip(), t0).is_err());
        assert!(
            t.check("someone-else", IpAddr::from([10, 0, 0, 2]), t0)
                .is_ok()
        );
        t.success("user1");
        assert!(
            t.check("someone-else", ip(), t0).is_err(),
            "success does not clear the address"
        );
    }

    #[test]
    fn the_wait_is_capped() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for _ in 0..40 {
            t.failure("x", ip(), t0);
        }
        assert_eq!(t.check("x", ip(), t0), Err(MAX_DELAY));
    }

    #[test]
    fn tokens_are_random_and_only_their_keyed_digest_matches() {
        let auth = Auth::new(1, 10, b"secret one".to_vec(), 5);
        let (token, digest) = auth.new_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(auth.digest(&token), digest);
        assert_ne!(auth.new_token().unwrap().0, token);
        let other = Auth::new(1, 10, b"secret two".to_vec(), 5);
        assert_ne!(
            other.digest(&token),
            digest,
            "the digest depends on the server secret"
        );
    }

    #[test]
    fn verification_runs_on_the_pool_and_unknown_users_never_pass() {
        let auth = Auth::new(1, 10, b"s".to_vec(), 5);
        let h = auth.hash("correct horse").unwrap();
        assert!(auth.verify("correct horse", Some(&h)));
        assert!(!auth.verify("wrong", Some(&h)));
        assert!(!auth.verify("confab-dummy-password", None));
        assert!(!auth.needs_rehash(&h));
        let stronger = Auth::new(1, 20, b"s".to_vec(), 5);
        assert!(stronger.needs_rehash(&h));
    }
}
