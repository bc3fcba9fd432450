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
use crate::poller;
use crate::protocol::{
    ChatMessage, ClientFrame, ErrorCode, MAX_FRAME_LEN, Member, PROTOCOL_VERSION, Request,
    RoomInfo, ServerFrame, ServerMsg, encode_json,
};
use crate::tls::{self, TlsSetupError, Trust};
use native_tls::{TlsConnector, TlsStream};
use std::collections::VecDeque;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

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
}

/// The outcome of `join` or `create_room`.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The room.
    pub room: RoomInfo,
    /// Its members.
    pub members: Vec<Member>,
    /// Its latest messages, oldest first.
    pub history: Vec<ChatMessage>,
}

/// A connected, greeted client.
pub struct Client {
    conn: Connection<TlsStream<TcpStream>>,
    next_req: u64,
    events: VecDeque<ServerMsg>,
    timeout: Duration,
    closed: Option<Option<(ErrorCode, String)>>,
    server_fingerprint: Option<String>,
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
            ServerMsg::Welcome { .. } => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
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
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(timeout)).map_err(connect_err)?;
        tcp.set_write_timeout(Some(timeout)).map_err(connect_err)?;
        let tls = connector
            .connect(server_name, tcp)
            .map_err(|e| ClientError::Handshake {
                addr: addr.to_owned(),
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
        })
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
        let mut peer_closed = false;
        loop {
            if let Some(frame) = self.conn.next_frame()? {
                return serde_json::from_slice(&frame.payload)
                    .map(Some)
                    .map_err(|e| ClientError::Decode(e.to_string()));
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
                        return serde_json::from_slice(&frame.payload)
                            .map(Some)
                            .map_err(|e| ClientError::Decode(e.to_string()));
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
                Some(ServerMsg::Message(m)) => return Ok(Some(m)),
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
            } => Ok(LoggedIn {
                user,
                rooms,
                offline_dms,
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

    fn joined(msg: ServerMsg) -> Result<Joined, ClientError> {
        match msg {
            ServerMsg::Joined {
                room,
                members,
                history,
            } => Ok(Joined {
                room,
                members,
                history,
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
        match msg {
            ServerMsg::Ack { id, ts } => Ok((id, ts)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends a message to a room; returns its id and timestamp once stored.
    pub fn say(&mut self, room: &str, body: &str) -> Result<(i64, i64), ClientError> {
        let msg = self.request(Request::Say {
            room: room.into(),
            body: body.into(),
        })?;
        Client::ack(msg)
    }

    /// Sends a direct message; returns its id and timestamp once stored.
    pub fn dm(&mut self, to: &str, body: &str) -> Result<(i64, i64), ClientError> {
        let msg = self.request(Request::Dm {
            to: to.into(),
            body: body.into(),
        })?;
        Client::ack(msg)
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
            limit: Some(limit),
        })
    }

    fn history(&mut self, req: Request) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        match self.request(req)? {
            ServerMsg::History { messages, more, .. } => Ok((messages, more)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Lists a room's members.
    pub fn who(&mut self, room: &str) -> Result<Vec<Member>, ClientError> {
        match self.request(Request::Who { room: room.into() })? {
            ServerMsg::Users { members, .. } => Ok(members),
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

    /// Ends the session politely.
    pub fn quit(mut self) -> Result<(), ClientError> {
        self.request(Request::Quit)?;
        let _ = self.conn.get_mut().shutdown();
        Ok(())
    }
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
}
