//! The storage contract: everything confab keeps, behind one trait.
//!
//! [`Store`] is what the server, the admin tool and the tests ask of a
//! database: accounts, rooms and membership, messages and history, direct
//! messages and their delivery cursors, files, read state, resume tokens,
//! admins, bans, mutes and the audit log. A backend implements it in a
//! module of its own, which owns all of its SQL: [`sqlite`] (the embedded
//! default) and [`postgres`] (several nodes sharing one database). The contract test suite
//! (`tests/store_contract.rs`) runs every backend through the same cases.
//!
//! **Invariant:** no SQL exists outside the backend modules under
//! `src/store/`; callers see typed records and [`StoreError`].
//!
//! Chat messages are written in batches ([`Store::insert_messages`]) by the
//! server's single message-writer thread; everything else (accounts, rooms,
//! membership) is written by session threads directly, which is rare.

/// What every message query selects, in the order each backend's `chat_message` reads
/// it: the message, its room or recipient, sender, file, the message it
/// answers (with the start of its text: protocol::REPLY_EXCERPT
/// characters), and its edit and deletion state.
macro_rules! message_columns {
    () => {
        "SELECT m.id, r.name, ru.name, s.name, m.body, m.created_at,
                f.id, f.name, f.mime, f.size, f.sha256,
                m.reply_to, ps.name, substr(p.body, 1, 100), p.deleted_at IS NOT NULL,
                m.edited_at, m.deleted_at IS NOT NULL, m.kind "
    };
}

/// The joins [`message_columns`] needs, each by primary key.
macro_rules! message_joins {
    () => {
        " JOIN users s ON s.id = m.sender_id
          LEFT JOIN rooms r ON r.id = m.room_id
          LEFT JOIN users ru ON ru.id = m.recipient_id
          LEFT JOIN files f ON f.id = m.file_id
          LEFT JOIN messages p ON p.id = m.reply_to
          LEFT JOIN users ps ON ps.id = p.sender_id "
    };
}

pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::protocol::{ChatMessage, FileInfo, MessageKind, SharedFile, Unread};
use crate::search::Terms;
use r2d2_sqlite::rusqlite;
use std::path::Path;
use std::sync::Arc;

/// A user's id in the database.
pub type UserId = i64;
/// A room's id in the database.
pub type RoomId = i64;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (or could not be reached). Shown with
    /// its causes: "error performing TLS handshake" alone does not say
    /// that the certificate could not be verified.
    #[error("database error: {}", with_causes(.0))]
    Postgres(#[from] r2d2_postgres::postgres::Error),
    /// TLS to the database could not be set up.
    #[error("database TLS error: {0}")]
    Tls(String),
    /// The system's random source failed.
    #[error("no random numbers: {0}")]
    Random(String),
    /// No connection could be had from the pool in time.
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    /// A user with that name exists already.
    #[error("user name is taken")]
    UserExists,
    /// A room with that name exists already.
    #[error("room name is taken")]
    RoomExists,
    /// A file's content could not be read or written.
    #[error("file content: {0}")]
    File(String),
    /// Asked of SQLite for something only a database shared by several
    /// nodes does.
    #[error("{0} needs a database shared by several nodes (PostgreSQL)")]
    SingleNode(&'static str),
    /// The database file was made by a newer confab.
    #[error("database schema version {found} is newer than this server's {supported}")]
    TooNew {
        /// `user_version` in the file.
        found: u32,
        /// The newest this build knows.
        supported: u32,
    },
}

/// An error and its chain of causes, `a: b: c`.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A user row as login needs it.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Row id.
    pub id: UserId,
    /// Canonical name.
    pub name: String,
    /// Stored password hash string.
    pub password: String,
}

/// A room with its members, as the server loads it at start.
#[derive(Debug, Clone)]
pub struct RoomRecord {
    /// Row id.
    pub id: RoomId,
    /// Name.
    pub name: String,
    /// Topic.
    pub topic: String,
    /// Members: id and name.
    pub members: Vec<(UserId, String)>,
}

/// A conversation and when its newest message (in some span) was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationTime {
    /// The room, or ...
    pub room: Option<String>,
    /// ... the other person of a direct conversation.
    pub with: Option<String>,
    /// When (ms since the epoch).
    pub newest: i64,
}

/// The rooms and direct conversations from the two queries every backend
/// runs (`(name, time of the newest message)`), put in order: those whose
/// time is strictly between `after` and `before`, oldest first, at most
/// `limit`.
pub(crate) fn conversations_in_span(
    rooms: Vec<(String, Option<i64>)>,
    peers: Vec<(String, Option<i64>)>,
    after: i64,
    before: i64,
    limit: usize,
) -> Vec<ConversationTime> {
    let mut all: Vec<ConversationTime> = rooms
        .into_iter()
        .map(|(name, t)| (Some(name), None, t))
        .chain(peers.into_iter().map(|(name, t)| (None, Some(name), t)))
        .filter_map(|(room, with, t)| {
            t.filter(|t| *t > after && *t < before)
                .map(|newest| ConversationTime { room, with, newest })
        })
        .collect();
    all.sort_by_key(|c| c.newest);
    all.truncate(limit);
    all
}

/// Where a new message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A room.
    Room(RoomId),
    /// A user (direct message).
    User(UserId),
}

/// A message to insert.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Sender's id.
    pub sender: UserId,
    /// Room or recipient.
    pub to: Destination,
    /// Text.
    pub body: String,
    /// Server time, ms since the epoch.
    pub ts: i64,
    /// The shared file this message announces.
    pub file_id: Option<i64>,
    /// The message this one answers (already checked to be in the same
    /// room or conversation).
    pub reply_to: Option<i64>,
    /// Chat, or a topic change.
    pub kind: crate::protocol::MessageKind,
    /// A notice (IRC's NOTICE): stored as such, shown as such.
    pub notice: bool,
}

/// A stored message as the checks of edit, delete, react and reply see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Row id.
    pub id: i64,
    /// Room or recipient.
    pub to: Destination,
    /// Author.
    pub sender: UserId,
    /// Author's name.
    pub sender_name: String,
    /// Room name or recipient name.
    pub to_name: String,
    /// Text (empty once deleted).
    pub body: String,
    /// When it was sent (ms since the epoch).
    pub created_at: i64,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Chat, or a topic change kept in history.
    pub kind: crate::protocol::MessageKind,
}

/// Which page of a conversation's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages with an id below this one (`None`: the newest of
    /// all); `more` says whether older ones exist.
    Before(Option<i64>),
    /// The oldest messages with an id above this one; `more` says whether
    /// newer ones exist.
    After(i64),
}

/// What [`Store::react`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reacted {
    /// Added; this many users now give this reaction.
    Added(u32),
    /// The user had given it already; this many give it.
    Already(u32),
    /// The message carries as many different reactions as allowed.
    Full,
}

/// A search, with names already resolved and checked by the caller.
#[derive(Debug, Clone)]
pub struct SearchSpec {
    /// Who searches: only rooms they are in and their own direct messages
    /// are searched.
    pub viewer: UserId,
    /// Words wanted and left out.
    pub terms: Terms,
    /// Only this room.
    pub room: Option<RoomId>,
    /// Only the direct conversation with this user.
    pub peer: Option<UserId>,
    /// Only messages by one of these users (empty: anyone).
    pub from: Vec<UserId>,
    /// Only messages sent at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only messages sent before this time.
    pub until_ms: Option<i64>,
    /// Only messages with an id below this one (the next page).
    pub before_id: Option<i64>,
    /// Most results.
    pub limit: u32,
}

/// A file to record once its content is stored and verified.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Hex SHA-256.
    pub sha256: String,
    /// Sanitised name.
    pub name: String,
    /// MIME type from the content.
    pub mime: String,
    /// Size, bytes.
    pub size: u64,
    /// Uploader.
    pub uploader: UserId,
    /// Room or recipient.
    pub to: Destination,
}

/// A stored file with who may see it.
#[derive(Debug, Clone)]
pub struct FileRecord {
    /// What clients see.
    pub info: FileInfo,
    /// Uploader.
    pub uploader: UserId,
    /// Room or recipient.
    pub to: Destination,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A ban as the server's ban watch sees it.
#[derive(Debug, Clone)]
pub struct NewBan {
    /// The banned user.
    pub user_id: UserId,
    /// Why.
    pub reason: String,
    /// Who banned them.
    pub by: String,
    /// When the ban was made (ms since the epoch).
    pub created_at: i64,
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Who is banned.
    pub user: String,
    /// Why.
    pub reason: String,
    /// By whom.
    pub by: String,
    /// Until when (ms since the epoch); `None` for good.
    pub until: Option<i64>,
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When (ms since the epoch).
    pub at: i64,
    /// The user concerned, if any.
    pub user: Option<String>,
    /// The client's address, if any.
    pub ip: Option<String>,
    /// What happened (`login`, `ban`, ...).
    pub action: String,
    /// Details.
    pub detail: String,
}

/// A committed message as a node that did not store it delivers it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The event's content (no reactions: it is new).
    pub message: ChatMessage,
    /// Author.
    pub sender: UserId,
    /// Room or recipient.
    pub to: Destination,
}

/// Identifies one running server process among those sharing a database
/// (random, new at every start).
pub type NodeId = i64;

/// The newest committed ids of the two gap-free logs several nodes share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heads {
    /// Newest message id.
    pub messages: i64,
    /// Newest cluster event id.
    pub events: i64,
}

/// One event a node shared with the others (see `server::cluster`).
#[derive(Debug, Clone)]
pub struct ClusterEvent {
    /// Gap-free, in commit order.
    pub id: i64,
    /// The node that shared it.
    pub node: NodeId,
    /// The event, as JSON.
    pub body: String,
}

/// What a node's heartbeat found.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Whether the node was registered already (`false` at its first beat,
    /// or after another node took it for dead).
    pub known: bool,
    /// Nodes silent for too long, removed by this beat: their users are
    /// offline.
    pub gone: Vec<NodeId>,
}

/// A watch on messages and events committed by any node sharing the
/// database.
pub trait MessageWatch: Send {
    /// Waits up to `timeout` for a commit to be announced (returning at
    /// once if one was), then returns the newest committed message and
    /// event ids: every id up to them is committed or never existed.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<Heads, StoreError>;
}

/// A shared handle on whichever backend the server was configured with.
pub type SharedStore = Arc<dyn Store>;

/// Opens the database at `location` (creating and migrating it as needed)
/// with a pool of `pool_size` connections: a `postgres://` or
/// `postgresql://` URL is PostgreSQL, anything else an SQLite file.
pub fn open(location: &Path, pool_size: u32) -> Result<SharedStore, StoreError> {
    match location.to_str().filter(|s| postgres::is_url(s)) {
        Some(url) => Ok(Arc::new(PostgresStore::open(url, pool_size)?)),
        None => Ok(Arc::new(SqliteStore::open(location, pool_size)?)),
    }
}

/// Whether `location` names a PostgreSQL database (not a file).
pub fn is_postgres(location: &Path) -> bool {
    location.to_str().is_some_and(postgres::is_url)
}

/// `location` as logs and errors may show it (a URL's password hidden).
pub fn describe(location: &Path) -> String {
    match location.to_str() {
        Some(s) if postgres::is_url(s) => postgres::redacted(s),
        _ => location.display().to_string(),
    }
}

/// The storage contract. Every method is one step that either happens
/// completely or not at all; none holds a lock of the caller's.
pub trait Store: Send + Sync {
    /// Makes the database complete on its own, e.g. copies SQLite's
    /// write-ahead log into the main file (done at shutdown).
    fn checkpoint(&self) -> Result<(), StoreError>;

    // --- Accounts, rooms, membership and messages ---
    /// Creates a user and makes them a member of `general`.
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId, StoreError>;

    /// Looks a user up by name (case-insensitively).
    fn find_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;

    /// All rooms with their members, for the server's in-memory view.
    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError>;

    /// Creates a room with `creator` as its first member.
    fn create_room(&self, name: &str, topic: &str, creator: UserId) -> Result<RoomId, StoreError>;

    /// How many existing rooms `user` created.
    fn rooms_created_by(&self, user: UserId) -> Result<u32, StoreError>;

    /// Who created a room (`None` for built-in rooms and unknown ids).
    fn room_creator(&self, room: RoomId) -> Result<Option<UserId>, StoreError>;

    /// Deletes a room for good with its memberships, read markers, mutes,
    /// messages and file records, in one transaction. Returns the SHA-256
    /// of each file content that no file record uses any more, for the
    /// caller to remove from disk.
    fn delete_room(&self, room: RoomId) -> Result<Vec<String>, StoreError>;

    /// Records that `user` joined `room` (no-op if already a member).
    fn add_member(&self, room: RoomId, user: UserId) -> Result<(), StoreError>;

    /// Records that `user` left `room`.
    fn remove_member(&self, room: RoomId, user: UserId) -> Result<(), StoreError>;

    /// The names of the rooms `user` is in, in the order they joined them
    /// (then by name): the order every session of theirs lists them in.
    fn rooms_in_join_order(&self, user: UserId) -> Result<Vec<String>, StoreError>;

    /// Sets a room's topic.
    fn set_topic(&self, room: RoomId, topic: &str) -> Result<(), StoreError>;

    /// Inserts a batch of messages in one transaction and returns their new
    /// ids in input order. One commit for the whole batch is what makes the
    /// message writer fast (group commit).
    fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<i64>, StoreError>;

    /// Committed messages with `after < id <= upto`, oldest first, at most
    /// `limit` (for delivery by a node that did not store them).
    fn messages_between(
        &self,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// A watch on commits by every node sharing this database (`None`
    /// where only one server can use it, as with SQLite).
    fn message_watch(&self) -> Result<Option<Box<dyn MessageWatch>>, StoreError>;

    /// Marks direct messages up to `id` as delivered to `user`.
    fn advance_dm_cursor(&self, user: UserId, id: i64) -> Result<(), StoreError>;

    /// Direct messages to `user` not yet delivered to any of their
    /// sessions, oldest first (at most `limit`), deleted ones left out.
    fn undelivered_dms(&self, user: UserId, limit: u32) -> Result<Vec<ChatMessage>, StoreError>;

    /// A page of a room's history (see [`Page`]), oldest first, as `viewer`
    /// sees it (their own reactions marked), and whether more exist beyond
    /// the page. Deleted messages are tombstones; edited ones carry their
    /// current text.
    fn room_history(
        &self,
        room: RoomId,
        page: Page,
        limit: u32,
        viewer: UserId,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError>;

    /// A page of the direct messages between `a` (the viewer) and `b`, like
    /// [`Store::room_history`].
    fn dm_history(
        &self,
        a: UserId,
        b: UserId,
        page: Page,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError>;

    // --- Finding and fixing messages ---
    /// One message, deleted or not.
    fn message(&self, id: i64) -> Result<Option<MessageRecord>, StoreError>;

    /// Replaces a message's text (and its search index entry); with
    /// `keep_previous`, the text it had is kept in the edit history.
    fn edit_message(
        &self,
        id: i64,
        body: &str,
        at: i64,
        keep_previous: bool,
    ) -> Result<(), StoreError>;

    /// The earlier versions of a message (when it was replaced, the text
    /// before), oldest first.
    fn edit_history(&self, id: i64) -> Result<Vec<(i64, String)>, StoreError>;

    /// Deletes a message for everyone: its text (from the row and the
    /// search index), earlier versions, reactions and, for a file message,
    /// the file record, in one transaction; the row stays as a tombstone.
    /// Returns the SHA-256 of file content that no file record uses any
    /// more, for the caller to remove from disk.
    fn delete_message(&self, id: i64, at: i64) -> Result<Option<String>, StoreError>;

    /// Adds `user`'s reaction `emoji` to a message that carries fewer than
    /// `max_kinds` different reactions (or already this one).
    fn react(
        &self,
        id: i64,
        user: UserId,
        emoji: &str,
        max_kinds: u32,
    ) -> Result<Reacted, StoreError>;

    /// Takes `user`'s reaction back: `None` if they had not given it, else
    /// how many users still give it.
    fn unreact(&self, id: i64, user: UserId, emoji: &str) -> Result<Option<u32>, StoreError>;

    /// Adds up to `max` stored messages not yet in the search index to it,
    /// oldest first; returns how many. The message writer calls it in
    /// bulk (indexing row by row costs far more); `search` catches up
    /// first by itself.
    fn index_messages(&self, max: u32) -> Result<u32, StoreError>;

    /// Messages matching a search, newest first, as the viewer sees them,
    /// and whether more (older) matches exist. Never a deleted message,
    /// never one outside the viewer's rooms and direct conversations.
    fn search(&self, spec: &SearchSpec) -> Result<(Vec<ChatMessage>, bool), StoreError>;

    // --- Files ---
    /// Records a stored, verified file; returns its id.
    fn insert_file(&self, f: &NewFile) -> Result<i64, StoreError>;

    /// A file by id.
    fn find_file(&self, id: i64) -> Result<Option<FileRecord>, StoreError>;

    /// Whether a user is a member of a room (for download rights).
    fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StoreError>;

    /// The latest files of a room, newest first.
    fn room_files(&self, room: RoomId, limit: u32) -> Result<Vec<SharedFile>, StoreError>;

    /// The latest files exchanged between two users, newest first.
    fn dm_files(&self, a: UserId, b: UserId, limit: u32) -> Result<Vec<SharedFile>, StoreError>;

    // --- Read state ---
    /// Records that `user` read `room` up to `id` (never moves backwards).
    fn mark_room_read(&self, user: UserId, room: RoomId, id: i64) -> Result<(), StoreError>;

    /// Records that `user` read the conversation with `peer` up to `id`.
    fn mark_dm_read(&self, user: UserId, peer: UserId, id: i64) -> Result<(), StoreError>;

    /// Marks a room read up to its newest message, so that someone who just
    /// joined does not see its whole history as unread.
    fn mark_room_read_to_latest(&self, user: UserId, room: RoomId) -> Result<(), StoreError>;

    /// When the message `user` has read `place` up to was sent (ms since
    /// the epoch); `None` if they have read nothing there. (IRC's read
    /// markers are times.) `place` is a room, or the other user of a
    /// direct conversation.
    fn read_marker_time(&self, user: UserId, place: Destination)
    -> Result<Option<i64>, StoreError>;

    /// The newest message of `place` (a room, or `user`'s direct
    /// conversation with that user) sent at or before `at` (ms): an IRC
    /// read marker as confab's read position.
    fn message_at_or_before(
        &self,
        user: UserId,
        place: Destination,
        at: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// What `user` (named `name`) has not read: per room and per DM peer,
    /// how many messages and how many mention them. Only non-zero entries.
    fn unread(&self, user: UserId, name: &str) -> Result<Vec<Unread>, StoreError>;

    /// The rooms `user` is in and the people they exchanged direct
    /// messages with whose newest message was sent strictly between
    /// `after` and `before` (ms), with that time: oldest first, at most
    /// `limit` (IRC's `CHATHISTORY TARGETS`; a conversation with a newer
    /// message is not in an earlier span).
    fn conversations_between(
        &self,
        user: UserId,
        after: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<ConversationTime>, StoreError>;

    // --- Security: secrets, passwords, tokens, admins, bans, mutes, audit ---
    /// The secret that keys resume-token digests, made on first use.
    fn server_secret(&self) -> Result<Vec<u8>, StoreError>;

    /// Replaces a user's password hash.
    fn set_password(&self, user: UserId, hash: &str) -> Result<(), StoreError>;

    /// Stores a resume token's digest for `user`, valid until `expires_at`.
    fn add_token(&self, user: UserId, digest: &str, expires_at: i64) -> Result<(), StoreError>;

    /// The user a live token digest belongs to.
    fn token_user(&self, digest: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Revokes one token.
    fn revoke_token(&self, digest: &str) -> Result<(), StoreError>;

    /// Revokes every token of a user; returns how many.
    fn revoke_tokens(&self, user: UserId) -> Result<usize, StoreError>;

    /// Whether a user is an administrator.
    fn is_admin(&self, user: UserId) -> Result<bool, StoreError>;

    /// Grants or revokes administrator rights; `false` if no such user.
    fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError>;

    /// The ban in force on a user, if any.
    fn ban_of(&self, user: UserId) -> Result<Option<Ban>, StoreError>;

    /// Bans a user (replacing an earlier ban).
    fn ban(
        &self,
        user: UserId,
        reason: &str,
        by: &str,
        until: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Bans in force that were created at or after `since_ms`, oldest
    /// first.
    fn bans_created_since(&self, since_ms: i64) -> Result<Vec<NewBan>, StoreError>;

    /// Lifts a ban; `false` if there was none.
    fn unban(&self, user: UserId) -> Result<bool, StoreError>;

    /// Bans in force.
    fn bans(&self) -> Result<Vec<Ban>, StoreError>;

    /// Mutes a user in a room until `until` (`None`: until unmuted).
    fn mute(
        &self,
        room: RoomId,
        user: UserId,
        by: &str,
        until: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Lifts a mute; `false` if there was none.
    fn unmute(&self, room: RoomId, user: UserId) -> Result<bool, StoreError>;

    /// Whether a user is muted in a room now.
    fn is_muted(&self, room: RoomId, user: UserId) -> Result<bool, StoreError>;

    /// Every mute in force now: room, user, until when (`None`: until
    /// lifted).
    fn mutes_in_force(&self) -> Result<Vec<(RoomId, UserId, Option<i64>)>, StoreError>;

    /// Records an event in the audit table.
    fn audit(
        &self,
        user: Option<&str>,
        ip: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// The newest `limit` audit entries, newest first.
    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// The newest audit row's id (0 if none), to watch from.
    fn last_audit_id(&self) -> Result<i64, StoreError>;

    /// Audit rows with `action` after row `after`, as `(row id, user)`,
    /// oldest first.
    fn audit_after(
        &self,
        after: i64,
        action: &str,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError>;

    /// How many rooms a user is in.
    fn room_count(&self, user: UserId) -> Result<u32, StoreError>;

    // --- Several nodes (PostgreSQL; SQLite serves one node and answers
    // `SingleNode`) ---
    /// Appends events (JSON) shared by `node`, in order, with gap-free ids
    /// in commit order, and announces them to the other nodes.
    fn share_events(&self, node: NodeId, bodies: &[String]) -> Result<(), StoreError>;

    /// Shared events with `after < id <= upto`, oldest first, at most
    /// `limit`.
    fn events_between(
        &self,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<ClusterEvent>, StoreError>;

    /// Records that `node` is alive; removes (and returns) nodes silent for
    /// longer than `stale`, and forgets events older than an hour.
    fn heartbeat(&self, node: NodeId, stale: std::time::Duration) -> Result<Heartbeat, StoreError>;

    /// Keeps a file's content where every node can read it (no-op if it is
    /// there already).
    fn put_file_content(&self, sha256: &str, data: &[u8]) -> Result<(), StoreError>;

    /// A file's content kept by [`Store::put_file_content`].
    fn file_content(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Turns rows (one more than asked, to detect `more`; newest first for
/// [`Page::Before`], oldest first for [`Page::After`]) into an
/// oldest-first page.
pub(crate) fn paged(
    mut rows: Vec<ChatMessage>,
    limit: u32,
    page: Page,
) -> (Vec<ChatMessage>, bool) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if matches!(page, Page::Before(_)) {
        rows.reverse();
    }
    (rows, more)
}

/// `messages.kind` for a message kind: NULL for chat.
pub(crate) fn kind_column(kind: MessageKind, notice: bool) -> Option<&'static str> {
    match kind {
        MessageKind::Chat if notice => Some("notice"),
        MessageKind::Chat => None,
        MessageKind::Topic => Some("topic"),
    }
}

/// A message kind from `messages.kind` (an unknown value is chat), and
/// whether it is a notice.
pub(crate) fn kind_of(column: Option<String>) -> (MessageKind, bool) {
    match column.as_deref() {
        Some("topic") => (MessageKind::Topic, false),
        Some("notice") => (MessageKind::Chat, true),
        _ => (MessageKind::Chat, false),
    }
}

/// The conditions of a search that are the same SQL on every backend: who
/// may see a message (rooms the viewer is in, their own direct messages)
/// and the filters of `spec` other than words and paging. `int` binds an
/// integer parameter and returns its placeholder (`?3`, `$3`).
pub(crate) fn search_filters(spec: &SearchSpec, int: &mut dyn FnMut(i64) -> String) -> Vec<String> {
    let viewer = int(spec.viewer);
    let mut conds = vec![format!(
        "(m.room_id IN (SELECT room_id FROM room_members WHERE user_id = {viewer})
          OR m.recipient_id = {viewer} OR (m.recipient_id IS NOT NULL AND m.sender_id = {viewer}))"
    )];
    if let Some(room) = spec.room {
        conds.push(format!("m.room_id = {}", int(room)));
    }
    if let Some(peer) = spec.peer {
        let peer = int(peer);
        conds.push(format!(
            "((m.recipient_id = {viewer} AND m.sender_id = {peer})
              OR (m.recipient_id = {peer} AND m.sender_id = {viewer}))"
        ));
    }
    if !spec.from.is_empty() {
        let ids: Vec<String> = spec.from.iter().map(|&id| int(id)).collect();
        conds.push(format!("m.sender_id IN ({})", ids.join(", ")));
    }
    if let Some(t) = spec.since_ms {
        conds.push(format!("m.created_at >= {}", int(t)));
    }
    if let Some(t) = spec.until_ms {
        conds.push(format!("m.created_at < {}", int(t)));
    }
    conds
}
