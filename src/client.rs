//! The confab client library, shared by the `confab` binary, the tests and
//! the benchmark.
//!
//! [`Client`] is a blocking request/response API over one TLS connection:
//! each request gets a fresh `req` id and the call waits for the reply with
//! that id. Events (messages, presence, topics) that arrive meanwhile are
//! queued and handed out by [`Client::next_event`]. The stream is
//! non-blocking underneath and waits happen in `poll(2)`, so a caller can
//! wait for events with a timeout without busy loops.

use crate::connection::{Connection, ConnectionError, ReadState};
use crate::file_rules::{self, FileKind, FileRules, HEAD_LEN};
use crate::poller;
use crate::protocol::{
    ChatMessage, ClientFrame, ErrorCode, FrameKind, MAX_FRAME_LEN, Member, PROTOCOL_VERSION,
    Request, RoomInfo, ServerFrame, ServerMsg, SharedFile, encode_data, encode_json, parse_data,
};
use crate::tls::{self, TlsSetupError, Trust};
use native_tls::{TlsConnector, TlsStream};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A decoded frame from the server.
enum Incoming {
    /// A JSON frame.
    Frame(ServerFrame),
    /// File data: stream id and bytes.
    Data(u32, Vec<u8>),
}

fn decode(frame: crate::protocol::Frame) -> Result<Incoming, ClientError> {
    match frame.kind {
        FrameKind::Json => serde_json::from_slice(&frame.payload)
            .map(Incoming::Frame)
            .map_err(|e| ClientError::Decode(e.to_string())),
        FrameKind::Data => {
            let (id, bytes) = parse_data(&frame.payload)
                .ok_or_else(|| ClientError::Decode("data frame without a stream id".into()))?;
            Ok(Incoming::Data(id, bytes.to_vec()))
        }
    }
}

/// Default time to wait for a reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS could not be set up locally (CA file missing or invalid).
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {err}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        err: std::io::Error,
    },
    /// The TLS handshake failed (e.g. the server's certificate is not
    /// trusted, or its name does not match).
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// Where.
        addr: String,
        /// OpenSSL's explanation.
        reason: String,
    },
    /// The connection failed or sent an invalid frame.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The server answered with an error.
    #[error("server error {code}: {message}")]
    Server {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
    /// The server closed the connection; `reason` says why if it told us.
    #[error("connection closed by server{}", .reason.as_ref().map(|(c, m)| format!(": {c}: {m}")).unwrap_or_default())]
    Closed {
        /// The server's `closing` code and message, if one came.
        reason: Option<(ErrorCode, String)>,
    },
    /// No reply in time.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server sent JSON this client cannot read.
    #[error("undecodable frame from server: {0}")]
    Decode(String),
    /// The server sent a reply of an unexpected type.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// A file breaks the server's rules (checked here before uploading).
    #[error("{0}")]
    FileRejected(String),
    /// A local file could not be read or written.
    #[error("{path}: {err}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// A download's content did not match its SHA-256 or size; discarded.
    #[error("the download of {0} was corrupted and discarded")]
    Corrupted(String),
}

/// The outcome of `register` or `login`.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// Canonical user name.
    pub user: String,
    /// Rooms the user is in.
    pub rooms: Vec<RoomInfo>,
    /// How many offline DMs follow as events.
    pub offline_dms: u32,
    /// What is unread, per room and conversation.
    pub unread: Vec<crate::protocol::Unread>,
    /// A resume token for fast reconnects (after a password login).
    pub token: Option<String>,
}

/// A message the server stored (its acknowledgement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its id.
    pub id: i64,
    /// Server time, ms since the epoch.
    pub ts: i64,
    /// A direct message's recipient is away, with this message.
    pub away: Option<String>,
}

/// The outcome of `join` or `create_room`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Joined {
    /// The room.
    pub room: RoomInfo,
    /// Its members.
    pub members: Vec<Member>,
    /// Its latest messages, oldest first.
    pub history: Vec<ChatMessage>,
    /// How many members are online.
    pub online: u32,
    /// Whether `members` is only the first page (see [`Client::who_page`]).
    pub more_members: bool,
    /// Whether the room sends presence events (else refresh with `who`).
    pub live_presence: bool,
}

/// A page of a room's members (the reply to `who`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPage {
    /// Members on this page, by name.
    pub members: Vec<Member>,
    /// Whether members after the last one exist.
    pub more: bool,
    /// How many members are online, of all.
    pub online: u32,
}

/// A connected, greeted client.
pub struct Client {
    conn: Connection<TlsStream<TcpStream>>,
    next_req: u64,
    events: VecDeque<ServerMsg>,
    timeout: Duration,
    closed: Option<Option<(ErrorCode, String)>>,
    server_fingerprint: Option<String>,
    /// What the server accepts as files (from `welcome`).
    file_rules: FileRules,
    /// The largest message body the server accepts (from `welcome`).
    max_body: usize,
}

impl Client {
    /// Connects to `addr` (host:port), checks the certificate against
    /// `trust` for `server_name`, and exchanges `hello`.
    pub fn connect(addr: &str, server_name: &str, trust: &Trust) -> Result<Client, ClientError> {
        let connector = tls::client_connector(trust)?;
        Client::connect_with(addr, server_name, &connector, DEFAULT_TIMEOUT)
    }

    /// Like [`Client::connect`] with a prepared connector and a reply timeout.
    pub fn connect_with(
        addr: &str,
        server_name: &str,
        connector: &TlsConnector,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        Client::connect_with_progress(addr, server_name, connector, timeout, &mut |_| {})
    }

    /// Like [`Client::connect_with`], calling `progress` with each `queued`
    /// and `admitted` event while the server has no free slot. Waiting in
    /// the queue can take long: every queue event restarts the timeout.
    pub fn connect_with_progress(
        addr: &str,
        server_name: &str,
        connector: &TlsConnector,
        timeout: Duration,
        progress: &mut dyn FnMut(&ServerMsg),
    ) -> Result<Client, ClientError> {
        let mut client = Client::connect_unhello(addr, server_name, connector, timeout)?;
        client.greet(progress)?;
        Ok(client)
    }

    /// Sends `hello` on a connection made with [`Client::connect_unhello`]
    /// and waits for `welcome`, calling `progress` with each `queued` and
    /// `admitted` event meanwhile.
    pub fn greet(&mut self, progress: &mut dyn FnMut(&ServerMsg)) -> Result<(), ClientError> {
        match self.request_with(
            Request::Hello {
                version: PROTOCOL_VERSION,
                client: format!("confab {}", env!("CARGO_PKG_VERSION")),
            },
            progress,
        )? {
            ServerMsg::Welcome {
                max_file,
                file_types,
                max_body,
                ..
            } => {
                self.max_body = max_body;
                self.file_rules = FileRules {
                    max_size: max_file,
                    allowed: file_types
                        .iter()
                        .filter_map(|t| FileKind::from_name(t))
                        .collect(),
                };
                Ok(())
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The largest message body the server accepts, in bytes (from its
    /// `welcome`; the protocol's limit before that).
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Connects and completes TLS but sends nothing: for tests that speak
    /// the protocol by hand.
    pub fn connect_unhello(
        addr: &str,
        server_name: &str,
        connector: &TlsConnector,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let connect_err = |err| ClientError::Connect {
            addr: addr.to_owned(),
            err,
        };
        // Try every address the name resolves to (localhost may be ::1
        // first while the server listens on 127.0.0.1 only).
        let mut last_err = std::io::Error::from(std::io::ErrorKind::NotFound);
        let mut connected = None;
        for sockaddr in addr.to_socket_addrs().map_err(connect_err)? {
            match TcpStream::connect_timeout(&sockaddr, timeout) {
                Ok(tcp) => {
                    connected = Some(tcp);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let tcp = connected.ok_or_else(|| connect_err(last_err))?;
        Client::over_tcp(tcp, server_name, connector, timeout)
    }

    /// Completes TLS on a TCP connection the caller made (e.g. from a
    /// chosen local address) but sends nothing, like
    /// [`Client::connect_unhello`].
    pub fn over_tcp(
        tcp: TcpStream,
        server_name: &str,
        connector: &TlsConnector,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let addr = tcp
            .peer_addr()
            .map_or_else(|_| "the server".to_owned(), |a| a.to_string());
        let connect_err = |err| ClientError::Connect {
            addr: addr.clone(),
            err,
        };
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(timeout)).map_err(connect_err)?;
        tcp.set_write_timeout(Some(timeout)).map_err(connect_err)?;
        let tls = connector
            .connect(server_name, tcp)
            .map_err(|e| ClientError::Handshake {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let server_fingerprint = tls
            .peer_certificate()
            .ok()
            .flatten()
            .and_then(|c| c.to_der().ok())
            .map(|der| tls::fingerprint(&der));
        tls.get_ref().set_nonblocking(true).map_err(connect_err)?;
        Ok(Client {
            conn: Connection::new(tls, MAX_FRAME_LEN),
            next_req: 1,
            events: VecDeque::new(),
            timeout,
            closed: None,
            server_fingerprint,
            file_rules: FileRules::default(),
            max_body: crate::protocol::MAX_BODY_LEN,
        })
    }

    /// The socket's descriptor, to wait on many clients at once
    /// (`poller::ReadySet`) before calling [`Client::drain_messages`].
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.conn.get_ref().get_ref().as_raw_fd()
    }

    /// Without waiting: reads what has arrived and hands each JSON frame's
    /// payload to `f` undecoded (data frames are skipped). For the load
    /// generator, which only looks for a timestamp in each message and must
    /// cost less than the server it measures; nothing is queued for
    /// `next_event`. `Ok(false)` when the server has closed the connection.
    pub fn drain_raw(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<bool, ClientError> {
        loop {
            let state = self.conn.fill()?;
            while let Some(frame) = self.conn.next_frame()? {
                if frame.kind == FrameKind::Json {
                    f(&frame.payload);
                }
            }
            match state {
                ReadState::More => {}
                ReadState::Drained => return Ok(true),
                ReadState::Closed => return Ok(false),
            }
        }
    }

    /// Without waiting: reads what has arrived and moves every chat message
    /// into `out` (other events stay queued for `next_event`). Lets one
    /// thread serve many connections.
    pub fn drain_messages(&mut self, out: &mut Vec<ChatMessage>) -> Result<(), ClientError> {
        self.absorb_ready()?;
        let mut rest = VecDeque::with_capacity(self.events.len());
        for ev in self.events.drain(..) {
            match ev {
                ServerMsg::Message(m) => out.push(*m),
                other => rest.push_back(other),
            }
        }
        self.events = rest;
        Ok(())
    }

    /// SHA-256 fingerprint of the server's certificate.
    pub fn server_fingerprint(&self) -> Option<&str> {
        self.server_fingerprint.as_deref()
    }

    /// Sends a request and waits for its reply. An `error` reply becomes
    /// [`ClientError::Server`].
    pub fn request(&mut self, request: Request) -> Result<ServerMsg, ClientError> {
        self.request_with(request, &mut |_| {})
    }

    fn request_with(
        &mut self,
        request: Request,
        progress: &mut dyn FnMut(&ServerMsg),
    ) -> Result<ServerMsg, ClientError> {
        let req = self.next_req;
        self.next_req += 1;
        self.send_frame(&encode_json(&ClientFrame {
            req: Some(req),
            request,
        }))?;
        let mut deadline = Instant::now() + self.timeout;
        loop {
            let frame = self.recv_frame(deadline)?;
            if matches!(
                frame.msg,
                ServerMsg::Queued { .. } | ServerMsg::Admitted { .. }
            ) {
                progress(&frame.msg);
                deadline = Instant::now() + self.timeout;
                continue;
            }
            if frame.req == Some(req) {
                return match frame.msg {
                    ServerMsg::Error { code, message } => {
                        Err(ClientError::Server { code, message })
                    }
                    msg => Ok(msg),
                };
            }
            if let Some(reason) = self.closed_reason(&frame) {
                return Err(ClientError::Closed { reason });
            }
            if frame.req.is_none() {
                self.events.push_back(frame.msg);
            }
        }
    }

    fn closed_reason(&mut self, frame: &ServerFrame) -> Option<Option<(ErrorCode, String)>> {
        if let ServerMsg::Closing { code, message } = &frame.msg {
            let reason = Some((*code, message.clone()));
            self.closed = Some(reason.clone());
            return Some(reason);
        }
        None
    }

    /// Writes raw bytes (a whole frame, or garbage) and waits until they are
    /// sent. For tests of hostile input and for other request shapes.
    pub fn send_frame(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.conn.queue(bytes);
        let deadline = Instant::now() + self.timeout;
        while !self.conn.flush()? {
            let fd = self.conn.get_ref().get_ref().as_raw_fd();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            poller::wait(fd, true, None, Some(left)).map_err(ConnectionError::Io)?;
        }
        Ok(())
    }

    /// The next frame from the server, waiting until `deadline`.
    pub fn recv_frame(&mut self, deadline: Instant) -> Result<ServerFrame, ClientError> {
        self.recv_frame_or_wake(deadline, None)?
            .ok_or(ClientError::Timeout)
    }

    /// The next event, waiting until one arrives, `waker` is raised, or
    /// `timeout` passes (`Ok(None)` for the last two). For a thread that
    /// serves both the server and local requests, like the TUI's network
    /// thread; replies to requests never come out of here.
    pub fn wait_event(
        &mut self,
        waker: &poller::Waker,
        timeout: Duration,
    ) -> Result<Option<ServerMsg>, ClientError> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let frame = match self.recv_frame_or_wake(deadline, Some(waker)) {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(reason) = self.closed_reason(&frame) {
                if let Some((code, message)) = reason {
                    return Ok(Some(ServerMsg::Closing { code, message }));
                }
            } else if frame.req.is_none() {
                return Ok(Some(frame.msg));
            }
        }
    }

    /// Like `recv_frame`, but `Ok(None)` when `waker` is raised first.
    fn recv_frame_or_wake(
        &mut self,
        deadline: Instant,
        waker: Option<&poller::Waker>,
    ) -> Result<Option<ServerFrame>, ClientError> {
        loop {
            match self.next_incoming(deadline, waker)? {
                Some(Incoming::Frame(frame)) => return Ok(Some(frame)),
                // Data outside a download (e.g. after one was abandoned).
                Some(Incoming::Data(..)) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next frame of either kind; `Ok(None)` when `waker` is raised.
    fn next_incoming(
        &mut self,
        deadline: Instant,
        waker: Option<&poller::Waker>,
    ) -> Result<Option<Incoming>, ClientError> {
        let mut peer_closed = false;
        loop {
            if let Some(frame) = self.conn.next_frame()? {
                return decode(frame).map(Some);
            }
            // Frames that arrived before a close are served first (above).
            if peer_closed && self.closed.is_none() {
                self.closed = Some(None);
            }
            if let Some(reason) = &self.closed {
                return Err(ClientError::Closed {
                    reason: reason.clone(),
                });
            }
            match self.conn.fill()? {
                ReadState::More => {}
                ReadState::Closed => peer_closed = true,
                ReadState::Drained => {
                    if let Some(frame) = self.conn.next_frame()? {
                        return decode(frame).map(Some);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::Timeout);
                    }
                    let fd = self.conn.get_ref().get_ref().as_raw_fd();
                    let ready =
                        poller::wait(fd, false, waker, Some(left)).map_err(ConnectionError::Io)?;
                    if ready.woken {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads whatever frames have already arrived, without waiting, into
    /// the event queue.
    fn absorb_ready(&mut self) -> Result<(), ClientError> {
        loop {
            match self.next_incoming(Instant::now(), None) {
                Ok(Some(Incoming::Frame(frame))) => {
                    if let Some(reason) = self.closed_reason(&frame) {
                        return Err(ClientError::Closed { reason });
                    }
                    if frame.req.is_none() {
                        self.events.push_back(frame.msg);
                    }
                }
                Ok(Some(Incoming::Data(..))) => {}
                Ok(None) | Err(ClientError::Timeout) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next event (message, presence, topic, closing), waiting up to
    /// `timeout`; `Ok(None)` if none came.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<ServerMsg>, ClientError> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_frame(deadline) {
                Ok(frame) => {
                    if let Some(reason) = self.closed_reason(&frame) {
                        if let Some((code, message)) = reason {
                            return Ok(Some(ServerMsg::Closing { code, message }));
                        }
                    } else if frame.req.is_none() {
                        return Ok(Some(frame.msg));
                    }
                    // A late reply to a request that timed out: skip it.
                }
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the next chat message event, skipping other events.
    pub fn next_message(&mut self, timeout: Duration) -> Result<Option<ChatMessage>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                Some(ServerMsg::Message(m)) => return Ok(Some(*m)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    fn logged_in(msg: ServerMsg) -> Result<LoggedIn, ClientError> {
        match msg {
            ServerMsg::LoggedIn {
                user,
                rooms,
                offline_dms,
                unread,
                token,
            } => Ok(LoggedIn {
                user,
                rooms,
                offline_dms,
                unread,
                token,
            }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Creates an account and logs in.
    pub fn register(&mut self, user: &str, password: &str) -> Result<LoggedIn, ClientError> {
        let msg = self.request(Request::Register {
            user: user.into(),
            password: password.into(),
        })?;
        Client::logged_in(msg)
    }

    /// Logs in.
    pub fn login(&mut self, user: &str, password: &str) -> Result<LoggedIn, ClientError> {
        let msg = self.request(Request::Login {
            user: user.into(),
            password: password.into(),
        })?;
        Client::logged_in(msg)
    }

    /// Logs in with a resume token (no password hashing on the server).
    pub fn resume(&mut self, user: &str, token: &str) -> Result<LoggedIn, ClientError> {
        let msg = self.request(Request::Resume {
            user: user.into(),
            token: token.into(),
        })?;
        Client::logged_in(msg)
    }

    fn joined(msg: ServerMsg) -> Result<Joined, ClientError> {
        match msg {
            ServerMsg::Joined {
                room,
                members,
                history,
                online,
                more_members,
                live_presence,
            } => Ok(Joined {
                room,
                members,
                history,
                online,
                more_members,
                live_presence,
            }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Joins a room and gets its recent history.
    pub fn join(&mut self, room: &str) -> Result<Joined, ClientError> {
        let msg = self.request(Request::Join { room: room.into() })?;
        Client::joined(msg)
    }

    /// Creates a room (and joins it).
    pub fn create_room(&mut self, room: &str, topic: &str) -> Result<Joined, ClientError> {
        let msg = self.request(Request::CreateRoom {
            room: room.into(),
            topic: topic.into(),
        })?;
        Client::joined(msg)
    }

    fn ack(msg: ServerMsg) -> Result<(i64, i64), ClientError> {
        Client::sent(msg).map(|s| (s.id, s.ts))
    }

    fn sent(msg: ServerMsg) -> Result<Sent, ClientError> {
        match msg {
            ServerMsg::Ack { id, ts, away } => Ok(Sent { id, ts, away }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends a message to a room; returns its id and timestamp once stored.
    pub fn say(&mut self, room: &str, body: &str) -> Result<(i64, i64), ClientError> {
        self.send_to(&Conversation::Room(room.into()), body, None)
    }

    /// Sends a direct message; returns its id and timestamp once stored.
    pub fn dm(&mut self, to: &str, body: &str) -> Result<(i64, i64), ClientError> {
        self.send_to(&Conversation::User(to.into()), body, None)
    }

    /// Sends a message to a room or a user, optionally as a reply to
    /// message `reply_to` of that conversation; returns its id and
    /// timestamp once stored.
    pub fn send_to(
        &mut self,
        target: &Conversation,
        body: &str,
        reply_to: Option<i64>,
    ) -> Result<(i64, i64), ClientError> {
        self.send(target, body, reply_to).map(|s| (s.id, s.ts))
    }

    /// Sends a message as [`Client::send_to`] does, with everything the
    /// acknowledgement says (a DM's recipient may be away).
    pub fn send(
        &mut self,
        target: &Conversation,
        body: &str,
        reply_to: Option<i64>,
    ) -> Result<Sent, ClientError> {
        let request = match target {
            Conversation::Room(room) => Request::Say {
                room: room.clone(),
                body: body.into(),
                reply_to,
                notice: false,
            },
            Conversation::User(to) => Request::Dm {
                to: to.clone(),
                body: body.into(),
                reply_to,
                notice: false,
            },
        };
        let msg = self.request(request)?;
        Client::sent(msg)
    }

    /// Replaces the text of one of this user's messages.
    pub fn edit(&mut self, id: i64, body: &str) -> Result<(), ClientError> {
        self.request(Request::Edit {
            id,
            body: body.into(),
        })
        .map(|_| ())
    }

    /// Deletes a message (this user's, or any room message for an admin).
    pub fn delete_message(&mut self, id: i64, reason: &str) -> Result<(), ClientError> {
        self.request(Request::Delete {
            id,
            reason: reason.into(),
        })
        .map(|_| ())
    }

    /// Adds (`add`) or takes back this user's reaction to a message.
    pub fn react(&mut self, id: i64, emoji: &str, add: bool) -> Result<(), ClientError> {
        let emoji = emoji.to_owned();
        let request = if add {
            Request::React { id, emoji }
        } else {
            Request::Unreact { id, emoji }
        };
        self.request(request).map(|_| ())
    }

    /// Searches; results newest first, and whether older ones exist (ask
    /// again with `before` = the last result's id).
    pub fn search(
        &mut self,
        query: &str,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        match self.request(Request::Search {
            query: query.into(),
            before,
            limit,
        })? {
            ServerMsg::SearchResults { results, more } => Ok((results, more)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The messages around message `id` of a conversation (it, older ones
    /// and newer ones, `limit` in all), and whether older and newer ones
    /// exist beyond them.
    pub fn history_around(
        &mut self,
        target: &Conversation,
        id: i64,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool, bool), ClientError> {
        let (room, with) = match target {
            Conversation::Room(r) => (Some(r.clone()), None),
            Conversation::User(u) => (None, Some(u.clone())),
        };
        match self.request(Request::History {
            room,
            with,
            before: None,
            around: Some(id),
            limit: Some(limit),
        })? {
            ServerMsg::History {
                messages,
                more,
                newer,
                ..
            } => Ok((messages, more, newer)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A page of a room's history before message `before`.
    pub fn room_history(
        &mut self,
        room: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        self.history(Request::History {
            room: Some(room.into()),
            with: None,
            before,
            around: None,
            limit: Some(limit),
        })
    }

    /// A page of the DM conversation with `with`.
    pub fn dm_history(
        &mut self,
        with: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        self.history(Request::History {
            room: None,
            with: Some(with.into()),
            before,
            around: None,
            limit: Some(limit),
        })
    }

    fn history(&mut self, req: Request) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        match self.request(req)? {
            ServerMsg::History { messages, more, .. } => Ok((messages, more)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Records that this user read `target` up to message `id`.
    pub fn mark_read(&mut self, target: &Conversation, id: i64) -> Result<(), ClientError> {
        let (room, with) = match target {
            Conversation::Room(r) => (Some(r.clone()), None),
            Conversation::User(u) => (None, Some(u.clone())),
        };
        self.request(Request::MarkRead { room, with, id })
            .map(|_| ())
    }

    /// Lists a room's members.
    pub fn who(&mut self, room: &str) -> Result<Vec<Member>, ClientError> {
        Ok(self.who_page(room, None, None)?.members)
    }

    /// A page of a room's members by name: those after `after`, at most
    /// `limit` (the server's default page when `None`).
    pub fn who_page(
        &mut self,
        room: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<MemberPage, ClientError> {
        match self.request(Request::Who {
            room: room.into(),
            after: after.map(str::to_owned),
            limit,
        })? {
            ServerMsg::Users {
                members,
                more,
                online,
                ..
            } => Ok(MemberPage {
                members,
                more,
                online,
            }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Lists all rooms.
    pub fn rooms(&mut self) -> Result<Vec<RoomInfo>, ClientError> {
        match self.request(Request::Rooms)? {
            ServerMsg::RoomList { rooms } => Ok(rooms),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// What the server said it accepts as files.
    pub fn file_rules(&self) -> &FileRules {
        &self.file_rules
    }

    /// Checks a local file against the server's rules and starts uploading
    /// it; send it with [`Client::upload_step`], end with
    /// [`Client::finish_upload`] (or use [`Client::upload`] for all three).
    pub fn start_upload(
        &mut self,
        target: &Conversation,
        path: &Path,
    ) -> Result<UploadJob, ClientError> {
        let file_err = |err| ClientError::File {
            path: path.to_owned(),
            err,
        };
        let mut file = File::open(path).map_err(file_err)?;
        let size = file.metadata().map_err(file_err)?.len();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file_rules::sanitize_name(&name)
            .map_err(|e| ClientError::FileRejected(e.to_string()))?;
        if size > self.file_rules.max_size {
            return Err(ClientError::FileRejected(
                file_rules::Rejection::TooLarge {
                    size,
                    max: self.file_rules.max_size,
                }
                .to_string(),
            ));
        }
        // Fail fast on the type: the server checks the same way.
        let mut head = vec![0u8; HEAD_LEN.min(size as usize)];
        file.read_exact(&mut head).map_err(file_err)?;
        file_rules::check_head(&self.file_rules, &name, &head)
            .map_err(|e| ClientError::FileRejected(e.to_string()))?;
        let (room, to) = match target {
            Conversation::Room(r) => (Some(r.clone()), None),
            Conversation::User(u) => (None, Some(u.clone())),
        };
        let reply = self.request(Request::Upload {
            room,
            to,
            name: name.clone(),
            size,
        })?;
        let ServerMsg::UploadReady { upload, chunk_size } = reply else {
            return Err(ClientError::Unexpected(format!("{reply:?}")));
        };
        let mut hasher = Sha256::new();
        hasher.update(&head);
        Ok(UploadJob {
            id: upload,
            file,
            path: path.to_owned(),
            name,
            size,
            sent: 0,
            hasher,
            head: Some(head),
            chunk: chunk_size.clamp(1, crate::protocol::DATA_CHUNK),
        })
    }

    /// Sends the next chunk of an upload; `Ok(true)` once all is sent. Fails
    /// if the server refused the upload meanwhile.
    pub fn upload_step(&mut self, job: &mut UploadJob) -> Result<bool, ClientError> {
        let chunk = match job.head.take() {
            // The head was read for the type check: send it first.
            Some(head) => head,
            None => {
                let n = ((job.size - job.sent) as usize).min(job.chunk);
                let mut buf = vec![0u8; n];
                job.file
                    .read_exact(&mut buf)
                    .map_err(|err| ClientError::File {
                        path: job.path.clone(),
                        err,
                    })?;
                job.hasher.update(&buf);
                buf
            }
        };
        // The head may be longer than a chunk; split it.
        for piece in chunk.chunks(job.chunk) {
            let mut frame = Vec::with_capacity(piece.len() + 9);
            encode_data(job.id, piece, &mut frame);
            self.send_frame(&frame)?;
        }
        job.sent += chunk.len() as u64;
        self.absorb_ready()?;
        if let Some(pos) = self.events.iter().position(
            |ev| matches!(ev, ServerMsg::UploadRejected { upload, .. } if *upload == job.id),
        ) && let Some(ServerMsg::UploadRejected { code, message, .. }) = self.events.remove(pos)
        {
            return Err(ClientError::Server { code, message });
        }
        Ok(job.sent >= job.size)
    }

    /// Ends an upload: sends its SHA-256 and waits until the server has
    /// stored the file and the message announcing it; returns that
    /// message's id and time.
    pub fn finish_upload(&mut self, job: UploadJob) -> Result<(i64, i64), ClientError> {
        let sha256: String = job
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let msg = self.request(Request::UploadEnd {
            upload: job.id,
            sha256,
        })?;
        Client::ack(msg)
    }

    /// Uploads a file to a room or a user, calling `progress(sent, size)`
    /// after each chunk.
    pub fn upload(
        &mut self,
        target: &Conversation,
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(i64, i64), ClientError> {
        let mut job = self.start_upload(target, path)?;
        while !self.upload_step(&mut job)? {
            progress(job.sent, job.size);
        }
        progress(job.sent, job.size);
        self.finish_upload(job)
    }

    /// Downloads file `file` into `dir` (created if needed) under its own
    /// name, never overwriting (`name (1).pdf`), never outside `dir`, not
    /// executable; verifies size and SHA-256. Returns the path written.
    pub fn download(
        &mut self,
        file: i64,
        dir: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PathBuf, ClientError> {
        let info = match self.request(Request::Download { file })? {
            ServerMsg::DownloadStart { download, file } => (download, file),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let (stream, info) = info;
        let file_err = |path: &Path, err| ClientError::File {
            path: path.to_owned(),
            err,
        };
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let name =
            file_rules::sanitize_name(&info.name).unwrap_or_else(|_| format!("file-{}", info.id));
        let partial_path = dir.join(format!(".{name}.part-{stream}"));
        let mut partial =
            PartialDownload::create(&partial_path).map_err(|e| file_err(&partial_path, e))?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut deadline = Instant::now() + self.timeout;
        let sha256 = loop {
            match self.next_incoming(deadline, None)? {
                Some(Incoming::Data(id, bytes)) if id == stream => {
                    hasher.update(&bytes);
                    received += bytes.len() as u64;
                    partial
                        .write(&bytes)
                        .map_err(|e| file_err(&partial_path, e))?;
                    progress(received, info.size);
                    deadline = Instant::now() + self.timeout;
                }
                Some(Incoming::Data(..)) | None => {}
                Some(Incoming::Frame(frame)) => match frame.msg {
                    ServerMsg::DownloadEnd { download, sha256 } if download == stream => {
                        break sha256;
                    }
                    ServerMsg::Error { code, message } if frame.req.is_none() => {
                        return Err(ClientError::Server { code, message });
                    }
                    ServerMsg::Closing { code, message } => {
                        self.closed = Some(Some((code, message.clone())));
                        return Err(ClientError::Closed {
                            reason: Some((code, message)),
                        });
                    }
                    msg if frame.req.is_none() => self.events.push_back(msg),
                    _ => {}
                },
            }
        };
        let actual: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if received != info.size || !actual.eq_ignore_ascii_case(&sha256) || actual != info.sha256 {
            return Err(ClientError::Corrupted(info.name));
        }
        let dest = unique_path(dir, &name);
        partial.finish(&dest).map_err(|e| file_err(&dest, e))?;
        Ok(dest)
    }

    /// The latest files shared in a room or with a user.
    pub fn files(&mut self, target: &Conversation) -> Result<Vec<SharedFile>, ClientError> {
        let (room, with) = match target {
            Conversation::Room(r) => (Some(r.clone()), None),
            Conversation::User(u) => (None, Some(u.clone())),
        };
        match self.request(Request::Files { room, with })? {
            ServerMsg::FileList { files } => Ok(files),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Ends the session politely.
    pub fn quit(mut self) -> Result<(), ClientError> {
        self.request(Request::Quit)?;
        let _ = self.conn.get_mut().shutdown();
        Ok(())
    }
}

/// A room or a direct conversation: where an upload goes, whose files to
/// list, what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// A room.
    Room(String),
    /// A user (direct).
    User(String),
}

/// An upload in progress (see [`Client::start_upload`]).
pub struct UploadJob {
    id: u32,
    file: File,
    path: PathBuf,
    name: String,
    size: u64,
    sent: u64,
    hasher: Sha256,
    head: Option<Vec<u8>>,
    chunk: usize,
}

impl UploadJob {
    /// Bytes sent and total.
    pub fn progress(&self) -> (u64, u64) {
        (self.sent, self.size)
    }

    /// The file's (sanitised) name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A download being written; removed unless finished.
struct PartialDownload {
    path: PathBuf,
    file: Option<std::io::BufWriter<File>>,
}

impl PartialDownload {
    fn create(path: &Path) -> std::io::Result<PartialDownload> {
        use std::os::unix::fs::OpenOptionsExt;
        // 0644 at most: a downloaded file is never executable.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)?;
        Ok(PartialDownload {
            path: path.to_owned(),
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Moves the finished file to `dest` (which must not exist).
    fn finish(mut self, dest: &Path) -> std::io::Result<()> {
        if let Some(f) = self.file.take() {
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        // hard_link fails if dest exists, so nothing is ever overwritten,
        // even by a race with another program.
        std::fs::hard_link(&self.path, dest)?;
        std::fs::remove_file(&self.path)?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for PartialDownload {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `dir/name`, or `dir/name (1).ext`, `dir/name (2).ext`... whichever does
/// not exist yet.
pub fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..)
        .map(|i| dir.join(format!("{stem} ({i}){ext}")))
        .find(|p| !p.exists())
        .expect("some numbered name is free")
}

/// Default server port.
pub const DEFAULT_PORT: u16 = 7878;

/// A parsed `[user@]host[:port]`, as `ssh` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The user, if given.
    pub user: Option<String>,
    /// Host name or address (without brackets for IPv6).
    pub host: String,
    /// Port, [`DEFAULT_PORT`] if not given.
    pub port: u16,
}

impl Destination {
    /// Parses `[user@]host[:port]`; IPv6 addresses go in brackets
    /// (`[::1]:7878`).
    pub fn parse(s: &str) -> Result<Destination, String> {
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
            Some(_) => return Err(format!("empty user name in {s:?}")),
            None => (None, s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("missing ']' in {s:?}"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(format!("unexpected {after:?} after ']'")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {s:?}"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
            None => DEFAULT_PORT,
        };
        Ok(Destination {
            user,
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` for connecting (IPv6 in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_like_ssh() {
        let d = Destination::parse("alice@chat.example.org").unwrap();
        assert_eq!(d.user.as_deref(), Some("alice"));
        assert_eq!(d.addr(), "chat.example.org:7878");
        let d = Destination::parse("localhost:9000").unwrap();
        assert_eq!((d.user, d.port), (None, 9000));
        let d = Destination::parse("bob@[::1]:7000").unwrap();
        assert_eq!(d.addr(), "[::1]:7000");
        assert!(Destination::parse("@host").is_err());
        assert!(Destination::parse("host:x").is_err());
        assert!(Destination::parse("").is_err());
    }

    #[test]
    fn downloads_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unique_path(dir.path(), "a.pdf"), dir.path().join("a.pdf"));
        std::fs::write(dir.path().join("a.pdf"), b"x").unwrap();
        assert_eq!(
            unique_path(dir.path(), "a.pdf"),
            dir.path().join("a (1).pdf")
        );
        std::fs::write(dir.path().join("a (1).pdf"), b"x").unwrap();
        assert_eq!(
            unique_path(dir.path(), "a.pdf"),
            dir.path().join("a (2).pdf")
        );
        std::fs::write(dir.path().join("README"), b"x").unwrap();
        assert_eq!(
            unique_path(dir.path(), "README"),
            dir.path().join("README (1)")
        );
    }
}
