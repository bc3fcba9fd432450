//! Threads that are kept for the next job instead of ending: the front
//! door's threads.
//!
//! Every accepted connection gets a thread of its own for its handshake
//! (see `front_door`), so that a client that stalls holds no one else up.
//! Starting and ending a thread for each connection cost the server about a
//! tenth of its CPU per login on the reference VM (`clone3`, the stack's
//! `mmap`/`mprotect`, and at exit glibc's `madvise` of the stack, whose TLB
//! shoot-down interrupts the other core). So a thread whose job is done
//! waits up to [`SpareThreads::new`]'s `keep` for another one; a job goes to
//! a waiting thread if there is one and to a new thread otherwise, so there
//! are never fewer threads than jobs in progress, and none is queued behind
//! another. Idle threads end after `keep`, or when the owner is dropped.
//!
//! Invariant (under the lock): `idle` = threads waiting − jobs not yet
//! taken, so a job is only handed to a waiting thread that nobody else has
//! claimed.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A job for a spare thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    alive: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Jobs run outside the lock, so no panic can leave it inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Named threads with one stack size, reused from job to job.
pub struct SpareThreads {
    shared: Arc<Shared>,
    name: String,
    stack: usize,
    keep: Duration,
    nicer: i32,
}

impl SpareThreads {
    /// Threads called `name` with `stack` bytes of stack, each kept for
    /// `keep` after its last job.
    pub fn new(name: &str, stack: usize, keep: Duration) -> SpareThreads {
        SpareThreads {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            name: name.to_owned(),
            stack,
            keep,
            nicer: 0,
        }
    }

    /// Each thread lowers its own scheduling priority by `by` nice levels
    /// when it starts (up to 19), so that under full load the kernel
    /// prefers the other threads of the process. A thread cannot raise its
    /// priority again without privileges, which is why this is a property
    /// of the threads and not of a job.
    pub fn nicer_by(mut self, by: i32) -> SpareThreads {
        self.nicer = by;
        self
    }

    /// Runs `job` on a waiting thread, or on a new one if none waits. Fails
    /// only if a new thread was needed and could not be started; the job is
    /// then dropped unrun.
    pub fn run(&self, job: Job) -> std::io::Result<()> {
        {
            let mut state = self.shared.lock();
            if state.idle > 0 {
                state.idle -= 1;
                state.jobs.push_back(job);
                drop(state);
                self.shared.wake.notify_one();
                return Ok(());
            }
            state.alive += 1;
        }
        let (shared, keep, nicer) = (self.shared.clone(), self.keep, self.nicer);
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .stack_size(self.stack)
            .spawn(move || {
                let _alive = Alive(&shared);
                if nicer > 0 {
                    lower_priority(nicer);
                }
                work(job, &shared, keep)
            });
        if spawned.is_err() {
            self.shared.lock().alive -= 1;
        }
        spawned.map(drop)
    }

    /// Threads waiting for a job now.
    pub fn idle(&self) -> usize {
        self.shared.lock().idle
    }

    /// Threads that exist now, busy or waiting.
    pub fn alive(&self) -> usize {
        self.shared.lock().alive
    }
}

impl Drop for SpareThreads {
    /// Waiting threads end now; busy ones end after their job.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

/// Lowers the calling thread's priority by `by` nice levels (at most to
/// 19). On Linux `setpriority(PRIO_PROCESS, tid)` applies to one thread.
/// A failure only leaves the priority as it was.
fn lower_priority(by: i32) {
    // SAFETY: gettid, getpriority and setpriority take plain integers and
    // touch no memory of ours.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            return;
        }
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, (now + by).min(19));
    }
}

/// The calling thread's nice value (tests).
#[cfg(test)]
fn priority() -> i32 {
    // SAFETY: as in `lower_priority`.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// Uncounts a thread when it ends, also by a panic.
struct Alive<'a>(&'a Shared);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.lock().alive -= 1;
    }
}

/// A spare thread's life: its first job, then whatever is handed to it
/// while it waits, until it has waited `keep` for nothing.
fn work(first: Job, shared: &Shared, keep: Duration) {
    let mut job = first;
    loop {
        // A job catches its own panics (`front_door` does); one that does
        // not ends this thread, and the count below stays right because the
        // thread was not counted idle while it ran.
        job();
        let mut state = shared.lock();
        if state.closed {
            return;
        }
        state.idle += 1;
        let deadline = Instant::now() + keep;
        job = loop {
            if let Some(next) = state.jobs.pop_front() {
                // `run` took this thread off `idle` when it queued the job.
                break next;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.closed || left.is_zero() {
                state.idle -= 1;
                return;
            }
            state = shared
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn thread_id_of(threads: &SpareThreads) -> std::thread::ThreadId {
        let (tx, rx) = channel();
        threads
            .run(Box::new(move || {
                tx.send(std::thread::current().id()).unwrap()
            }))
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn a_finished_thread_takes_the_next_job() {
        let threads = SpareThreads::new("spare-test", 64 * 1024, Duration::from_secs(60));
        let first = thread_id_of(&threads);
        wait_until("the thread to wait", || threads.idle() == 1);
        assert_eq!(thread_id_of(&threads), first, "the same thread ran it");
        wait_until("the thread to wait again", || threads.idle() == 1);
        assert_eq!(threads.alive(), 1);
    }

    #[test]
    fn jobs_in_progress_never_wait_for_each_other() {
        let threads = SpareThreads::new("spare-test", 64 * 1024, Duration::from_secs(60));
        // Eight jobs that each wait until all eight have started: with
        // fewer threads than jobs this never finishes.
        let started = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (done_tx, done_rx) = channel();
        for _ in 0..8 {
            let (started, done_tx) = (started.clone(), done_tx.clone());
            threads
                .run(Box::new(move || {
                    let (count, all) = &*started;
                    let mut n = count.lock().unwrap();
                    *n += 1;
                    all.notify_all();
                    while *n < 8 {
                        n = all.wait(n).unwrap();
                    }
                    done_tx.send(()).unwrap();
                }))
                .unwrap();
        }
        for _ in 0..8 {
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        wait_until("all eight to wait", || threads.idle() == 8);
        assert_eq!(threads.alive(), 8);
        // A second round reuses them: no new thread is needed, so the idle
        // count drops to zero while they run.
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        for _ in 0..8 {
            let gate = gate.clone();
            threads
                .run(Box::new(move || drop(gate.lock().unwrap())))
                .unwrap();
        }
        assert_eq!(threads.idle(), 0);
        drop(held);
        wait_until("all eight to wait again", || threads.idle() == 8);
        assert_eq!(threads.alive(), 8, "no thread was added");
    }

    #[test]
    fn idle_threads_end_after_their_keep_and_a_new_one_starts_later() {
        let threads = SpareThreads::new("spare-test", 64 * 1024, Duration::from_millis(20));
        let first = thread_id_of(&threads);
        wait_until("the idle thread to end", || threads.alive() == 0);
        assert_eq!(threads.idle(), 0);
        assert_ne!(thread_id_of(&threads), first);
    }

    #[test]
    fn threads_can_run_at_a_lower_priority() {
        let here = priority();
        let threads =
            SpareThreads::new("spare-test", 64 * 1024, Duration::from_secs(60)).nicer_by(5);
        let (tx, rx) = channel();
        threads
            .run(Box::new(move || tx.send(priority()).unwrap()))
            .unwrap();
        let there = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(there, (here + 5).min(19));
        assert_eq!(priority(), here, "the caller's own priority is untouched");
    }

    #[test]
    fn dropping_the_owner_ends_waiting_threads() {
        let threads = SpareThreads::new("spare-test", 64 * 1024, Duration::from_secs(600));
        let (tx, rx) = channel::<()>();
        threads.run(Box::new(move || drop(tx))).unwrap();
        wait_until("the thread to wait", || threads.idle() == 1);
        let shared = threads.shared.clone();
        drop(threads);
        wait_until("the thread to end", || shared.lock().alive == 0);
        assert_eq!(shared.lock().idle, 0);
        assert!(rx.recv().is_err());
    }
}
