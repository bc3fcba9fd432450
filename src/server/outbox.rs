//! A session's outbox: the bytes other threads queue for one client, and
//! the client's connection while its thread sleeps.
//!
//! Other threads (the message writer, sessions announcing presence) never
//! touch a session's TLS stream while its thread uses it. They push encoded
//! frames into the session's [`Outbox`] and raise its waker; the session's
//! thread takes the bytes and writes them.
//!
//! **Direct delivery.** A session thread that goes to sleep in `ppoll(2)`
//! leaves its connection in the outbox's `conn` mutex and takes it back
//! when it wakes (it holds the lock the whole time it is awake). The message
//! writer, after queueing a batch, calls [`Outbox::deliver`]: if the lock is
//! free it writes the queued bytes to the socket itself (non-blocking), and
//! the session thread is not woken at all. Only if the session is awake, the
//! socket is full, or the outbox has a flag to act on, does it fall back to
//! the waker. One thread writing to many sockets costs a system call per
//! recipient; waking a thread per recipient cost a context switch each, which
//! was most of the server's CPU in a busy room (docs/BENCHMARKS.md).
//!
//! The stream is still used by one thread at a time (the mutex), as OpenSSL
//! requires, and a write that returned `WouldBlock` is retried from the same
//! buffer by whoever holds the connection next (see `connection`).

use super::wire::Wire;
use crate::poller::ThreadWaker;
use crate::protocol::ServerFrame;
use crate::tls::ServerConnection;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

/// Outbox bytes are moved into the connection only while less than this is
/// unsent there, so a client that stops reading fills its bounded outbox
/// (and is cut off) rather than an unbounded connection buffer.
pub const TAKE_BELOW: usize = 256 * 1024;

/// Bytes waiting to be written to one session, filled by other threads.
///
/// Bounded: a session that reads slower than it is written to overflows,
/// and its thread then disconnects it, so one stalled reader can never make
/// the server buffer without limit or slow a room down.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    /// Signalled when the message writer answers the last message of this
    /// session that it had not answered (see [`Outbox::wait_for_answers`]).
    acked: std::sync::Condvar,
    waker: ThreadWaker,
    limit: usize,
    /// The wire format of the session: what other threads encode for it
    /// (`Wire::index`; an IRC session's style changes with its
    /// capabilities).
    wire: AtomicU8,
    /// The session's connection; locked by its thread while it is awake.
    conn: Option<Mutex<ServerConnection>>,
}

#[derive(Debug, Default)]
struct OutboxState {
    buf: Vec<u8>,
    overflowed: bool,
    closing: bool,
    /// Messages of this session handed to the writer and not yet answered
    /// (acked or refused).
    unanswered: usize,
}

/// What the owner of an outbox must do besides writing its bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxFlags {
    /// The reader was too slow: drop the connection now.
    pub overflowed: bool,
    /// The server asked this session to end once its bytes are written.
    pub closing: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding an outbox lock leaves plain bytes behind, which
    // are still safe to use; recover rather than spread the panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes.
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            acked: std::sync::Condvar::new(),
            waker: ThreadWaker::new(),
            limit,
            wire: AtomicU8::new(Wire::Confab.index()),
            conn: None,
        }
    }

    /// The wire format the session speaks.
    pub fn wire(&self) -> Wire {
        Wire::from_index(self.wire.load(Ordering::Relaxed))
    }

    /// Changes the wire format, for what other threads encode from now on
    /// (an IRC session, once it has negotiated its capabilities).
    pub fn set_wire(&self, wire: Wire) {
        self.wire.store(wire.index(), Ordering::Relaxed);
    }

    /// An empty outbox that also holds the session's connection, so that
    /// [`Outbox::deliver`] can write to it while the session sleeps.
    pub fn with_connection(limit: usize, conn: ServerConnection) -> Outbox {
        Outbox {
            conn: Some(Mutex::new(conn)),
            ..Outbox::new(limit)
        }
    }

    /// The connection, for the session's thread to lock while it is awake.
    pub fn connection(&self) -> Option<MutexGuard<'_, ServerConnection>> {
        self.conn.as_ref().map(lock)
    }

    /// Writes what is queued straight to the connection if the session's
    /// thread is asleep and the socket takes it all; otherwise wakes the
    /// thread to do it. Call after [`Outbox::push_deferred`] returned
    /// `Some(true)`.
    pub fn deliver(&self) {
        if self.try_deliver() {
            return;
        }
        self.waker.wake();
    }

    /// Whether everything queued was written without the session's thread.
    fn try_deliver(&self) -> bool {
        let Some(conn) = &self.conn else {
            return false;
        };
        let mut conn = match conn.try_lock() {
            Ok(c) => c,
            // Awake (it will see the waker), or gone after a panic.
            Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => return false,
        };
        if conn.unsent() >= TAKE_BELOW {
            return false;
        }
        let bytes = {
            let mut st = lock(&self.state);
            if st.overflowed || st.closing {
                return false;
            }
            std::mem::take(&mut st.buf)
        };
        conn.queue_vec(bytes);
        // Bytes the socket did not take, or an error, are the session's
        // business: it is woken and finds them in the connection.
        matches!(conn.flush(), Ok(true))
    }

    /// Queues an encoded frame and wakes the session's thread if it may be
    /// asleep. Returns `false` (and marks the outbox overflowed) when the
    /// frame does not fit.
    pub fn push(&self, frame: &[u8]) -> bool {
        match self.push_deferred(frame) {
            None => false,
            Some(wake) => {
                if wake {
                    self.waker.wake();
                }
                // An overflow cleared the buffer, this frame included.
                !self.flags().overflowed
            }
        }
    }

    /// Encodes one frame in the session's wire format and queues it, as
    /// [`Outbox::push`] does.
    pub fn push_frame(&self, frame: &ServerFrame) -> bool {
        self.push(&self.wire().encode(frame))
    }

    /// Like [`Outbox::push`], but leaves the wake-up to the caller: returns
    /// `Some(true)` if the owner must be woken (call [`Outbox::deliver`] or
    /// [`Outbox::wake`]), `Some(false)` if not, `None` if the frame was
    /// dropped. The message writer queues a whole batch first and delivers
    /// after, so it is not preempted by every session it wakes halfway
    /// through a fan-out.
    ///
    /// The owner drains the waker before it takes the buffer, so a push onto
    /// a non-empty buffer is picked up by a take that has not happened yet:
    /// only the empty -> non-empty edge (or an overflow) needs a wake-up.
    pub fn push_deferred(&self, frame: &[u8]) -> Option<bool> {
        Self::push_into(&mut lock(&self.state), self.limit, frame)
    }

    /// [`Outbox::push_deferred`] with the state locked.
    fn push_into(st: &mut OutboxState, limit: usize, frame: &[u8]) -> Option<bool> {
        if st.overflowed || st.closing {
            return None;
        }
        if st.buf.len() + frame.len() > limit {
            st.overflowed = true;
            st.buf.clear();
            return Some(true);
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(frame);
        Some(was_empty)
    }

    /// Records that a message of this session went to the writer, which
    /// will answer it with [`Outbox::push_answer`].
    pub fn expect_answer(&self) {
        lock(&self.state).unanswered += 1;
    }

    /// The writer's answer to a message (its ack, or an error), queued like
    /// [`Outbox::push_deferred`], counted as answered in the same step.
    pub fn push_answer(&self, frame: &[u8]) -> Option<bool> {
        let mut st = lock(&self.state);
        let queued = Self::push_into(&mut st, self.limit, frame);
        st.unanswered = st.unanswered.saturating_sub(1);
        if st.unanswered == 0 {
            self.acked.notify_all();
        }
        queued
    }

    /// Waits until the writer has answered every message of this session
    /// (the answers are then in the buffer), or `limit` passed; whether it
    /// has. An IRC session waits so that its echo comes before its answer
    /// to the next line, as IRC clients expect of a server.
    pub fn wait_for_answers(&self, limit: std::time::Duration) -> bool {
        let st = lock(&self.state);
        let (st, _) = self
            .acked
            .wait_timeout_while(st, limit, |st| st.unanswered > 0)
            .unwrap_or_else(PoisonError::into_inner);
        st.unanswered == 0
    }

    /// Wakes the owning session's thread (see also [`Outbox::deliver`]).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Takes everything queued, and the flags.
    pub fn take(&self) -> (Vec<u8>, OutboxFlags) {
        let mut st = lock(&self.state);
        let flags = OutboxFlags {
            overflowed: st.overflowed,
            closing: st.closing,
        };
        (std::mem::take(&mut st.buf), flags)
    }

    /// The flags, without taking the bytes.
    pub fn flags(&self) -> OutboxFlags {
        let st = lock(&self.state);
        OutboxFlags {
            overflowed: st.overflowed,
            closing: st.closing,
        }
    }

    /// Queues a last frame (even past the limit: it is small) and asks the
    /// owner to end the session once it is written. Later pushes are
    /// dropped.
    pub fn close_with(&self, frame: &[u8]) {
        let mut st = lock(&self.state);
        if !st.closing {
            st.buf.extend_from_slice(frame);
            st.closing = true;
        }
        drop(st);
        self.waker.wake();
    }

    /// The waker the owning thread sleeps on.
    pub fn waker(&self) -> &ThreadWaker {
        &self.waker
    }
}
