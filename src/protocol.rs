//! The confab wire protocol: frames, message types, and their encoding.
//!
//! This module is pure: it turns bytes into typed values and back, and knows
//! nothing of sockets, TLS, SQL or terminals. `docs/PROTOCOL.md` is the
//! human-readable description of everything here; keep the two in step.
//!
//! A frame is a 5-byte header followed by a payload:
//!
//! ```text
//! +----------------------+-----------+------------------------+
//! | length: u32 big-end. | kind: u8  | payload (length bytes) |
//! +----------------------+-----------+------------------------+
//! ```
//!
//! `kind` 1 is a JSON object (UTF-8). `kind` 2 is a chunk of file data: a
//! 4-byte big-endian stream id (an upload or a download) and the bytes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A body starting with this is an action (`/me waves`: "* bob waves";
/// IRC's CTCP ACTION).
pub const ACTION_PREFIX: &str = "/me ";

/// The protocol version this build speaks; sent in `hello` and `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Size of the frame header: a 4-byte length and a 1-byte kind.
pub const HEADER_LEN: usize = 5;
/// Largest payload either side may send. Server replies (history pages) are
/// the largest frames; this bounds them.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Largest payload the server accepts from a client. Requests are small; a
/// tighter bound caps what a hostile client can make the server buffer.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;
/// Largest message body, in bytes of UTF-8.
pub const MAX_BODY_LEN: usize = 4096;
/// Largest room topic, in bytes of UTF-8.
pub const MAX_TOPIC_LEN: usize = 256;
/// Most messages one `history` reply carries.
pub const HISTORY_PAGE_MAX: u32 = 100;
/// Most members a `joined` reply lists.
pub const JOIN_MEMBERS: usize = 100;
/// Members a `who` reply lists when the request names no `limit`.
pub const WHO_PAGE: u32 = 500;
/// Most members a `who` reply lists.
pub const WHO_PAGE_MAX: u32 = 1000;

fn yes() -> bool {
    true
}

/// Results a `search` reply carries when the request names no `limit`.
pub const SEARCH_PAGE: u32 = 20;
/// Most results one `search` reply carries.
pub const SEARCH_PAGE_MAX: u32 = 50;
/// Longest `search` query, in bytes.
pub const MAX_QUERY_LEN: usize = 512;
/// Most different reactions one message may carry.
pub const MAX_REACTIONS: u32 = 20;
/// Longest reaction (an emoji or a short word such as `+1`), in bytes.
pub const MAX_REACTION_LEN: usize = 32;
/// Characters of the original message a reply quotes.
pub const REPLY_EXCERPT: usize = 100;
/// What this server offers beyond version 1's base, as `welcome` lists it.
pub const FEATURES: &[&str] = &["search", "edit", "delete", "replies", "reactions"];

/// How many recent messages a `joined` reply replays.
pub const JOIN_REPLAY: u32 = 50;
/// Bytes of file data per data frame (fits in [`MAX_REQUEST_LEN`] with
/// its header and stream id).
pub const DATA_CHUNK: usize = 60 * 1024;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A UTF-8 JSON object.
    Json = 1,
    /// File data: a 4-byte stream id, then bytes.
    Data = 2,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload holds.
    pub kind: FrameKind,
    /// The payload bytes, header removed.
    pub payload: Vec<u8>,
}

/// Why bytes could not be decoded into a frame or a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The header announces a payload larger than the receiver accepts.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The kind byte is not one this version knows.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

/// Appends one frame to `out`.
///
/// Panics only if `payload` exceeds `u32::MAX` bytes, which no caller can
/// produce since every payload is checked against [`MAX_FRAME_LEN`] first.
pub fn encode_frame(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payload bounded by MAX_FRAME_LEN");
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
}

/// Encodes a message as a complete JSON frame.
pub fn encode_json<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    // Serializing our own types to a Vec cannot fail: they hold only strings,
    // integers, booleans and vectors of those.
    serde_json::to_writer(&mut out, msg).expect("protocol types always serialize");
    let len = u32::try_from(out.len() - HEADER_LEN).expect("frame bounded by MAX_FRAME_LEN");
    out[..4].copy_from_slice(&len.to_be_bytes());
    out[4] = FrameKind::Json as u8;
    out
}

/// Appends a data frame carrying `bytes` of stream `id`.
pub fn encode_data(id: u32, bytes: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(bytes.len() + 4).expect("data chunks are small");
    out.reserve(HEADER_LEN + 4 + bytes.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(FrameKind::Data as u8);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Splits a data frame's payload into stream id and bytes; `None` if it is
/// too short to hold an id.
pub fn parse_data(payload: &[u8]) -> Option<(u32, &[u8])> {
    let (id, bytes) = payload.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*id), bytes))
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
///
/// Bytes go in with [`FrameDecoder::push`]; whole frames come out of
/// [`FrameDecoder::next_frame`]. A header announcing more than `max_len`
/// bytes is an error as soon as the header is seen, so a hostile peer cannot
/// make the decoder buffer more than `max_len + HEADER_LEN` bytes at once
/// (plus whatever one `push` hands it).
#[derive(Debug)]
pub struct FrameDecoder {
    /// Initialised storage; bytes `start..end` are received and unread,
    /// `end..` is room for the next read (zeroed once, when it grows).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_len: usize,
}

/// The most room [`FrameDecoder::read_with`] offers one read: a TLS
/// record's largest plaintext.
const MAX_READ_ROOM: usize = 16 * 1024;

impl FrameDecoder {
    /// A decoder that accepts payloads up to `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_len,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Lets `read` write received bytes straight into the buffer (no
    /// intermediate copy, no big buffer on the reader's stack): it gets at
    /// least `min` bytes of room (at most 16 KiB unless `min` asks for
    /// more) and returns how many it wrote. Its error is passed through.
    pub fn read_with<E>(
        &mut self,
        min: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.make_room(min);
        let room = (self.buf.len() - self.end).min(MAX_READ_ROOM.max(min));
        let result = read(&mut self.buf[self.end..self.end + room]);
        if let Ok(n) = &result {
            self.end += (*n).min(room);
        }
        result
    }

    /// Makes `n` bytes of room after `end`: first by dropping what was
    /// read, then by growing (zeroing only the new part).
    fn make_room(&mut self, n: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end >= n {
            return;
        }
        self.compact();
        if self.buf.len() - self.end < n {
            let want = (self.end + n).max(self.buf.len() * 2);
            self.buf.resize(want, 0);
        }
    }

    /// Frees the buffer if it holds nothing, so an idle connection keeps no
    /// receive memory.
    pub fn release_if_empty(&mut self) {
        if self.start == self.end {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Every byte received and not yet returned, as raw bytes, for a
    /// session that frames its input itself (IRC lines).
    pub fn drain_raw(&mut self) -> &[u8] {
        let start = self.start;
        self.start = self.end;
        &self.buf[start..self.end]
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < HEADER_LEN {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        let kind = match avail[4] {
            1 => FrameKind::Json,
            2 => FrameKind::Data,
            other => return Err(FrameError::UnknownKind(other)),
        };
        if avail.len() < HEADER_LEN + len {
            self.compact();
            return Ok(None);
        }
        let payload = avail[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.start += HEADER_LEN + len;
        Ok(Some(Frame { kind, payload }))
    }

    /// Moves a partial frame to the front so the buffer does not grow
    /// without bound on a long-lived connection.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

/// A frame sent by a client: an optional request id and the request itself.
///
/// The server copies `req` into the reply, so a client can match replies to
/// requests while events arrive in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Client-chosen id echoed in the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// What the client asks for.
    #[serde(flatten)]
    pub request: Request,
}

/// Everything a client can ask of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First frame of every connection: the client's protocol version.
    Hello {
        /// Must equal the server's [`PROTOCOL_VERSION`].
        version: u32,
        /// Free-form client name and version, for logs.
        #[serde(default)]
        client: String,
    },
    /// Creates an account and logs in as it.
    Register {
        /// Wanted user name.
        user: String,
        /// Password in clear (inside TLS); hashed by the server.
        password: String,
    },
    /// Logs in to an existing account.
    Login {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Logs in with a resume token from an earlier password login (no
    /// password hashing: fast reconnects).
    Resume {
        /// User name.
        user: String,
        /// The token from `logged_in`.
        token: String,
    },
    /// Logs out: revokes this session's resume token, replies `ok`, closes.
    Logout,
    /// Changes the password; revokes every resume token of the user and
    /// replies `token` with a new one for this session.
    ChangePassword {
        /// Current password.
        old: String,
        /// New password.
        new: String,
    },
    /// Admin: disconnects every session of a user.
    Kick {
        /// Who.
        user: String,
        /// Why (shown to them).
        #[serde(default)]
        reason: String,
    },
    /// Admin: bans a user (and kicks them), for `minutes` or for good.
    Ban {
        /// Who.
        user: String,
        /// Why (shown to them at each login attempt).
        #[serde(default)]
        reason: String,
        /// How long; absent = until unbanned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u64>,
    },
    /// Admin: lifts a ban.
    Unban {
        /// Who.
        user: String,
    },
    /// Admin: stops a user from writing in a room, for `minutes` or until
    /// unmuted.
    Mute {
        /// The room.
        room: String,
        /// Who.
        user: String,
        /// How long; absent = until unmuted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u64>,
    },
    /// Admin: lifts a mute.
    Unmute {
        /// The room.
        room: String,
        /// Who.
        user: String,
    },
    /// Admin: lists bans in force.
    Bans,
    /// Lists all rooms.
    Rooms,
    /// Creates a room and joins it.
    CreateRoom {
        /// Room name.
        room: String,
        /// Initial topic.
        #[serde(default)]
        topic: String,
    },
    /// Joins a room (membership persists across logins).
    Join {
        /// Room name.
        room: String,
    },
    /// Leaves a room.
    Leave {
        /// Room name.
        room: String,
        /// Why, for the others (IRC's PART message); one line, at most 256
        /// characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Sets a room's topic.
    Topic {
        /// Room name.
        room: String,
        /// New topic.
        topic: String,
    },
    /// Deletes a room with its history and files, for good. Allowed to
    /// administrators, and to the room's creator while nobody else is in
    /// it; never for `general`.
    DeleteRoom {
        /// Room name.
        room: String,
    },
    /// Lists a room's members and whether each is online.
    Who {
        /// Room name.
        room: String,
        /// Page through the members by name: only those after this name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Most members in the reply (default [`WHO_PAGE`], at most
        /// [`WHO_PAGE_MAX`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Sends a message to a room.
    Say {
        /// Room name.
        room: String,
        /// Message text.
        body: String,
        /// The id of the message (in the same room) this one answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
        /// A notice (IRC's NOTICE): nobody may answer it automatically.
        #[serde(default, skip_serializing_if = "is_false")]
        notice: bool,
    },
    /// Sends a direct message to a user, online or not.
    Dm {
        /// Recipient's user name.
        to: String,
        /// Message text.
        body: String,
        /// The id of the message (in the same conversation) this one
        /// answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
        /// A notice, as with `say`.
        #[serde(default, skip_serializing_if = "is_false")]
        notice: bool,
    },
    /// Replaces the text of one of the caller's own messages (within the
    /// server's `edit_window_s`).
    Edit {
        /// The message.
        id: i64,
        /// The new text.
        body: String,
    },
    /// Deletes a message for everyone: the caller's own, or any (with
    /// `reason`) for an administrator.
    Delete {
        /// The message.
        id: i64,
        /// Why (recorded in the audit log for an administrator's deletion).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// Adds the caller's reaction to a message.
    React {
        /// The message.
        id: i64,
        /// The reaction: an emoji or a short word.
        emoji: String,
    },
    /// Takes the caller's reaction back.
    Unreact {
        /// The message.
        id: i64,
        /// The reaction.
        emoji: String,
    },
    /// Searches every room the caller is in and their direct messages.
    Search {
        /// Words and filters (see docs/PROTOCOL.md: `from:`, `in:`,
        /// `before:`, `after:`, `on:`, `"phrases"`, `-word`, `prefix*`).
        query: String,
        /// Only results with an id below this one (the next page).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<i64>,
        /// Most results (default [`SEARCH_PAGE`], at most [`SEARCH_PAGE_MAX`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Fetches a page of older messages of a room or of a DM conversation.
    History {
        /// The room, or ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// ... the other user of a DM conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<String>,
        /// Only messages with an id below this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<i64>,
        /// Instead of `before`: the messages around this one (it and up to
        /// half the page older, the rest newer), to jump to a search result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        around: Option<i64>,
        /// Page size, at most [`HISTORY_PAGE_MAX`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Starts uploading a file to a room or a user; data frames follow.
    Upload {
        /// The room, or ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// ... the user (direct).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// File name (the server sanitises it).
        name: String,
        /// Exact size in bytes.
        size: u64,
    },
    /// Ends an upload: all data is sent; `sha256` (hex) is its digest.
    UploadEnd {
        /// The id from `upload_ready`.
        upload: u32,
        /// Lower-case hex SHA-256 of the whole file.
        sha256: String,
    },
    /// Abandons an upload; the server discards what it received.
    UploadCancel {
        /// The id from `upload_ready`.
        upload: u32,
    },
    /// Asks for a file's content; `download_start`, data frames and
    /// `download_end` follow.
    Download {
        /// The file id.
        file: i64,
    },
    /// Lists recent files of a room or of a DM conversation.
    Files {
        /// The room, or ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// ... the other user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<String>,
    },
    /// Records that the user has read a room or DM conversation up to
    /// message `id`; the user's other sessions get a `read` event.
    MarkRead {
        /// The room, or ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// ... the other user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<String>,
        /// The newest message read.
        id: i64,
    },
    /// Marks the user away (with a message) or back (`message` absent).
    Away {
        /// Why; absent or empty means "back".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Server statistics (administrators only).
    Stats,
    /// Liveness check; also works while queued.
    Ping,
    /// Ends the session, or leaves the wait queue; the server replies `ok`
    /// and closes.
    Quit,
}

impl Request {
    /// Every `type` value a client may send; a frame with another one gets
    /// `unknown_request` rather than `bad_request`.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "register",
        "login",
        "resume",
        "logout",
        "change_password",
        "kick",
        "ban",
        "unban",
        "mute",
        "unmute",
        "bans",
        "rooms",
        "create_room",
        "join",
        "leave",
        "topic",
        "who",
        "delete_room",
        "say",
        "dm",
        "edit",
        "delete",
        "react",
        "unreact",
        "search",
        "history",
        "upload",
        "upload_end",
        "upload_cancel",
        "download",
        "files",
        "mark_read",
        "away",
        "stats",
        "ping",
        "quit",
    ];
}

/// A frame sent by the server: a reply (with the request's `req`) or an
/// event (without one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The id of the request this answers; absent on events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The reply or event.
    #[serde(flatten)]
    pub msg: ServerMsg,
}

impl ServerFrame {
    /// A reply to request `req`.
    pub fn reply(req: Option<u64>, msg: ServerMsg) -> Self {
        ServerFrame { req, msg }
    }

    /// An event, not tied to a request.
    pub fn event(msg: ServerMsg) -> Self {
        ServerFrame { req: None, msg }
    }

    /// An error reply.
    pub fn error(req: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame {
            req,
            msg: ServerMsg::Error {
                code,
                message: message.into(),
            },
        }
    }
}

/// Everything the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Reply to `hello`: the versions match and the session may log in.
    Welcome {
        /// The server's protocol version.
        version: u32,
        /// Server software name and version.
        server: String,
        /// Largest message body the server accepts.
        max_body: usize,
        /// Largest frame payload the server accepts from a client.
        max_request: usize,
        /// Largest file the server accepts, bytes.
        #[serde(default)]
        max_file: u64,
        /// File types the server accepts (`png`, `pdf`, `text`, ...).
        #[serde(default)]
        file_types: Vec<String>,
        /// Flood control: `say`/`dm` allowed at once.
        #[serde(default)]
        flood_burst: u32,
        /// Flood control: one more `say`/`dm` is allowed every this many
        /// milliseconds.
        #[serde(default)]
        flood_refill_ms: u64,
        /// Flood control: refusals (`slow_down`) tolerated at once before
        /// `flooding` ends the session; one more every second.
        #[serde(default)]
        flood_strikes: u32,
        /// What the server offers beyond the base protocol: `search`,
        /// `edit`, `delete`, `replies`, `reactions`.
        #[serde(default)]
        features: Vec<String>,
        /// How long after sending a message its author may edit it,
        /// seconds.
        #[serde(default)]
        edit_window_s: u64,
        /// Most different reactions one message may carry.
        #[serde(default)]
        max_reactions: u32,
    },
    /// A request failed; the session goes on unless a `closing` follows.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// Reply to `register` and `login`.
    LoggedIn {
        /// The canonical (lower-case) user name.
        user: String,
        /// Rooms the user is a member of.
        rooms: Vec<RoomInfo>,
        /// Direct messages that arrived while the user was offline follow
        /// this reply as `message` events; this is how many.
        offline_dms: u32,
        /// What is unread in each room and conversation (only those with
        /// something unread): the summary of what happened while away.
        #[serde(default)]
        unread: Vec<Unread>,
        /// A resume token, after a password login or registration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Reply to `change_password`: the new resume token.
    Token {
        /// The token.
        token: String,
    },
    /// Reply to `bans`.
    BanList {
        /// Bans in force.
        bans: Vec<BanInfo>,
    },
    /// A request succeeded and has nothing else to say.
    Ok,
    /// A message was stored durably under `id`; it will not be lost.
    Ack {
        /// The message's id, its place in history.
        id: i64,
        /// Server time of the message, ms since the Unix epoch.
        ts: i64,
        /// For a direct message: the recipient's away message, if they are
        /// away (as IRC's RPL_AWAY); absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        away: Option<String>,
    },
    /// Reply to `rooms`.
    RoomList {
        /// All rooms.
        rooms: Vec<RoomInfo>,
    },
    /// Reply to `join` and `create_room`.
    Joined {
        /// The room.
        room: RoomInfo,
        /// Its members: all of them, or (in a room of more than
        /// [`JOIN_MEMBERS`]) the first [`JOIN_MEMBERS`], online ones first.
        members: Vec<Member>,
        /// Its latest messages, oldest first.
        history: Vec<ChatMessage>,
        /// How many members are online.
        #[serde(default)]
        online: u32,
        /// Whether `members` left some out (page with `who`).
        #[serde(default)]
        more_members: bool,
        /// Whether the room sends `presence` events; a room over the
        /// server's size for that does not, and its member list is kept
        /// fresh with `who`.
        #[serde(default = "yes")]
        live_presence: bool,
    },
    /// Reply to `who`.
    Users {
        /// Room name.
        room: String,
        /// A page of its members, by name.
        members: Vec<Member>,
        /// Whether members after the last one exist (ask again with
        /// `after` = the last name).
        #[serde(default)]
        more: bool,
        /// How many members are online (of all, not just this page).
        #[serde(default)]
        online: u32,
    },
    /// Reply to `history`.
    History {
        /// The room, when the request named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The DM peer, when the request named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<String>,
        /// The page, oldest first.
        messages: Vec<ChatMessage>,
        /// Whether older messages exist before this page.
        more: bool,
        /// Whether newer messages exist after this page (only an `around`
        /// request can leave some out).
        #[serde(default)]
        newer: bool,
    },
    /// Reply to `search`: the matches, newest first.
    SearchResults {
        /// Matching messages, newest first, each with its room (`room`) or
        /// conversation (`from` and `to`).
        results: Vec<ChatMessage>,
        /// Whether older matches exist (ask again with `before` = the last
        /// result's id).
        more: bool,
    },
    /// Event: a message's text was edited.
    MessageEdited {
        /// The message.
        id: i64,
        /// Its room, for a room message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Its recipient, for a direct message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// Its author.
        from: String,
        /// The new text.
        body: String,
        /// When it was edited, ms since the Unix epoch.
        edited_at: i64,
    },
    /// Event: a message was deleted; show a tombstone in its place.
    MessageDeleted {
        /// The message.
        id: i64,
        /// Its room, for a room message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Its recipient, for a direct message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// Its author.
        from: String,
        /// Who deleted it (the author, or an administrator).
        by: String,
    },
    /// Event: someone reacted to a message or took a reaction back.
    Reaction {
        /// The message.
        id: i64,
        /// Its room, for a room message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Its recipient, for a direct message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// Its author.
        from: String,
        /// The reaction.
        emoji: String,
        /// Who reacted.
        user: String,
        /// `true`: added; `false`: taken back.
        added: bool,
        /// How many users now show this reaction on the message.
        count: u32,
    },
    /// Reply to `ping`.
    Pong,
    /// Reply to `upload`: send the data as data frames with this id.
    UploadReady {
        /// The stream id for data frames.
        upload: u32,
        /// Bytes per data frame the server wants at most.
        chunk_size: usize,
    },
    /// Reply to `download`: data frames with this id follow, then
    /// `download_end`.
    DownloadStart {
        /// The stream id of the data frames.
        download: u32,
        /// The file.
        file: FileInfo,
    },
    /// Event: an upload was refused while its data was arriving (type,
    /// size); stop sending its data frames. Its `upload_end` gets the same
    /// error.
    UploadRejected {
        /// The stream id.
        upload: u32,
        /// Why, as a code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// Event: all data of a download was sent.
    DownloadEnd {
        /// The stream id.
        download: u32,
        /// Hex SHA-256 of the content, to verify.
        sha256: String,
    },
    /// Reply to `files`.
    FileList {
        /// Newest first.
        files: Vec<SharedFile>,
    },
    /// Event: a new message in a room you are in, or a DM to or from you.
    Message(Box<ChatMessage>),
    /// Event: someone joined, left, came online or went offline in a room.
    Presence {
        /// Room name.
        room: String,
        /// Who.
        user: String,
        /// What happened.
        event: PresenceEvent,
        /// The away message, with `away` (absent from servers before it
        /// was added).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Event: another session of this user read a room or conversation up
    /// to `id`.
    Read {
        /// The room, or ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// ... the other user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<String>,
        /// The newest message read.
        id: i64,
        /// When that message was sent (ms since the epoch), if it exists
        /// (IRC's read markers are times).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<i64>,
    },
    /// Event, to the user's other sessions: this user joined a room (in
    /// another session), so every session shows the same rooms.
    YouJoined {
        /// Room name.
        room: String,
        /// The user (for front ends that name the joiner, as IRC's JOIN).
        user: String,
    },
    /// Event, to the user's other sessions: this user left a room.
    YouLeft {
        /// Room name.
        room: String,
        /// The user.
        user: String,
    },
    /// Event, to every session of every member: a room was deleted (its
    /// history and files are gone).
    RoomDeleted {
        /// Room name.
        room: String,
        /// Who deleted it.
        by: String,
    },
    /// Event: a room's topic changed.
    TopicChanged {
        /// Room name.
        room: String,
        /// New topic.
        topic: String,
        /// Who changed it.
        by: String,
    },
    /// Event: every session slot is taken; the client waits in line.
    /// Sent on entering the queue, whenever the position changes, and
    /// periodically as a keepalive.
    Queued {
        /// The client's place in line; 1 = next to be admitted.
        position: u32,
        /// How many clients are waiting in all.
        length: u32,
        /// Estimated seconds until admission, when the server can tell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_secs: Option<u64>,
    },
    /// Event: the client left the queue and has a session slot; the reply
    /// to its `hello` follows.
    Admitted {
        /// How long it waited, in milliseconds.
        waited_ms: u64,
    },
    /// Reply to `stats`.
    Stats(ServerStats),
    /// Event: the server is closing this connection, and why.
    Closing {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// A message type this build does not know (sent by a newer server).
    /// Clients ignore it.
    #[serde(other)]
    Unknown,
}

/// A ban, as `bans` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// Who.
    pub user: String,
    /// Why.
    pub reason: String,
    /// By whom.
    pub by: String,
    /// Until when (ms since the epoch); absent for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// Unread messages in one room or direct conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unread {
    /// The room, or ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// ... the other user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    /// Messages after `last_read` (not counting the user's own).
    pub count: u32,
    /// Of those, how many mention the user.
    pub mentions: u32,
    /// The newest message the user had read (0: none).
    pub last_read: i64,
    /// The newest unread message's id (the counts cover up to it).
    pub newest: i64,
}

/// A room as listed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// Room topic, possibly empty.
    pub topic: String,
    /// Number of members.
    pub members: u32,
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// User name.
    pub user: String,
    /// Whether at least one session of the user is connected.
    pub online: bool,
    /// The user's away message, if they are away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away: Option<String>,
}

/// What a stored message is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Chat (said, or sent as a DM).
    #[default]
    Chat,
    /// A room's topic changed (`topic` request): kept in history.
    Topic,
}

impl MessageKind {
    /// Whether it is plain chat (the wire leaves `kind` out then).
    pub fn is_chat(&self) -> bool {
        *self == MessageKind::Chat
    }
}

/// A stored chat message, as events and history carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique, increasing id: the order of history.
    pub id: i64,
    /// The room, for a room message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The recipient, for a direct message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The sender.
    pub from: String,
    /// The text.
    pub body: String,
    /// Server time, ms since the Unix epoch.
    pub ts: i64,
    /// The file this message shares, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    /// The message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyRef>,
    /// When the text was last edited (ms since the epoch); absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// The message was deleted: `body` is empty, show a tombstone.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// Reactions, in the order they were first given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// What the message is: absent for chat; `topic` for a topic change
    /// kept in history (`body` is the new topic, `from` who set it).
    #[serde(default, skip_serializing_if = "MessageKind::is_chat")]
    pub kind: MessageKind,
    /// Sent as a notice (IRC's NOTICE, or `say`/`dm` with `notice`):
    /// clients show it as one and never answer it automatically.
    #[serde(default, skip_serializing_if = "is_false")]
    pub notice: bool,
}

impl ChatMessage {
    /// A new, unedited message without replies or reactions.
    pub fn new(id: i64, from: String, body: String, ts: i64) -> ChatMessage {
        ChatMessage {
            id,
            room: None,
            to: None,
            from,
            body,
            ts,
            file: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            kind: Default::default(),
            notice: false,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The message a reply answers, as the reply quotes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRef {
    /// The original's id.
    pub id: i64,
    /// Its author.
    pub from: String,
    /// The start of its text (at most [`REPLY_EXCERPT`] characters; empty
    /// if it was deleted).
    pub excerpt: String,
    /// The original was deleted since.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// One reaction on a message, as history and search carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    /// The reaction.
    pub emoji: String,
    /// How many users gave it.
    pub count: u32,
    /// Whether the user receiving this gave it.
    #[serde(default)]
    pub me: bool,
}

/// A stored file, as messages and downloads describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File id, for `download`.
    pub id: i64,
    /// Sanitised file name.
    pub name: String,
    /// MIME type decided from the content.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// A file in a `file_list`: the file and who shared it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    /// The file.
    #[serde(flatten)]
    pub file: FileInfo,
    /// Who uploaded it.
    pub from: String,
    /// When, ms since the Unix epoch.
    pub ts: i64,
}

/// Server counters, as the `stats` reply and the minute log line give them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Sessions holding a slot now (admitted, logged in or not).
    pub active: u32,
    /// Clients waiting in the queue now.
    pub queued: u32,
    /// Session slots in all (`max_sessions`).
    pub max_sessions: u32,
    /// Clients admitted to a slot since start.
    pub admitted_total: u64,
    /// Clients that had to wait in the queue since start.
    pub queued_total: u64,
    /// Clients turned away since start (queue full, per-IP limit).
    pub rejected_total: u64,
    /// Messages refused by flood control since start.
    pub rate_limited_total: u64,
    /// Sessions dropped for reading too slowly since start.
    pub slow_consumers_total: u64,
}

/// What a presence event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    /// The user joined the room.
    Join,
    /// The user left the room.
    Leave,
    /// The user's first session connected.
    Online,
    /// The user's last session disconnected.
    Offline,
    /// The user marked themselves away.
    Away,
    /// The user is back.
    Back,
}

/// Machine-readable error reasons. Clients may show `message` to people and
/// branch on `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The client's protocol version is not the server's.
    VersionMismatch,
    /// A frame could not be decoded (bad header, not JSON, too large).
    BadFrame,
    /// A JSON request lacks a field, has a wrong type, or is otherwise malformed.
    BadRequest,
    /// The request `type` is not one the server knows.
    UnknownRequest,
    /// The first request was not `hello`.
    HelloRequired,
    /// The request needs a logged-in session.
    NotLoggedIn,
    /// `register` or `login` on a session that is already logged in.
    AlreadyLoggedIn,
    /// Wrong user name or password (the same error for both).
    AuthFailed,
    /// The user name is taken.
    UserExists,
    /// The user name breaks the naming rules.
    InvalidUsername,
    /// The password breaks the length rules.
    InvalidPassword,
    /// No such room.
    NoSuchRoom,
    /// No such user.
    NoSuchUser,
    /// The room name is taken.
    RoomExists,
    /// The room name breaks the naming rules.
    InvalidRoom,
    /// The request needs membership of the room.
    NotMember,
    /// A body or topic is longer than allowed.
    TooLong,
    /// A body is empty or holds forbidden control characters.
    InvalidBody,
    /// The session's outgoing buffer overflowed because it read too slowly.
    SlowConsumer,
    /// Every session slot is taken and the wait queue is full.
    ServerFull,
    /// The client waited in the queue longer than the server allows.
    QueueTimeout,
    /// The request needs a session slot; the client is still queued.
    NotAdmitted,
    /// The client did not log in in time after being admitted.
    LoginTimeout,
    /// Too many connections from the client's address.
    TooManyConnections,
    /// Messages are coming too fast; this one was not sent.
    SlowDown,
    /// The client kept flooding after `slow_down` and is disconnected.
    Flooding,
    /// The request needs administrator rights.
    Forbidden,
    /// The file breaks the type, name or size rules; the message says how.
    FileRejected,
    /// No such file, or not one this user may download.
    NoSuchFile,
    /// The upload's size or SHA-256 did not match its data; discarded.
    TransferFailed,
    /// Another transfer of the same direction is in progress.
    Busy,
    /// Too many failed logins for this account or address; wait and retry.
    TooManyAttempts,
    /// The resume token is unknown, expired or revoked: log in with the
    /// password.
    InvalidToken,
    /// The user is banned; the message says why and until when.
    Banned,
    /// The user is muted in this room.
    Muted,
    /// An administrator disconnected the session (fatal).
    Kicked,
    /// The user is in as many rooms as allowed.
    TooManyRooms,
    /// Something failed inside the server; the request had no effect.
    ServerError,
    /// The server is shutting down.
    ShuttingDown,
    /// No such message, or not one the caller can see.
    NoSuchMessage,
    /// The edit window of the message is over.
    TooLate,
    /// The message carries as many different reactions as allowed.
    TooManyReactions,
    /// A reaction is empty, too long, or has spaces or control characters.
    InvalidReaction,
    /// A search query has nothing to search for, or is too long.
    InvalidQuery,
    /// A code this build does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde name is the wire name; reuse it so logs match the wire.
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&name)
    }
}

/// Why a JSON payload is not a valid client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The request id, if one could be read, so the error reply can carry it.
    pub req: Option<u64>,
    /// `bad_request` or `unknown_request`.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

/// Parses a JSON payload into a client frame, or explains why not.
pub fn parse_request(payload: &[u8]) -> Result<ClientFrame, RequestError> {
    match serde_json::from_slice::<ClientFrame>(payload) {
        Ok(frame) => Ok(frame),
        Err(err) => {
            // Read what we can of the envelope so the error reply carries
            // the request id and says whether the type itself is unknown.
            #[derive(Deserialize)]
            struct Envelope {
                req: Option<u64>,
                #[serde(rename = "type")]
                kind: Option<String>,
            }
            let env = serde_json::from_slice::<Envelope>(payload).ok();
            let req = env.as_ref().and_then(|e| e.req);
            match env.and_then(|e| e.kind) {
                Some(kind) if !Request::TYPES.contains(&kind.as_str()) => Err(RequestError {
                    req,
                    code: ErrorCode::UnknownRequest,
                    message: format!("unknown request type `{}`", truncate(&kind, 64)),
                }),
                _ => Err(RequestError {
                    req,
                    code: ErrorCode::BadRequest,
                    message: format!("malformed request: {err}"),
                }),
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, for echoing
/// client-supplied text in error messages.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_through_split_input() {
        let msg = ServerFrame::reply(
            Some(7),
            ServerMsg::Ack {
                id: 42,
                ts: 1,
                away: None,
            },
        );
        let bytes = encode_json(&msg);
        let mut dec = FrameDecoder::new(MAX_FRAME_LEN);
        for b in &bytes[..bytes.len() - 1] {
            dec.push(std::slice::from_ref(b));
            assert_eq!(dec.next_frame(), Ok(None));
        }
        dec.push(&bytes[bytes.len() - 1..]);
        let frame = dec.next_frame().unwrap().unwrap();
        assert_eq!(frame.kind, FrameKind::Json);
        let back: ServerFrame = serde_json::from_slice(&frame.payload).unwrap();
        assert_eq!(back, msg);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn two_frames_in_one_push_come_out_in_order() {
        let mut bytes = Vec::new();
        encode_frame(FrameKind::Json, b"{\"a\":1}", &mut bytes);
        encode_frame(FrameKind::Json, b"{\"b\":2}", &mut bytes);
        let mut dec = FrameDecoder::new(16);
        dec.push(&bytes);
        assert_eq!(dec.next_frame().unwrap().unwrap().payload, b"{\"a\":1}");
        assert_eq!(dec.next_frame().unwrap().unwrap().payload, b"{\"b\":2}");
        assert_eq!(dec.next_frame(), Ok(None));
    }

    #[test]
    fn oversized_header_is_rejected_before_the_payload_arrives() {
        let mut dec = FrameDecoder::new(100);
        dec.push(&[0, 0, 0, 101, 1]);
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        let mut dec = FrameDecoder::new(100);
        dec.push(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert!(matches!(dec.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn data_frames_carry_a_stream_id() {
        let mut out = Vec::new();
        encode_data(7, b"abc", &mut out);
        let mut dec = FrameDecoder::new(100);
        dec.push(&out);
        let frame = dec.next_frame().unwrap().unwrap();
        assert_eq!(frame.kind, FrameKind::Data);
        assert_eq!(parse_data(&frame.payload), Some((7, &b"abc"[..])));
        assert_eq!(parse_data(b"ab"), None);
    }

    #[test]
    fn unknown_frame_kind_is_an_error() {
        let mut dec = FrameDecoder::new(100);
        dec.push(&[0, 0, 0, 0, 9]);
        assert_eq!(dec.next_frame(), Err(FrameError::UnknownKind(9)));
    }

    #[test]
    fn request_wire_form_is_flat_json() {
        let frame = ClientFrame {
            req: Some(3),
            request: Request::Say {
                room: "general".into(),
                body: "hi".into(),
                reply_to: None,
                notice: false,
            },
        };
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            json,
            r#"{"req":3,"type":"say","room":"general","body":"hi"}"#
        );
        assert_eq!(parse_request(json.as_bytes()).unwrap(), frame);
        let unit = parse_request(br#"{"type":"rooms"}"#).unwrap();
        assert_eq!(unit.request, Request::Rooms);
        assert_eq!(unit.req, None);
    }

    #[test]
    fn every_request_type_is_listed_in_types() {
        let samples = [
            r#"{"type":"hello","version":1}"#,
            r#"{"type":"register","user":"a","password":"b"}"#,
            r#"{"type":"login","user":"a","password":"b"}"#,
            r#"{"type":"resume","user":"a","token":"b"}"#,
            r#"{"type":"logout"}"#,
            r#"{"type":"change_password","old":"a","new":"b"}"#,
            r#"{"type":"kick","user":"a"}"#,
            r#"{"type":"ban","user":"a","reason":"r","minutes":5}"#,
            r#"{"type":"unban","user":"a"}"#,
            r#"{"type":"mute","room":"a","user":"b"}"#,
            r#"{"type":"unmute","room":"a","user":"b"}"#,
            r#"{"type":"bans"}"#,
            r#"{"type":"rooms"}"#,
            r#"{"type":"create_room","room":"a"}"#,
            r#"{"type":"join","room":"a"}"#,
            r#"{"type":"leave","room":"a"}"#,
            r#"{"type":"topic","room":"a","topic":"t"}"#,
            r#"{"type":"who","room":"a"}"#,
            r#"{"type":"delete_room","room":"a"}"#,
            r#"{"type":"say","room":"a","body":"b"}"#,
            r#"{"type":"dm","to":"a","body":"b"}"#,
            r#"{"type":"edit","id":1,"body":"b"}"#,
            r#"{"type":"delete","id":1}"#,
            r#"{"type":"react","id":1,"emoji":"+1"}"#,
            r#"{"type":"unreact","id":1,"emoji":"+1"}"#,
            r#"{"type":"search","query":"a"}"#,
            r#"{"type":"history","room":"a"}"#,
            r#"{"type":"upload","room":"a","name":"x.png","size":3}"#,
            r#"{"type":"upload_end","upload":1,"sha256":"00"}"#,
            r#"{"type":"upload_cancel","upload":1}"#,
            r#"{"type":"download","file":1}"#,
            r#"{"type":"files","room":"a"}"#,
            r#"{"type":"mark_read","room":"a","id":5}"#,
            r#"{"type":"away","message":"lunch"}"#,
            r#"{"type":"stats"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"quit"}"#,
        ];
        assert_eq!(samples.len(), Request::TYPES.len());
        for (sample, name) in samples.iter().zip(Request::TYPES) {
            parse_request(sample.as_bytes()).unwrap();
            assert!(sample.contains(&format!("\"{name}\"")), "{sample}");
        }
    }

    #[test]
    fn malformed_requests_get_typed_errors_with_their_id() {
        let err = parse_request(br#"{"req":9,"type":"say","room":"x"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert_eq!(err.req, Some(9));
        let err = parse_request(br#"{"req":4,"type":"launch_missiles"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownRequest);
        assert_eq!(err.req, Some(4));
        let err = parse_request(b"\xff\xfe not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert_eq!(err.req, None);
        let err = parse_request(br#"{"type":"say","room":7,"body":"x"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }

    #[test]
    fn unknown_server_messages_decode_as_unknown() {
        let frame: ServerFrame =
            serde_json::from_str(r#"{"type":"from_the_future","x":1}"#).unwrap();
        assert_eq!(frame.msg, ServerMsg::Unknown);
    }

    #[test]
    fn message_event_shape_is_stable() {
        let ev = ServerFrame::event(ServerMsg::Message(Box::new(ChatMessage {
            id: 5,
            room: Some("general".into()),
            to: None,
            from: "alice".into(),
            body: "hi".into(),
            ts: 10,
            file: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            kind: Default::default(),
            notice: false,
        })));
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"type":"message","id":5,"room":"general","from":"alice","body":"hi","ts":10}"#
        );
        assert_eq!(ErrorCode::NoSuchRoom.to_string(), "no_such_room");
    }
}
