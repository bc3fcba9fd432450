//! The TUI's network thread: it owns the [`Client`], turns the user's
//! commands into requests, turns everything the server says into
//! [`NetEvent`]s for the UI, and reconnects with backoff when the
//! connection drops.
//!
//! The UI never waits on it: commands go in through a channel plus a
//! [`Waker`], events come out through a callback (the TUI passes one that
//! posts to cursive's callback sink). While the thread waits for the server
//! it sleeps in `poll(2)` on the socket and the waker, so it costs nothing
//! when idle and reacts to a keypress at once.
//!
//! Commands given while disconnected wait in order and are sent after the
//! next successful login; a message that was on the wire when the
//! connection dropped is reported as failed (it may or may not be stored),
//! so nothing typed disappears silently.

use super::model::WindowId;
use crate::client::{Client, ClientError, DEFAULT_TIMEOUT};
use crate::poller::Waker;
use crate::protocol::{ChatMessage, ErrorCode, Member, Request, RoomInfo, ServerMsg};
use native_tls::TlsConnector;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::Duration;

/// How the server's certificate is checked on every (re)connection.
#[derive(Clone)]
pub enum ServerTrust {
    /// Verified against a CA (the system's or `--ca`).
    Verified(TlsConnector),
    /// Trust on first use: any certificate whose fingerprint is this one.
    Pinned {
        /// A connector that accepts any certificate.
        connector: TlsConnector,
        /// The fingerprint accepted (from known_hosts).
        fingerprint: String,
    },
}

/// Everything the network thread needs to (re)connect.
#[derive(Clone)]
pub struct NetConfig {
    /// `host:port`.
    pub addr: String,
    /// Name the certificate must carry.
    pub server_name: String,
    /// How to check the certificate.
    pub trust: ServerTrust,
    /// User name.
    pub user: String,
    /// Password, kept to log in again after a reconnect.
    pub password: String,
    /// Create the account on the first connection.
    pub register: bool,
    /// Where downloads go unless a command names a folder.
    pub download_dir: std::path::PathBuf,
}

/// What the UI asks of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCommand {
    /// Send a message to a window; `local` matches the ack.
    Send {
        /// Room or direct conversation.
        window: WindowId,
        /// Text.
        body: String,
        /// The model's pending number.
        local: u64,
        /// The message this one answers.
        reply_to: Option<i64>,
    },
    /// Search.
    Search(String),
    /// Load the messages around `id` in `window` and show it selected.
    Jump {
        /// Room or direct conversation.
        window: WindowId,
        /// The message.
        id: i64,
    },
    /// Replace a message's text.
    Edit {
        /// The message.
        id: i64,
        /// New text.
        body: String,
    },
    /// Delete a message.
    Delete(i64),
    /// Add (`add`) or take back a reaction.
    React {
        /// The message.
        id: i64,
        /// The reaction.
        emoji: String,
        /// Add it, or take it back.
        add: bool,
    },
    /// Join a room, creating it if it does not exist.
    Join(String),
    /// Fetch a room another session of ours joined (its members and
    /// history), without showing it.
    Fetch(String),
    /// Leave a room, saying why (or not).
    Leave {
        /// The room.
        room: String,
        /// What the others see.
        reason: Option<String>,
    },
    /// Delete a room.
    DeleteRoom(String),
    /// Changes our password; later reconnects use the new one.
    ChangePassword {
        /// The current password.
        old: String,
        /// The new one.
        new: String,
    },
    /// A request whose reply is `ok` (moderation): `done` is said then.
    Plain {
        /// The request.
        request: Request,
        /// What to say when it succeeded.
        done: String,
    },
    /// Set a room's topic.
    Topic {
        /// Room.
        room: String,
        /// New topic.
        topic: String,
    },
    /// List a room's members.
    Who(String),
    /// Fetch a room's member list quietly (a room without live presence).
    RefreshMembers(String),
    /// List all rooms.
    Rooms,
    /// Load older history of a window.
    History {
        /// Room or direct conversation.
        window: WindowId,
        /// Messages before this id.
        before: Option<i64>,
    },
    /// Set or clear the away message.
    Away(Option<String>),
    /// Share a file in a window.
    Upload {
        /// Room or direct conversation.
        window: WindowId,
        /// The local file.
        path: std::path::PathBuf,
    },
    /// Save a shared file.
    Download {
        /// File id.
        file: i64,
        /// Folder, or the default download folder.
        dir: Option<std::path::PathBuf>,
    },
    /// List a window's recent files.
    Files(WindowId),
    /// Tell the server a window is read up to `id`.
    MarkRead {
        /// Room or direct conversation.
        window: WindowId,
        /// Newest message read.
        id: i64,
    },
    /// New credentials after a failed login: log in, or register.
    Credentials {
        /// Password.
        password: String,
        /// Create the account.
        register: bool,
    },
    /// Log out and stop.
    Quit,
}

/// What the network tells the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// Connecting or logging in.
    Connecting,
    /// Waiting in the server's queue.
    Queued {
        /// 1 = next.
        position: u32,
        /// Everyone waiting.
        length: u32,
        /// Estimated seconds.
        eta_secs: Option<u64>,
    },
    /// Logged in; these are our rooms.
    Online {
        /// Canonical user name.
        user: String,
        /// Rooms we are in.
        rooms: Vec<RoomInfo>,
        /// What is unread (the away summary).
        unread: Vec<crate::protocol::Unread>,
        /// The largest message body the server takes.
        max_body: usize,
    },
    /// The connection dropped; the next attempt is in `retry_in` seconds.
    Offline {
        /// Why.
        reason: String,
        /// Seconds.
        retry_in: u64,
    },
    /// We gave up; the reason is final (changed certificate, ...).
    Failed(String),
    /// Login or registration was refused; the thread waits for
    /// [`NetCommand::Credentials`] (or `Quit`).
    AuthFailed {
        /// The server's reason.
        reason: String,
        /// The password that was refused (the dialog offers it again, so
        /// registering needs no retyping).
        password: String,
        /// The account is known to exist (we were logged in to it in this
        /// run, or registering said the name is taken): the dialog does
        /// not offer to register it.
        exists: bool,
    },
    /// An event from the server.
    Server(ServerMsg),
    /// Our message `local` is stored as `id`.
    Acked {
        /// Pending number.
        local: u64,
        /// Server id.
        id: i64,
        /// Server time.
        ts: i64,
    },
    /// A direct window's other person does not exist.
    NoSuchPeer(WindowId),
    /// The recipient of our direct message is away, with `message`.
    PeerAway {
        /// Their window.
        window: WindowId,
        /// Their away message.
        message: String,
    },
    /// Our message `local` was not stored.
    SendFailed {
        /// Pending number.
        local: u64,
        /// Why.
        reason: String,
    },
    /// Search results.
    SearchResults {
        /// What was searched.
        query: String,
        /// Newest first.
        results: Vec<ChatMessage>,
        /// Whether older matches exist.
        more: bool,
    },
    /// The messages around `id`, to show `window` with it selected.
    Jumped {
        /// Room or direct conversation.
        window: WindowId,
        /// Oldest first.
        messages: Vec<ChatMessage>,
        /// The message jumped to.
        id: i64,
    },
    /// A room was joined (or rejoined); switch to it if `focus`.
    Joined {
        /// The room.
        room: RoomInfo,
        /// Members.
        members: Vec<Member>,
        /// Recent history.
        history: Vec<ChatMessage>,
        /// Whether the user asked for it (switch to it).
        focus: bool,
        /// Whether the room sends presence events.
        live_presence: bool,
    },
    /// We left a room.
    Left(String),
    /// A page of history.
    History {
        /// Which window.
        window: WindowId,
        /// The page, oldest first.
        messages: Vec<ChatMessage>,
        /// Older ones exist.
        more: bool,
    },
    /// Members of a room.
    Users {
        /// Room.
        room: String,
        /// Members.
        members: Vec<Member>,
    },
    /// A quiet refresh of a room's member list.
    Members {
        /// Room.
        room: String,
        /// Members (a page, online ones first).
        members: Vec<Member>,
    },
    /// All rooms.
    RoomList(Vec<RoomInfo>),
    /// A transfer's progress (`done` of `total` bytes); `None` when over.
    Transfer(Option<(String, u64, u64)>),
    /// Recent files of a window.
    FileList(Vec<crate::protocol::SharedFile>),
    /// Something to tell the user.
    Notice(String),
    /// A request failed; show it.
    Error(String),
    /// The thread stopped after `Quit`.
    Stopped,
}

/// The UI's end: send commands, never blocks.
#[derive(Clone)]
pub struct NetHandle {
    tx: Sender<NetCommand>,
    waker: Arc<Waker>,
}

impl NetHandle {
    /// A handle with no thread behind it, for tests: the receiver gets the
    /// commands the UI sends.
    pub fn detached() -> std::io::Result<(NetHandle, Receiver<NetCommand>)> {
        let (tx, rx) = channel();
        Ok((
            NetHandle {
                tx,
                waker: Arc::new(Waker::new()?),
            },
            rx,
        ))
    }

    /// Queues a command and wakes the network thread.
    pub fn send(&self, cmd: NetCommand) {
        if self.tx.send(cmd).is_ok() {
            self.waker.wake();
        }
    }
}

/// Starts the network thread. `first` is an already TLS-connected client
/// (the binary connects before the screen starts, to ask about unknown
/// certificates); `emit` delivers events to the UI.
pub fn spawn(
    config: NetConfig,
    first: Option<Client>,
    emit: Box<dyn Fn(NetEvent) + Send>,
) -> std::io::Result<(NetHandle, std::thread::JoinHandle<()>)> {
    let waker = Arc::new(Waker::new()?);
    let (tx, rx) = channel();
    let handle = NetHandle {
        tx,
        waker: waker.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("network".into())
        .spawn(move || {
            let mut net = Net {
                config,
                rx,
                waker,
                emit,
                queued: VecDeque::new(),
                registered: false,
                ever_online: false,
                token: None,
                upload: None,
            };
            net.run(first);
        })?;
    Ok((handle, thread))
}

/// Why a connected session ended.
enum End {
    /// The user quit.
    Quit,
    /// The connection failed; try again.
    Lost(String),
    /// Do not try again.
    Fatal(String),
    /// Login refused: ask the user; the flag says the name is taken.
    AuthFailed(String, bool),
}

struct Net {
    config: NetConfig,
    rx: Receiver<NetCommand>,
    waker: Arc<Waker>,
    emit: Box<dyn Fn(NetEvent) + Send>,
    /// Commands waiting for a connection.
    queued: VecDeque<NetCommand>,
    /// The account exists (registered on an earlier connection).
    registered: bool,
    /// We were logged in at least once in this run.
    ever_online: bool,
    /// The resume token from the last password login: reconnects use it
    /// and skip the server's password hashing.
    token: Option<String>,
    /// The upload being sent, a chunk per loop turn so chat keeps flowing.
    upload: Option<(crate::client::UploadJob, WindowId)>,
}

const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Net {
    fn run(&mut self, mut first: Option<Client>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            (self.emit)(NetEvent::Connecting);
            let connected = match first.take() {
                Some(c) => Ok(c),
                None => self.connect(),
            };
            let end = match connected {
                Ok(client) => {
                    let (end, logged_in) = self.session(client);
                    if logged_in {
                        backoff = Duration::from_secs(1);
                    }
                    end
                }
                Err(end) => end,
            };
            match end {
                End::Quit => {
                    (self.emit)(NetEvent::Stopped);
                    return;
                }
                End::AuthFailed(reason, taken) => {
                    (self.emit)(NetEvent::AuthFailed {
                        reason,
                        password: self.config.password.clone(),
                        exists: taken || self.ever_online,
                    });
                    loop {
                        match self.rx.recv() {
                            Ok(NetCommand::Credentials { password, register }) => {
                                self.config.password = password;
                                self.config.register = register;
                                self.registered = false;
                                break;
                            }
                            Ok(NetCommand::Quit) | Err(_) => {
                                (self.emit)(NetEvent::Stopped);
                                return;
                            }
                            Ok(other) => self.queued.push_back(other),
                        }
                    }
                }
                End::Fatal(reason) => {
                    (self.emit)(NetEvent::Failed(reason));
                    // Stay until the user quits, so the screen can say why.
                    while self.wait_command(None) != Some(NetCommand::Quit) {}
                    (self.emit)(NetEvent::Stopped);
                    return;
                }
                End::Lost(reason) => {
                    (self.emit)(NetEvent::Offline {
                        reason,
                        retry_in: backoff.as_secs(),
                    });
                    if self.sleep_or_quit(backoff) {
                        (self.emit)(NetEvent::Stopped);
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Waits for the next command (or `timeout`); keeps it in `queued`
    /// unless it is `Quit`, which is returned.
    fn wait_command(&mut self, timeout: Option<Duration>) -> Option<NetCommand> {
        loop {
            match self.rx.try_recv() {
                Ok(NetCommand::Quit) => return Some(NetCommand::Quit),
                Ok(cmd) => self.queued.push_back(cmd),
                Err(TryRecvError::Disconnected) => return Some(NetCommand::Quit),
                Err(TryRecvError::Empty) => break,
            }
        }
        // Sleep on the waker alone: poll(2) on an invalid socket (-1) is
        // ignored, so this waits for a command or the timeout.
        let _ = crate::poller::wait(-1, false, Some(&self.waker), timeout);
        self.waker.drain();
        None
    }

    /// Sleeps `d` unless the user quits meanwhile (returns true then).
    fn sleep_or_quit(&mut self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.wait_command(Some(left)) == Some(NetCommand::Quit) {
                return true;
            }
        }
    }

    fn connect(&mut self) -> Result<Client, End> {
        let (connector, pin) = match &self.config.trust {
            ServerTrust::Verified(c) => (c, None),
            ServerTrust::Pinned {
                connector,
                fingerprint,
            } => (connector, Some(fingerprint)),
        };
        let client = Client::connect_unhello(
            &self.config.addr,
            &self.config.server_name,
            connector,
            DEFAULT_TIMEOUT,
        )
        .map_err(|e| match e {
            ClientError::Handshake { .. } if pin.is_none() => End::Fatal(e.to_string()),
            other => End::Lost(other.to_string()),
        })?;
        if let Some(expected) = pin
            && client.server_fingerprint() != Some(expected.as_str())
        {
            return Err(End::Fatal(format!(
                "the server's certificate changed since you accepted it (now {}); refusing to connect",
                client.server_fingerprint().unwrap_or("unknown")
            )));
        }
        Ok(client)
    }

    /// Greets, logs in, rejoins, then serves until the connection ends.
    /// The flag says whether login succeeded.
    fn session(&mut self, mut client: Client) -> (End, bool) {
        let emit = &self.emit;
        let greeted = client.greet(&mut |ev| match ev {
            ServerMsg::Queued {
                position,
                length,
                eta_secs,
            } => emit(NetEvent::Queued {
                position: *position,
                length: *length,
                eta_secs: *eta_secs,
            }),
            ServerMsg::Admitted { .. } => emit(NetEvent::Connecting),
            _ => {}
        });
        if let Err(e) = greeted {
            return (classify(e), false);
        }
        let (user, password) = (self.config.user.clone(), self.config.password.clone());
        let login = match self.token.clone() {
            Some(token) => match client.resume(&user, &token) {
                Err(ClientError::Server {
                    code: ErrorCode::InvalidToken,
                    ..
                }) => {
                    self.token = None;
                    client.login(&user, &password)
                }
                other => other,
            },
            None if self.config.register && !self.registered => client.register(&user, &password),
            None => client.login(&user, &password),
        };
        let session = match login {
            Ok(s) => s,
            Err(e) => return (classify(e), false),
        };
        self.registered = true;
        self.ever_online = true;
        if session.token.is_some() {
            self.token = session.token.clone();
        }
        (self.emit)(NetEvent::Online {
            user: session.user.clone(),
            rooms: session.rooms.clone(),
            unread: session.unread.clone(),
            max_body: client.max_body(),
        });
        // Rejoin: fetch each room's members and latest history.
        for room in &session.rooms {
            match client.join(&room.name) {
                Ok(j) => (self.emit)(NetEvent::Joined {
                    room: j.room,
                    members: j.members,
                    history: j.history,
                    focus: false,
                    live_presence: j.live_presence,
                }),
                Err(e) => return (classify(e), true),
            }
        }
        (self.serve(&mut client), true)
    }

    fn serve(&mut self, client: &mut Client) -> End {
        loop {
            // Commands first: those queued while offline, then new ones.
            loop {
                let cmd = match self.queued.pop_front() {
                    Some(cmd) => cmd,
                    None => match self.rx.try_recv() {
                        Ok(cmd) => cmd,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return End::Quit,
                    },
                };
                if let Some(end) = self.execute(client, cmd) {
                    return end;
                }
            }
            // An upload in progress sends a chunk per turn and does not
            // sleep, so events and commands interleave with it.
            let idle = if self.upload.is_some() {
                if let Some(end) = self.upload_turn(client) {
                    return end;
                }
                Duration::ZERO
            } else {
                Duration::from_secs(60)
            };
            match client.wait_event(&self.waker, idle) {
                Ok(Some(ServerMsg::Closing { code, message })) => return ended(code, message),
                Ok(Some(ev)) => (self.emit)(NetEvent::Server(ev)),
                Ok(None) => {
                    self.waker.drain();
                }
                Err(e) => return classify(e),
            }
        }
    }

    /// Sends one chunk of the upload in progress.
    fn upload_turn(&mut self, client: &mut Client) -> Option<End> {
        let (job, _) = self.upload.as_mut()?;
        let step = client.upload_step(job);
        let (done, total) = job.progress();
        let name = job.name().to_owned();
        match step {
            Ok(false) => {
                (self.emit)(NetEvent::Transfer(Some((format!("↑ {name}"), done, total))));
                None
            }
            Ok(true) => {
                let (job, window) = self.upload.take()?;
                (self.emit)(NetEvent::Transfer(None));
                match client.finish_upload(job) {
                    Ok((id, _)) => {
                        // We get an ack, not the message: fetch it so our
                        // own window shows the file like everyone else's.
                        let page = match &window {
                            WindowId::Room(r) => client.room_history(r, Some(id + 1), 1),
                            WindowId::Direct(u) => client.dm_history(u, Some(id + 1), 1),
                            WindowId::Status | WindowId::Mentions | WindowId::Search => {
                                return None;
                            }
                        };
                        match page {
                            Ok((messages, _)) => {
                                (self.emit)(NetEvent::History {
                                    window,
                                    messages,
                                    more: true,
                                });
                                None
                            }
                            Err(e) => Some(classify(e)),
                        }
                    }
                    Err(ClientError::Server { message, .. }) => {
                        (self.emit)(NetEvent::Error(format!("{name} was not shared: {message}")));
                        None
                    }
                    Err(e) => Some(classify(e)),
                }
            }
            Err(ClientError::Server { message, .. }) => {
                self.upload = None;
                (self.emit)(NetEvent::Transfer(None));
                (self.emit)(NetEvent::Error(format!("{name} was not shared: {message}")));
                None
            }
            Err(e) => {
                self.upload = None;
                (self.emit)(NetEvent::Transfer(None));
                (self.emit)(NetEvent::Error(format!(
                    "{name} was not shared: the connection was lost; send it again"
                )));
                Some(classify(e))
            }
        }
    }

    /// Runs one command; `Some` ends the session.
    fn execute(&mut self, client: &mut Client, cmd: NetCommand) -> Option<End> {
        let emit = &self.emit;
        let result: Result<(), ClientError> = match cmd.clone() {
            NetCommand::Quit => {
                // Logout, not just quit: the token lives only in this
                // process, so revoke it on the server too.
                let _ = client.request(Request::Logout);
                return Some(End::Quit);
            }
            NetCommand::Credentials { .. } => return None,
            NetCommand::Upload { window, path } => {
                if self.upload.is_some() {
                    emit(NetEvent::Error("an upload is already in progress".into()));
                    return None;
                }
                let target = match &window {
                    WindowId::Room(r) => crate::client::Conversation::Room(r.clone()),
                    WindowId::Direct(u) => crate::client::Conversation::User(u.clone()),
                    WindowId::Status | WindowId::Mentions | WindowId::Search => {
                        emit(NetEvent::Error(
                            "files go to a room or a person, not the status window".into(),
                        ));
                        return None;
                    }
                };
                match client.start_upload(&target, &path) {
                    Ok(job) => {
                        self.upload = Some((job, window));
                        Ok(())
                    }
                    Err(ClientError::FileRejected(why)) => {
                        emit(NetEvent::Error(format!(
                            "{} cannot be shared: {why}",
                            path.display()
                        )));
                        Ok(())
                    }
                    Err(e @ ClientError::File { .. }) => {
                        emit(NetEvent::Error(e.to_string()));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            NetCommand::Download { file, dir } => {
                let dir = dir.unwrap_or_else(|| self.config.download_dir.clone());
                let label = format!("↓ file {file}");
                let mut last = std::time::Instant::now();
                let result = client.download(file, &dir, &mut |done, total| {
                    // A progress event every 100 ms at most.
                    if last.elapsed() >= Duration::from_millis(100) {
                        last = std::time::Instant::now();
                        emit(NetEvent::Transfer(Some((label.clone(), done, total))));
                    }
                });
                emit(NetEvent::Transfer(None));
                match result {
                    Ok(path) => {
                        emit(NetEvent::Notice(format!("saved {}", path.display())));
                        Ok(())
                    }
                    Err(e @ (ClientError::File { .. } | ClientError::Corrupted(_))) => {
                        emit(NetEvent::Error(e.to_string()));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            NetCommand::MarkRead { window, id } => {
                let target = match &window {
                    WindowId::Room(r) => crate::client::Conversation::Room(r.clone()),
                    WindowId::Direct(u) => crate::client::Conversation::User(u.clone()),
                    WindowId::Status | WindowId::Mentions | WindowId::Search => return None,
                };
                client.mark_read(&target, id)
            }
            NetCommand::Files(window) => {
                let target = match &window {
                    WindowId::Room(r) => crate::client::Conversation::Room(r.clone()),
                    WindowId::Direct(u) => crate::client::Conversation::User(u.clone()),
                    WindowId::Status | WindowId::Mentions | WindowId::Search => return None,
                };
                client
                    .files(&target)
                    .map(|files| emit(NetEvent::FileList(files)))
            }
            NetCommand::Search(query) => {
                client.search(&query, None, None).map(|(results, more)| {
                    emit(NetEvent::SearchResults {
                        query,
                        results,
                        more,
                    })
                })
            }
            NetCommand::Jump { window, id } => {
                let target = conversation(&window)?;
                client
                    .history_around(&target, id, 20)
                    .map(|(messages, _, _)| {
                        emit(NetEvent::Jumped {
                            window,
                            messages,
                            id,
                        })
                    })
            }
            NetCommand::Edit { id, body } => client.edit(id, &body),
            NetCommand::Delete(id) => client.delete_message(id, ""),
            NetCommand::React { id, emoji, add } => client.react(id, &emoji, add),
            NetCommand::Send {
                window,
                body,
                local,
                reply_to,
            } => {
                let sent = match conversation(&window) {
                    Some(target) => client.send(&target, &body, reply_to),
                    None => {
                        emit(NetEvent::SendFailed {
                            local,
                            reason: "this is the status window; /join a room or /msg someone"
                                .into(),
                        });
                        return None;
                    }
                };
                match sent {
                    Ok(sent) => {
                        emit(NetEvent::Acked {
                            local,
                            id: sent.id,
                            ts: sent.ts,
                        });
                        if let Some(message) = sent.away {
                            emit(NetEvent::PeerAway { window, message });
                        }
                        Ok(())
                    }
                    Err(ClientError::Server { message, .. }) => {
                        emit(NetEvent::SendFailed {
                            local,
                            reason: message,
                        });
                        Ok(())
                    }
                    Err(e) => {
                        emit(NetEvent::SendFailed {
                            local,
                            reason: "connection lost before the server confirmed it; check history before resending".into(),
                        });
                        Err(e)
                    }
                }
            }
            NetCommand::Join(room) => {
                let joined = match client.join(&room) {
                    Err(ClientError::Server {
                        code: ErrorCode::NoSuchRoom,
                        ..
                    }) => match client.create_room(&room, "") {
                        // Someone else created it first: join theirs.
                        Err(ClientError::Server {
                            code: ErrorCode::RoomExists,
                            ..
                        }) => client.join(&room),
                        other => other,
                    },
                    other => other,
                };
                joined.map(|j| {
                    emit(NetEvent::Joined {
                        room: j.room,
                        members: j.members,
                        history: j.history,
                        focus: true,
                        live_presence: j.live_presence,
                    })
                })
            }
            NetCommand::Fetch(room) => client.join(&room).map(|j| {
                emit(NetEvent::Joined {
                    room: j.room,
                    members: j.members,
                    history: j.history,
                    focus: false,
                    live_presence: j.live_presence,
                })
            }),
            NetCommand::Leave { room, reason } => client
                .request(Request::Leave {
                    room: room.clone(),
                    reason,
                })
                .map(|_| emit(NetEvent::Left(room))),
            NetCommand::DeleteRoom(room) => {
                client.request(Request::DeleteRoom { room }).map(|_| ())
            }
            NetCommand::ChangePassword { old, new } => client
                .request(Request::ChangePassword {
                    old,
                    new: new.clone(),
                })
                .map(|reply| {
                    // Every earlier token was revoked: keep the new one,
                    // and the new password for a login without it.
                    if let ServerMsg::Token { token } = reply {
                        self.token = Some(token);
                    }
                    self.config.password = new;
                    emit(NetEvent::Notice("your password was changed".into()));
                }),
            NetCommand::Plain { request, done } => client
                .request(request)
                .map(|_| emit(NetEvent::Notice(done))),
            NetCommand::Topic { room, topic } => {
                client.request(Request::Topic { room, topic }).map(|_| ())
            }
            NetCommand::Who(room) => client
                .who(&room)
                .map(|members| emit(NetEvent::Users { room, members })),
            // The joined reply's first page (online members first) is
            // what the user list shows; a re-join is the cheapest way to
            // get a fresh one with the counts.
            NetCommand::RefreshMembers(room) => client.join(&room).map(|j| {
                emit(NetEvent::Members {
                    room,
                    members: j.members,
                })
            }),
            NetCommand::Rooms => client.rooms().map(|r| emit(NetEvent::RoomList(r))),
            NetCommand::History { window, before } => {
                let page = match &window {
                    WindowId::Room(r) => client.room_history(r, before, 50),
                    WindowId::Direct(u) => client.dm_history(u, before, 50),
                    WindowId::Status | WindowId::Mentions | WindowId::Search => return None,
                };
                page.map(|(messages, more)| {
                    emit(NetEvent::History {
                        window,
                        messages,
                        more,
                    })
                })
            }
            NetCommand::Away(message) => {
                let back = message.is_none();
                client.request(Request::Away { message }).map(|_| {
                    emit(NetEvent::Notice(if back {
                        "you are back".into()
                    } else {
                        "you are marked away".into()
                    }))
                })
            }
        };
        match result {
            Ok(()) => None,
            Err(ClientError::Server { code, message }) => {
                match cmd {
                    // `/msg` to a name nobody has: its window goes again.
                    NetCommand::History {
                        window: window @ WindowId::Direct(_),
                        ..
                    } if code == ErrorCode::NoSuchUser => emit(NetEvent::NoSuchPeer(window)),
                    _ => emit(NetEvent::Error(message)),
                }
                None
            }
            Err(e) => {
                // The connection failed mid-command: keep the command (other
                // than a send, already reported) for after reconnecting.
                if !matches!(cmd, NetCommand::Send { .. }) {
                    self.queued.push_front(cmd);
                }
                Some(classify(e))
            }
        }
    }
}

/// How a session the server ended (or refused) ends for the client: a ban,
/// an administrator's kick, a version the server does not speak, or
/// flooding would only repeat, so the client stops and says why; anything
/// else is retried. The reason is the server's words, without the wire
/// code.
fn ended(code: ErrorCode, message: String) -> End {
    match code {
        ErrorCode::VersionMismatch
        | ErrorCode::Flooding
        | ErrorCode::Banned
        | ErrorCode::Kicked => End::Fatal(message),
        // The password was reset: ask for the new one.
        ErrorCode::AuthFailed => End::AuthFailed(message, true),
        _ => End::Lost(message),
    }
}

/// Whether an error ends the session for good or is worth a retry.
fn classify(e: ClientError) -> End {
    match e {
        ClientError::Server { code, message } => match code {
            ErrorCode::AuthFailed
            | ErrorCode::UserExists
            | ErrorCode::InvalidUsername
            | ErrorCode::InvalidPassword => End::AuthFailed(message, code == ErrorCode::UserExists),
            _ => ended(code, message),
        },
        ClientError::Closed {
            reason: Some((code, message)),
        } => ended(code, message),
        ClientError::Closed { reason: None } => End::Lost("connection closed".into()),
        other => End::Lost(other.to_string()),
    }
}

/// The conversation a window shows, if it is one.
fn conversation(window: &WindowId) -> Option<crate::client::Conversation> {
    match window {
        WindowId::Room(r) => Some(crate::client::Conversation::Room(r.clone())),
        WindowId::Direct(u) => Some(crate::client::Conversation::User(u.clone())),
        WindowId::Status | WindowId::Mentions | WindowId::Search => None,
    }
}
