//! One client connection, from TLS handshake to goodbye, on its own thread.
//!
//! The TLS stream lives in the session's [`Outbox`], behind a mutex that
//! this thread holds whenever it is awake (OpenSSL streams must not be used
//! by two threads at once). Its loop:
//!
//! 1. take whatever other threads queued in its [`Outbox`] (deliveries,
//!    acks, presence) and write it, with its own replies, in one batch;
//! 2. let go of the connection and sleep in `poll(2)` on the socket and the
//!    outbox's waker: no CPU while idle. Meanwhile the message writer may
//!    write deliveries to the socket itself ([`Outbox::deliver`]) and wakes
//!    this thread only when it cannot;
//! 3. take the connection back, read what arrived and answer each complete
//!    request.
//!
//! Requests that need the database (login, join, history) run here, on the
//! session's own thread, so they delay only this client. Chat messages go to
//! the writer thread, which stores them before anyone sees them.

use super::context::{IpGuard, ServerContext};
use super::hub::{Hub, SessionId};
use super::outbox::{Outbox, TAKE_BELOW};
use super::transfer::{Download, Upload};
use super::wait_queue::Slot;
use super::writer::{Submission, Target};
use crate::connection::{ConnectionError, ReadState};
use crate::poller;
use crate::protocol::{
    self, ErrorCode, Frame, FrameKind, HISTORY_PAGE_MAX, JOIN_REPLAY, PROTOCOL_VERSION, Request,
    ServerFrame, ServerMsg, encode_json,
};
use crate::rate_limit::{FloodControl, Verdict};
use crate::store::{StoreError, UserId};
use crate::tls::TlsConnection;
use crate::validate;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a closing session may take to flush its last words.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Most offline direct messages replayed at login (older ones stay in
/// history).
const OFFLINE_DM_REPLAY: u32 = 1000;

/// Where a session is in its life.
enum Phase {
    /// Waiting for `hello`.
    Hello,
    /// Greeted; waiting for `register` or `login`.
    Auth,
    /// Logged in.
    Ready {
        /// Database id.
        user_id: UserId,
        /// Canonical name.
        user: String,
    },
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
    flood: FloodControl,
    /// The upload being received, if any (one at a time).
    upload: Option<Upload>,
    /// The last upload refused mid-stream, and why: its remaining data
    /// frames are ignored and its `upload_end` gets the same error.
    rejected_upload: Option<(u32, ErrorCode, String)>,
    /// The download being sent, if any (one at a time).
    download: Option<Download>,
    /// Next stream id for uploads and downloads.
    next_stream: u32,
    /// The digest of the resume token this session logged in with or was
    /// given, so `logout` can revoke it.
    token_digest: Option<String>,
}

/// Hands an admitted connection to a pool thread. The slot and the IP
/// guard live as long as the session; `hello` is the one a queued client
/// sent while waiting.
pub fn start(
    conn: TlsConnection,
    peer: SocketAddr,
    slot: Slot,
    ip_guard: Option<IpGuard>,
    hello: Option<Frame>,
    ctx: &Arc<ServerContext>,
) {
    let ctx2 = ctx.clone();
    ctx.pool.execute(move || {
        let ctx = ctx2;
        let served = catch_unwind(AssertUnwindSafe(|| serve(conn, peer, hello, &ctx)));
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
fn serve(conn: TlsConnection, peer: SocketAddr, hello: Option<Frame>, ctx: &ServerContext) {
    let id = ctx.next_session.fetch_add(1, Ordering::Relaxed);
    let outbox = match Outbox::with_connection(ctx.limits.outbox_limit, conn) {
        Ok(o) => Arc::new(o),
        Err(err) => {
            log::warn!("session {id} from {peer}: cannot create waker: {err}");
            return;
        }
    };
    ctx.hub.attach(id, outbox.clone());
    let _registration = Registration { hub: &ctx.hub, id };
    let now = Instant::now();
    let mut session = Session {
        id,
        ctx,
        outbox,
        out: Vec::new(),
        phase: Phase::Hello,
        peer,
        closing: None,
        login_deadline: now + ctx.limits.login_timeout,
        flood: FloodControl::new(ctx.limits.flood_burst, ctx.limits.flood_rate, now),
        upload: None,
        rejected_upload: None,
        download: None,
        next_stream: 1,
        token_digest: None,
    };
    log::debug!("session {id} from {peer}: started");
    if let Some(frame) = hello {
        session.handle_frame(frame);
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
        let fd = conn.get_ref().get_ref().as_raw_fd();
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
                None if all_written && self.download.is_some() => Some(Duration::ZERO),
                None if !matches!(self.phase, Phase::Ready { .. }) => {
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
            }
            // Asleep, the connection is free for `Outbox::deliver`.
            drop(conn);
            let ready = poller::wait(fd, !all_written, Some(self.outbox.waker()), timeout);
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
                while self.closing.is_none() {
                    match conn.next_frame() {
                        Ok(Some(frame)) => self.handle_frame(frame),
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

    /// Moves this thread's replies into the connection.
    fn move_replies(&mut self, conn: &mut TlsConnection) {
        if !self.out.is_empty() {
            conn.queue_vec(std::mem::take(&mut self.out));
        }
    }

    /// Queues download data while the client's unsent bytes are few.
    fn pump_download(&mut self, conn: &mut TlsConnection) {
        while let Some(dl) = &mut self.download {
            if conn.unsent() >= TAKE_BELOW {
                return;
            }
            let mut out = Vec::new();
            match dl.pump(&mut out) {
                Ok(done) => {
                    conn.queue_vec(out);
                    if done {
                        let (download, sha256) = (dl.id, dl.sha256.clone());
                        self.download = None;
                        self.send(&ServerFrame::event(ServerMsg::DownloadEnd {
                            download,
                            sha256,
                        }));
                    }
                }
                Err(err) => {
                    log::error!("session {}: reading a stored file failed: {err}", self.id);
                    self.download = None;
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

    /// A data frame: the next chunk of the upload in progress.
    fn handle_data(&mut self, payload: &[u8]) {
        let Some((id, bytes)) = protocol::parse_data(payload) else {
            self.close(ErrorCode::BadFrame, "data frame without a stream id");
            return;
        };
        let rules = &self.ctx.file_rules;
        match &mut self.upload {
            Some(up) if up.id == id => {
                if let Err((code, message)) = up.feed(rules, bytes) {
                    // Dropping the upload deletes what was written.
                    self.upload = None;
                    self.rejected_upload = Some((id, code, message.clone()));
                    log::info!("session {}: upload {id} refused: {message}", self.id);
                    if code == ErrorCode::FileRejected {
                        self.audit(self.user_name().as_deref(), "file_rejected", &message);
                    }
                    self.send(&ServerFrame::event(ServerMsg::UploadRejected {
                        upload: id,
                        code,
                        message,
                    }));
                }
            }
            // Data of a refused or cancelled upload still in flight.
            _ => log::debug!("session {}: ignoring data for stream {id}", self.id),
        }
    }

    fn send(&mut self, frame: &ServerFrame) {
        self.out.extend_from_slice(&encode_json(frame));
    }

    fn reply(&mut self, req: Option<u64>, msg: ServerMsg) {
        self.send(&ServerFrame::reply(req, msg));
    }

    fn error(&mut self, req: Option<u64>, code: ErrorCode, message: impl Into<String>) {
        self.send(&ServerFrame::error(req, code, message));
    }

    /// Says why, then ends the session once that is written.
    fn close(&mut self, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        log::debug!("session {}: closing: {code}: {message}", self.id);
        self.send(&ServerFrame::event(ServerMsg::Closing { code, message }));
        self.closing = Some(Instant::now() + CLOSE_GRACE);
    }

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
                    self.error(err.req, err.code, err.message);
                }
                return;
            }
        };
        let req = parsed.req;
        let result = match (&self.phase, parsed.request) {
            (Phase::Hello, Request::Hello { version, client }) => {
                self.hello(req, version, &client);
                Ok(())
            }
            (Phase::Hello, _) => {
                self.close(ErrorCode::HelloRequired, "the first request must be hello");
                Ok(())
            }
            (_, Request::Hello { .. }) => {
                Err((ErrorCode::BadRequest, "hello was already sent".to_owned()))
            }
            (_, Request::Ping) => {
                self.reply(req, ServerMsg::Pong);
                Ok(())
            }
            (_, Request::Quit) => {
                self.reply(req, ServerMsg::Ok);
                self.closing = Some(Instant::now() + CLOSE_GRACE);
                Ok(())
            }
            (Phase::Auth, Request::Register { user, password }) => {
                self.register(req, &user, &password)
            }
            (Phase::Auth, Request::Login { user, password }) => self.login(req, &user, &password),
            (Phase::Auth, Request::Resume { user, token }) => self.resume(req, &user, &token),
            (Phase::Auth, _) => Err((
                ErrorCode::NotLoggedIn,
                "log in or register first".to_owned(),
            )),
            (
                Phase::Ready { .. },
                Request::Register { .. } | Request::Login { .. } | Request::Resume { .. },
            ) => Err((
                ErrorCode::AlreadyLoggedIn,
                "this session is already logged in".to_owned(),
            )),
            (Phase::Ready { user_id, user }, request) => {
                let (user_id, user) = (*user_id, user.clone());
                self.logged_in_request(req, user_id, &user, request)
            }
        };
        if let Err((code, message)) = result {
            if code == ErrorCode::Flooding {
                self.close(code, message);
            } else {
                self.error(req, code, message);
            }
        }
    }

    fn hello(&mut self, req: Option<u64>, version: u32, client: &str) {
        if version != PROTOCOL_VERSION {
            self.close(
                ErrorCode::VersionMismatch,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, the client {version}; upgrade the older side"),
            );
            return;
        }
        log::debug!(
            "session {}: hello from {:?}",
            self.id,
            client.chars().take(64).collect::<String>()
        );
        self.phase = Phase::Auth;
        self.reply(
            req,
            ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
                server: format!("confab-server {}", env!("CARGO_PKG_VERSION")),
                max_body: self.ctx.limits.max_message_len,
                max_request: self.ctx.limits.max_request_len,
                max_file: self.ctx.file_rules.max_size,
                file_types: self
                    .ctx
                    .file_rules
                    .allowed
                    .iter()
                    .map(|k| format!("{k:?}").to_ascii_lowercase())
                    .collect(),
            },
        );
    }

    fn register(&mut self, req: Option<u64>, user: &str, pw: &str) -> Reply {
        let user = validate::username(user).map_err(invalid)?;
        validate::password(pw).map_err(invalid)?;
        let hash = self
            .ctx
            .auth
            .hash(pw)
            .map_err(|e| (ErrorCode::ServerError, e.to_string()))?;
        let user_id = match self.ctx.store.create_user(&user, &hash) {
            Ok(id) => id,
            Err(StoreError::UserExists) => {
                return Err((ErrorCode::UserExists, format!("the name {user} is taken")));
            }
            Err(err) => return Err(server_error(&err)),
        };
        log::info!("registered {user} from {}", self.peer);
        self.audit(Some(&user), "register", "");
        // The new user is in `general` in the database; mirror it.
        self.ctx.hub.join("general", user_id, &user);
        let token = self.issue_token(user_id);
        self.enter(req, user_id, user, token)
    }

    /// Refuses an attempt while the account or address is throttled.
    fn throttled(&self, name: &str) -> Reply {
        match self.ctx.auth.check(name, self.peer.ip()) {
            Ok(()) => Ok(()),
            Err(wait) => {
                self.audit(Some(name), "login_throttled", "");
                Err((
                    ErrorCode::TooManyAttempts,
                    format!(
                        "too many failed logins; try again in {} s",
                        wait.as_secs().max(1)
                    ),
                ))
            }
        }
    }

    /// Refuses a banned user, saying why and until when.
    fn not_banned(&self, user_id: UserId, name: &str) -> Reply {
        match self
            .ctx
            .store
            .ban_of(user_id)
            .map_err(|e| server_error(&e))?
        {
            None => Ok(()),
            Some(ban) => {
                self.audit(Some(name), "login_banned", &ban.reason);
                let until = ban.until.map_or_else(
                    || "for good".to_owned(),
                    |t| {
                        format!(
                            "for {} more minutes",
                            ((t - crate::store::now_ms()) / 60_000).max(1)
                        )
                    },
                );
                Err((
                    ErrorCode::Banned,
                    format!("you are banned {until} (by {}): {}", ban.by, ban.reason),
                ))
            }
        }
    }

    fn login(&mut self, req: Option<u64>, user: &str, pw: &str) -> Reply {
        let name = user.to_ascii_lowercase();
        self.throttled(&name)?;
        let record = match validate::username(user) {
            Ok(name) => self
                .ctx
                .store
                .find_user(&name)
                .map_err(|e| server_error(&e))?,
            Err(_) => None,
        };
        // Verified even for unknown users, on the hashing pool, so both
        // cases cost the same and a login storm cannot take every core.
        let ok = self
            .ctx
            .auth
            .verify(pw, record.as_ref().map(|r| r.password.as_str()));
        let Some(r) = record.filter(|_| ok) else {
            return self.login_failed(
                &name,
                "",
                ErrorCode::AuthFailed,
                "wrong user name or password",
            );
        };
        self.not_banned(r.id, &r.name)?;
        self.ctx.auth.success(&name);
        if self.ctx.auth.needs_rehash(&r.password) {
            // The configured cost went up: upgrade the stored hash now that
            // we have the password.
            match self.ctx.auth.hash(pw) {
                Ok(h) => {
                    if let Err(e) = self.ctx.store.set_password(r.id, &h) {
                        log::warn!("rehashing {}'s password failed: {e}", r.name);
                    }
                }
                Err(e) => log::warn!("rehashing {}'s password failed: {e}", r.name),
            }
        }
        log::info!("login {} from {}", r.name, self.peer);
        self.audit(Some(&r.name), "login", "password");
        let token = self.issue_token(r.id);
        self.enter(req, r.id, r.name, token)
    }

    /// Logs in with a resume token: no password hashing.
    fn resume(&mut self, req: Option<u64>, user: &str, token: &str) -> Reply {
        let name = user.to_ascii_lowercase();
        self.throttled(&name)?;
        let digest = self.ctx.auth.digest(token);
        let record = self
            .ctx
            .store
            .token_user(&digest)
            .map_err(|e| server_error(&e))?
            .filter(|r| r.name == name);
        let Some(r) = record else {
            return self.login_failed(
                &name,
                "token",
                ErrorCode::InvalidToken,
                "the resume token is not valid; log in with your password",
            );
        };
        self.not_banned(r.id, &r.name)?;
        self.audit(Some(&r.name), "login", "token");
        self.token_digest = Some(digest);
        self.enter(req, r.id, r.name, None)
    }

    /// A new resume token for this session (its digest is remembered so
    /// that `logout` can revoke it).
    /// A failed password or token login: counted against the name and the
    /// address (`Throttle`), audited with `how` as detail, answered with
    /// `code`.
    fn login_failed(&self, name: &str, how: &str, code: ErrorCode, message: &str) -> Reply {
        log::info!("failed login for {name:?} from {}", self.peer);
        self.ctx.auth.failure(name, self.peer.ip());
        self.audit(Some(name), "login_failed", how);
        Err((code, message.to_owned()))
    }

    fn issue_token(&mut self, user_id: UserId) -> Option<String> {
        let (token, digest) = self.ctx.auth.new_token()?;
        let expires = crate::store::now_ms() + self.ctx.limits.token_lifetime.as_millis() as i64;
        match self.ctx.store.add_token(user_id, &digest, expires) {
            Ok(()) => {
                self.token_digest = Some(digest);
                Some(token)
            }
            Err(e) => {
                log::warn!("storing a resume token failed: {e}");
                None
            }
        }
    }

    fn user_name(&self) -> Option<String> {
        match &self.phase {
            Phase::Ready { user, .. } => Some(user.clone()),
            _ => None,
        }
    }

    fn audit(&self, user: Option<&str>, action: &str, detail: &str) {
        let ip = self.peer.ip().to_string();
        if let Err(e) = self.ctx.store.audit(user, Some(&ip), action, detail) {
            log::warn!("audit failed: {e}");
        }
    }

    /// Completes a login: registers with the hub, replies, and replays
    /// direct messages that arrived while the user was away.
    fn enter(
        &mut self,
        req: Option<u64>,
        user_id: UserId,
        user: String,
        token: Option<String>,
    ) -> Reply {
        // Register first, so a DM stored from now on is delivered live; one
        // stored in between may come twice (clients de-duplicate by id).
        let rooms = self.ctx.hub.login(self.id, user_id, &user);
        let dms = self
            .ctx
            .store
            .undelivered_dms(user_id, OFFLINE_DM_REPLAY)
            .map_err(|e| server_error(&e))?;
        self.phase = Phase::Ready {
            user_id,
            user: user.clone(),
        };
        let unread = self
            .ctx
            .store
            .unread(user_id, &user)
            .map_err(|e| server_error(&e))?;
        self.reply(
            req,
            ServerMsg::LoggedIn {
                user,
                rooms,
                offline_dms: dms.len() as u32,
                unread,
                token,
            },
        );
        if let Some(last) = dms.last().map(|m| m.id) {
            for dm in dms {
                self.send(&ServerFrame::event(ServerMsg::Message(dm)));
            }
            if let Err(err) = self.ctx.store.advance_dm_cursor(user_id, last) {
                log::warn!("advancing DM cursor failed: {err}");
            }
        }
        Ok(())
    }

    /// Whether the user may run admin requests: the database's flag, or
    /// the `admins` setting.
    fn require_admin(&self, user_id: UserId, user: &str) -> Reply {
        let flagged = self
            .ctx
            .store
            .is_admin(user_id)
            .map_err(|e| server_error(&e))?;
        if flagged || self.ctx.admins.iter().any(|a| a == user) {
            Ok(())
        } else {
            Err((
                ErrorCode::Forbidden,
                "this is for administrators".to_owned(),
            ))
        }
    }

    /// Runs an admin request (the caller checked the rights).
    fn admin_request(&mut self, req: Option<u64>, admin: &str, request: Request) -> Reply {
        let store = &self.ctx.store;
        let minutes_from_now =
            |m: Option<u64>| m.map(|m| crate::store::now_ms() + (m as i64) * 60_000);
        match request {
            Request::Kick { user, reason } => {
                let target = self.existing_user(&user)?;
                let n = self.kick(target.id, &format!("kicked by {admin}: {reason}"));
                self.audit(
                    Some(admin),
                    "kick",
                    &format!("{} ({n} sessions): {reason}", target.name),
                );
            }
            Request::Ban {
                user,
                reason,
                minutes,
            } => {
                let target = self.existing_user(&user)?;
                store
                    .ban(target.id, &reason, admin, minutes_from_now(minutes))
                    .map_err(|e| server_error(&e))?;
                store
                    .revoke_tokens(target.id)
                    .map_err(|e| server_error(&e))?;
                self.kick(target.id, &format!("banned by {admin}: {reason}"));
                let how_long =
                    minutes.map_or_else(|| "for good".to_owned(), |m| format!("for {m} min"));
                self.audit(
                    Some(admin),
                    "ban",
                    &format!("{} {how_long}: {reason}", target.name),
                );
            }
            Request::Unban { user } => {
                let target = self.existing_user(&user)?;
                if !store.unban(target.id).map_err(|e| server_error(&e))? {
                    return Err((
                        ErrorCode::BadRequest,
                        format!("{} is not banned", target.name),
                    ));
                }
                self.audit(Some(admin), "unban", &target.name);
            }
            Request::Mute {
                room,
                user,
                minutes,
            } => {
                let room = self.existing_room(&room)?;
                let target = self.existing_user(&user)?;
                store
                    .mute(room.id, target.id, admin, minutes_from_now(minutes))
                    .map_err(|e| server_error(&e))?;
                self.audit(
                    Some(admin),
                    "mute",
                    &format!("{} in #{}", target.name, room.name),
                );
            }
            Request::Unmute { room, user } => {
                let room = self.existing_room(&room)?;
                let target = self.existing_user(&user)?;
                store
                    .unmute(room.id, target.id)
                    .map_err(|e| server_error(&e))?;
                self.audit(
                    Some(admin),
                    "unmute",
                    &format!("{} in #{}", target.name, room.name),
                );
            }
            Request::Bans => {
                let bans = store
                    .bans()
                    .map_err(|e| server_error(&e))?
                    .into_iter()
                    .map(|b| protocol::BanInfo {
                        user: b.user,
                        reason: b.reason,
                        by: b.by,
                        until: b.until,
                    })
                    .collect();
                self.reply(req, ServerMsg::BanList { bans });
                return Ok(());
            }
            Request::Stats => {
                let stats = self.ctx.stats();
                self.reply(req, ServerMsg::Stats(stats));
                return Ok(());
            }
            _ => return Err((ErrorCode::BadRequest, "not an admin request".to_owned())),
        }
        self.reply(req, ServerMsg::Ok);
        Ok(())
    }

    /// Refuses to add a room to a user who is in as many as allowed.
    fn room_allowance(&self, user_id: UserId) -> Reply {
        let n = self
            .ctx
            .store
            .room_count(user_id)
            .map_err(|e| server_error(&e))?;
        let max = self.ctx.limits.max_rooms_per_user;
        if n >= max {
            return Err((
                ErrorCode::TooManyRooms,
                format!("you are in {n} rooms, the most allowed here; leave one first"),
            ));
        }
        Ok(())
    }

    /// Ends every session of a user with `kicked`; returns how many.
    fn kick(&self, user_id: UserId, why: &str) -> usize {
        let frame = encode_json(&ServerFrame::event(ServerMsg::Closing {
            code: ErrorCode::Kicked,
            message: why.to_owned(),
        }));
        self.ctx.hub.close_user(user_id, &frame)
    }

    fn logged_in_request(
        &mut self,
        req: Option<u64>,
        user_id: UserId,
        user: &str,
        request: Request,
    ) -> Reply {
        let hub = &self.ctx.hub;
        let store = &self.ctx.store;
        match request {
            Request::Rooms => {
                let rooms = hub.room_list();
                self.reply(req, ServerMsg::RoomList { rooms });
            }
            Request::CreateRoom { room, topic } => {
                self.room_allowance(user_id)?;
                let room = validate::room(&room).map_err(invalid)?;
                validate::topic(&topic).map_err(invalid)?;
                let id = match store.create_room(&room, &topic, user_id) {
                    Ok(id) => id,
                    Err(StoreError::RoomExists) => {
                        return Err((
                            ErrorCode::RoomExists,
                            format!("#{room} exists; join it instead"),
                        ));
                    }
                    Err(err) => return Err(server_error(&err)),
                };
                hub.add_room(id, &room, &topic, (user_id, user));
                self.joined(req, &room, user_id, user)?;
            }
            Request::Join { room } => {
                let room = self.existing_room(&room)?;
                let was_member = hub.is_member(&room.name, user_id);
                if !was_member {
                    self.room_allowance(user_id)?;
                }
                store
                    .add_member(room.id, user_id)
                    .map_err(|e| server_error(&e))?;
                if !was_member {
                    // History from before joining is not "unread".
                    store
                        .mark_room_read_to_latest(user_id, room.id)
                        .map_err(|e| server_error(&e))?;
                }
                self.joined(req, &room.name, user_id, user)?;
            }
            Request::Leave { room } => {
                let room = self.member_room(&room, user_id)?;
                store
                    .remove_member(room.id, user_id)
                    .map_err(|e| server_error(&e))?;
                hub.leave(&room.name, user_id, user);
                self.reply(req, ServerMsg::Ok);
            }
            Request::Topic { room, topic } => {
                let room = self.member_room(&room, user_id)?;
                validate::topic(&topic).map_err(invalid)?;
                store
                    .set_topic(room.id, &topic)
                    .map_err(|e| server_error(&e))?;
                hub.set_topic(&room.name, &topic, user);
                self.reply(req, ServerMsg::Ok);
            }
            Request::Who { room } => {
                let room = self.existing_room(&room)?;
                let members = hub.members(&room.name).unwrap_or_default();
                self.reply(
                    req,
                    ServerMsg::Users {
                        room: room.name,
                        members,
                    },
                );
            }
            Request::Say { room, body } => {
                let room = self.member_room(&room, user_id)?;
                if store
                    .is_muted(room.id, user_id)
                    .map_err(|e| server_error(&e))?
                {
                    return Err((ErrorCode::Muted, format!("you are muted in #{}", room.name)));
                }
                validate::body_within(&body, self.ctx.limits.max_message_len).map_err(invalid)?;
                self.flood_check()?;
                self.submit(
                    req,
                    user_id,
                    user,
                    Target::Room {
                        id: room.id,
                        name: room.name,
                    },
                    body,
                )?;
            }
            Request::Dm { to, body } => {
                validate::body_within(&body, self.ctx.limits.max_message_len).map_err(invalid)?;
                let peer = self.existing_user(&to)?;
                self.flood_check()?;
                self.submit(
                    req,
                    user_id,
                    user,
                    Target::User {
                        id: peer.id,
                        name: peer.name,
                    },
                    body,
                )?;
            }
            Request::History {
                room,
                with,
                before,
                limit,
            } => {
                let limit = limit.unwrap_or(JOIN_REPLAY).clamp(1, HISTORY_PAGE_MAX);
                let (messages, more, room, with) = match (room, with) {
                    (Some(room), None) => {
                        let room = self.member_room(&room, user_id)?;
                        let (m, more) = store
                            .room_history(room.id, before, limit)
                            .map_err(|e| server_error(&e))?;
                        (m, more, Some(room.name), None)
                    }
                    (None, Some(with)) => {
                        let peer = self.existing_user(&with)?;
                        let (m, more) = store
                            .dm_history(user_id, peer.id, before, limit)
                            .map_err(|e| server_error(&e))?;
                        (m, more, None, Some(peer.name))
                    }
                    _ => {
                        return Err((
                            ErrorCode::BadRequest,
                            "history needs exactly one of `room` and `with`".to_owned(),
                        ));
                    }
                };
                self.reply(
                    req,
                    ServerMsg::History {
                        room,
                        with,
                        messages,
                        more,
                    },
                );
            }
            Request::Upload {
                room,
                to,
                name,
                size,
            } => {
                if self.upload.is_some() {
                    return Err((ErrorCode::Busy, "another upload is in progress".to_owned()));
                }
                let target = self.file_target(user_id, room, to)?;
                let id = self.next_stream;
                self.next_stream += 1;
                let up = Upload::begin(
                    id,
                    target,
                    &name,
                    size,
                    &self.ctx.file_rules,
                    &self.ctx.files,
                )?;
                self.upload = Some(up);
                self.reply(
                    req,
                    ServerMsg::UploadReady {
                        upload: id,
                        // Data frames must fit the request limit with their
                        // header and stream id.
                        chunk_size: protocol::DATA_CHUNK
                            .min(self.ctx.limits.max_request_len.saturating_sub(16)),
                    },
                );
            }
            Request::UploadEnd { upload, sha256 } => {
                let up = match self.upload.take() {
                    Some(up) if up.id == upload => up,
                    other => {
                        self.upload = other;
                        return Err(match &self.rejected_upload {
                            Some((id, code, message)) if *id == upload => (*code, message.clone()),
                            _ => (
                                ErrorCode::BadRequest,
                                format!("no upload {upload} in progress"),
                            ),
                        });
                    }
                };
                let (name, size, target) = (up.name.clone(), up.size, up.target.clone());
                let verified = up.finish(&sha256, &self.ctx.files).inspect_err(|(_, m)| {
                    log::info!(
                        "session {}: upload {upload} refused at the end: {m}",
                        self.id
                    );
                })?;
                let to = match &target {
                    Target::Room { id, .. } => crate::store::Destination::Room(*id),
                    Target::User { id, .. } => crate::store::Destination::User(*id),
                };
                let mime = verified.kind.mime().to_owned();
                let file_id = store
                    .insert_file(&crate::store::NewFile {
                        sha256: verified.sha256.clone(),
                        name: name.clone(),
                        mime: mime.clone(),
                        size,
                        uploader: user_id,
                        to,
                    })
                    .map_err(|e| server_error(&e))?;
                log::info!("{user} shared {name} ({size} bytes, {mime}) as file {file_id}");
                let body = format!(
                    "shared {name} ({}, {})",
                    crate::file_rules::human_size(size),
                    verified.kind.label()
                );
                let info = protocol::FileInfo {
                    id: file_id,
                    name,
                    mime,
                    size,
                    sha256: verified.sha256,
                };
                self.submit_with_file(req, user_id, user, target, body, Some(info))?;
            }
            Request::UploadCancel { upload } => {
                if self.upload.as_ref().is_some_and(|u| u.id == upload) {
                    self.upload = None;
                }
                self.reply(req, ServerMsg::Ok);
            }
            Request::Download { file } => {
                if self.download.is_some() {
                    return Err((
                        ErrorCode::Busy,
                        "another download is in progress".to_owned(),
                    ));
                }
                let none = || (ErrorCode::NoSuchFile, format!("no file {file}"));
                let record = store
                    .find_file(file)
                    .map_err(|e| server_error(&e))?
                    .ok_or_else(none)?;
                let allowed = match record.to {
                    crate::store::Destination::Room(room) => store
                        .is_member(room, user_id)
                        .map_err(|e| server_error(&e))?,
                    crate::store::Destination::User(to) => {
                        to == user_id || record.uploader == user_id
                    }
                };
                if !allowed {
                    // The same answer as for a missing file: no leak.
                    return Err(none());
                }
                let content = self
                    .ctx
                    .files
                    .open_content(&record.info.sha256)
                    .map_err(|e| {
                        log::error!("stored file {file} cannot be opened: {e}");
                        (
                            ErrorCode::ServerError,
                            "the file's content is missing on the server".to_owned(),
                        )
                    })?;
                let id = self.next_stream;
                self.next_stream += 1;
                self.download = Some(Download::new(
                    id,
                    content,
                    record.info.size,
                    record.info.sha256.clone(),
                ));
                self.reply(
                    req,
                    ServerMsg::DownloadStart {
                        download: id,
                        file: record.info,
                    },
                );
            }
            Request::Files { room, with } => {
                let files = match (room, with) {
                    (Some(room), None) => {
                        let room = self.member_room(&room, user_id)?;
                        store
                            .room_files(room.id, 50)
                            .map_err(|e| server_error(&e))?
                    }
                    (None, Some(with)) => {
                        let peer = self.existing_user(&with)?;
                        store
                            .dm_files(user_id, peer.id, 50)
                            .map_err(|e| server_error(&e))?
                    }
                    _ => {
                        return Err((
                            ErrorCode::BadRequest,
                            "files needs exactly one of `room` and `with`".to_owned(),
                        ));
                    }
                };
                self.reply(req, ServerMsg::FileList { files });
            }
            Request::MarkRead { room, with, id } => {
                let (room, with) = match (room, with) {
                    (Some(room), None) => {
                        let room = self.member_room(&room, user_id)?;
                        store
                            .mark_room_read(user_id, room.id, id)
                            .map_err(|e| server_error(&e))?;
                        (Some(room.name), None)
                    }
                    (None, Some(with)) => {
                        let peer = self.existing_user(&with)?;
                        store
                            .mark_dm_read(user_id, peer.id, id)
                            .map_err(|e| server_error(&e))?;
                        (None, Some(peer.name))
                    }
                    _ => {
                        return Err((
                            ErrorCode::BadRequest,
                            "mark_read needs exactly one of `room` and `with`".to_owned(),
                        ));
                    }
                };
                // The user's other devices clear their counts too.
                let event = encode_json(&ServerFrame::event(ServerMsg::Read { room, with, id }));
                hub.send_to_user(user_id, &event, Some(self.id));
                self.reply(req, ServerMsg::Ok);
            }
            Request::Away { message } => {
                let message = message.filter(|m| !m.trim().is_empty());
                if let Some(m) = &message {
                    validate::topic(m).map_err(invalid)?;
                }
                hub.set_away(user_id, user, message);
                self.reply(req, ServerMsg::Ok);
            }
            Request::Kick { .. }
            | Request::Ban { .. }
            | Request::Unban { .. }
            | Request::Mute { .. }
            | Request::Unmute { .. }
            | Request::Bans
            | Request::Stats => {
                self.require_admin(user_id, user)?;
                self.admin_request(req, user, request)?;
            }
            Request::Logout => {
                if let Some(digest) = self.token_digest.take() {
                    store.revoke_token(&digest).map_err(|e| server_error(&e))?;
                }
                self.reply(req, ServerMsg::Ok);
                self.closing = Some(Instant::now() + CLOSE_GRACE);
            }
            Request::ChangePassword { old, new } => {
                validate::password(&new).map_err(invalid)?;
                let record = self
                    .existing_user(user)
                    .map_err(|_| (ErrorCode::ServerError, "your account vanished".to_owned()))?;
                if !self.ctx.auth.verify(&old, Some(&record.password)) {
                    self.ctx.auth.failure(user, self.peer.ip());
                    return Err((
                        ErrorCode::AuthFailed,
                        "the current password is wrong".to_owned(),
                    ));
                }
                let hash = self
                    .ctx
                    .auth
                    .hash(&new)
                    .map_err(|e| (ErrorCode::ServerError, e.to_string()))?;
                store
                    .set_password(user_id, &hash)
                    .map_err(|e| server_error(&e))?;
                let revoked = store.revoke_tokens(user_id).map_err(|e| server_error(&e))?;
                self.audit(
                    Some(user),
                    "password_change",
                    &format!("{revoked} tokens revoked"),
                );
                let token = self.issue_token(user_id).unwrap_or_default();
                self.reply(req, ServerMsg::Token { token });
            }
            Request::Hello { .. }
            | Request::Register { .. }
            | Request::Login { .. }
            | Request::Resume { .. }
            | Request::Ping
            | Request::Quit => {
                // Answered in handle_frame before we get here.
            }
        }
        Ok(())
    }

    fn joined(&mut self, req: Option<u64>, room: &str, user_id: UserId, user: &str) -> Reply {
        let Some((info, members)) = self.ctx.hub.join(room, user_id, user) else {
            return Err((ErrorCode::NoSuchRoom, format!("no room #{room}")));
        };
        let room_id = self.ctx.hub.room(room).map(|r| r.id);
        let history = match room_id {
            Some(id) => {
                self.ctx
                    .store
                    .room_history(id, None, JOIN_REPLAY)
                    .map_err(|e| server_error(&e))?
                    .0
            }
            None => Vec::new(),
        };
        self.reply(
            req,
            ServerMsg::Joined {
                room: info,
                members,
                history,
            },
        );
        Ok(())
    }

    /// Applies flood control to one message. Refuses it with `slow_down`,
    /// or with `flooding` (which ends the session) if the client keeps on.
    fn flood_check(&mut self) -> Reply {
        match self.flood.check(Instant::now()) {
            Verdict::Allow => Ok(()),
            verdict => {
                self.ctx
                    .counters
                    .rate_limited
                    .fetch_add(1, Ordering::Relaxed);
                if verdict == Verdict::Disconnect {
                    log::info!("session {}: disconnected for flooding", self.id);
                    return Err((
                        ErrorCode::Flooding,
                        "too many messages after slow_down; disconnected".to_owned(),
                    ));
                }
                Err((
                    ErrorCode::SlowDown,
                    "slow down: too many messages; this one was not sent".to_owned(),
                ))
            }
        }
    }

    /// Where an upload goes: a room the user is in, or an existing user.
    fn file_target(
        &self,
        user_id: UserId,
        room: Option<String>,
        to: Option<String>,
    ) -> Result<Target, (ErrorCode, String)> {
        match (room, to) {
            (Some(room), None) => {
                let room = self.member_room(&room, user_id)?;
                Ok(Target::Room {
                    id: room.id,
                    name: room.name,
                })
            }
            (None, Some(to)) => {
                let peer = self.existing_user(&to)?;
                Ok(Target::User {
                    id: peer.id,
                    name: peer.name,
                })
            }
            _ => Err((
                ErrorCode::BadRequest,
                "upload needs exactly one of `room` and `to`".to_owned(),
            )),
        }
    }

    fn submit(
        &mut self,
        req: Option<u64>,
        user_id: UserId,
        user: &str,
        target: Target,
        body: String,
    ) -> Reply {
        self.submit_with_file(req, user_id, user, target, body, None)
    }

    /// Hands a message (possibly announcing a stored file) to the writer,
    /// which stores it, delivers it, and acks `req`.
    fn submit_with_file(
        &mut self,
        req: Option<u64>,
        user_id: UserId,
        user: &str,
        target: Target,
        body: String,
        file: Option<protocol::FileInfo>,
    ) -> Reply {
        let sub = Submission {
            req,
            session: self.id,
            outbox: self.outbox.clone(),
            sender: (user_id, user.to_owned()),
            target,
            body,
            file,
        };
        self.ctx.writer.submit(sub).map_err(|_| {
            (
                ErrorCode::ServerError,
                "the message store is not running".to_owned(),
            )
        })
    }

    fn existing_room(&self, raw: &str) -> Result<super::hub::RoomRef, (ErrorCode, String)> {
        let name = validate::room(raw).map_err(invalid)?;
        self.ctx
            .hub
            .room(&name)
            .ok_or_else(|| (ErrorCode::NoSuchRoom, format!("no room #{name}")))
    }

    fn member_room(
        &self,
        raw: &str,
        user_id: UserId,
    ) -> Result<super::hub::RoomRef, (ErrorCode, String)> {
        let room = self.existing_room(raw)?;
        if self.ctx.hub.is_member(&room.name, user_id) {
            Ok(room)
        } else {
            Err((
                ErrorCode::NotMember,
                format!("you are not in #{}; join it first", room.name),
            ))
        }
    }

    fn existing_user(&self, raw: &str) -> Result<crate::store::UserRecord, (ErrorCode, String)> {
        let name = validate::username(raw)
            .map_err(|_| (ErrorCode::NoSuchUser, "no such user".to_owned()))?;
        self.ctx
            .store
            .find_user(&name)
            .map_err(|e| server_error(&e))?
            .ok_or_else(|| (ErrorCode::NoSuchUser, format!("no user {name}")))
    }
}

/// A request handler's outcome: `Err` becomes an `error` reply.
type Reply = Result<(), (ErrorCode, String)>;

fn invalid(i: validate::Invalid) -> (ErrorCode, String) {
    (i.code, i.message)
}

fn server_error(err: &StoreError) -> (ErrorCode, String) {
    log::error!("database: {err}");
    (
        ErrorCode::ServerError,
        "internal error; the request had no effect".to_owned(),
    )
}
