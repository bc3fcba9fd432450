//! The one place where wire bytes meet a stream.
//!
//! A [`Connection`] owns a non-blocking stream (a TLS stream in the server
//! and the client, an in-memory pipe in tests), a [`FrameDecoder`] for what
//! arrives, and buffers for what leaves. It never blocks: reads stop at
//! `WouldBlock`, writes keep what the socket did not take. The owner decides
//! when to sleep (see `poller`).
//!
//! Writes go out in batches: everything queued since the last flush is
//! handed to the stream in one call, so many small frames become few TLS
//! records and few system calls.
//!
//! OpenSSL requires a write that returned `WouldBlock` to be retried with
//! the same buffer. So bytes being written (`inflight`) are never touched
//! until they are all out; new frames go to `pending` meanwhile.

use crate::protocol::{Frame, FrameDecoder, FrameError};
use std::io::{self, Read, Write};

/// How many bytes one [`Connection::fill`] call reads at most before it
/// returns, so one fast sender cannot monopolise its thread.
const READ_BUDGET: usize = 256 * 1024;
/// The least room offered to one read. Reads go straight into the frame
/// decoder's buffer, which grows (and is reused) when more arrives.
const READ_CHUNK: usize = 4 * 1024;

/// What [`Connection::fill`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// The stream has nothing more right now: safe to sleep in `poll`.
    Drained,
    /// The read budget ran out with bytes possibly still buffered (in the
    /// kernel or inside OpenSSL, where `poll` cannot see them): read again
    /// before sleeping.
    More,
    /// The peer closed the stream.
    Closed,
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not a valid frame.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
}

/// A framed, buffered, non-blocking connection over `S`.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    decoder: FrameDecoder,
    inflight: Vec<u8>,
    inflight_pos: usize,
    pending: Vec<u8>,
}

impl<S: Read + Write> Connection<S> {
    /// Wraps `stream`, accepting incoming payloads up to `max_frame` bytes.
    pub fn new(stream: S, max_frame: usize) -> Self {
        Connection {
            stream,
            decoder: FrameDecoder::new(max_frame),
            inflight: Vec::new(),
            inflight_pos: 0,
            pending: Vec::new(),
        }
    }

    /// The stream, e.g. to find its file descriptor.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Mutable access to the stream, e.g. to shut it down.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Reads what the stream has, up to a budget, into the frame decoder.
    pub fn fill(&mut self) -> Result<ReadState, ConnectionError> {
        let mut total = 0;
        loop {
            let stream = &mut self.stream;
            match self.decoder.read_with(READ_CHUNK, |buf| stream.read(buf)) {
                Ok(0) => return Ok(ReadState::Closed),
                Ok(n) => {
                    total += n;
                    if total >= READ_BUDGET {
                        return Ok(ReadState::More);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A peer that vanishes without a TLS close_notify is, for a
                // chat session, the same as one that closed.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(ReadState::Closed);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next complete frame already read, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        Ok(self.decoder.next_frame()?)
    }

    /// Hands every byte read and not yet taken to `take`, unframed: for a
    /// session that splits its input itself (IRC lines).
    pub fn drain_raw(&mut self, take: impl FnOnce(&[u8])) {
        take(self.decoder.drain_raw());
    }

    /// Queues encoded frame bytes for sending.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Takes ownership of an already-encoded batch, avoiding a copy when
    /// nothing else is queued.
    pub fn queue_vec(&mut self, bytes: Vec<u8>) {
        if self.pending.is_empty() {
            self.pending = bytes;
        } else {
            self.pending.extend_from_slice(&bytes);
        }
    }

    /// Whether bytes are waiting to be written.
    pub fn wants_write(&self) -> bool {
        self.inflight_pos < self.inflight.len() || !self.pending.is_empty()
    }

    /// Frees the buffers that hold nothing (read, in flight, pending), so
    /// an idle connection costs only its TLS state. Call before a long
    /// sleep.
    pub fn release_idle_buffers(&mut self) {
        self.decoder.release_if_empty();
        if self.inflight_pos == self.inflight.len() {
            self.inflight = Vec::new();
            self.inflight_pos = 0;
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// Bytes queued and not yet written.
    pub fn unsent(&self) -> usize {
        self.inflight.len() - self.inflight_pos + self.pending.len()
    }

    /// Writes as much as the stream takes now. Returns `true` when
    /// everything queued has been written.
    pub fn flush(&mut self) -> Result<bool, ConnectionError> {
        loop {
            if self.inflight_pos == self.inflight.len() {
                if self.pending.is_empty() {
                    return Ok(true);
                }
                self.inflight.clear();
                self.inflight_pos = 0;
                std::mem::swap(&mut self.inflight, &mut self.pending);
            }
            match self.stream.write(&self.inflight[self.inflight_pos..]) {
                Ok(0) => {
                    return Err(
                        io::Error::new(io::ErrorKind::WriteZero, "stream took no bytes").into(),
                    );
                }
                Ok(n) => self.inflight_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FrameKind, encode_frame};
    use std::collections::VecDeque;

    /// An in-memory stream that hands out input in fixed slices and accepts
    /// a limited number of bytes per write, like a congested socket.
    struct Pipe {
        input: VecDeque<Vec<u8>>,
        output: Vec<u8>,
        write_room: usize,
        closed: bool,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.input.pop_front() {
                Some(chunk) => {
                    buf[..chunk.len()].copy_from_slice(&chunk);
                    Ok(chunk.len())
                }
                None if self.closed => Ok(0),
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.write_room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.write_room);
            self.write_room -= n;
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pipe(input: Vec<Vec<u8>>, closed: bool) -> Pipe {
        Pipe {
            input: input.into(),
            output: Vec::new(),
            write_room: usize::MAX,
            closed,
        }
    }

    #[test]
    fn fill_collects_split_frames_and_reports_drained_then_closed() {
        let mut bytes = Vec::new();
        encode_frame(FrameKind::Json, b"{}", &mut bytes);
        let (a, b) = bytes.split_at(3);
        let mut conn = Connection::new(pipe(vec![a.to_vec(), b.to_vec()], false), 64);
        assert_eq!(conn.fill().unwrap(), ReadState::Drained);
        assert_eq!(conn.next_frame().unwrap().unwrap().payload, b"{}");
        assert!(conn.next_frame().unwrap().is_none());

        let mut conn = Connection::new(pipe(vec![], true), 64);
        assert_eq!(conn.fill().unwrap(), ReadState::Closed);
    }

    #[test]
    fn oversized_frame_is_an_error_not_a_buffer() {
        let mut conn = Connection::new(pipe(vec![vec![0, 1, 0, 0, 1]], false), 64);
        conn.fill().unwrap();
        assert!(matches!(
            conn.next_frame(),
            Err(ConnectionError::Frame(FrameError::TooLarge { .. }))
        ));
    }

    #[test]
    fn flush_keeps_what_a_congested_stream_refused_and_preserves_order() {
        let mut p = pipe(vec![], false);
        p.write_room = 3;
        let mut conn = Connection::new(p, 64);
        conn.queue(b"hello");
        assert!(!conn.flush().unwrap());
        conn.queue(b" world");
        assert_eq!(conn.unsent(), 8);
        conn.get_mut().write_room = usize::MAX;
        assert!(conn.flush().unwrap());
        assert!(!conn.wants_write());
        assert_eq!(conn.get_ref().output, b"hello world");
    }
}
