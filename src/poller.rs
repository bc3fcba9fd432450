//! Sleeping until a socket is ready or another thread has work for us.
//!
//! An OpenSSL stream must not be read and written from two threads at once,
//! so each server connection has one thread that uses its stream while awake
//! (others may write to it only while that thread sleeps, see
//! `server::outbox`). That thread sleeps in `ppoll(2)` on its socket
//! ([`wait_thread`]) until the socket is ready or another thread raises its
//! [`ThreadWaker`] after queueing bytes for it: a flag and a real-time
//! signal sent to that thread, which it blocks except inside `ppoll`. So a
//! session costs one descriptor (its socket), not two, and an idle one no
//! CPU at all. (An eventfd per session halved how many sessions fit under
//! the open-file limit: 10,000 sessions needed 20,000 descriptors.)
//!
//! [`Waker`] (an eventfd, polled by [`wait`]) is for threads that are not
//! signalled: the TUI's network thread. [`ReadySet`] (epoll) is for one
//! thread serving many connections: the load generator.
//!
//! Its `unsafe` is confined to thin wrappers over `eventfd`, `read`,
//! `write`, `poll`, `ppoll`, the signal calls and `epoll`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

/// The signal a [`ThreadWaker`] sends: the first real-time signal (glibc
/// keeps its own below `SIGRTMIN`), which nothing else in confab uses.
fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// The handler does nothing: the signal's only job is to interrupt
/// `ppoll`. (The default action of a real-time signal would end the
/// process.)
extern "C" fn on_wake_signal(_: libc::c_int) {}

/// A wake-up for one thread, without a descriptor: a flag, plus a signal to
/// the thread if it may be asleep. The thread blocks the signal except while
/// it sleeps in [`wait_thread`], so the signal interrupts nothing else, and
/// one sent while it is awake waits (pending) until it sleeps again: no
/// wake-up is lost.
#[derive(Debug, Default)]
pub struct ThreadWaker {
    raised: AtomicBool,
    /// The thread to signal and its signal mask for sleeping; `None`
    /// before [`ThreadWaker::attach`] and after [`ThreadWaker::retire`].
    thread: Mutex<Option<Sleeper>>,
}

#[derive(Clone, Copy)]
struct Sleeper {
    id: libc::pthread_t,
    /// The thread's mask with the wake signal unblocked.
    sleep_mask: libc::sigset_t,
}

impl std::fmt::Debug for Sleeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleeper").field("id", &self.id).finish()
    }
}

impl ThreadWaker {
    /// A waker not yet attached to a thread: waking it only raises the flag.
    pub fn new() -> ThreadWaker {
        ThreadWaker::default()
    }

    /// Makes the calling thread the one to wake: installs the signal's
    /// handler (once per process), blocks the signal in this thread, and
    /// remembers it. Call on the thread that will [`wait_thread`].
    pub fn attach(&self) -> io::Result<()> {
        static HANDLER: Once = Once::new();
        let mut installed = Ok(());
        HANDLER.call_once(|| {
            // SAFETY: sigaction with a zeroed struct, an empty mask and a
            // handler that touches nothing; the struct outlives the call.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_wake_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut act.sa_mask);
                if libc::sigaction(wake_signal(), &act, std::ptr::null_mut()) != 0 {
                    installed = Err(io::Error::last_os_error());
                }
            }
        });
        installed?;
        // SAFETY: sigset_t values are initialised by sigemptyset /
        // pthread_sigmask before use; pthread_self has no preconditions.
        let sleeper = unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, wake_signal());
            let mut old: libc::sigset_t = std::mem::zeroed();
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            libc::sigdelset(&mut old, wake_signal());
            Sleeper {
                id: libc::pthread_self(),
                sleep_mask: old,
            }
        };
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(sleeper);
        Ok(())
    }

    /// Forgets the thread (call before it goes on to other work or ends):
    /// later wake-ups only raise the flag.
    pub fn retire(&self) {
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Raises the flag and, on the empty -> raised edge, signals the thread.
    /// Never blocks (beyond a short lock that only `retire` contends).
    pub fn wake(&self) {
        if self.raised.swap(true, Ordering::AcqRel) {
            return;
        }
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = *thread {
            // SAFETY: the thread is alive: it is retired (under this lock)
            // before it ends or serves anything else.
            unsafe {
                libc::pthread_kill(s.id, wake_signal());
            }
        }
    }

    /// Whether the flag is raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Lowers the flag.
    pub fn drain(&self) {
        self.raised.store(false, Ordering::Release);
    }

    fn sleep_mask(&self) -> Option<libc::sigset_t> {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|s| s.sleep_mask)
    }
}

/// Sleeps until `socket` is readable (or writable, when `want_write`), or
/// `waker` (attached to this thread) is raised, or `timeout` passes (`None`
/// = no timeout). A waker raised before the call returns at once.
pub fn wait_thread(
    socket: RawFd,
    want_write: bool,
    waker: &ThreadWaker,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let mut fds = [libc::pollfd {
        fd: socket,
        events: libc::POLLIN | if want_write { libc::POLLOUT } else { 0 },
        revents: 0,
    }];
    let timeout = if waker.is_raised() {
        Some(Duration::ZERO)
    } else {
        timeout
    };
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let mask = waker.sleep_mask();
    // SAFETY: `fds` is a live array of one pollfd; the timespec and mask
    // are live values or null.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            1,
            ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
            mask.as_ref().map_or(std::ptr::null(), |m| m as *const _),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
        // Interrupted: by the wake signal (or another): say what is true.
        return Ok(Ready {
            woken: waker.is_raised(),
            ..Ready::default()
        });
    }
    let sock = fds[0].revents;
    Ok(Ready {
        socket_readable: sock & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)
            != 0,
        socket_writable: sock & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0,
        woken: waker.is_raised(),
    })
}

/// A wake-up signal another thread can raise; readable by `poll`.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// Creates a non-blocking eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd has no memory-safety preconditions; the result is
        // checked before it is wrapped.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Raises the signal. Never blocks; raising it twice before it is
    /// drained wakes the sleeper once.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own descriptor. An
        // error (counter overflow, impossible in practice) only means the
        // signal is already raised, so it is ignored.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Lowers the signal.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64. EAGAIN (not raised)
        // is the expected "nothing to drain" case.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut value as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// The descriptor to poll.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What [`wait`] found ready.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The socket has bytes to read, or hung up, or failed.
    pub socket_readable: bool,
    /// The socket can take more bytes.
    pub socket_writable: bool,
    /// The waker was raised.
    pub woken: bool,
}

/// Sleeps until `socket` is readable (or writable, when `want_write`), or
/// `waker` is raised, or `timeout` passes (`None` = no timeout).
pub fn wait(
    socket: RawFd,
    want_write: bool,
    waker: Option<&Waker>,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd {
            fd: socket,
            events: libc::POLLIN | if want_write { libc::POLLOUT } else { 0 },
            revents: 0,
        },
        libc::pollfd {
            fd: waker.map_or(-1, Waker::as_raw_fd),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let timeout_ms: libc::c_int = match timeout {
        None => -1,
        // Round up so a 0.4 ms deadline does not turn into a busy loop.
        Some(d) => d
            .as_micros()
            .div_ceil(1000)
            .try_into()
            .unwrap_or(libc::c_int::MAX),
    };
    loop {
        // SAFETY: `fds` is a live array of two pollfd structs; a negative fd
        // is ignored by poll, as POSIX specifies.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let sock = fds[0].revents;
        return Ok(Ready {
            socket_readable: sock & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)
                != 0,
            socket_writable: sock & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0,
            woken: fds[1].revents & libc::POLLIN != 0,
        });
    }
}

/// Many sockets watched at once with `epoll(7)`, for one thread that serves
/// many connections (the load generator's receivers). A wake-up costs in
/// proportion to the sockets that are ready, not to all that are watched,
/// which `poll(2)` over a hundred sockets per wake-up did.
#[derive(Debug)]
pub struct ReadySet {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl ReadySet {
    /// Watches `fds` for input; [`ReadySet::wait`] reports them by index.
    pub fn new(fds: &[RawFd]) -> io::Result<ReadySet> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; the
        // result is checked before it is wrapped.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for (i, &sock) in fds.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: `ev` is a live epoll_event; the kernel copies it.
            if unsafe { libc::epoll_ctl(fd.as_raw_fd(), libc::EPOLL_CTL_ADD, sock, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(ReadySet {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; fds.len().clamp(1, 1024)],
        })
    }

    /// Waits up to `timeout` for input (or hang-up) on any watched socket
    /// and puts the indices of the ready ones in `ready` (cleared first).
    pub fn wait(&mut self, timeout: Duration, ready: &mut Vec<usize>) -> io::Result<()> {
        ready.clear();
        let ms: libc::c_int = timeout.as_millis().try_into().unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: `events` is a live array of `events.len()` entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.fd.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    self.events.len() as libc::c_int,
                    ms,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            ready.extend(self.events[..n as usize].iter().map(|e| e.u64 as usize));
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn a_thread_waker_interrupts_a_sleep_without_a_timeout_and_loses_no_early_wake() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let waker = std::sync::Arc::new(ThreadWaker::new());
        // Raised before its thread is attached or asleep: the first wait
        // returns at once.
        waker.wake();
        waker.attach().unwrap();
        let ready = wait_thread(a.as_raw_fd(), false, &waker, None).unwrap();
        assert!(ready.woken);
        waker.drain();
        // Raised by another thread while this one sleeps with no timeout.
        let w2 = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w2.wake();
        });
        let start = Instant::now();
        let ready = wait_thread(a.as_raw_fd(), false, &waker, None).unwrap();
        assert!(ready.woken && !ready.socket_readable);
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        waker.drain();
        // A wake while awake (signal pending, blocked) ends the next sleep.
        waker.wake();
        let ready = wait_thread(a.as_raw_fd(), false, &waker, None).unwrap();
        assert!(ready.woken);
        waker.drain();
        // The socket still wakes it; a timeout still ends it.
        use std::io::Write;
        b.write_all(b"x").unwrap();
        let ready = wait_thread(a.as_raw_fd(), false, &waker, None).unwrap();
        assert!(ready.socket_readable && !ready.woken);
        let (c, _d) = UnixStream::pair().unwrap();
        let ready = wait_thread(
            c.as_raw_fd(),
            false,
            &waker,
            Some(Duration::from_millis(20)),
        )
        .unwrap();
        assert_eq!(ready, Ready::default());
        // Retired: a wake only raises the flag (no signal to a thread that
        // may be doing something else by now).
        waker.retire();
        waker.wake();
        assert!(waker.is_raised());
    }

    #[test]
    fn waker_interrupts_a_sleeping_wait_from_another_thread() {
        let (a, _b) = UnixStream::pair().unwrap();
        let waker = std::sync::Arc::new(Waker::new().unwrap());
        let w2 = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w2.wake();
        });
        let start = Instant::now();
        let ready = wait(
            a.as_raw_fd(),
            false,
            Some(&waker),
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        assert!(ready.woken);
        assert!(!ready.socket_readable);
        assert!(start.elapsed() < Duration::from_secs(5));
        waker.drain();
        let ready = wait(a.as_raw_fd(), false, Some(&waker), Some(Duration::ZERO)).unwrap();
        assert!(!ready.woken, "drain lowers the signal");
        t.join().unwrap();
    }

    #[test]
    fn readable_socket_and_timeout_are_reported() {
        use std::io::Write;
        let (a, mut b) = UnixStream::pair().unwrap();
        let ready = wait(a.as_raw_fd(), false, None, Some(Duration::from_millis(10))).unwrap();
        assert_eq!(ready, Ready::default());
        b.write_all(b"x").unwrap();
        let ready = wait(a.as_raw_fd(), true, None, None).unwrap();
        assert!(ready.socket_readable && ready.socket_writable);
    }
}
