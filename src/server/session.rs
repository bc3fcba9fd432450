//! One client connection, from TLS handshake to goodbye, on its own thread.
//!
//! The TLS stream lives in the session's [`Outbox`], behind a mutex that
//! this thread holds whenever it is awake (OpenSSL streams must not be used
//! by two threads at once). Its loop:
//!
//! 1. take whatever other threads queued in its [`Outbox`] (deliveries,
//!    acks, presence) and write it, with its own replies, in one batch;
//! 2. let go of the connection and sleep in `ppoll(2)` on the socket and the
//!    outbox's waker: no CPU while idle. Meanwhile the message writer may
//!    write deliveries to the socket itself ([`Outbox::deliver`]) and wakes
//!    this thread only when it cannot;
//! 3. take the connection back, read what arrived and route each complete
//!    request, by the session's [`Phase`], to its handler (`handlers`),
//!    then encode the handler's answer in the session's wire format.
//!
//! This module moves bytes and keeps the phase; what a request means is
//! the handlers' business. Requests that need the database (login, join,
//! history) run here, on the session's own thread, so they delay only this
//! client. Chat messages go to the writer thread, which stores them before
//! anyone sees them.
//!
//! An IRC connection (from the IRC listener) is the same loop with another
//! front end: its input is cut into lines, each handled by
//! `irc_session::IrcFront`, which turns IRC commands into the same
//! requests and handlers; events reach it in its `Wire::Irc` style.

use super::context::ServerContext;
use super::handlers::{self, Answer, Cx, Handled, Refusal, SessionState, User, account, files};
use super::hub::{Hub, SessionId};
use super::irc_session::{IrcFront, Outcome};
use super::outbox::{Outbox, TAKE_BELOW};
use super::per_ip::IpGuard;
use super::wait_queue::Slot;
use super::wire::Wire;
use crate::connection::{ConnectionError, ReadState};
use crate::irc::line::{LineError, Splitter};
use crate::poller;
use crate::protocol::{self, ErrorCode, Frame, FrameKind, Request, ServerFrame, ServerMsg};
use crate::tls::ServerConnection;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long an IRC session waits for the writer to answer its message
/// before it goes on with its next line anyway.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// How long a closing session may take to flush its last words.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Where a session is in its life; decides which requests it takes.
enum Phase {
    /// Waiting for `hello`.
    Hello,
    /// Greeted; waiting for `register`, `login` or `resume`.
    Auth,
    /// Logged in as this user.
    Ready(User),
}

/// Removes the session from the hub however the thread ends (tiny-http's
/// habit: tie clean-up to `Drop`, not to every exit path).
struct Registration<'a> {
    hub: &'a Hub,
    id: SessionId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.detach(self.id);
    }
}

/// Detaches the outbox's waker from this pool thread when the session
/// ends, before the thread serves anything else.
struct Retire(Arc<Outbox>);

impl Drop for Retire {
    fn drop(&mut self) {
        self.0.waker().retire();
    }
}

struct Session<'a> {
    id: SessionId,
    ctx: &'a ServerContext,
    /// Also holds the connection (see the module doc).
    outbox: Arc<Outbox>,
    /// This thread's own replies, moved into the connection before each
    /// write.
    out: Vec<u8>,
    phase: Phase,
    peer: SocketAddr,
    /// Set when the session should end once its queued bytes are written.
    closing: Option<Instant>,
    /// Until login, the session must log in by this time.
    login_deadline: Instant,
    /// What the handlers keep for this session: flood control, the resume
    /// token's digest, transfers in progress.
    state: SessionState,
    /// For an IRC connection: its front end (`None` for confab's protocol,
    /// which is how the loop tells the two apart; taken out only while
    /// one line is handled) and its input cut into lines.
    irc: Option<Box<IrcFront>>,
    lines: Splitter,
}

/// What a connection brings to its session: which protocol it speaks, and
/// what it sent while waiting in line (a confab client's `hello`; an IRC
/// client's first bytes).
#[derive(Debug)]
pub enum Arrival {
    /// confab's protocol.
    Confab(Option<Frame>),
    /// IRC.
    Irc(Vec<u8>),
}

/// Hands an admitted connection to a pool thread. The slot and the IP
/// guard live as long as the session; `arrival` says what it speaks and
/// what it sent while waiting.
pub fn start(
    conn: ServerConnection,
    peer: SocketAddr,
    slot: Slot,
    ip_guard: Option<IpGuard>,
    arrival: Arrival,
    ctx: &Arc<ServerContext>,
) {
    let ctx2 = ctx.clone();
    ctx.pool.execute(move || {
        let ctx = ctx2;
        let served = catch_unwind(AssertUnwindSafe(|| serve(conn, peer, arrival, &ctx)));
        if served.is_err() {
            log::error!("session from {peer} panicked; other sessions are unaffected");
        }
        // Free the slot last, once everything of this session is gone.
        drop(ip_guard);
        drop(slot);
    });
}

/// Serves one admitted connection to the end. Errors are logged here and
/// never reach the accept loop.
fn serve(conn: ServerConnection, peer: SocketAddr, arrival: Arrival, ctx: &ServerContext) {
    let id = ctx.next_session.fetch_add(1, Ordering::Relaxed);
    let svc = &ctx.services;
    let outbox = Arc::new(Outbox::with_connection(svc.limits.outbox_limit, conn));
    // Other threads wake this one with a signal (no descriptor); it is
    // forgotten again when the session ends, whichever way.
    if let Err(err) = outbox.waker().attach() {
        log::warn!("session {id} from {peer}: cannot set up its wake-up signal: {err}");
        return;
    }
    let _retire = Retire(outbox.clone());
    let is_irc = matches!(arrival, Arrival::Irc(_));
    if is_irc {
        outbox.set_wire(Wire::Irc(Default::default()));
    }
    svc.hub.attach(id, outbox.clone());
    let _registration = Registration { hub: &svc.hub, id };
    let now = Instant::now();
    let mut session = Session {
        id,
        ctx,
        outbox,
        out: Vec::new(),
        // An IRC client registers at once (no hello).
        phase: if is_irc { Phase::Auth } else { Phase::Hello },
        peer,
        closing: None,
        login_deadline: now + svc.limits.login_timeout,
        state: SessionState::new(svc, now),
        irc: is_irc.then(|| Box::new(IrcFront::new())),
        lines: Splitter::default(),
    };
    log::debug!("session {id} from {peer}: started");
    match arrival {
        Arrival::Confab(Some(frame)) => session.handle_frame(frame),
        Arrival::Confab(None) => {}
        Arrival::Irc(early) => session.lines.push(&early),
    }
    match session.run() {
        Ok(()) => log::debug!("session {id} from {peer}: closed"),
        Err(err) => log::debug!("session {id} from {peer}: ended: {err}"),
    }
    if let Some(mut conn) = session.outbox.connection() {
        conn.queue_vec(std::mem::take(&mut session.out));
        let _ = conn.flush();
        let _ = conn.get_mut().shutdown();
    }
}

impl Session<'_> {
    fn run(&mut self) -> Result<(), ConnectionError> {
        let outbox = self.outbox.clone();
        let Some(mut conn) = outbox.connection() else {
            return Ok(());
        };
        let fd = conn.get_ref().tcp().as_raw_fd();
        let mut check_outbox = true;
        // Read before the first sleep: the handshake may have left a
        // decrypted record inside OpenSSL, which poll(2) cannot see.
        let mut read_state = ReadState::More;
        loop {
            // Replies first: they were answered before the outbox was read.
            self.move_replies(&mut conn);
            if check_outbox {
                let flags = self.outbox.flags();
                if flags.overflowed {
                    self.ctx
                        .services
                        .counters
                        .slow_consumers
                        .fetch_add(1, Ordering::Relaxed);
                    log::info!("session {}: disconnected: too slow to read", self.id);
                    return Ok(());
                }
                if conn.unsent() < TAKE_BELOW {
                    let (bytes, flags) = self.outbox.take();
                    if !bytes.is_empty() {
                        conn.queue_vec(bytes);
                    }
                    if flags.closing && self.closing.is_none() {
                        self.closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    check_outbox = false;
                }
            }
            if self.closing.is_none() {
                self.pump_download(&mut conn);
                self.move_replies(&mut conn);
            }
            let all_written = conn.flush()?;
            let now = Instant::now();
            let timeout = match self.closing {
                Some(deadline) => {
                    if all_written || now >= deadline {
                        return Ok(());
                    }
                    Some(deadline - now)
                }
                None if read_state == ReadState::More => Some(Duration::ZERO),
                // A download has more to send and the socket took all.
                None if all_written && self.state.download.is_some() => Some(Duration::ZERO),
                None if !matches!(self.phase, Phase::Ready(_)) => {
                    if now >= self.login_deadline {
                        self.close(ErrorCode::LoginTimeout, "you did not log in in time");
                        continue;
                    }
                    Some(self.login_deadline - now)
                }
                None => None,
            };
            if timeout.is_none() {
                // Idle until something happens: keep no empty buffers.
                conn.release_idle_buffers();
                self.lines.release_if_empty();
            }
            // Asleep, the connection is free for `Outbox::deliver`.
            drop(conn);
            let ready = poller::wait_thread(fd, !all_written, self.outbox.waker(), timeout);
            conn = match outbox.connection() {
                Some(c) => c,
                None => return Ok(()),
            };
            let ready = ready?;
            if ready.woken {
                // Drain before take: see `Outbox::push`.
                self.outbox.waker().drain();
                check_outbox = true;
            }
            if self.closing.is_some() {
                continue;
            }
            if ready.socket_readable || read_state == ReadState::More {
                read_state = conn.fill()?;
                if self.irc.is_some() {
                    let lines = &mut self.lines;
                    conn.drain_raw(|bytes| lines.push(bytes));
                    while self.closing.is_none() {
                        let Some(line) = self.lines.next_line() else {
                            break;
                        };
                        // What was delivered before this line goes first.
                        self.queue_outbox(&mut conn);
                        self.handle_line(line);
                        self.await_answers(&mut conn);
                        if self.replies_overflow(&conn) {
                            return Ok(());
                        }
                    }
                }
                while self.irc.is_none() && self.closing.is_none() {
                    match conn.next_frame() {
                        Ok(Some(frame)) => {
                            self.handle_frame(frame);
                            if self.replies_overflow(&conn) {
                                return Ok(());
                            }
                        }
                        Ok(None) => break,
                        Err(ConnectionError::Frame(err)) => {
                            self.close(ErrorCode::BadFrame, err.to_string());
                        }
                        Err(err) => return Err(err),
                    }
                }
                if read_state == ReadState::Closed {
                    return Ok(());
                }
            }
        }
    }

    /// Whether this session's own replies waiting to be written exceed
    /// the outbox bound: a client that sends requests but never reads
    /// their replies would otherwise grow the server's memory without
    /// limit. Such a client is cut off like a slow reader of deliveries.
    fn replies_overflow(&self, conn: &ServerConnection) -> bool {
        let waiting = self.out.len() + conn.unsent();
        if waiting <= self.ctx.services.limits.outbox_limit {
            return false;
        }
        self.ctx
            .services
            .counters
            .slow_consumers
            .fetch_add(1, Ordering::Relaxed);
        log::info!(
            "session {}: disconnected: {waiting} bytes of replies unread",
            self.id
        );
        true
    }

    /// After each IRC line: queues its replies, then what was delivered
    /// meanwhile, first waiting for the writer's answer (the echo, an
    /// error) if the line sent a message, so an IRC client sees its lines
    /// answered in order (a PING sent after a PRIVMSG is answered after its
    /// echo). The wait is a group commit: a millisecond or so.
    fn await_answers(&mut self, conn: &mut ServerConnection) {
        self.move_replies(conn);
        if !self.outbox.wait_for_answers(ANSWER_WAIT) {
            log::warn!("session {}: no answer from the message writer", self.id);
        }
        self.queue_outbox(conn);
    }

    /// Queues what other threads delivered to this session so far (an IRC
    /// session, between lines, so that events come in order with its
    /// answers).
    fn queue_outbox(&mut self, conn: &mut ServerConnection) {
        let (bytes, flags) = self.outbox.take();
        if !bytes.is_empty() {
            conn.queue_vec(bytes);
        }
        if flags.closing && self.closing.is_none() {
            self.closing = Some(Instant::now() + CLOSE_GRACE);
        }
    }

    /// Moves this thread's replies into the connection.
    fn move_replies(&mut self, conn: &mut ServerConnection) {
        if !self.out.is_empty() {
            conn.queue_vec(std::mem::take(&mut self.out));
        }
    }

    /// Queues download data while the client's unsent bytes are few.
    fn pump_download(&mut self, conn: &mut ServerConnection) {
        while let Some(dl) = &mut self.state.download {
            if conn.unsent() >= TAKE_BELOW {
                return;
            }
            let mut out = Vec::new();
            match dl.pump(&mut out) {
                Ok(done) => {
                    conn.queue_vec(out);
                    if done {
                        let (download, sha256) = (dl.id, dl.sha256.clone());
                        self.state.download = None;
                        self.send(&ServerFrame::event(ServerMsg::DownloadEnd {
                            download,
                            sha256,
                        }));
                    }
                }
                Err(err) => {
                    log::error!("session {}: reading a stored file failed: {err}", self.id);
                    self.state.download = None;
                    // The client sees no download_end; tell it why.
                    self.send(&ServerFrame::error(
                        None,
                        ErrorCode::ServerError,
                        "the download failed on the server",
                    ));
                }
            }
        }
    }

    fn send(&mut self, frame: &ServerFrame) {
        self.out
            .extend_from_slice(&self.outbox.wire().encode(frame));
    }

    fn reply(&mut self, req: Option<u64>, msg: ServerMsg) {
        self.send(&ServerFrame::reply(req, msg));
    }

    /// Says why, then ends the session once that is written.
    fn close(&mut self, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        log::debug!("session {}: closing: {code}: {message}", self.id);
        self.send(&ServerFrame::event(ServerMsg::Closing { code, message }));
        self.closing = Some(Instant::now() + CLOSE_GRACE);
    }

    /// One decoded frame: a data frame goes to the upload in progress, a
    /// request to its handler; the answer is queued.
    fn handle_frame(&mut self, frame: Frame) {
        if frame.kind == FrameKind::Data {
            self.handle_data(&frame.payload);
            return;
        }
        let parsed = match protocol::parse_request(&frame.payload) {
            Ok(parsed) => parsed,
            Err(err) => {
                if matches!(self.phase, Phase::Hello) {
                    // Without a valid hello we cannot trust anything else
                    // this peer sends.
                    self.close(err.code, err.message);
                } else {
                    self.send(&ServerFrame::error(err.req, err.code, err.message));
                }
                return;
            }
        };
        let handled = self.route(parsed.req, parsed.request);
        // Other nodes see what this request changed before it is answered.
        self.ctx.services.share_changes();
        self.answer(parsed.req, handled);
    }

    /// One line from an IRC client, handled by its front end.
    fn handle_line(&mut self, line: Result<Vec<u8>, LineError>) {
        let Some(mut front) = self.irc.take() else {
            return;
        };
        let req = Some(front.next_req());
        // The replies go to `out`, which `cx` cannot lend while it holds
        // the session.
        let mut out = std::mem::take(&mut self.out);
        let (mut cx, phase) = self.cx(req);
        let me = match phase {
            Phase::Ready(me) => Some(me),
            _ => None,
        };
        let outcome = front.line(&mut cx, me, line, &mut out);
        self.out = out;
        self.irc = Some(front);
        // As for a confab request: other nodes see the changes first.
        self.ctx.services.share_changes();
        match outcome {
            Outcome::Continue => {}
            Outcome::Entered(user) => self.phase = Phase::Ready(user),
            Outcome::Close(code, message) => self.close(code, message),
        }
    }

    /// The handlers' context for request `req`, beside the phase (the two
    /// borrow different fields, so a handler may run while the phase is
    /// matched).
    fn cx(&mut self, req: Option<u64>) -> (Cx<'_>, &Phase) {
        let cx = Cx {
            svc: &self.ctx.services,
            req,
            session: self.id,
            outbox: &self.outbox,
            peer: self.peer,
            state: &mut self.state,
            label: None,
        };
        (cx, &self.phase)
    }

    /// Runs a request with the handler its phase allows.
    fn route(&mut self, req: Option<u64>, request: Request) -> Handled {
        let (mut cx, phase) = self.cx(req);
        match (phase, request) {
            (Phase::Hello, Request::Hello { version, client }) => {
                account::hello(&mut cx, version, &client)
            }
            (Phase::Hello, _) => Err(Refusal::new(
                ErrorCode::HelloRequired,
                "the first request must be hello",
            )),
            (_, Request::Hello { .. }) => Err(Refusal::new(
                ErrorCode::BadRequest,
                "hello was already sent",
            )),
            (_, Request::Ping) => Ok(Answer::Reply(ServerMsg::Pong)),
            (_, Request::Quit) => Ok(Answer::ReplyAndEnd(ServerMsg::Ok)),
            (Phase::Auth, Request::Register { user, password }) => {
                account::register(&mut cx, &user, &password)
            }
            (Phase::Auth, Request::Login { user, password }) => {
                account::login(&mut cx, &user, &password)
            }
            (Phase::Auth, Request::Resume { user, token }) => {
                account::resume(&mut cx, &user, &token)
            }
            (Phase::Auth, _) => Err(Refusal::new(
                ErrorCode::NotLoggedIn,
                "log in or register first",
            )),
            (Phase::Ready(me), request) => handlers::dispatch(&mut cx, me, request),
        }
    }

    /// Queues a handler's answer, and moves the phase on where it says so.
    fn answer(&mut self, req: Option<u64>, handled: Handled) {
        match handled {
            Ok(Answer::Reply(msg)) => self.reply(req, msg),
            Ok(Answer::Later) => {}
            Ok(Answer::ReplyAndEnd(msg)) => {
                self.reply(req, msg);
                self.closing = Some(Instant::now() + CLOSE_GRACE);
            }
            Ok(Answer::Greeted(msg)) => {
                self.phase = Phase::Auth;
                self.reply(req, msg);
            }
            Ok(Answer::Entered(entry)) => {
                self.phase = Phase::Ready(entry.user);
                self.reply(req, entry.reply);
                for event in entry.replay {
                    self.send(&ServerFrame::event(event));
                }
            }
            Err(refusal) if refusal.ends_session() => self.close(refusal.code, refusal.message),
            Err(refusal) => {
                self.send(&ServerFrame::error(req, refusal.code, refusal.message));
            }
        }
    }

    /// A data frame: the next chunk of the upload in progress.
    fn handle_data(&mut self, payload: &[u8]) {
        if matches!(self.phase, Phase::Hello) {
            self.close(ErrorCode::HelloRequired, "the first request must be hello");
            return;
        }
        let Some((id, bytes)) = protocol::parse_data(payload) else {
            self.close(ErrorCode::BadFrame, "data frame without a stream id");
            return;
        };
        let (mut cx, phase) = self.cx(None);
        let user = match phase {
            Phase::Ready(me) => Some(me.name.as_str()),
            _ => None,
        };
        if let Some(event) = files::data(&mut cx, user, id, bytes) {
            self.send(&ServerFrame::event(event));
        }
    }
}
