//! Session slots and the FIFO queue of clients waiting for one.
//!
//! `max_sessions` clients hold a [`Slot`] at a time. When all are taken, a
//! newcomer (its TLS handshake done) takes a [`Ticket`] and waits in line,
//! guarded by one `Mutex` and one `Condvar`. Its thread sleeps in
//! [`WaitQueue::wait_turn`] and wakes whenever the line moves, so it can
//! tell its client the new position at once.
//!
//! Fairness rules, all enforced under the one lock:
//! - a newcomer takes a free slot directly only if nobody is waiting (no
//!   skipping the line);
//! - only the head of the line may take a freed slot (strict FIFO);
//! - a freed slot always notifies every waiter, and each waiter re-checks
//!   the condition under the lock before sleeping, so a wake-up cannot be
//!   lost and a freed slot never sits idle while someone is at the head.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Counters since start; read by `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct QueueCounters {
    /// Slots handed out.
    pub admitted_total: u64,
    /// Tickets handed out.
    pub queued_total: u64,
    /// Newcomers turned away because the queue was full.
    pub full_total: u64,
}

#[derive(Debug)]
struct State {
    active: usize,
    waiting: VecDeque<u64>,
    next_ticket: u64,
    shutting_down: bool,
    counters: QueueCounters,
    /// Smoothed time between slot releases, for the wait estimate.
    release_interval: Option<Duration>,
    last_release: Option<Instant>,
    /// Tickets in the order they were admitted, for the FIFO test.
    #[cfg(test)]
    admitted_order: Vec<u64>,
}

/// The slot counter and the wait queue. Share it in an `Arc`.
#[derive(Debug)]
pub struct WaitQueue {
    state: Mutex<State>,
    changed: Condvar,
    max_sessions: usize,
    queue_limit: usize,
}

/// A held session slot; dropping it frees the slot and wakes the queue.
#[derive(Debug)]
pub struct Slot {
    queue: Arc<WaitQueue>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.queue.release();
    }
}

/// A place in line; [`WaitQueue::leave`] gives it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub u64);

/// What a newcomer gets.
#[derive(Debug)]
pub enum Entry {
    /// A free slot, at once.
    Admitted(Slot),
    /// A place in line.
    Queued(Ticket),
    /// Nothing: the queue is full (or the server is stopping).
    Full,
}

/// What [`WaitQueue::wait_turn`] reports.
#[derive(Debug)]
pub enum Turn {
    /// The ticket reached the head and took a slot.
    Admitted(Slot),
    /// Still waiting.
    Waiting {
        /// 1 = next.
        position: u32,
        /// Everyone waiting.
        length: u32,
        /// Estimated seconds to admission, if known.
        eta_secs: Option<u64>,
    },
    /// The server is shutting down; the ticket is void.
    ShuttingDown,
}

impl WaitQueue {
    /// A queue for `max_sessions` slots and at most `queue_limit` waiters.
    pub fn new(max_sessions: usize, queue_limit: usize) -> Arc<WaitQueue> {
        Arc::new(WaitQueue {
            state: Mutex::new(State {
                active: 0,
                waiting: VecDeque::new(),
                next_ticket: 1,
                shutting_down: false,
                counters: QueueCounters::default(),
                release_interval: None,
                last_release: None,
                #[cfg(test)]
                admitted_order: Vec::new(),
            }),
            changed: Condvar::new(),
            max_sessions,
            queue_limit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is counters and a list of numbers: still consistent
        // after a panic elsewhere, so recover instead of spreading it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a newcomer, queues it, or turns it away.
    pub fn enter(self: &Arc<Self>) -> Entry {
        let mut st = self.lock();
        if st.shutting_down {
            return Entry::Full;
        }
        if st.active < self.max_sessions && st.waiting.is_empty() {
            st.active += 1;
            st.counters.admitted_total += 1;
            return Entry::Admitted(Slot {
                queue: self.clone(),
            });
        }
        if st.waiting.len() >= self.queue_limit {
            st.counters.full_total += 1;
            return Entry::Full;
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.push_back(ticket);
        st.counters.queued_total += 1;
        Entry::Queued(Ticket(ticket))
    }

    /// Waits until the ticket is admitted, its position differs from
    /// `last_position`, the server shuts down, or `timeout` passes (then it
    /// reports the unchanged position).
    pub fn wait_turn(
        self: &Arc<Self>,
        ticket: Ticket,
        last_position: Option<u32>,
        timeout: Duration,
    ) -> Turn {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.shutting_down {
                st.waiting.retain(|t| *t != ticket.0);
                return Turn::ShuttingDown;
            }
            let Some(index) = st.waiting.iter().position(|t| *t == ticket.0) else {
                // Not in line (left already): nothing to wait for.
                return Turn::ShuttingDown;
            };
            if index == 0 && st.active < self.max_sessions {
                st.waiting.pop_front();
                st.active += 1;
                st.counters.admitted_total += 1;
                log::debug!("queue: admitted ticket {}", ticket.0);
                #[cfg(test)]
                st.admitted_order.push(ticket.0);
                // Everyone behind moved up one.
                self.changed.notify_all();
                return Turn::Admitted(Slot {
                    queue: self.clone(),
                });
            }
            let position = index as u32 + 1;
            let now = Instant::now();
            if last_position != Some(position) || now >= deadline {
                let eta_secs = st.release_interval.map(|i| (i * position).as_secs().max(1));
                return Turn::Waiting {
                    position,
                    length: st.waiting.len() as u32,
                    eta_secs,
                };
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Gives up a place in line; those behind move up.
    pub fn leave(&self, ticket: Ticket) {
        let mut st = self.lock();
        let before = st.waiting.len();
        st.waiting.retain(|t| *t != ticket.0);
        if st.waiting.len() != before {
            self.changed.notify_all();
        }
    }

    fn release(&self) {
        let mut st = self.lock();
        st.active -= 1;
        let now = Instant::now();
        if let Some(last) = st.last_release {
            let sample = now - last;
            // Exponential moving average, weight 1/4 on the newest sample.
            st.release_interval = Some(match st.release_interval {
                Some(avg) => (avg * 3 + sample) / 4,
                None => sample,
            });
        }
        st.last_release = Some(now);
        self.changed.notify_all();
    }

    /// Voids every ticket and refuses newcomers; waiters return
    /// [`Turn::ShuttingDown`].
    pub fn shut_down(&self) {
        self.lock().shutting_down = true;
        self.changed.notify_all();
    }

    /// Waits until no slot is held, or `deadline`; returns whether idle.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut st = self.lock();
        while st.active > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// (slots held, clients waiting, counters).
    pub fn snapshot(&self) -> (usize, usize, QueueCounters) {
        let st = self.lock();
        (st.active, st.waiting.len(), st.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn position(turn: Turn) -> u32 {
        match turn {
            Turn::Waiting { position, .. } => position,
            other => panic!("expected waiting, got {other:?}"),
        }
    }

    #[test]
    fn newcomers_queue_in_order_and_the_head_gets_the_freed_slot() {
        let q = WaitQueue::new(1, 2);
        let Entry::Admitted(slot) = q.enter() else {
            panic!()
        };
        let Entry::Queued(a) = q.enter() else {
            panic!()
        };
        let Entry::Queued(b) = q.enter() else {
            panic!()
        };
        assert!(matches!(q.enter(), Entry::Full));
        assert_eq!(position(q.wait_turn(a, None, Duration::ZERO)), 1);
        assert_eq!(position(q.wait_turn(b, None, Duration::ZERO)), 2);
        // b cannot take the slot ahead of a.
        drop(slot);
        assert_eq!(position(q.wait_turn(b, Some(2), Duration::ZERO)), 2);
        let Turn::Admitted(_slot_a) = q.wait_turn(a, Some(1), Duration::ZERO) else {
            panic!()
        };
        assert_eq!(position(q.wait_turn(b, Some(2), Duration::ZERO)), 1);
    }

    #[test]
    fn leaving_moves_the_others_up_and_wakes_them() {
        let q = WaitQueue::new(1, 5);
        let Entry::Admitted(_slot) = q.enter() else {
            panic!()
        };
        let Entry::Queued(a) = q.enter() else {
            panic!()
        };
        let Entry::Queued(b) = q.enter() else {
            panic!()
        };
        let q2 = q.clone();
        let waiter =
            std::thread::spawn(move || position(q2.wait_turn(b, Some(2), Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        q.leave(a);
        assert_eq!(waiter.join().unwrap(), 1);
    }

    /// Many threads contend for 2 slots: all are served, never more than 2
    /// at once, and queued tickets are admitted in ticket order.
    #[test]
    fn concurrent_waiters_are_all_admitted_in_fifo_order_with_no_lost_wakeup() {
        let q = WaitQueue::new(2, 100);
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let (q, inside) = (q.clone(), inside.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(i * 300));
                    let slot = match q.enter() {
                        Entry::Admitted(s) => s,
                        Entry::Queued(t) => {
                            let mut last = None;
                            loop {
                                match q.wait_turn(t, last, Duration::from_secs(30)) {
                                    Turn::Admitted(s) => break s,
                                    Turn::Waiting { position, .. } => last = Some(position),
                                    Turn::ShuttingDown => panic!("not shutting down"),
                                }
                            }
                        }
                        Entry::Full => panic!("queue is large enough"),
                    };
                    assert!(
                        inside.fetch_add(1, Ordering::SeqCst) < 2,
                        "at most 2 inside"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(slot);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (active, waiting, counters) = q.snapshot();
        assert_eq!((active, waiting), (0, 0));
        assert_eq!(counters.admitted_total, 40);
        let order = q.lock().admitted_order.clone();
        assert_eq!(order.len() as u64, counters.queued_total);
        assert!(
            counters.queued_total > 0,
            "the test must exercise the queue"
        );
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "queued tickets admitted in FIFO order");
    }

    #[test]
    fn shutdown_releases_every_waiter() {
        let q = WaitQueue::new(1, 5);
        let Entry::Admitted(slot) = q.enter() else {
            panic!()
        };
        let Entry::Queued(a) = q.enter() else {
            panic!()
        };
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || q2.wait_turn(a, Some(1), Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        q.shut_down();
        assert!(matches!(waiter.join().unwrap(), Turn::ShuttingDown));
        assert!(matches!(q.enter(), Entry::Full));
        drop(slot);
        assert!(q.wait_idle(Instant::now() + Duration::from_secs(1)));
    }
}
