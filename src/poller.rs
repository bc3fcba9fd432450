//! Sleeping until a socket is ready or another thread has work for us.
//!
//! An OpenSSL stream must not be read and written from two threads at once,
//! so each server connection has one thread that uses its stream while awake
//! (others may write to it only while that thread sleeps, see
//! `server::outbox`). That thread sleeps in `poll(2)` on two descriptors:
//! the socket, and a [`Waker`] (an eventfd) that other threads signal after
//! queueing bytes for it. An idle connection therefore costs no CPU at all.
//! [`ReadySet`] (epoll) is for one thread serving many connections: the
//! load generator.
//!
//! Its `unsafe` is confined to thin wrappers over `eventfd`,
//! `read`, `write`, `poll` and `epoll`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

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
