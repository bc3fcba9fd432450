//! Authentication work: password hashing bounded to a few cores, login
//! throttling per account and per address, and resume tokens.
//!
//! - PBKDF2 (~70 ms per hash at 600,000 iterations) runs on at most
//!   `hash_threads` threads at once: a session hashes on its own thread
//!   once it holds one of `hash_threads` permits ([`HashPermits`]), so a
//!   storm of logins waits there instead of taking every core from the
//!   sessions that are chatting, and a login costs no hand-off to another
//!   thread and back (two cross-core wake-ups, about a tenth of a
//!   1,000-iteration login's server CPU on the reference VM).
//! - [`Throttle`] counts failed logins over ten minutes per account and
//!   address, per address, and (looser, and not for addresses the account
//!   uses) per account; past a bound, further attempts wait 1, 2, 4 ...
//!   seconds (at most 15 minutes) and are refused with `too_many_attempts`
//!   without checking the password. Unknown names are throttled the same
//!   way, so the answer never tells whether an account exists. An attempt
//!   is counted when it is admitted, so checking and counting are one step.
//! - A resume token is 32 random bytes given to the client after a password
//!   login; the server stores only HMAC-SHA256(server secret, token), so a
//!   stolen database does not yield usable tokens.

use super::cluster::{Outbound, Shared};
use super::per_ip::AddressKey;
use crate::password;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Failures within this window count.
const WINDOW: Duration = Duration::from_secs(600);
/// Failures allowed before attempts are delayed.
const FREE_FAILURES: usize = 5;
/// The per-account bound (failures from addresses the account has never
/// logged in from) is this many times the per-address one.
const ACCOUNT_FACTOR: usize = 4;
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// How long an address stays "known" for an account after a successful
/// login from it.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 86400);
/// Most known addresses remembered per account (the oldest is forgotten).
const KNOWN_MAX: usize = 16;

/// Failed-login bookkeeping for one key.
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

    /// Takes back one attempt that turned out not to be a failure.
    fn forget_one(&mut self) {
        self.times.pop_back();
    }
}

/// How a login proves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A password: subject to every bound.
    Password,
    /// A resume token (256 random bits, not guessable): not subject to
    /// the per-account bound.
    Token,
}

/// What an admitted attempt was counted under, to take back on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    account: bool,
    /// Whether throttling is on at all.
    throttled: bool,
}

/// Failed logins, counted three ways (time is passed in):
///
/// - per account *and* address: `free` failures, then waits of 1 s,
///   2 s, 4 s ... (at most 15 minutes);
/// - per address, over all accounts: the same bound, so one address
///   guessing at many names is slowed down as much as at one;
/// - per account, over all addresses, `ACCOUNT_FACTOR` times looser, and
///   only for addresses the account has not logged in from in the last 30
///   days: a botnet can slow down logins to an account from new places, but
///   cannot lock its owner out of the places they use.
///
/// An attempt is counted as a failure when it is admitted ([`Throttle::begin`]),
/// before the password is checked, and taken back if it succeeds: so
/// parallel attempts cannot all pass the check before any is counted.
#[derive(Debug)]
pub struct Throttle {
    by_pair: HashMap<(String, AddressKey), Failures>,
    by_address: HashMap<AddressKey, Failures>,
    by_account: HashMap<String, Failures>,
    /// Addresses each account logged in from, with when.
    known: HashMap<String, Vec<(AddressKey, Instant)>>,
    /// Failures allowed before delays start; 0 turns throttling off.
    free: usize,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(FREE_FAILURES)
    }
}

impl Throttle {
    /// A throttle allowing `free` failures in ten minutes per account and
    /// address before delays start (0: never throttle).
    pub fn new(free: usize) -> Throttle {
        Throttle {
            by_pair: HashMap::new(),
            by_address: HashMap::new(),
            by_account: HashMap::new(),
            known: HashMap::new(),
            free,
        }
    }

    fn is_known(&self, user: &str, addr: AddressKey, now: Instant) -> bool {
        self.known.get(user).is_some_and(|list| {
            list.iter()
                .any(|(a, t)| *a == addr && now.saturating_duration_since(*t) < KNOWN_FOR)
        })
    }

    /// Admits an attempt for `user` from `ip` and counts it as a failure
    /// (taken back by [`Throttle::succeeded`]), or says how long to wait.
    pub fn begin(
        &mut self,
        user: &str,
        ip: IpAddr,
        proof: Proof,
        now: Instant,
    ) -> Result<Counted, Duration> {
        if self.free == 0 {
            return Ok(Counted {
                account: false,
                throttled: false,
            });
        }
        let addr = AddressKey::of(ip);
        let account = proof == Proof::Password && !self.is_known(user, addr, now);
        // Three different maps: the borrows coexist, each key is looked up
        // once.
        let free = self.free;
        let pair = self.by_pair.entry((user.to_owned(), addr)).or_default();
        let by_addr = self.by_address.entry(addr).or_default();
        let mut by_acct = account.then(|| self.by_account.entry(user.to_owned()).or_default());
        pair.prune(now);
        by_addr.prune(now);
        let mut until = pair.locked_until(free).max(by_addr.locked_until(free));
        if let Some(f) = &mut by_acct {
            f.prune(now);
            until = until.max(f.locked_until(free * ACCOUNT_FACTOR));
        }
        if let Some(t) = until.filter(|t| *t > now) {
            return Err(t - now);
        }
        pair.times.push_back(now);
        by_addr.times.push_back(now);
        if let Some(f) = by_acct {
            f.times.push_back(now);
        }
        self.bound_memory(now);
        Ok(Counted {
            account,
            throttled: true,
        })
    }

    /// The attempt succeeded: it was no failure. Clears the failures of
    /// the account from this address (not the address's own: one good
    /// password must not unlock guessing at other accounts) and remembers
    /// the address as one the account uses.
    pub fn succeeded(&mut self, user: &str, ip: IpAddr, counted: Counted, now: Instant) {
        if self.free == 0 {
            return;
        }
        let addr = AddressKey::of(ip);
        self.by_pair.remove(&(user.to_owned(), addr));
        if let Some(f) = self.by_address.get_mut(&addr) {
            f.forget_one();
        }
        if counted.account
            && let Some(f) = self.by_account.get_mut(user)
        {
            f.forget_one();
        }
        self.remember(user, ip, now);
    }

    /// Counts a failure another node saw (a `LoginFailed` shared event),
    /// so the bounds hold over the whole cluster.
    pub fn count(&mut self, user: &str, ip: IpAddr, account: bool, now: Instant) {
        if self.free == 0 {
            return;
        }
        let addr = AddressKey::of(ip);
        self.by_pair
            .entry((user.to_owned(), addr))
            .or_default()
            .times
            .push_back(now);
        self.by_address
            .entry(addr)
            .or_default()
            .times
            .push_back(now);
        if account {
            self.by_account
                .entry(user.to_owned())
                .or_default()
                .times
                .push_back(now);
        }
        self.bound_memory(now);
    }

    /// Remembers `ip` as an address `user` uses (a login, or the account's
    /// creation, from there): it is exempt from the per-account bound.
    pub fn remember(&mut self, user: &str, ip: IpAddr, now: Instant) {
        let addr = AddressKey::of(ip);
        let list = self.known.entry(user.to_owned()).or_default();
        list.retain(|(a, t)| *a != addr && now.saturating_duration_since(*t) < KNOWN_FOR);
        if list.len() >= KNOWN_MAX {
            list.remove(0);
        }
        list.push((addr, now));
    }

    /// Keeps the maps from growing without bound under a spray of names.
    fn bound_memory(&mut self, now: Instant) {
        const MAX_KEYS: usize = 100_000;
        let live = |f: &mut Failures| {
            f.prune(now);
            !f.times.is_empty()
        };
        if self.by_pair.len() > MAX_KEYS {
            self.by_pair.retain(|_, f| live(f));
        }
        if self.by_account.len() > MAX_KEYS {
            self.by_account.retain(|_, f| live(f));
        }
        if self.by_address.len() > MAX_KEYS {
            self.by_address.retain(|_, f| live(f));
        }
    }
}

/// One admitted login attempt. It was counted as a failure when admitted;
/// dropping it leaves it so, [`Attempt::succeeded`] takes it back.
#[must_use = "an attempt is a failure unless it is marked as succeeded"]
pub struct Attempt<'a> {
    auth: &'a Auth,
    user: String,
    ip: IpAddr,
    counted: Counted,
    succeeded: bool,
}

impl Attempt<'_> {
    /// The credentials were right.
    pub fn succeeded(mut self) {
        self.succeeded = true;
        self.auth
            .lock_throttle()
            .succeeded(&self.user, self.ip, self.counted, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    /// A failure stays counted here, and is told to the other nodes.
    fn drop(&mut self) {
        if !self.succeeded
            && self.counted.throttled
            && let Some(out) = self.auth.outbound.get()
        {
            out.push(Shared::LoginFailed {
                user: std::mem::take(&mut self.user),
                ip: self.ip,
                account: self.counted.account,
            });
        }
    }
}

/// At most `n` holders at once: the bound on threads hashing passwords.
/// Waiters are served first come, first served: a returned permit goes
/// straight to the longest waiter (its thread is unparked), so under a
/// storm of logins at 600,000 iterations (~70 ms each) no login can be
/// overtaken again and again and time out, as the old hashing pool's queue
/// guaranteed too.
struct HashPermits {
    state: Mutex<PermitState>,
}

struct PermitState {
    free: usize,
    waiting: VecDeque<Arc<Waiter>>,
}

/// A thread waiting for a permit; `granted` is set by the thread that
/// hands it one.
struct Waiter {
    granted: AtomicBool,
    thread: std::thread::Thread,
}

/// A held permit; dropping it (also while unwinding) gives it back.
struct HashPermit<'a>(&'a HashPermits);

impl HashPermits {
    fn new(n: usize) -> HashPermits {
        HashPermits {
            state: Mutex::new(PermitState {
                free: n.max(1),
                waiting: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PermitState> {
        // Only counts and a queue, changed in single steps: consistent
        // even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acquire(&self) -> HashPermit<'_> {
        let waiter = {
            let mut state = self.lock();
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return HashPermit(self);
            }
            let waiter = Arc::new(Waiter {
                granted: AtomicBool::new(false),
                thread: std::thread::current(),
            });
            state.waiting.push_back(waiter.clone());
            waiter
        };
        // An unpark that came before this park makes it return at once;
        // a park may also return for nothing, hence the loop.
        while !waiter.granted.load(Ordering::Acquire) {
            std::thread::park();
        }
        HashPermit(self)
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

impl Drop for HashPermit<'_> {
    /// Hands the permit to the longest waiter, or puts it back.
    fn drop(&mut self) {
        let mut state = self.0.lock();
        match state.waiting.pop_front() {
            Some(next) => {
                next.granted.store(true, Ordering::Release);
                next.thread.unpark();
            }
            None => state.free += 1,
        }
    }
}

/// The server's authentication helper; shared by all sessions.
pub struct Auth {
    permits: HashPermits,
    throttle: Mutex<Throttle>,
    secret: Vec<u8>,
    /// Iterations for new hashes.
    pub iterations: u32,
    dummy_hash: String,
    /// With several nodes: where failed logins are told to the others.
    outbound: OnceLock<Arc<Outbound>>,
}

impl Auth {
    /// An authenticator letting `threads` threads hash at once, with the server's
    /// token secret, allowing `free_failures` failed logins per ten minutes
    /// before throttling (0: off).
    pub fn new(threads: usize, iterations: u32, secret: Vec<u8>, free_failures: usize) -> Auth {
        Auth {
            permits: HashPermits::new(threads),
            throttle: Mutex::new(Throttle::new(free_failures)),
            secret,
            iterations,
            dummy_hash: password::dummy_hash(iterations),
            outbound: OnceLock::new(),
        }
    }

    /// Tells failed logins to other nodes from now on (see `cluster`).
    pub fn share_with(&self, outbound: Arc<Outbound>) {
        let _ = self.outbound.set(outbound);
    }

    /// Counts a login failure another node saw.
    pub fn count_failure(&self, user: &str, ip: IpAddr, account: bool) {
        self.lock_throttle()
            .count(user, ip, account, Instant::now());
    }

    /// Runs `job` on this thread once a hashing permit is free.
    fn run<T>(&self, job: impl FnOnce() -> T) -> T {
        let _permit = self.permits.acquire();
        job()
    }

    /// Hashes a new password (waiting for a hashing permit).
    pub fn hash(&self, pw: &str) -> Result<String, password::PasswordError> {
        self.run(|| password::hash(pw, self.iterations))
    }

    /// Checks a password (waiting for a hashing permit). `stored` is
    /// `None` for an unknown user: a dummy hash is checked, so both cost
    /// the same.
    pub fn verify(&self, pw: &str, stored: Option<&str>) -> bool {
        let known = stored.is_some_and(|s| s != self.dummy_hash);
        let stored = stored.unwrap_or(&self.dummy_hash);
        let ok = self.run(|| password::verify(pw, stored).unwrap_or(false));
        ok && known
    }

    /// Whether a stored hash uses fewer iterations than configured now.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        password::iterations_of(stored).is_some_and(|n| n < self.iterations)
    }

    /// Admits a login attempt, counted as a failure unless
    /// [`Attempt::succeeded`] is called; `Err(wait)` if it must wait.
    pub fn attempt(&self, user: &str, ip: IpAddr, proof: Proof) -> Result<Attempt<'_>, Duration> {
        let counted = self
            .lock_throttle()
            .begin(user, ip, proof, Instant::now())?;
        Ok(Attempt {
            auth: self,
            user: user.to_owned(),
            ip,
            counted,
            succeeded: false,
        })
    }

    /// Remembers `ip` as an address `user` uses (see [`Throttle::remember`]).
    pub fn remember(&self, user: &str, ip: IpAddr) {
        self.lock_throttle().remember(user, ip, Instant::now());
    }

    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // Counters stay consistent even if a holder panicked.
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
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

    fn fail(t: &mut Throttle, user: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        t.begin(user, ip, Proof::Password, now).map(|_| ())
    }

    fn addr(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 1, n])
    }

    #[test]
    fn five_failures_are_free_then_the_wait_doubles() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..5 {
            assert_eq!(fail(&mut t, "alice", ip(), t0), Ok(()), "attempt {i}");
        }
        assert_eq!(fail(&mut t, "alice", ip(), t0), Err(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(fail(&mut t, "alice", ip(), t1), Ok(()));
        assert_eq!(fail(&mut t, "alice", ip(), t1), Err(Duration::from_secs(2)));
        // Ten minutes later the slate is clean.
        assert_eq!(
            fail(&mut t, "alice", ip(), t1 + WINDOW + Duration::from_secs(1)),
            Ok(())
        );
    }

    #[test]
    fn an_attempt_is_counted_before_its_outcome_is_known() {
        // Issue 14, item 3: parallel attempts all passed the check before
        // any failure was counted.
        let t0 = Instant::now();
        let mut t = Throttle::default();
        let admitted = (0..16)
            .filter(|_| fail(&mut t, "alice", ip(), t0).is_ok())
            .count();
        assert_eq!(admitted, FREE_FAILURES);
        // A success takes its own attempt back.
        let mut t = Throttle::default();
        for _ in 0..4 {
            fail(&mut t, "bob", ip(), t0).unwrap();
        }
        let c = t.begin("bob", ip(), Proof::Password, t0).unwrap();
        t.succeeded("bob", ip(), c, t0);
        assert!(
            fail(&mut t, "bob", ip(), t0).is_ok(),
            "bob's slate is clean"
        );
    }

    #[test]
    fn an_address_guessing_many_accounts_is_throttled_too() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..5 {
            fail(&mut t, &format!("user{i}"), ip(), t0).unwrap();
        }
        assert!(fail(&mut t, "someone-else", ip(), t0).is_err());
        assert!(fail(&mut t, "someone-else", addr(2), t0).is_ok());
    }

    #[test]
    fn failures_from_many_addresses_cannot_lock_the_owner_out_of_a_known_address() {
        // Issue 14, item 9: failing logins under a name from anywhere used
        // to lock its owner out.
        let t0 = Instant::now();
        let mut t = Throttle::default();
        let home = addr(200);
        let c = t.begin("alice", home, Proof::Password, t0).unwrap();
        t.succeeded("alice", home, c, t0);
        // A botnet: 2 failures from each of 100 addresses.
        let mut refused = 0;
        for n in 0..100 {
            for _ in 0..2 {
                if fail(&mut t, "alice", addr(n), t0).is_err() {
                    refused += 1;
                }
            }
        }
        assert_eq!(
            200 - refused,
            FREE_FAILURES * ACCOUNT_FACTOR,
            "the account bound"
        );
        assert!(
            fail(&mut t, "alice", addr(150), t0).is_err(),
            "a new place waits"
        );
        assert!(fail(&mut t, "alice", home, t0).is_ok(), "home still works");
        // A token login is not subject to the account bound either.
        assert!(t.begin("alice", addr(151), Proof::Token, t0).is_ok());
        // Ten minutes on, the account's failures have expired: the full
        // allowance is back.
        let later = t0 + WINDOW + Duration::from_secs(1);
        for n in 160..160 + (FREE_FAILURES * ACCOUNT_FACTOR) as u8 {
            assert!(fail(&mut t, "alice", addr(n), later).is_ok(), "address {n}");
        }
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_a_count() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..5u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
            fail(&mut t, &format!("u{i}"), ip, t0).unwrap();
        }
        let same_prefix = IpAddr::from([0x2001, 0xdb8, 0, 1, 9, 9, 9, 9]);
        assert!(fail(&mut t, "x", same_prefix, t0).is_err());
    }

    #[test]
    fn the_wait_is_capped_and_zero_turns_it_off() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for _ in 0..40 {
            let _ = fail(&mut t, "x", ip(), t0);
        }
        assert_eq!(fail(&mut t, "x", ip(), t0), Err(Duration::from_secs(1)));
        let last = t0;
        let later = last + Duration::from_secs(500);
        let _ = fail(&mut t, "x", ip(), later);
        for _ in 0..40 {
            let _ = fail(&mut t, "x", ip(), later);
        }
        assert!(fail(&mut t, "x", ip(), later).unwrap_err() <= MAX_DELAY);
        let mut off = Throttle::new(0);
        assert!((0..100).all(|_| fail(&mut off, "x", ip(), t0).is_ok()));
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
    fn verification_checks_the_hash_and_unknown_users_never_pass() {
        let auth = Auth::new(1, 10, b"s".to_vec(), 5);
        let h = auth.hash("correct horse").unwrap();
        assert!(auth.verify("correct horse", Some(&h)));
        assert!(!auth.verify("wrong", Some(&h)));
        assert!(!auth.verify("confab-dummy-password", None));
        assert!(!auth.needs_rehash(&h));
        let stronger = Auth::new(1, 20, b"s".to_vec(), 5);
        assert!(stronger.needs_rehash(&h));
    }

    #[test]
    fn no_more_than_the_permitted_threads_hash_at_once() {
        use std::sync::atomic::AtomicUsize;
        let auth = Arc::new(Auth::new(2, 10, b"s".to_vec(), 5));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (auth, now, most) = (auth.clone(), now.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        auth.run(|| {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                            std::thread::yield_now();
                            now.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 2, "{most} threads hashed at once");
        assert!(most >= 1);
    }

    #[test]
    fn waiting_logins_get_the_permit_in_the_order_they_came() {
        let permits = Arc::new(HashPermits::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = permits.acquire();
        let mut threads = Vec::new();
        for i in 0..5 {
            let (permits_, order) = (permits.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _permit = permits_.acquire();
                order.lock().unwrap().push(i);
            }));
            // The next one comes only once this one waits.
            let deadline = Instant::now() + Duration::from_secs(10);
            while permits.waiting() < i + 1 {
                assert!(Instant::now() < deadline, "thread {i} never queued");
                std::thread::yield_now();
            }
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        // All given back: the next one goes through at once.
        assert_eq!(permits.lock().free, 1);
        drop(permits.acquire());
    }

    #[test]
    fn a_panic_while_hashing_gives_the_permit_back() {
        let auth = Auth::new(1, 10, b"s".to_vec(), 5);
        let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            auth.run(|| panic!("hashing failed"))
        }));
        assert!(hit.is_err());
        // With the only permit lost, this would wait for ever.
        let h = auth.hash("correct horse").unwrap();
        assert!(auth.verify("correct horse", Some(&h)));
    }
}
