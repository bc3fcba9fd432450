//! The SQLite backend of the storage contract: every SQL statement for
//! SQLite lives here.
//!
//! SQLite in WAL mode behind an r2d2 pool. `schema.sql` (compiled in) is
//! applied at open; numbered migrations in [`MIGRATIONS`] bring older
//! databases up to date, tracked by `PRAGMA user_version`. Per-connection
//! pragmas (foreign keys, busy timeout, synchronous) are set in the pool's
//! init hook because SQLite keeps them per connection. Concurrent writers
//! contend for one write lock; the busy timeout covers the rare writes of
//! session threads, and messages come from one writer thread.

use super::{
    AuditEntry, Ban, ClusterEvent, ConversationTime, Destination, FileRecord, Heartbeat,
    MessageRecord, MessageWatch, NewBan, NewFile, NewMessage, NodeId, Page, Reacted, RoomId,
    RoomRecord, SearchSpec, Store, StoreError, StoredMessage, UserId, UserRecord,
    conversations_in_span, kind_column, kind_of, now_ms, paged, search_filters,
};
use crate::protocol::{ChatMessage, FileInfo, ReactionCount, ReplyRef, SharedFile, Unread};
use r2d2_sqlite::SqliteConnectionManager;
use r2d2_sqlite::rusqlite::types::Value;
use r2d2_sqlite::rusqlite::{self, OptionalExtension, params, params_from_iter};
use std::path::Path;
use std::time::Duration;

/// The schema, applied at every open.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// Migrations for databases created by older versions: `(version, sql)`,
/// applied in order while `user_version < version`, before `SCHEMA`. A new
/// database is made from `SCHEMA` alone and gets the last version. Entries
/// hold what `CREATE TABLE IF NOT EXISTS` cannot express (new columns).
pub const MIGRATIONS: &[(u32, &str)] = &[
    (1, ""),
    // Files: the files table comes from SCHEMA; messages gain a column.
    (
        2,
        "ALTER TABLE messages ADD COLUMN file_id INTEGER REFERENCES files(id);",
    ),
    // Replies, edits, deletions; the search index (messages_fts, from
    // SCHEMA) is then built from the stored messages: see FTS_SINCE.
    (
        3,
        "ALTER TABLE messages ADD COLUMN reply_to INTEGER;
         ALTER TABLE messages ADD COLUMN edited_at INTEGER;
         ALTER TABLE messages ADD COLUMN deleted_at INTEGER;",
    ),
    // Bulk indexing: version 3 indexed each message by an insert trigger
    // (its whole table is indexed, so search_index, from SCHEMA, starts at
    // the newest id); the edit and delete triggers come back from SCHEMA
    // limited to indexed rows.
    (
        4,
        "DROP TRIGGER IF EXISTS messages_fts_insert;
         DROP TRIGGER IF EXISTS messages_fts_delete;
         DROP TRIGGER IF EXISTS messages_fts_update;",
    ),
    // Topic changes kept in history (kind 'topic').
    (5, "ALTER TABLE messages ADD COLUMN kind TEXT;"),
];

/// The version that added the search index: a database older than it has
/// its index built from its messages once SCHEMA has created the table.
const FTS_SINCE: u32 = 3;

/// How many messages one indexing transaction takes at most (a search
/// catching up after a long idle writer works in steps of this).
const INDEX_CHUNK: u32 = 10_000;

/// How long a connection waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// The queries on the login path, named so that a test can check their
// plans: none may scan the messages table (login must cost the same on a
// million messages as on none).

/// Direct messages to ?1 above its delivery cursor, oldest first (login).
const UNDELIVERED_DMS: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE m.recipient_id = ?1 AND m.deleted_at IS NULL
       AND m.id > (SELECT dm_cursor FROM users WHERE id = ?1)
     ORDER BY m.id LIMIT ?2"
);

/// Messages ?1 < id <= ?2, oldest first, with where they go and who sent
/// them (columns 18-20).
const MESSAGES_BETWEEN: &str = concat!(
    message_columns!(),
    ", m.room_id, m.recipient_id, m.sender_id FROM messages m",
    message_joins!(),
    "WHERE m.id > ?1 AND m.id <= ?2 ORDER BY m.id LIMIT ?3"
);

/// A page of room ?1 before id ?2, newest first (join, history).
const ROOM_HISTORY: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE m.room_id = ?1 AND m.id < ?2 ORDER BY m.id DESC LIMIT ?3"
);

/// A page of room ?1 after id ?2, oldest first (history around a result).
const ROOM_HISTORY_AFTER: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE m.room_id = ?1 AND m.id > ?2 ORDER BY m.id LIMIT ?3"
);

/// The direct messages between ?1 and ?2 before id ?3, newest first.
const DM_HISTORY: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE ((m.recipient_id = ?1 AND m.sender_id = ?2)
         OR (m.recipient_id = ?2 AND m.sender_id = ?1))
       AND m.id < ?3
     ORDER BY m.id DESC LIMIT ?4"
);

/// The direct messages between ?1 and ?2 after id ?3, oldest first.
const DM_HISTORY_AFTER: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE ((m.recipient_id = ?1 AND m.sender_id = ?2)
         OR (m.recipient_id = ?2 AND m.sender_id = ?1))
       AND m.id > ?3
     ORDER BY m.id LIMIT ?4"
);

/// The reactions on message ?1, in the order first given, and whether
/// user ?2 gave each.
const REACTIONS: &str = "SELECT emoji, count(*), max(user_id = ?2) FROM reactions
             WHERE message_id = ?1 GROUP BY emoji ORDER BY min(created_at), emoji";

/// Per room of user ?1: last read, unread count, newest id (login).
const UNREAD_ROOMS: &str = "SELECT r.id, r.name, coalesce(rr.last_read, 0),
                    (SELECT count(*) FROM messages m
                      WHERE m.room_id = r.id AND m.id > coalesce(rr.last_read, 0)
                        AND m.sender_id != ?1 AND m.deleted_at IS NULL),
                    (SELECT coalesce(max(m.id), 0) FROM messages m WHERE m.room_id = r.id)
             FROM room_members mem
             JOIN rooms r ON r.id = mem.room_id
             LEFT JOIN room_reads rr ON rr.user_id = mem.user_id AND rr.room_id = mem.room_id
             WHERE mem.user_id = ?1
             ORDER BY r.name";

/// Unread bodies of room ?1 after ?2 not by ?3 that may mention ?4 (login).
const MENTION_BODIES: &str = "SELECT body FROM messages
             WHERE room_id = ?1 AND id > ?2 AND sender_id != ?3 AND body LIKE '%' || ?4 || '%'
             ORDER BY id DESC LIMIT 1000";

/// Per sender of direct messages to ?1: last read, unread count, newest id (login).
const UNREAD_DMS: &str = "WITH RECURSIVE peers(id) AS (
                 SELECT (SELECT min(sender_id) FROM messages WHERE recipient_id = ?1)
                 UNION ALL
                 SELECT (SELECT min(sender_id) FROM messages
                          WHERE recipient_id = ?1 AND sender_id > peers.id)
                 FROM peers WHERE peers.id IS NOT NULL)
             SELECT s.name, coalesce(d.last_read, 0) AS lr,
                    (SELECT count(*) FROM messages m
                      WHERE m.recipient_id = ?1 AND m.sender_id = p.id
                        AND m.id > coalesce(d.last_read, 0) AND m.deleted_at IS NULL),
                    (SELECT max(m.id) FROM messages m
                      WHERE m.recipient_id = ?1 AND m.sender_id = p.id) AS newest
             FROM peers p
             JOIN users s ON s.id = p.id
             LEFT JOIN dm_reads d ON d.user_id = ?1 AND d.peer_id = p.id
             WHERE p.id IS NOT NULL AND newest > lr
             ORDER BY s.name";

/// The rooms a user is in, with the time of their newest message.
const ROOMS_NEWEST: &str = "SELECT r.name,
        (SELECT m.created_at FROM messages m
          WHERE m.room_id = rm.room_id AND m.deleted_at IS NULL
          ORDER BY m.id DESC LIMIT 1)
     FROM room_members rm JOIN rooms r ON r.id = rm.room_id
     WHERE rm.user_id = ?1";

/// The people a user exchanged direct messages with (those who wrote to
/// them, by hopping through the (recipient, sender, id) index, and those
/// they wrote to, among everyone who ever received one), with the time
/// of the newest message either way.
const PEERS_NEWEST: &str = "WITH RECURSIVE
     senders(id) AS (
       SELECT (SELECT min(sender_id) FROM messages WHERE recipient_id = ?1)
       UNION ALL
       SELECT (SELECT min(sender_id) FROM messages
                WHERE recipient_id = ?1 AND sender_id > senders.id)
       FROM senders WHERE senders.id IS NOT NULL),
     recipients(id) AS (
       SELECT (SELECT min(recipient_id) FROM messages WHERE recipient_id IS NOT NULL)
       UNION ALL
       SELECT (SELECT min(recipient_id) FROM messages WHERE recipient_id > recipients.id)
       FROM recipients WHERE recipients.id IS NOT NULL),
     peers(id) AS (
       SELECT id FROM senders WHERE id IS NOT NULL
       UNION
       SELECT id FROM recipients WHERE id IS NOT NULL AND EXISTS
         (SELECT 1 FROM messages WHERE recipient_id = recipients.id AND sender_id = ?1))
     SELECT u.name, max(
        coalesce((SELECT m.created_at FROM messages m
                   WHERE m.recipient_id = ?1 AND m.sender_id = p.id
                     AND m.deleted_at IS NULL
                   ORDER BY m.id DESC LIMIT 1), 0),
        coalesce((SELECT m.created_at FROM messages m
                   WHERE m.recipient_id = p.id AND m.sender_id = ?1
                     AND m.deleted_at IS NULL
                   ORDER BY m.id DESC LIMIT 1), 0))
     FROM peers p JOIN users u ON u.id = p.id";

/// The SQLite database behind an r2d2 pool; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn map_unique(err: rusqlite::Error, unique: StoreError) -> StoreError {
    match err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            unique
        }
        other => StoreError::Sqlite(other),
    }
}

/// SQLite's busy handler for our connections: called with the number of
/// earlier calls when another connection holds the write lock; `true`
/// tries again. SQLite's own (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20,
/// 25, 25, 25, 50, 50 and then 100 ms between tries, so a message batch
/// that met a login's few-hundred-µs transaction waited milliseconds:
/// during a storm of registrations 190 sleeps of 100 ms were seen in 12 s.
/// This one waits 20 µs at first, doubling up to 1 ms, which keeps the
/// wait near the lock's real hold time and polls at most 1,000 times a
/// second per waiter; it gives up (`database is locked`) after about
/// [`BUSY_TIMEOUT`], as before.
fn wait_for_the_write_lock(tries: i32) -> bool {
    const RAMP: i32 = 6; // 20, 40, 80, 160, 320, 640 µs
    let waited_ms = if tries < RAMP {
        0
    } else {
        i64::from(tries - RAMP) + 2
    };
    if waited_ms > BUSY_TIMEOUT.as_millis() as i64 {
        return false;
    }
    let pause = if tries < RAMP {
        Duration::from_micros(20 << tries)
    } else {
        Duration::from_millis(1)
    };
    std::thread::sleep(pause);
    true
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies the schema
    /// and migrations, and builds a pool of `pool_size` connections.
    pub fn open(path: &Path, pool_size: u32) -> Result<SqliteStore, StoreError> {
        let manager = SqliteConnectionManager::file(path).with_init(|conn| {
            conn.busy_handler(Some(wait_for_the_write_lock))?;
            // NORMAL in WAL mode survives a process crash (kill -9); only an
            // OS crash can lose the last commits. FULL costs 10x in commits/s.
            // (journal_mode is a property of the file, set once in migrate:
            // setting it here on every new connection could meet a writer's
            // lock and fail the connection.)
            conn.set_prepared_statement_cache_capacity(64);
            // secure_delete: the text of a deleted or edited message is
            // overwritten in the file, not just unlinked.
            conn.execute_batch(
                "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON;",
            )
        });
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(2))
            .connection_timeout(Duration::from_secs(10))
            // A local file's connection does not go stale; r2d2_sqlite's
            // check (parsing and running "SELECT 1" at every checkout) was
            // a third of a session thread's time in `confab-bench store`.
            .test_on_check_out(false)
            .build(manager)?;
        let store = SqliteStore { pool };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get()?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let supported = MIGRATIONS.last().map_or(0, |m| m.0);
        if found > supported {
            return Err(StoreError::TooNew { found, supported });
        }
        let fresh: bool = tx
            .prepare_cached(
                "SELECT count(*) = 0 FROM sqlite_master WHERE type = 'table' AND name = 'users'",
            )?
            .query_row([], |r| r.get(0))?;
        if !fresh {
            for (version, sql) in MIGRATIONS {
                if *version > found {
                    tx.execute_batch(sql)?;
                }
            }
        }
        tx.execute_batch(SCHEMA)?;
        if !fresh && found < FTS_SINCE {
            tx.execute_batch("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")?;
        }
        tx.pragma_update(None, "user_version", supported)?;
        tx.commit()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    // --- Accounts, rooms, membership and messages ---

    fn checkpoint(&self) -> Result<(), StoreError> {
        self.pool
            .get()?
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        tx.prepare_cached("INSERT INTO users (name, password, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![name, password_hash, now])
            .map_err(|e| map_unique(e, StoreError::UserExists))?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT OR IGNORE INTO room_members (room_id, user_id, joined_at)
             SELECT id, ?1, ?2 FROM rooms WHERE name = 'general'",
        )?
        .execute(params![id, now])?;
        // A newcomer has read nothing, but owes nothing either: general's
        // history before they arrived is not "unread".
        tx.prepare_cached(
            "INSERT OR IGNORE INTO room_reads (user_id, room_id, last_read)
             SELECT ?1, r.id, coalesce((SELECT max(m.id) FROM messages m WHERE m.room_id = r.id), 0)
             FROM rooms r WHERE r.name = 'general'",
        )?
        .execute(params![id])?;
        tx.commit()?;
        Ok(id)
    }

    fn find_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached("SELECT id, name, password FROM users WHERE name = ?1")?
            .query_row([name], |r| {
                Ok(UserRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    password: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let conn = self.pool.get()?;
        let mut rooms: Vec<RoomRecord> = conn
            .prepare("SELECT id, name, topic FROM rooms ORDER BY id")?
            .query_map([], |r| {
                Ok(RoomRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    topic: r.get(2)?,
                    members: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT m.room_id, u.id, u.name FROM room_members m JOIN users u ON u.id = m.user_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let room_id: RoomId = row.get(0)?;
            if let Some(room) = rooms.iter_mut().find(|r| r.id == room_id) {
                room.members.push((row.get(1)?, row.get(2)?));
            }
        }
        Ok(rooms)
    }

    fn create_room(&self, name: &str, topic: &str, creator: UserId) -> Result<RoomId, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        tx.prepare_cached(
            "INSERT INTO rooms (name, topic, created_by, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![name, topic, creator, now])
        .map_err(|e| map_unique(e, StoreError::RoomExists))?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, creator, now])?;
        tx.commit()?;
        Ok(id)
    }

    fn rooms_created_by(&self, user: UserId) -> Result<u32, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("SELECT count(*) FROM rooms WHERE created_by = ?1")?
            .query_row([user], |r| r.get(0))?)
    }

    fn room_creator(&self, room: RoomId) -> Result<Option<UserId>, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("SELECT created_by FROM rooms WHERE id = ?1")?
            .query_row([room], |r| r.get(0))
            .optional()?
            .flatten())
    }

    fn delete_room(&self, room: RoomId) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let shas: Vec<String> = tx
            .prepare_cached("SELECT DISTINCT sha256 FROM files WHERE room_id = ?1")?
            .query_map([room], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        tx.prepare_cached("DELETE FROM messages WHERE room_id = ?1")?
            .execute([room])?;
        tx.prepare_cached("DELETE FROM files WHERE room_id = ?1")?
            .execute([room])?;
        tx.prepare_cached("DELETE FROM room_mutes WHERE room_id = ?1")?
            .execute([room])?;
        // Memberships and read markers go with the room (ON DELETE CASCADE).
        tx.prepare_cached("DELETE FROM rooms WHERE id = ?1")?
            .execute([room])?;
        let mut unused = Vec::new();
        {
            let mut still_used =
                tx.prepare_cached("SELECT count(*) > 0 FROM files WHERE sha256 = ?1")?;
            for sha in shas {
                if !still_used.query_row([&sha], |r| r.get::<_, bool>(0))? {
                    unused.push(sha);
                }
            }
        }
        tx.commit()?;
        Ok(unused)
    }

    fn add_member(&self, room: RoomId, user: UserId) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT OR IGNORE INTO room_members (room_id, user_id, joined_at)
             VALUES (?1, ?2, ?3)",
            )?
            .execute(params![room, user, now_ms()])?;
        Ok(())
    }

    fn remove_member(&self, room: RoomId, user: UserId) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached("DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2")?
            .execute(params![room, user])?;
        Ok(())
    }

    fn rooms_in_join_order(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached(
                "SELECT r.name FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = ?1 ORDER BY m.joined_at, r.name",
            )?
            .query_map([user], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn set_topic(&self, room: RoomId, topic: &str) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached("UPDATE rooms SET topic = ?2 WHERE id = ?1")?
            .execute(params![room, topic])?;
        Ok(())
    }

    fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(batch.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO messages
                 (room_id, recipient_id, sender_id, body, created_at, file_id, reply_to, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for m in batch {
                let (room, user) = match m.to {
                    Destination::Room(r) => (Some(r), None),
                    Destination::User(u) => (None, Some(u)),
                };
                stmt.execute(params![
                    room,
                    user,
                    m.sender,
                    m.body,
                    m.ts,
                    m.file_id,
                    m.reply_to,
                    kind_column(m.kind, m.notice)
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    fn messages_between(
        &self,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(MESSAGES_BETWEEN)?;
        let rows = stmt.query_map(params![after, upto, limit], |r| {
            let room: Option<RoomId> = r.get(18)?;
            Ok(StoredMessage {
                message: chat_message(r)?,
                to: match room {
                    Some(room) => Destination::Room(room),
                    None => Destination::User(r.get::<_, Option<UserId>>(19)?.unwrap_or(0)),
                },
                sender: r.get(20)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn message_watch(&self) -> Result<Option<Box<dyn MessageWatch>>, StoreError> {
        // One server per SQLite file: its own writer delivers everything.
        Ok(None)
    }

    fn advance_dm_cursor(&self, user: UserId, id: i64) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached("UPDATE users SET dm_cursor = max(dm_cursor, ?2) WHERE id = ?1")?
            .execute(params![user, id])?;
        Ok(())
    }

    fn undelivered_dms(&self, user: UserId, limit: u32) -> Result<Vec<ChatMessage>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(UNDELIVERED_DMS)?;
        let rows = stmt.query_map(params![user, limit], chat_message)?;
        let mut out: Vec<ChatMessage> = rows.collect::<Result<_, _>>()?;
        with_reactions(&conn, &mut out, user)?;
        Ok(out)
    }

    fn room_history(
        &self,
        room: RoomId,
        page: Page,
        limit: u32,
        viewer: UserId,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let conn = self.pool.get()?;
        let (sql, from) = match page {
            Page::Before(before) => (ROOM_HISTORY, before.unwrap_or(i64::MAX)),
            Page::After(after) => (ROOM_HISTORY_AFTER, after),
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![room, from, limit + 1], chat_message)?;
        let (mut messages, more) = paged(rows.collect::<Result<_, _>>()?, limit, page);
        with_reactions(&conn, &mut messages, viewer)?;
        Ok((messages, more))
    }

    fn dm_history(
        &self,
        a: UserId,
        b: UserId,
        page: Page,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let conn = self.pool.get()?;
        let (sql, from) = match page {
            Page::Before(before) => (DM_HISTORY, before.unwrap_or(i64::MAX)),
            Page::After(after) => (DM_HISTORY_AFTER, after),
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![a, b, from, limit + 1], chat_message)?;
        let (mut messages, more) = paged(rows.collect::<Result<_, _>>()?, limit, page);
        with_reactions(&conn, &mut messages, a)?;
        Ok((messages, more))
    }

    // --- Finding and fixing messages ---

    fn message(&self, id: i64) -> Result<Option<MessageRecord>, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached(
                "SELECT m.id, m.room_id, m.recipient_id, m.sender_id, s.name,
                        coalesce(r.name, ru.name), m.body, m.created_at, m.deleted_at IS NOT NULL,
                        m.kind
                 FROM messages m JOIN users s ON s.id = m.sender_id
                 LEFT JOIN rooms r ON r.id = m.room_id
                 LEFT JOIN users ru ON ru.id = m.recipient_id
                 WHERE m.id = ?1",
            )?
            .query_row([id], |r| {
                let room: Option<RoomId> = r.get(1)?;
                let user: Option<UserId> = r.get(2)?;
                Ok(MessageRecord {
                    id: r.get(0)?,
                    to: match (room, user) {
                        (Some(room), _) => Destination::Room(room),
                        (None, user) => Destination::User(user.unwrap_or(0)),
                    },
                    sender: r.get(3)?,
                    sender_name: r.get(4)?,
                    to_name: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    body: r.get(6)?,
                    created_at: r.get(7)?,
                    deleted: r.get(8)?,
                    kind: kind_of(r.get(9)?).0,
                })
            })
            .optional()?)
    }

    fn edit_message(
        &self,
        id: i64,
        body: &str,
        at: i64,
        keep_previous: bool,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if keep_previous {
            tx.prepare_cached(
                "INSERT INTO message_edits (message_id, edited_at, body)
                 SELECT id, ?2, body FROM messages WHERE id = ?1 AND deleted_at IS NULL",
            )?
            .execute(params![id, at])?;
        }
        // The update trigger re-indexes the new text in messages_fts.
        tx.prepare_cached(
            "UPDATE messages SET body = ?2, edited_at = ?3 WHERE id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![id, body, at])?;
        tx.commit()?;
        Ok(())
    }

    fn edit_history(&self, id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT edited_at, body FROM message_edits WHERE message_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_message(&self, id: i64, at: i64) -> Result<Option<String>, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let file: Option<(i64, String)> = tx
            .prepare_cached(
                "SELECT f.id, f.sha256 FROM messages m JOIN files f ON f.id = m.file_id
                 WHERE m.id = ?1",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // The update trigger takes the old text out of messages_fts.
        tx.prepare_cached(
            "UPDATE messages SET body = '', deleted_at = ?2, edited_at = NULL, file_id = NULL
             WHERE id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![id, at])?;
        tx.prepare_cached("DELETE FROM reactions WHERE message_id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM message_edits WHERE message_id = ?1")?
            .execute([id])?;
        let mut unused = None;
        if let Some((file_id, sha)) = file {
            tx.prepare_cached("DELETE FROM files WHERE id = ?1")?
                .execute([file_id])?;
            let still_used: bool = tx
                .prepare_cached("SELECT count(*) > 0 FROM files WHERE sha256 = ?1")?
                .query_row([&sha], |r| r.get(0))?;
            if !still_used {
                unused = Some(sha);
            }
        }
        tx.commit()?;
        Ok(unused)
    }

    fn react(
        &self,
        id: i64,
        user: UserId,
        emoji: &str,
        max_kinds: u32,
    ) -> Result<Reacted, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (count, mine): (u32, bool) = tx
            .prepare_cached(
                "SELECT count(*), coalesce(max(user_id = ?3), 0) FROM reactions
                 WHERE message_id = ?1 AND emoji = ?2",
            )?
            .query_row(params![id, emoji, user], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if mine {
            return Ok(Reacted::Already(count));
        }
        if count == 0 {
            let kinds: u32 = tx
                .prepare_cached(
                    "SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = ?1",
                )?
                .query_row([id], |r| r.get(0))?;
            if kinds >= max_kinds {
                return Ok(Reacted::Full);
            }
        }
        // Reactions are listed in the order first given, by time: a
        // reaction given within the same millisecond as the message's
        // newest one is stamped a millisecond after it, so ties cannot put
        // a later one first.
        tx.prepare_cached(
            "INSERT INTO reactions (message_id, emoji, user_id, created_at)
             VALUES (?1, ?2, ?3, max(?4, coalesce(
                 (SELECT max(created_at) + 1 FROM reactions WHERE message_id = ?1), 0)))",
        )?
        .execute(params![id, emoji, user, now_ms()])?;
        tx.commit()?;
        Ok(Reacted::Added(count + 1))
    }

    fn unreact(&self, id: i64, user: UserId, emoji: &str) -> Result<Option<u32>, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let removed = tx
            .prepare_cached(
                "DELETE FROM reactions WHERE message_id = ?1 AND emoji = ?2 AND user_id = ?3",
            )?
            .execute(params![id, emoji, user])?;
        if removed == 0 {
            return Ok(None);
        }
        let count: u32 = tx
            .prepare_cached("SELECT count(*) FROM reactions WHERE message_id = ?1 AND emoji = ?2")?
            .query_row(params![id, emoji], |r| r.get(0))?;
        tx.commit()?;
        Ok(Some(count))
    }

    fn index_messages(&self, max: u32) -> Result<u32, StoreError> {
        let mut conn = self.pool.get()?;
        // A read first: most calls (every search) find nothing to do and
        // need no write lock.
        let behind: bool = conn
            .prepare_cached(
                "SELECT coalesce(max(id), 0) > (SELECT indexed_through FROM search_index)
                 FROM messages",
            )?
            .query_row([], |r| r.get(0))?;
        if !behind {
            return Ok(0);
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let from: i64 =
            tx.query_row("SELECT indexed_through FROM search_index", [], |r| r.get(0))?;
        // The next `max` messages by id (ids have gaps where rooms were
        // deleted).
        let to: i64 = tx
            .prepare_cached(
                "SELECT coalesce(max(id), ?1) FROM
                 (SELECT id FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2)",
            )?
            .query_row(params![from, max], |r| r.get(0))?;
        let n = tx
            .prepare_cached(
                "INSERT INTO messages_fts (rowid, body)
                 SELECT id, body FROM messages WHERE id > ?1 AND id <= ?2",
            )?
            .execute(params![from, to])?;
        tx.prepare_cached("UPDATE search_index SET indexed_through = ?1")?
            .execute(params![to])?;
        tx.commit()?;
        Ok(n as u32)
    }

    fn search(&self, spec: &SearchSpec) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        // Every stored message is searchable: index what the writer has
        // not indexed yet.
        while self.index_messages(INDEX_CHUNK)? == INDEX_CHUNK {}
        let (sql, values) = search_sql(spec);
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(values), chat_message)?;
        let mut rows: Vec<ChatMessage> = rows.collect::<Result<_, _>>()?;
        let more = rows.len() > spec.limit as usize;
        rows.truncate(spec.limit as usize);
        with_reactions(&conn, &mut rows, spec.viewer)?;
        Ok((rows, more))
    }

    // --- Files ---

    fn insert_file(&self, f: &NewFile) -> Result<i64, StoreError> {
        let (room, user) = match f.to {
            Destination::Room(r) => (Some(r), None),
            Destination::User(u) => (None, Some(u)),
        };
        let conn = self.pool.get()?;
        conn.prepare_cached(
            "INSERT INTO files
             (sha256, name, mime, size, uploader_id, room_id, recipient_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            f.sha256,
            f.name,
            f.mime,
            f.size as i64,
            f.uploader,
            room,
            user,
            now_ms()
        ])?;
        Ok(conn.last_insert_rowid())
    }

    fn find_file(&self, id: i64) -> Result<Option<FileRecord>, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached(
                "SELECT id, name, mime, size, sha256, uploader_id, room_id, recipient_id
                 FROM files WHERE id = ?1",
            )?
            .query_row([id], |r| {
                let room: Option<RoomId> = r.get(6)?;
                let user: Option<UserId> = r.get(7)?;
                Ok(FileRecord {
                    info: FileInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        mime: r.get(2)?,
                        size: r.get::<_, i64>(3)? as u64,
                        sha256: r.get(4)?,
                    },
                    uploader: r.get(5)?,
                    to: match (room, user) {
                        (Some(room), _) => Destination::Room(room),
                        (None, Some(user)) => Destination::User(user),
                        (None, None) => Destination::User(0),
                    },
                })
            })
            .optional()?)
    }

    fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached(
                "SELECT count(*) > 0 FROM room_members WHERE room_id = ?1 AND user_id = ?2",
            )?
            .query_row(params![room, user], |r| r.get(0))?)
    }

    fn room_files(&self, room: RoomId, limit: u32) -> Result<Vec<SharedFile>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT f.id, f.name, f.mime, f.size, f.sha256, u.name, f.created_at
             FROM files f JOIN users u ON u.id = f.uploader_id
             WHERE f.room_id = ?1 ORDER BY f.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![room, limit], shared_file)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn dm_files(&self, a: UserId, b: UserId, limit: u32) -> Result<Vec<SharedFile>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT f.id, f.name, f.mime, f.size, f.sha256, u.name, f.created_at
             FROM files f JOIN users u ON u.id = f.uploader_id
             WHERE (f.uploader_id = ?1 AND f.recipient_id = ?2)
                OR (f.uploader_id = ?2 AND f.recipient_id = ?1)
             ORDER BY f.id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![a, b, limit], shared_file)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- Read state ---

    fn mark_room_read(&self, user: UserId, room: RoomId, id: i64) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT INTO room_reads (user_id, room_id, last_read)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, room_id)
             DO UPDATE SET last_read = max(last_read, excluded.last_read)",
            )?
            .execute(params![user, room, id])?;
        Ok(())
    }

    fn mark_dm_read(&self, user: UserId, peer: UserId, id: i64) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT INTO dm_reads (user_id, peer_id, last_read)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, peer_id)
             DO UPDATE SET last_read = max(last_read, excluded.last_read)",
            )?
            .execute(params![user, peer, id])?;
        Ok(())
    }

    fn mark_room_read_to_latest(&self, user: UserId, room: RoomId) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT INTO room_reads (user_id, room_id, last_read)
             SELECT ?1, ?2, coalesce(max(id), 0) FROM messages WHERE room_id = ?2
             ON CONFLICT (user_id, room_id)
             DO UPDATE SET last_read = max(last_read, excluded.last_read)",
            )?
            .execute(params![user, room])?;
        Ok(())
    }

    fn read_marker_time(
        &self,
        user: UserId,
        place: Destination,
    ) -> Result<Option<i64>, StoreError> {
        let (sql, other) = match place {
            Destination::Room(room) => (
                "SELECT m.created_at FROM room_reads r JOIN messages m ON m.id = r.last_read
                 WHERE r.user_id = ?1 AND r.room_id = ?2",
                room,
            ),
            Destination::User(peer) => (
                "SELECT m.created_at FROM dm_reads r JOIN messages m ON m.id = r.last_read
                 WHERE r.user_id = ?1 AND r.peer_id = ?2",
                peer,
            ),
        };
        Ok(self
            .pool
            .get()?
            .prepare_cached(sql)?
            .query_row(params![user, other], |r| r.get(0))
            .optional()?)
    }

    fn message_at_or_before(
        &self,
        user: UserId,
        place: Destination,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        // Newest first through the (room, id) or (recipient, sender, id)
        // index, stopping at the first message old enough: a read marker
        // is usually recent, so few rows are read.
        let conn = self.pool.get()?;
        let id: Option<i64> = match place {
            Destination::Room(room) => conn
                .prepare_cached(
                    "SELECT id FROM messages WHERE room_id = ?1 AND created_at <= ?2
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![room, at], |r| r.get(0))
                .optional()?,
            Destination::User(peer) => conn
                .prepare_cached(
                    "SELECT max(x) FROM (
                       SELECT (SELECT id FROM messages
                               WHERE recipient_id = ?1 AND sender_id = ?2 AND created_at <= ?3
                               ORDER BY id DESC LIMIT 1) AS x
                       UNION ALL
                       SELECT (SELECT id FROM messages
                               WHERE recipient_id = ?2 AND sender_id = ?1 AND created_at <= ?3
                               ORDER BY id DESC LIMIT 1))",
                )?
                .query_row(params![user, peer, at], |r| r.get(0))?,
        };
        Ok(id)
    }

    fn conversations_between(
        &self,
        user: UserId,
        after: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<ConversationTime>, StoreError> {
        let conn = self.pool.get()?;
        let rooms = conn
            .prepare_cached(ROOMS_NEWEST)?
            .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let peers = conn
            .prepare_cached(PEERS_NEWEST)?
            .query_map([user], |r| {
                Ok((r.get(0)?, Some(r.get::<_, i64>(1)?).filter(|t| *t > 0)))
            })?
            .collect::<Result<_, _>>()?;
        Ok(conversations_in_span(rooms, peers, after, before, limit))
    }

    fn unread(&self, user: UserId, name: &str) -> Result<Vec<Unread>, StoreError> {
        let conn = self.pool.get()?;
        let mut out = Vec::new();
        // Rooms: count in SQL; mentions need the word-boundary matcher, so
        // fetch candidate bodies (LIKE is a cheap pre-filter) and check.
        let mut rooms = conn.prepare_cached(UNREAD_ROOMS)?;
        let mut mention_bodies = conn.prepare_cached(MENTION_BODIES)?;
        let room_rows: Vec<(RoomId, String, i64, u32, i64)> = rooms
            .query_map([user], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        for (room_id, room, last_read, count, newest) in room_rows {
            if count == 0 {
                continue;
            }
            let bodies: Vec<String> = mention_bodies
                .query_map(params![room_id, last_read, user, name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mentions = bodies
                .iter()
                .filter(|b| crate::mention::mentions(b, name))
                .count() as u32;
            out.push(Unread {
                room: Some(room),
                with: None,
                count,
                mentions,
                last_read,
                newest,
            });
        }
        // Direct messages: hop from one sender to the next through the
        // (recipient, sender, id) index, then count each conversation's
        // unread range. The cost is O(peers × log n + unread), not O(every
        // DM ever received): a login must not slow down as history grows.
        let mut dms = conn.prepare_cached(UNREAD_DMS)?;
        let dm_rows = dms.query_map([user], |r| {
            Ok(Unread {
                room: None,
                with: Some(r.get(0)?),
                last_read: r.get(1)?,
                count: r.get(2)?,
                mentions: 0,
                newest: r.get(3)?,
            })
        })?;
        for row in dm_rows {
            out.push(row?);
        }
        Ok(out)
    }

    // --- Security: secrets, passwords, tokens, admins, bans, mutes, audit ---

    fn server_secret(&self) -> Result<Vec<u8>, StoreError> {
        let conn = self.pool.get()?;
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Random(e.to_string()))?;
        conn.prepare_cached("INSERT OR IGNORE INTO server_secret (id, secret) VALUES (1, ?1)")?
            .execute([&fresh[..]])?;
        Ok(conn
            .prepare_cached("SELECT secret FROM server_secret WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
    }

    fn set_password(&self, user: UserId, hash: &str) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached("UPDATE users SET password = ?2 WHERE id = ?1")?
            .execute(params![user, hash])?;
        Ok(())
    }

    fn add_token(&self, user: UserId, digest: &str, expires_at: i64) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT INTO resume_tokens (digest, user_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![digest, user, now_ms(), expires_at])?;
        Ok(())
    }

    fn token_user(&self, digest: &str) -> Result<Option<UserRecord>, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached(
                "SELECT u.id, u.name, u.password
             FROM resume_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.digest = ?1 AND t.expires_at > ?2",
            )?
            .query_row(params![digest, now_ms()], |r| {
                Ok(UserRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    password: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn revoke_token(&self, digest: &str) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached("DELETE FROM resume_tokens WHERE digest = ?1")?
            .execute([digest])?;
        Ok(())
    }

    fn revoke_tokens(&self, user: UserId) -> Result<usize, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("DELETE FROM resume_tokens WHERE user_id = ?1")?
            .execute([user])?)
    }

    fn is_admin(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("SELECT is_admin FROM users WHERE id = ?1")?
            .query_row([user], |r| r.get::<_, i64>(0))?
            != 0)
    }

    fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("UPDATE users SET is_admin = ?2 WHERE name = ?1")?
            .execute(params![name, admin as i64])?
            == 1)
    }

    fn ban_of(&self, user: UserId) -> Result<Option<Ban>, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached(
                "SELECT u.name, b.reason, b.banned_by, b.expires_at
             FROM bans b JOIN users u ON u.id = b.user_id
                 WHERE b.user_id = ?1 AND (b.expires_at IS NULL OR b.expires_at > ?2)",
            )?
            .query_row(params![user, now_ms()], |r| {
                Ok(Ban {
                    user: r.get(0)?,
                    reason: r.get(1)?,
                    by: r.get(2)?,
                    until: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn ban(
        &self,
        user: UserId,
        reason: &str,
        by: &str,
        until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT OR REPLACE INTO bans (user_id, reason, banned_by, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![user, reason, by, now_ms(), until])?;
        Ok(())
    }

    fn bans_created_since(&self, since_ms: i64) -> Result<Vec<NewBan>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT user_id, reason, banned_by, created_at FROM bans
             WHERE created_at >= ?1 AND (expires_at IS NULL OR expires_at > ?2)
             ORDER BY created_at, user_id",
        )?;
        let rows = stmt.query_map(params![since_ms, now_ms()], |r| {
            Ok(NewBan {
                user_id: r.get(0)?,
                reason: r.get(1)?,
                by: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn unban(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("DELETE FROM bans WHERE user_id = ?1")?
            .execute([user])?
            == 1)
    }

    fn bans(&self) -> Result<Vec<Ban>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare(
            "SELECT u.name, b.reason, b.banned_by, b.expires_at FROM bans b JOIN users u ON u.id = b.user_id
             WHERE b.expires_at IS NULL OR b.expires_at > ?1 ORDER BY u.name",
        )?;
        let rows = stmt.query_map([now_ms()], |r| {
            Ok(Ban {
                user: r.get(0)?,
                reason: r.get(1)?,
                by: r.get(2)?,
                until: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mute(
        &self,
        room: RoomId,
        user: UserId,
        by: &str,
        until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT OR REPLACE INTO room_mutes (room_id, user_id, muted_by, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![room, user, by, until])?;
        Ok(())
    }

    fn unmute(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("DELETE FROM room_mutes WHERE room_id = ?1 AND user_id = ?2")?
            .execute(params![room, user])?
            == 1)
    }

    fn is_muted(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached(
                "SELECT count(*) > 0 FROM room_mutes WHERE room_id = ?1 AND user_id = ?2
             AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .query_row(params![room, user, now_ms()], |r| r.get(0))?)
    }

    fn mutes_in_force(&self) -> Result<Vec<(RoomId, UserId, Option<i64>)>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT room_id, user_id, expires_at FROM room_mutes
             WHERE expires_at IS NULL OR expires_at > ?1",
        )?;
        let rows = stmt.query_map([now_ms()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit(
        &self,
        user: Option<&str>,
        ip: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.pool
            .get()?
            .prepare_cached(
                "INSERT INTO audit (at, user, ip, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![now_ms(), user, ip, action, detail])?;
        Ok(())
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT at, user, ip, action, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(AuditEntry {
                at: r.get(0)?,
                user: r.get(1)?,
                ip: r.get(2)?,
                action: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_audit_id(&self) -> Result<i64, StoreError> {
        Ok(self
            .pool
            .get()?
            .query_row("SELECT coalesce(max(id), 0) FROM audit", [], |r| r.get(0))?)
    }

    fn audit_after(
        &self,
        after: i64,
        action: &str,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, user FROM audit WHERE id > ?1 AND action = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![after, action], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn room_count(&self, user: UserId) -> Result<u32, StoreError> {
        Ok(self
            .pool
            .get()?
            .prepare_cached("SELECT count(*) FROM room_members WHERE user_id = ?1")?
            .query_row([user], |r| r.get(0))?)
    }

    fn share_events(&self, _node: NodeId, _bodies: &[String]) -> Result<(), StoreError> {
        Err(StoreError::SingleNode("sharing events"))
    }

    fn events_between(
        &self,
        _after: i64,
        _upto: i64,
        _limit: u32,
    ) -> Result<Vec<ClusterEvent>, StoreError> {
        Err(StoreError::SingleNode("reading shared events"))
    }

    fn heartbeat(&self, _node: NodeId, _stale: Duration) -> Result<Heartbeat, StoreError> {
        Err(StoreError::SingleNode("a node heartbeat"))
    }

    fn put_file_content(&self, _sha256: &str, _data: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::SingleNode(
            "keeping file contents in the database",
        ))
    }

    fn file_content(&self, _sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::SingleNode(
            "reading file contents from the database",
        ))
    }
}

fn shared_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<SharedFile> {
    Ok(SharedFile {
        file: FileInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            mime: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
            sha256: r.get(4)?,
        },
        from: r.get(5)?,
        ts: r.get(6)?,
    })
}

/// Fills in each message's reactions as `viewer` sees them.
fn with_reactions(
    conn: &rusqlite::Connection,
    messages: &mut [ChatMessage],
    viewer: UserId,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(REACTIONS)?;
    for m in messages.iter_mut().filter(|m| !m.deleted) {
        m.reactions = stmt
            .query_map(params![m.id, viewer], |r| {
                Ok(ReactionCount {
                    emoji: r.get(0)?,
                    count: r.get(1)?,
                    me: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}

/// The SQL and parameters of a search. Only fixed fragments become SQL;
/// every value (the FTS5 expression too, which `search::Terms` built from
/// quoted strings) is a bound parameter.
fn search_sql(spec: &SearchSpec) -> (String, Vec<Value>) {
    let mut values: Vec<Value> = Vec::new();
    let mut arg = |v: Value| {
        values.push(v);
        format!("?{}", values.len())
    };
    let wanted = spec.terms.fts5();
    let excluded = spec.terms.fts5_excluded();
    let mut sql = String::from(message_columns!());
    let mut conds = vec!["m.deleted_at IS NULL".to_owned()];
    // The order (and the page bound) on the index's rowid when the index
    // leads, so that FTS5 walks its matches newest first and stops at the
    // page: `m.id` there would make SQLite sort every match.
    let mut id = "m.id";
    if let Some(wanted) = wanted {
        id = "messages_fts.rowid";
        // The index leads (CROSS JOIN keeps it outermost), newest first,
        // so a page stops early; words to leave out are part of the match.
        let expr = match excluded {
            Some(ex) => format!("({wanted}) NOT ({ex})"),
            None => wanted,
        };
        sql.push_str("FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid");
        conds.push(format!("messages_fts MATCH {}", arg(Value::Text(expr))));
    } else {
        sql.push_str("FROM messages m");
        if let Some(ex) = excluded {
            conds.push(format!(
                "m.id NOT IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH {})",
                arg(Value::Text(ex))
            ));
        }
    }
    sql.push_str(message_joins!());
    conds.extend(search_filters(spec, &mut |i| arg(Value::Integer(i))));
    if let Some(before) = spec.before_id {
        conds.push(format!("{id} < {}", arg(Value::Integer(before))));
    }
    sql.push_str("WHERE ");
    sql.push_str(&conds.join(" AND "));
    let limit = arg(Value::Integer(i64::from(spec.limit) + 1));
    sql.push_str(&format!(" ORDER BY {id} DESC LIMIT {limit}"));
    (sql, values)
}

fn chat_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    let file = match r.get::<_, Option<i64>>(6)? {
        Some(id) => Some(FileInfo {
            id,
            name: r.get(7)?,
            mime: r.get(8)?,
            size: r.get::<_, i64>(9)? as u64,
            sha256: r.get(10)?,
        }),
        None => None,
    };
    let reply_to = match r.get::<_, Option<i64>>(11)? {
        Some(id) => Some(ReplyRef {
            id,
            from: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
            excerpt: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
            deleted: r.get::<_, Option<bool>>(14)?.unwrap_or(true),
        }),
        None => None,
    };
    let (kind, notice) = kind_of(r.get(17)?);
    Ok(ChatMessage {
        id: r.get(0)?,
        room: r.get(1)?,
        to: if r.get::<_, Option<String>>(1)?.is_some() {
            None
        } else {
            r.get(2)?
        },
        from: r.get(3)?,
        body: r.get(4)?,
        ts: r.get(5)?,
        file,
        reply_to,
        edited_at: r.get(15)?,
        deleted: r.get(16)?,
        reactions: Vec::new(),
        kind,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_writer_retries_soon_and_gives_up_after_the_busy_timeout() {
        let t = std::time::Instant::now();
        assert!(wait_for_the_write_lock(0));
        assert!(wait_for_the_write_lock(1));
        assert!(t.elapsed() < Duration::from_millis(500));
        let limit = BUSY_TIMEOUT.as_millis() as i32;
        assert!(wait_for_the_write_lock(limit - 10));
        assert!(!wait_for_the_write_lock(limit + 10));
        assert!(!wait_for_the_write_lock(i32::MAX - 1));
    }

    #[test]
    fn a_write_waits_for_another_connections_transaction_and_then_goes_through() {
        let (store, dir) = temp_store();
        let path = dir.join("t.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            holder.execute_batch("COMMIT").unwrap();
        });
        // Waits in the busy handler while the other connection writes.
        store.audit(Some("a"), None, "test", "waited").unwrap();
        released.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    fn temp_store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "confab-store-test-{}-{}",
            std::process::id(),
            now_ms() as u64 ^ rand_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (SqliteStore::open(&dir.join("t.db"), 4).unwrap(), dir)
    }

    fn rand_u64() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[test]
    fn schema_applies_twice_and_general_exists_once() {
        let (store, dir) = temp_store();
        let again = SqliteStore::open(&dir.join("t.db"), 2).unwrap();
        let rooms = again.load_rooms().unwrap();
        assert_eq!(rooms.iter().filter(|r| r.name == "general").count(), 1);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn users_are_unique_case_insensitively_and_join_general() {
        let (store, dir) = temp_store();
        let id = store.create_user("alice", "h").unwrap();
        assert!(matches!(
            store.create_user("ALICE", "h"),
            Err(StoreError::UserExists)
        ));
        assert_eq!(store.find_user("Alice").unwrap().unwrap().id, id);
        let rooms = store.load_rooms().unwrap();
        assert_eq!(rooms[0].members, vec![(id, "alice".to_string())]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn history_pages_are_oldest_first_with_more_flag() {
        let (store, dir) = temp_store();
        let a = store.create_user("alice", "h").unwrap();
        let b = store.create_user("bob", "h").unwrap();
        let general = store.load_rooms().unwrap()[0].id;
        let batch: Vec<NewMessage> = (0..5)
            .map(|i| NewMessage {
                sender: a,
                to: Destination::Room(general),
                body: format!("m{i}"),
                ts: i,
                file_id: None,
                reply_to: None,
                kind: Default::default(),
                notice: false,
            })
            .collect();
        let ids = store.insert_messages(&batch).unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let (page1, more) = store
            .room_history(general, Page::Before(None), 3, 0)
            .unwrap();
        assert!(more);
        let bodies: Vec<_> = page1.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["m2", "m3", "m4"]);
        let (page2, more) = store
            .room_history(general, Page::Before(Some(page1[0].id)), 3, 0)
            .unwrap();
        assert!(!more);
        assert_eq!(page2.len(), 2);

        let dm = store
            .insert_messages(&[NewMessage {
                sender: a,
                to: Destination::User(b),
                body: "psst".into(),
                ts: 9,
                file_id: None,
                reply_to: None,
                kind: Default::default(),
                notice: false,
            }])
            .unwrap()[0];
        assert_eq!(store.undelivered_dms(b, 10).unwrap().len(), 1);
        let (dms, _) = store.dm_history(b, a, Page::Before(None), 10).unwrap();
        assert_eq!(dms[0].to.as_deref(), Some("bob"));
        store.advance_dm_cursor(b, dm).unwrap();
        assert!(store.undelivered_dms(b, 10).unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Issue 15: a login's cost must not grow with history. Each query on
    /// the login path runs on a database with 100 and with 20,000 old,
    /// read, delivered messages (room and direct); SQLite's count of
    /// virtual-machine steps (deterministic, unlike time) must stay flat.
    /// The DM summary used to read every DM the user ever received.
    #[test]
    fn login_path_queries_cost_the_same_on_a_long_history() {
        use rusqlite::StatementStatus;
        let steps_with = |history: i64| -> Vec<(&'static str, i32)> {
            let (store, dir) = temp_store();
            let alice = store.create_user("alice", "h").unwrap();
            let bob = store.create_user("bob", "h").unwrap();
            let conn = store.pool.get().unwrap();
            conn.execute_batch(&format!(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {history})
                 INSERT INTO messages (room_id, recipient_id, sender_id, body, created_at)
                 SELECT CASE i % 2 WHEN 0 THEN 1 END, CASE i % 2 WHEN 1 THEN {bob} END,
                        {alice}, 'hello bob ' || i, i FROM c;
                 UPDATE users SET dm_cursor = (SELECT max(id) FROM messages);
                 INSERT OR REPLACE INTO room_reads VALUES ({bob}, 1, (SELECT max(id) FROM messages));
                 INSERT OR REPLACE INTO dm_reads VALUES ({bob}, {alice}, (SELECT max(id) FROM messages));"
            ))
            .unwrap();
            let newest: i64 = conn
                .query_row("SELECT max(id) FROM messages", [], |r| r.get(0))
                .unwrap();
            let cases: [(&str, &str, Vec<rusqlite::types::Value>); 5] = [
                (
                    "undelivered DMs",
                    UNDELIVERED_DMS,
                    vec![bob.into(), 1000.into()],
                ),
                (
                    "room history",
                    ROOM_HISTORY,
                    vec![1.into(), i64::MAX.into(), 51.into()],
                ),
                ("unread rooms", UNREAD_ROOMS, vec![bob.into()]),
                (
                    "mention bodies",
                    MENTION_BODIES,
                    vec![1.into(), newest.into(), bob.into(), "bob".to_owned().into()],
                ),
                ("unread DMs", UNREAD_DMS, vec![bob.into()]),
            ];
            let steps = cases
                .into_iter()
                .map(|(name, sql, params)| {
                    let mut stmt = conn.prepare(sql).unwrap();
                    let mut rows = stmt.query(rusqlite::params_from_iter(params)).unwrap();
                    while rows.next().unwrap().is_some() {}
                    drop(rows);
                    (name, stmt.get_status(StatementStatus::VmStep))
                })
                .collect();
            drop(conn);
            std::fs::remove_dir_all(dir).unwrap();
            steps
        };
        let short = steps_with(100);
        let long = steps_with(20_000);
        for ((name, few), (_, many)) in short.iter().zip(&long) {
            assert!(
                *many <= few * 2 + 100,
                "{name}: {few} steps on 100 messages, {many} on 20,000"
            );
        }
    }

    /// Search plans: with words, FTS5 leads and yields newest first (no
    /// sort of every match, no scan of messages); with a room and no
    /// words, the room index is walked.
    #[test]
    fn search_plans_walk_the_index_newest_first() {
        let (store, dir) = temp_store();
        let conn = store.pool.get().unwrap();
        let spec = |q: &str, room: Option<RoomId>, before: Option<i64>| {
            let q = crate::search::Query::parse(q).unwrap();
            SearchSpec {
                viewer: 1,
                terms: q.terms,
                room,
                peer: None,
                from: vec![2, 3],
                since_ms: q.since_ms,
                until_ms: q.until_ms,
                before_id: before,
                limit: 20,
            }
        };
        for (q, room, before) in [
            ("two words", None, None),
            ("two words -not", Some(1), Some(99)),
            ("pre* on:2026-01-01", None, None),
            ("-not in:#x", Some(1), None),
        ] {
            let (sql, values) = search_sql(&spec(q, room, before));
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params_from_iter(values), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(!plan.contains("TEMP B-TREE"), "{q}: sorts\n{plan}");
            assert!(
                !plan.contains("SCAN m\n") && !plan.ends_with("SCAN m"),
                "{q}: scans\n{plan}"
            );
            if q.contains("in:") {
                assert!(plan.contains("messages_by_room"), "{q}:\n{plan}");
            } else {
                assert!(
                    plan.contains("SCAN messages_fts VIRTUAL TABLE"),
                    "{q}:\n{plan}"
                );
            }
        }
        drop(conn);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A database made by the first release (user_version 1: no files,
    /// no messages.file_id) opens, migrates, and keeps its messages.
    #[test]
    fn a_version_1_database_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
                     password TEXT NOT NULL, created_at INTEGER NOT NULL, dm_cursor INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE rooms (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
                     topic TEXT NOT NULL DEFAULT '', created_by INTEGER REFERENCES users(id), created_at INTEGER NOT NULL);
                 CREATE TABLE room_members (room_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
                     joined_at INTEGER NOT NULL, PRIMARY KEY (room_id, user_id)) WITHOUT ROWID;
                 CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, room_id INTEGER, recipient_id INTEGER,
                     sender_id INTEGER NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,
                     CHECK ((room_id IS NULL) <> (recipient_id IS NULL)));
                 INSERT INTO users VALUES (1, 'alice', 'x', 0, 0);
                 INSERT INTO rooms VALUES (1, 'general', 'old topic', NULL, 0);
                 INSERT INTO room_members VALUES (1, 1, 0);
                 INSERT INTO messages (room_id, sender_id, body, created_at) VALUES (1, 1, 'from the old days', 5);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, 2).unwrap();
        let (page, _) = store.room_history(1, Page::Before(None), 10, 0).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].body, "from the old days");
        assert_eq!(page[0].file, None);
        // The search index was built from the messages already there.
        let (found, _) = store
            .search(&SearchSpec {
                viewer: 1,
                terms: crate::search::Query::parse("old days").unwrap().terms,
                room: None,
                peer: None,
                from: Vec::new(),
                since_ms: None,
                until_ms: None,
                before_id: None,
                limit: 5,
            })
            .unwrap();
        assert_eq!(found.len(), 1);
        let version: u32 = store
            .pool
            .get()
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.last().unwrap().0);
        // Reopening is a no-op.
        drop(store);
        SqliteStore::open(&path, 2).unwrap();
    }
}
