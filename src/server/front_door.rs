//! The front door: what happens to a connection between `accept()` and a
//! session slot.
//!
//! Each accepted connection is first counted against its address
//! (`per_ip`), on the accept thread, before anything else: an address over
//! its limit gets a few connections answered `too_many_connections` and the
//! rest closed at once, so no address can hold more than a handful of
//! threads beyond its limit. Then it gets a thread of its own (not a
//! session-pool thread; one left from an earlier connection if one is
//! waiting, see `spare_threads`), so a client that connects and says
//! nothing, or stalls mid-handshake, holds neither the accept loop nor a
//! session slot.
//! The thread:
//!
//! 1. completes the TLS handshake within `handshake_timeout`;
//! 2. asks the [`WaitQueue`] for a slot. Admitted: it hands the connection
//!    to the session pool and ends. Queue full: it says `server_full` and
//!    closes. Otherwise it waits in line, telling the client its position
//!    whenever it changes and every [`KEEPALIVE`], answering `ping`, keeping
//!    the client's `hello` for the session, and leaving the line when the
//!    client quits, hangs up or exceeds `queue_timeout`.
//!
//! Front-door threads are capped at [`MAX_FRONT_DOOR_THREADS`] beyond the
//! queue limit; past that, new connections are closed without a word.
//!
//! Connections from the IRC listener take the same path, in IRC words:
//! their goodbyes are `ERROR` lines, their place in line a `NOTICE`, and
//! what they send while waiting (registration) is kept for the session.

use super::context::ServerContext;
use super::per_ip::{Admission, IpGuard};
use super::session::{self, Arrival};
use super::wait_queue::{Entry, Ticket, Turn};
use super::wire::Wire;
use crate::connection::{Connection, ConnectionError, ReadState};
use crate::protocol::{
    ErrorCode, Frame, Request, ServerFrame, ServerMsg, encode_json, parse_request,
};
use crate::tls::{ServerConnection, ServerStream};
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Handshakes in progress allowed at once, on top of the queue limit.
pub const MAX_FRONT_DOOR_THREADS: usize = 2048;
/// A queued client hears from the server at least this often.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often a queued client's socket is checked (hang-up, `quit`).
const QUEUE_TICK: Duration = Duration::from_millis(200);
/// Unsent bytes a queued client may let pile up before it is dropped.
const QUEUED_UNSENT_MAX: usize = 64 * 1024;
/// What a queued IRC client may send before its turn (its registration).
const QUEUED_IRC_INPUT_MAX: usize = 16 * 1024;
/// Stack of front-door threads; they do a handshake and little else.
pub const STACK: usize = 256 * 1024;
/// How long a front-door thread waits for the next connection before it
/// ends (see `spare_threads`).
pub const KEEP_SPARE: Duration = Duration::from_secs(30);
/// Front-door threads run this many nice levels below the rest of the
/// server: when both cores are busy, chat (session threads, the writer,
/// delivery) goes first and handshakes take what is left, so a storm of
/// connections slows logins rather than everyone's messages.
pub const NICER: i32 = 10;

/// Counts a front-door thread; dropping it uncounts it.
struct ThreadCount(Arc<ServerContext>);

impl Drop for ThreadCount {
    fn drop(&mut self) {
        self.0.front_door_threads.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// confab's protocol, or IRC.
    pub wire: Wire,
    /// TLS (every listener but the loopback-only plaintext IRC one).
    pub tls: bool,
}

/// Takes an accepted connection from the accept loop of `listener`. Never
/// blocks.
pub fn admit(tcp: TcpStream, peer: SocketAddr, listener: Listener, ctx: &Arc<ServerContext>) {
    let ip_guard = match ctx.per_ip.admit(peer.ip()) {
        Admission::Counted(guard) => guard,
        Admission::Drop => {
            ctx.services
                .counters
                .per_ip_rejected
                .fetch_add(1, Ordering::Relaxed);
            log::debug!("{peer}: closed at once: too many connections from this address");
            return;
        }
    };
    let cap = MAX_FRONT_DOOR_THREADS + ctx.services.queue.snapshot().1;
    if ctx.front_door_threads.fetch_add(1, Ordering::Relaxed) >= cap {
        ctx.front_door_threads.fetch_sub(1, Ordering::Relaxed);
        log::warn!("too many connections in handshake; dropping {peer}");
        return;
    }
    let count = ThreadCount(ctx.clone());
    let job_ctx = ctx.clone();
    let spawned = ctx.front_door.run(Box::new(move || {
        let _count = count;
        let door = || front_door(tcp, peer, ip_guard, listener, &job_ctx);
        if catch_unwind(AssertUnwindSafe(door)).is_err() {
            log::error!("front door for {peer} panicked; other clients are unaffected");
        }
    }));
    if let Err(err) = spawned {
        // The closure (and its counter guard) is dropped with the error.
        log::warn!("cannot start a thread for {peer}: {err}");
    }
}

fn front_door(
    tcp: TcpStream,
    peer: SocketAddr,
    ip_guard: Option<IpGuard>,
    listener: Listener,
    ctx: &Arc<ServerContext>,
) {
    let wire = listener.wire;
    let mut conn = match handshake(tcp, ctx, listener.tls) {
        Ok(stream) => Connection::new(stream, ctx.services.limits.max_request_len),
        Err(err) => {
            log::debug!("{peer}: TLS handshake failed: {err}");
            return;
        }
    };
    if ip_guard.as_ref().is_some_and(IpGuard::over_limit) {
        ctx.services
            .counters
            .per_ip_rejected
            .fetch_add(1, Ordering::Relaxed);
        log::info!("{peer}: refused: too many connections from this address");
        say_goodbye(
            &mut conn,
            wire,
            ErrorCode::TooManyConnections,
            "too many connections from your address; close some and retry",
        );
        return;
    }
    match ctx.services.queue.enter() {
        Entry::Admitted(slot) => {
            let arrival = match wire {
                Wire::Confab => Arrival::Confab(None),
                Wire::Irc(_) => Arrival::Irc(Vec::new()),
            };
            session::start(conn, peer, slot, ip_guard, arrival, ctx)
        }
        Entry::Full => {
            log::info!("{peer}: refused: server full");
            say_goodbye(
                &mut conn,
                wire,
                ErrorCode::ServerFull,
                "server full, try again later",
            );
        }
        Entry::Queued(ticket) => wait_in_line(conn, peer, ticket, ip_guard, wire, ctx),
    }
}

/// Completes the TLS handshake (blocking, with deadlines; none for the
/// plaintext IRC listener), then switches the socket to non-blocking for
/// the rest of the connection.
fn handshake(tcp: TcpStream, ctx: &ServerContext, tls: bool) -> Result<ServerStream, String> {
    let _ = tcp.set_nodelay(true);
    let stream = if tls {
        let timeout = Some(ctx.services.limits.handshake_timeout);
        tcp.set_read_timeout(timeout)
            .and_then(|()| tcp.set_write_timeout(timeout))
            .map_err(|e| e.to_string())?;
        ServerStream::Tls(ctx.acceptor.accept(tcp).map_err(|e| e.to_string())?)
    } else {
        ServerStream::Plain(tcp)
    };
    let sock = stream.tcp();
    sock.set_read_timeout(None)
        .and_then(|()| sock.set_write_timeout(None))
        .and_then(|()| sock.set_nonblocking(true))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Sends `closing` (an IRC `ERROR`) and gives the client a moment to
/// read it.
fn say_goodbye(conn: &mut ServerConnection, wire: Wire, code: ErrorCode, message: &str) {
    conn.queue(&wire.encode(&ServerFrame::event(ServerMsg::Closing {
        code,
        message: message.to_owned(),
    })));
    flush_for(conn, Duration::from_secs(2));
    let _ = conn.get_mut().shutdown();
}

fn flush_for(conn: &mut ServerConnection, limit: Duration) {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + limit;
    while let Ok(false) = conn.flush() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let fd = conn.get_ref().tcp().as_raw_fd();
        if crate::poller::wait(fd, true, None, Some(left)).is_err() {
            return;
        }
    }
}

fn wait_in_line(
    mut conn: ServerConnection,
    peer: SocketAddr,
    ticket: Ticket,
    ip_guard: Option<IpGuard>,
    wire: Wire,
    ctx: &Arc<ServerContext>,
) {
    let queue = &ctx.services.queue;
    let start = Instant::now();
    let mut told: Option<u32> = None;
    let mut last_sent = start;
    let mut hello: Option<Frame> = None;
    let mut irc_input: Vec<u8> = Vec::new();
    log::debug!("{peer}: queued with ticket {}", ticket.0);
    loop {
        match queue.wait_turn(ticket, told, QUEUE_TICK) {
            Turn::Admitted(slot) => {
                let waited_ms = start.elapsed().as_millis() as u64;
                conn.queue(&wire.encode(&ServerFrame::event(ServerMsg::Admitted { waited_ms })));
                log::debug!("{peer}: admitted after {waited_ms} ms");
                let arrival = match wire {
                    Wire::Confab => Arrival::Confab(hello),
                    Wire::Irc(_) => Arrival::Irc(irc_input),
                };
                session::start(conn, peer, slot, ip_guard, arrival, ctx);
                return;
            }
            Turn::Waiting {
                position,
                length,
                eta_secs,
            } => {
                if told != Some(position) || last_sent.elapsed() >= KEEPALIVE {
                    conn.queue(&wire.encode(&ServerFrame::event(ServerMsg::Queued {
                        position,
                        length,
                        eta_secs,
                    })));
                    told = Some(position);
                    last_sent = Instant::now();
                }
            }
            Turn::ShuttingDown => {
                say_goodbye(
                    &mut conn,
                    wire,
                    ErrorCode::ShuttingDown,
                    "the server is shutting down",
                );
                return;
            }
        }
        let outcome = match wire {
            Wire::Confab => serve_queued(&mut conn, &mut hello),
            Wire::Irc(_) => keep_queued_input(&mut conn, &mut irc_input),
        };
        let leave = |conn: &mut ServerConnection, why: Option<(ErrorCode, &str)>| {
            queue.leave(ticket);
            if let Some((code, message)) = why {
                say_goodbye(conn, wire, code, message);
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                log::debug!("{peer}: left the queue");
                leave(&mut conn, None);
                let _ = conn.flush();
                return;
            }
            Err(err) => {
                log::debug!("{peer}: dropped from the queue: {err}");
                leave(&mut conn, Some((ErrorCode::BadFrame, "invalid frame")));
                return;
            }
        }
        if conn.unsent() > QUEUED_UNSENT_MAX {
            log::debug!("{peer}: dropped from the queue: not reading");
            queue.leave(ticket);
            return;
        }
        if start.elapsed() >= ctx.services.limits.queue_timeout {
            log::info!("{peer}: queue timeout");
            leave(
                &mut conn,
                Some((
                    ErrorCode::QueueTimeout,
                    "waited too long in the queue; try again later",
                )),
            );
            return;
        }
    }
}

/// Writes what is pending and keeps what a queued IRC client sent (its
/// registration, for the session to answer), up to a bound. Returns
/// `Ok(false)` when the client hung up or sent too much.
fn keep_queued_input(
    conn: &mut ServerConnection,
    input: &mut Vec<u8>,
) -> Result<bool, ConnectionError> {
    conn.flush()?;
    let state = conn.fill()?;
    conn.drain_raw(|bytes| input.extend_from_slice(bytes));
    Ok(state != ReadState::Closed && input.len() <= QUEUED_IRC_INPUT_MAX)
}

/// Writes what is pending and answers what a queued client sent. Returns
/// `Ok(false)` when the client quit or hung up.
fn serve_queued(
    conn: &mut ServerConnection,
    hello: &mut Option<Frame>,
) -> Result<bool, ConnectionError> {
    conn.flush()?;
    let state = conn.fill()?;
    while let Some(frame) = conn.next_frame()? {
        let reply = match parse_request(&frame.payload) {
            Ok(parsed) => match parsed.request {
                Request::Hello { .. } if hello.is_none() => {
                    // The session answers it once admitted.
                    *hello = Some(frame);
                    continue;
                }
                Request::Ping => ServerFrame::reply(parsed.req, ServerMsg::Pong),
                Request::Quit => {
                    conn.queue(&encode_json(&ServerFrame::reply(parsed.req, ServerMsg::Ok)));
                    return Ok(false);
                }
                _ => ServerFrame::error(
                    parsed.req,
                    ErrorCode::NotAdmitted,
                    "you are in the queue; only ping and quit work until you are admitted",
                ),
            },
            Err(err) => ServerFrame::error(err.req, err.code, err.message),
        };
        conn.queue(&encode_json(&reply));
    }
    Ok(state != ReadState::Closed)
}
