//! Presence, coalesced: who came online, went offline, stepped away, joined
//! or left, gathered over a short window and delivered to each member as
//! one push.
//!
//! Session threads never fan presence out themselves. A login, logout,
//! join, leave or `away` records a [`Change`] in the hub's
//! [`PresenceQueue`] (a short mutex, no I/O). The `presence` thread takes
//! everything recorded within [`WINDOW`] of the first change, collapses
//! each user's changes in a room to the last one on each axis
//! (membership: join/leave; status: online/offline/away/back), and hands
//! the batch to `Hub::deliver_presence`, which pushes each room's events to
//! every member in one go (each event encoded once per wire format) and
//! writes to sleeping sessions' sockets directly, as the message writer
//! does. So 1,000 logins within a window cost each member one push, not
//! 1,000 wake-ups, and a user who came online and went offline within one
//! window ends offline for everyone.
//!
//! **Large rooms** (more members than `presence_room_limit`) get no
//! per-user presence at all: with n members online, per-user presence
//! costs O(n) deliveries per login and O(n²) for a crowd. Their members
//! see counts and page through the member list on demand (`who`), as the
//! big chat systems do.

use crate::protocol::PresenceEvent;
use crate::store::UserId;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long changes are gathered before they are delivered.
pub const WINDOW: Duration = Duration::from_millis(50);

/// One user's presence change in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Room name.
    pub room: String,
    /// The user it is about (never told of it).
    pub user_id: UserId,
    /// Their name.
    pub user: String,
    /// What happened.
    pub event: PresenceEvent,
    /// The away message, with [`PresenceEvent::Away`].
    pub message: Option<String>,
}

#[derive(Debug, Default)]
struct Pending {
    changes: Vec<Change>,
    /// When the first change of the current batch was recorded.
    since: Option<Instant>,
    closed: bool,
}

/// Changes waiting for the presence thread.
#[derive(Debug, Default)]
pub struct PresenceQueue {
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl PresenceQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Plain data stays usable after a panic elsewhere.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a change (called under the hub lock: memory only).
    pub fn record(&self, change: Change) {
        let mut p = self.lock();
        if p.closed {
            return;
        }
        if p.since.is_none() {
            p.since = Some(Instant::now());
            self.ready.notify_one();
        }
        p.changes.push(change);
    }

    /// Waits for a batch: blocks until a change exists, then until
    /// [`WINDOW`] after it, and returns everything recorded, collapsed.
    /// `None` once the queue is closed and empty.
    pub fn next_batch(&self) -> Option<Vec<Change>> {
        let mut p = self.lock();
        loop {
            match p.since {
                None if p.closed => return None,
                None => p = self.ready.wait(p).unwrap_or_else(PoisonError::into_inner),
                Some(since) => {
                    let due = since + WINDOW;
                    let now = Instant::now();
                    if now >= due || p.closed {
                        p.since = None;
                        return Some(collapse(std::mem::take(&mut p.changes)));
                    }
                    p = self
                        .ready
                        .wait_timeout(p, due - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Everything recorded so far, collapsed, without waiting (for tests
    /// that deliver presence by hand).
    #[cfg(test)]
    pub fn take_now(&self) -> Vec<Change> {
        let mut p = self.lock();
        p.since = None;
        collapse(std::mem::take(&mut p.changes))
    }

    /// Stops the presence thread once it has delivered what is pending.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Which of a user's two presence states a change sets.
fn axis(event: PresenceEvent) -> u8 {
    match event {
        PresenceEvent::Join | PresenceEvent::Leave => 0,
        PresenceEvent::Online
        | PresenceEvent::Offline
        | PresenceEvent::Away
        | PresenceEvent::Back => 1,
    }
}

/// Keeps, per room, user and axis, only the last change, in the order of
/// those last changes: the final state is always what is delivered.
pub fn collapse(changes: Vec<Change>) -> Vec<Change> {
    let mut last = std::collections::HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        last.insert((c.room.as_str(), c.user_id, axis(c.event)), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    let mut changes: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    keep.into_iter().filter_map(|i| changes[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceEvent::*;

    fn c(room: &str, user: UserId, event: PresenceEvent) -> Change {
        Change {
            room: room.into(),
            user_id: user,
            user: format!("u{user}"),
            event,
            message: None,
        }
    }

    #[test]
    fn the_final_state_survives_collapsing() {
        let got = collapse(vec![
            c("r", 1, Join),
            c("r", 1, Online),
            c("r", 2, Online),
            c("r", 1, Offline),
            c("s", 1, Online),
            c("r", 2, Offline),
            c("r", 2, Online),
        ]);
        assert_eq!(
            got,
            vec![
                c("r", 1, Join),
                c("r", 1, Offline),
                c("s", 1, Online),
                c("r", 2, Online)
            ]
        );
    }

    #[test]
    fn a_batch_waits_for_the_window_and_close_ends_the_thread() {
        let q = std::sync::Arc::new(PresenceQueue::default());
        let q2 = q.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            while let Some(b) = q2.next_batch() {
                tx.send((Instant::now(), b)).unwrap();
            }
        });
        let start = Instant::now();
        q.record(c("r", 1, Online));
        q.record(c("r", 2, Online));
        let (at, first) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(first.len(), 2, "gathered within one window");
        assert!(at - start >= WINDOW, "delivered no sooner than the window");
        q.record(c("r", 3, Online));
        q.close();
        let (_, second) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(second, vec![c("r", 3, Online)]);
        t.join().unwrap();
        assert!(rx.try_recv().is_err(), "nothing after close");
    }
}
