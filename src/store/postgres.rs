//! The PostgreSQL backend of the storage contract: every SQL statement for
//! PostgreSQL lives here.
//!
//! Chosen with `--db postgres://user@host/dbname` (or `postgresql://`);
//! several confab nodes can share one database. `schema-postgres.sql`
//! (compiled in) is applied at open inside one transaction that holds an
//! advisory lock, so nodes starting together migrate once; the version is
//! kept in `confab_schema`. The `postgres` crate is synchronous (it runs a
//! small runtime of its own), so callers stay blocking; `r2d2_postgres`
//! pools the connections.
//!
//! Differences from SQLite a caller can see: none in the contract. Message
//! ids come from the `message_ids` counter row inside the inserting
//! transaction (gap-free and in commit order, unlike a sequence); search
//! uses a generated `tsvector` column kept in each row's own transaction,
//! so [`Store::index_messages`] has nothing to do. TLS to the database is
//! used when the URL says `sslmode=require`, and then the certificate is
//! always verified (against the system's roots, or `SSL_CERT_FILE`).

use super::{
    AuditEntry, Ban, ClusterEvent, ConversationTime, Destination, FileRecord, Heads, Heartbeat,
    MessageRecord, MessageWatch, NewBan, NewFile, NewMessage, NodeId, Page, Reacted, RoomId,
    RoomRecord, SearchSpec, Store, StoreError, StoredMessage, UserId, UserRecord,
    conversations_in_span, kind_column, kind_of, now_ms, paged, search_filters,
};
use crate::protocol::{ChatMessage, FileInfo, ReactionCount, ReplyRef, SharedFile, Unread};
use crate::search::{Term, Terms};
use postgres_native_tls::MakeTlsConnector;
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::postgres::config::SslMode;
use r2d2_postgres::postgres::error::SqlState;
use r2d2_postgres::postgres::fallible_iterator::FallibleIterator;
use r2d2_postgres::postgres::types::{ToSql, Type};
use r2d2_postgres::postgres::{self, GenericClient, Row};
use std::time::Duration;

/// The schema, applied at every open.
pub const SCHEMA: &str = include_str!("../../schema-postgres.sql");

/// Migrations for databases made by older versions, `(version, sql)`, run
/// before `SCHEMA` while `confab_schema.version < version` (as in SQLite's
/// MIGRATIONS). Version 1 is the first PostgreSQL schema; 2 added the
/// tables several nodes share (`cluster_events`, `cluster_nodes`,
/// `file_contents`), created by `SCHEMA` itself.
pub const MIGRATIONS: &[(i32, &str)] = &[(1, ""), (2, "")];

/// The advisory lock key that serialises schema changes between nodes.
const MIGRATION_LOCK: i64 = 0x636f_6e66_6162;

type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;

/// r2d2_postgres's manager, with a cache of prepared statements on each
/// pooled connection.
struct Manager(PostgresConnectionManager<MakeTlsConnector>);

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manager")
    }
}

/// A pooled connection and the statements prepared on it. It derefs to the
/// `postgres::Client`.
struct PgConn {
    client: postgres::Client,
    statements: std::collections::HashMap<&'static str, postgres::Statement>,
}

impl PgConn {
    /// `sql` prepared on this connection, once: PostgreSQL then plans it
    /// once instead of at every use (planning the seven-table message
    /// queries took ~4 ms each, more than running them), and running it
    /// costs one round trip.
    fn prepared(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl std::ops::Deref for PgConn {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        &self.client
    }
}

impl std::ops::DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.0.connect()?,
            statements: std::collections::HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

/// Whether `location` names a PostgreSQL database rather than a file.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The PostgreSQL database behind an r2d2 pool; cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// For connections outside the pool (the message watch's listener).
    config: postgres::Config,
    tls: MakeTlsConnector,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

fn map_unique(err: postgres::Error, unique: StoreError) -> StoreError {
    if err.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        unique
    } else {
        StoreError::Postgres(err)
    }
}

/// A count or small number from SQL (`bigint`) as the contract's `u32`.
fn small(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl PostgresStore {
    /// Connects to the database at `url`, applies the schema and
    /// migrations, and builds a pool of `pool_size` connections.
    pub fn open(url: &str, pool_size: u32) -> Result<PostgresStore, StoreError> {
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("confab-server");
        // TLS only when asked for: libpq's default ("prefer") would try TLS
        // and, here, fail on a self-signed certificate it cannot verify.
        if config.get_ssl_mode() == SslMode::Prefer {
            config.ssl_mode(SslMode::Disable);
        }
        let tls = native_tls::TlsConnector::new().map_err(|e| StoreError::Tls(e.to_string()))?;
        let tls = MakeTlsConnector::new(tls);
        // One connection first: if the database cannot be reached, this
        // says why at once (the pool would retry for its whole timeout and
        // then report only the last error's summary).
        config.connect(tls.clone())?;
        let manager = Manager(PostgresConnectionManager::new(config.clone(), tls.clone()));
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(2))
            // r2d2 would otherwise run an empty query at every checkout: a
            // round trip before each statement. A connection that broke is
            // seen closed when it is returned, and dropped then.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        let store = PostgresStore { pool, config, tls };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        // Not a NOTICE per existing table at every start.
        tx.batch_execute("SET LOCAL client_min_messages = warning")?;
        let supported = MIGRATIONS.last().map_or(0, |m| m.0);
        let fresh: bool = tx
            .query_one("SELECT to_regclass('confab_schema') IS NULL", &[])?
            .get(0);
        let found: i32 = if fresh {
            0
        } else {
            tx.query_opt("SELECT version FROM confab_schema WHERE id = 1", &[])?
                .map_or(0, |r| r.get(0))
        };
        if found > supported {
            return Err(StoreError::TooNew {
                found: found as u32,
                supported: supported as u32,
            });
        }
        if !fresh {
            for (version, sql) in MIGRATIONS {
                if *version > found && !sql.is_empty() {
                    tx.batch_execute(sql)?;
                }
            }
        }
        tx.batch_execute(SCHEMA)?;
        tx.execute(
            "INSERT INTO confab_schema (id, version) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            &[&supported],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.get()?)
    }
}

/// The message watch: a connection of its own that LISTENs on
/// [`CHANNEL`]. It reconnects on the next wait after any error; since a
/// LISTEN is forgotten with its connection, every wait ends by reading the
/// newest committed id from the table, so nothing announced while it was
/// away is missed.
struct Watch {
    config: postgres::Config,
    tls: MakeTlsConnector,
    client: Option<postgres::Client>,
    /// The newest ids seen, announced or read.
    heads: Heads,
}

impl MessageWatch for Watch {
    fn wait(&mut self, timeout: Duration) -> Result<Heads, StoreError> {
        let result = self.wait_once(timeout);
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

impl Watch {
    fn wait_once(&mut self, timeout: Duration) -> Result<Heads, StoreError> {
        let mut connected = false;
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let mut config = self.config.clone();
                config.application_name("confab-watch");
                let mut client = config.connect(self.tls.clone())?;
                client.batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {EVENTS_CHANNEL}"))?;
                connected = true;
                self.client.insert(client)
            }
        };
        // The first announcement (or the timeout), then any others already
        // here. An announcement's id is committed (it is delivered at
        // commit) and ids are gap-free, so it is a head as good as the
        // table's: the table is read only after a timeout or a reconnect
        // (announcements may have been missed) or a payload that is not an
        // id.
        let mut announced = false;
        let mut read_table = connected;
        {
            let mut notes = client.notifications();
            let mut next = notes.timeout_iter(timeout).next()?;
            while let Some(note) = next {
                announced = true;
                let head = match note.channel() {
                    CHANNEL => &mut self.heads.messages,
                    EVENTS_CHANNEL => &mut self.heads.events,
                    _ => &mut 0,
                };
                match note.payload().parse::<i64>() {
                    Ok(id) => *head = (*head).max(id),
                    Err(_) => read_table = true,
                }
                next = notes.iter().next()?;
            }
        }
        if read_table || !announced {
            let row = client.query_one(
                "SELECT m.last, e.last FROM message_ids m, event_ids e WHERE m.id = 1 AND e.id = 1",
                &[],
            )?;
            self.heads.messages = self.heads.messages.max(row.get(0));
            self.heads.events = self.heads.events.max(row.get(1));
        }
        Ok(self.heads)
    }
}

// The queries that select messages, as in the SQLite backend (same
// columns through the shared macros, PostgreSQL's placeholders).

const UNDELIVERED_DMS: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE m.recipient_id = $1 AND m.deleted_at IS NULL
       AND m.id > (SELECT dm_cursor FROM users WHERE id = $1)
     ORDER BY m.id LIMIT $2"
);

/// Messages $1 < id <= $2, oldest first, with where they go and who sent
/// them (columns 18-20).
const MESSAGES_BETWEEN: &str = concat!(
    message_columns!(),
    ", m.room_id, m.recipient_id, m.sender_id FROM messages m",
    message_joins!(),
    "WHERE m.id > $1 AND m.id <= $2 ORDER BY m.id LIMIT $3"
);

/// The channel on which every message commit is announced (payload: the
/// batch's newest id, a hint; `message_ids` is the truth).
const CHANNEL: &str = "confab_messages";

/// A batch of messages in one statement (its own transaction): its ids
/// from the counter row, whose lock is held until commit, so batches commit
/// in id order (see schema-postgres.sql); its rows from arrays, the n-th
/// row getting id `last - $1 + n`; one announcement on [`CHANNEL`],
/// delivered to listeners at commit. Data-modifying `WITH` parts always run
/// to completion, read or not.
const INSERT_BATCH: &str = "
    WITH ids AS (
        UPDATE message_ids SET last = last + $1 WHERE id = 1 RETURNING last
    ), stored AS (
        INSERT INTO messages
            (id, room_id, recipient_id, sender_id, body, created_at, file_id, reply_to, kind)
        SELECT (SELECT last FROM ids) - $1 + t.n,
               t.room, t.recipient, t.sender, t.body, t.at, t.file, t.reply, t.kind
        FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
                    $7::bigint[], $8::bigint[], $9::text[])
             WITH ORDINALITY AS t(room, recipient, sender, body, at, file, reply, kind, n)
    )
    SELECT last, pg_notify('confab_messages', last::text) FROM ids";

/// The channel on which shared events are announced (payload: the newest
/// event id, a hint; `event_ids` is the truth).
const EVENTS_CHANNEL: &str = "confab_events";

/// Shared events are kept this long (a node that was away longer starts
/// over from the tables and the other nodes' snapshots).
const EVENTS_KEPT_MS: i64 = 3_600_000;

const ROOM_HISTORY: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE m.room_id = $1 AND m.id < $2 ORDER BY m.id DESC LIMIT $3"
);

const ROOM_HISTORY_AFTER: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE m.room_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
);

const DM_HISTORY: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE ((m.recipient_id = $1 AND m.sender_id = $2)
         OR (m.recipient_id = $2 AND m.sender_id = $1))
       AND m.id < $3
     ORDER BY m.id DESC LIMIT $4"
);

const DM_HISTORY_AFTER: &str = concat!(
    message_columns!(),
    "FROM messages m",
    message_joins!(),
    "WHERE ((m.recipient_id = $1 AND m.sender_id = $2)
         OR (m.recipient_id = $2 AND m.sender_id = $1))
       AND m.id > $3
     ORDER BY m.id LIMIT $4"
);

/// The reactions on the messages $1 (an array), each message's in the
/// order first given, and whether user $2 gave each.
const REACTIONS: &str = "SELECT message_id, emoji, count(*), bool_or(user_id = $2) FROM reactions
             WHERE message_id = ANY($1) GROUP BY message_id, emoji
             ORDER BY message_id, min(created_at), emoji";

const UNREAD_ROOMS: &str = "SELECT r.id, r.name, coalesce(rr.last_read, 0),
                    (SELECT count(*) FROM messages m
                      WHERE m.room_id = r.id AND m.id > coalesce(rr.last_read, 0)
                        AND m.sender_id != $1 AND m.deleted_at IS NULL),
                    (SELECT coalesce(max(m.id), 0) FROM messages m WHERE m.room_id = r.id)
             FROM room_members mem
             JOIN rooms r ON r.id = mem.room_id
             LEFT JOIN room_reads rr ON rr.user_id = mem.user_id AND rr.room_id = mem.room_id
             WHERE mem.user_id = $1
             ORDER BY r.name";

const MENTION_BODIES: &str = "SELECT body FROM messages
             WHERE room_id = $1 AND id > $2 AND sender_id != $3 AND body LIKE '%' || $4 || '%'
             ORDER BY id DESC LIMIT 1000";

/// Per sender of direct messages to $1 (hopping from one sender to the
/// next through messages_by_dm, as in SQLite): last read, unread, newest.
/// The rooms a user is in, with the time of their newest message.
const ROOMS_NEWEST: &str = "SELECT r.name,
        (SELECT m.created_at FROM messages m
          WHERE m.room_id = rm.room_id AND m.deleted_at IS NULL
          ORDER BY m.id DESC LIMIT 1)
     FROM room_members rm JOIN rooms r ON r.id = rm.room_id
     WHERE rm.user_id = $1";

/// The people a user exchanged direct messages with, with the newest
/// message either way (as SQLite's, which explains it).
const PEERS_NEWEST: &str = "WITH RECURSIVE
     senders(id) AS (
       SELECT (SELECT min(sender_id) FROM messages WHERE recipient_id = $1)
       UNION ALL
       SELECT (SELECT min(sender_id) FROM messages
                WHERE recipient_id = $1 AND sender_id > senders.id)
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
         (SELECT 1 FROM messages WHERE recipient_id = recipients.id AND sender_id = $1))
     SELECT u.name, greatest(
        coalesce((SELECT m.created_at FROM messages m
                   WHERE m.recipient_id = $1 AND m.sender_id = p.id
                     AND m.deleted_at IS NULL
                   ORDER BY m.id DESC LIMIT 1), 0),
        coalesce((SELECT m.created_at FROM messages m
                   WHERE m.recipient_id = p.id AND m.sender_id = $1
                     AND m.deleted_at IS NULL
                   ORDER BY m.id DESC LIMIT 1), 0))
     FROM peers p JOIN users u ON u.id = p.id";

const UNREAD_DMS: &str = "WITH RECURSIVE peers(id) AS (
                 SELECT (SELECT min(sender_id) FROM messages WHERE recipient_id = $1)
                 UNION ALL
                 SELECT (SELECT min(sender_id) FROM messages
                          WHERE recipient_id = $1 AND sender_id > peers.id)
                 FROM peers WHERE peers.id IS NOT NULL)
             SELECT * FROM (
               SELECT s.name, coalesce(d.last_read, 0) AS lr,
                      (SELECT count(*) FROM messages m
                        WHERE m.recipient_id = $1 AND m.sender_id = p.id
                          AND m.id > coalesce(d.last_read, 0) AND m.deleted_at IS NULL) AS n,
                      (SELECT max(m.id) FROM messages m
                        WHERE m.recipient_id = $1 AND m.sender_id = p.id) AS newest
               FROM peers p
               JOIN users s ON s.id = p.id
               LEFT JOIN dm_reads d ON d.user_id = $1 AND d.peer_id = p.id
               WHERE p.id IS NOT NULL) t
             WHERE newest > lr
             ORDER BY name";

impl Store for PostgresStore {
    // --- Accounts, rooms, membership and messages ---

    fn checkpoint(&self) -> Result<(), StoreError> {
        // PostgreSQL's own checkpoints keep its files complete.
        Ok(())
    }

    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let now = now_ms();
        let id: i64 = tx
            .query_one(
                "INSERT INTO users (name, password, created_at) VALUES ($1, $2, $3) RETURNING id",
                &[&name, &password_hash, &now],
            )
            .map_err(|e| map_unique(e, StoreError::UserExists))?
            .get(0);
        tx.execute(
            "INSERT INTO room_members (room_id, user_id, joined_at)
             SELECT id, $1, $2 FROM rooms WHERE name = 'general' ON CONFLICT DO NOTHING",
            &[&id, &now],
        )?;
        tx.execute(
            "INSERT INTO room_reads (user_id, room_id, last_read)
             SELECT $1, r.id, coalesce((SELECT max(m.id) FROM messages m WHERE m.room_id = r.id), 0)
             FROM rooms r WHERE r.name = 'general' ON CONFLICT DO NOTHING",
            &[&id],
        )?;
        tx.commit()?;
        Ok(id)
    }

    fn find_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT id, name, password FROM users WHERE lower(name) = lower($1)",
                &[&name],
            )?
            .map(|r| user_record(&r)))
    }

    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let mut conn = self.conn()?;
        let mut rooms: Vec<RoomRecord> = conn
            .query("SELECT id, name, topic FROM rooms ORDER BY id", &[])?
            .iter()
            .map(|r| RoomRecord {
                id: r.get(0),
                name: r.get(1),
                topic: r.get(2),
                members: Vec::new(),
            })
            .collect();
        let index: std::collections::HashMap<RoomId, usize> =
            rooms.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
        for row in conn.query(
            "SELECT m.room_id, u.id, u.name FROM room_members m JOIN users u ON u.id = m.user_id",
            &[],
        )? {
            if let Some(&i) = index.get(&row.get::<_, i64>(0)) {
                rooms[i].members.push((row.get(1), row.get(2)));
            }
        }
        Ok(rooms)
    }

    fn create_room(&self, name: &str, topic: &str, creator: UserId) -> Result<RoomId, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let now = now_ms();
        let id: i64 = tx
            .query_one(
                "INSERT INTO rooms (name, topic, created_by, created_at)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&name, &topic, &creator, &now],
            )
            .map_err(|e| map_unique(e, StoreError::RoomExists))?
            .get(0);
        tx.execute(
            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)",
            &[&id, &creator, &now],
        )?;
        tx.commit()?;
        Ok(id)
    }

    fn rooms_created_by(&self, user: UserId) -> Result<u32, StoreError> {
        let n: i64 = self
            .conn()?
            .query_one("SELECT count(*) FROM rooms WHERE created_by = $1", &[&user])?
            .get(0);
        Ok(small(n))
    }

    fn room_creator(&self, room: RoomId) -> Result<Option<UserId>, StoreError> {
        Ok(self
            .conn()?
            .query_opt("SELECT created_by FROM rooms WHERE id = $1", &[&room])?
            .and_then(|r| r.get(0)))
    }

    fn delete_room(&self, room: RoomId) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let shas: Vec<String> = tx
            .query(
                "SELECT DISTINCT sha256 FROM files WHERE room_id = $1",
                &[&room],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute("DELETE FROM messages WHERE room_id = $1", &[&room])?;
        tx.execute("DELETE FROM files WHERE room_id = $1", &[&room])?;
        tx.execute("DELETE FROM room_mutes WHERE room_id = $1", &[&room])?;
        tx.execute("DELETE FROM rooms WHERE id = $1", &[&room])?;
        let mut unused = Vec::new();
        for sha in shas {
            if !still_used(&mut tx, &sha)? {
                tx.execute("DELETE FROM file_contents WHERE sha256 = $1", &[&sha])?;
                unused.push(sha);
            }
        }
        tx.commit()?;
        Ok(unused)
    }

    fn add_member(&self, room: RoomId, user: UserId) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&room, &user, &now_ms()],
        )?;
        Ok(())
    }

    fn remove_member(&self, room: RoomId, user: UserId) -> Result<(), StoreError> {
        self.conn()?.execute(
            "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2",
            &[&room, &user],
        )?;
        Ok(())
    }

    fn rooms_in_join_order(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT r.name FROM room_members m JOIN rooms r ON r.id = m.room_id
                 WHERE m.user_id = $1 ORDER BY m.joined_at, r.name",
                &[&user],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn set_topic(&self, room: RoomId, topic: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE rooms SET topic = $2 WHERE id = $1",
            &[&room, &topic],
        )?;
        Ok(())
    }

    fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<i64>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len() as i64;
        let mut rooms = Vec::with_capacity(batch.len());
        let mut users = Vec::with_capacity(batch.len());
        for m in batch {
            let (room, user) = match m.to {
                Destination::Room(r) => (Some(r), None),
                Destination::User(u) => (None, Some(u)),
            };
            rooms.push(room);
            users.push(user);
        }
        let senders: Vec<i64> = batch.iter().map(|m| m.sender).collect();
        let bodies: Vec<&str> = batch.iter().map(|m| m.body.as_str()).collect();
        let times: Vec<i64> = batch.iter().map(|m| m.ts).collect();
        let files: Vec<Option<i64>> = batch.iter().map(|m| m.file_id).collect();
        let replies: Vec<Option<i64>> = batch.iter().map(|m| m.reply_to).collect();
        let kinds: Vec<Option<&str>> = batch
            .iter()
            .map(|m| kind_column(m.kind, m.notice))
            .collect();
        // One prepared statement, its own transaction: one round trip (see
        // INSERT_BATCH).
        let mut conn = self.conn()?;
        let statement = conn.prepared(INSERT_BATCH)?;
        let row = conn.query_one(
            &statement,
            &[
                &n, &rooms, &users, &senders, &bodies, &times, &files, &replies, &kinds,
            ],
        )?;
        let last: i64 = row.get(0);
        let ids: Vec<i64> = (last - n + 1..=last).collect();
        Ok(ids)
    }

    fn messages_between(
        &self,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        // Prepared: the writer and the watch run this often.
        let mut conn = self.conn()?;
        let statement = conn.prepared(MESSAGES_BETWEEN)?;
        Ok(conn
            .query(&statement, &[&after, &upto, &i64::from(limit)])?
            .iter()
            .map(|r| {
                let room: Option<RoomId> = r.get(18);
                StoredMessage {
                    message: chat_message(r),
                    to: match room {
                        Some(room) => Destination::Room(room),
                        None => Destination::User(r.get::<_, Option<UserId>>(19).unwrap_or(0)),
                    },
                    sender: r.get(20),
                }
            })
            .collect())
    }

    fn message_watch(&self) -> Result<Option<Box<dyn MessageWatch>>, StoreError> {
        Ok(Some(Box::new(Watch {
            config: self.config.clone(),
            tls: self.tls.clone(),
            client: None,
            heads: Heads::default(),
        })))
    }

    fn advance_dm_cursor(&self, user: UserId, id: i64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE users SET dm_cursor = greatest(dm_cursor, $2) WHERE id = $1",
            &[&user, &id],
        )?;
        Ok(())
    }

    fn undelivered_dms(&self, user: UserId, limit: u32) -> Result<Vec<ChatMessage>, StoreError> {
        let mut conn = self.conn()?;
        let rows = conn.query(UNDELIVERED_DMS, &[&user, &i64::from(limit)])?;
        let mut out: Vec<ChatMessage> = rows.iter().map(chat_message).collect();
        with_reactions(&mut conn.client, &mut out, user)?;
        Ok(out)
    }

    fn room_history(
        &self,
        room: RoomId,
        page: Page,
        limit: u32,
        viewer: UserId,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let mut conn = self.conn()?;
        let (sql, from) = match page {
            Page::Before(before) => (ROOM_HISTORY, before.unwrap_or(i64::MAX)),
            Page::After(after) => (ROOM_HISTORY_AFTER, after),
        };
        let rows = conn.query(sql, &[&room, &from, &(i64::from(limit) + 1)])?;
        let (mut messages, more) = paged(rows.iter().map(chat_message).collect(), limit, page);
        with_reactions(&mut conn.client, &mut messages, viewer)?;
        Ok((messages, more))
    }

    fn dm_history(
        &self,
        a: UserId,
        b: UserId,
        page: Page,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let mut conn = self.conn()?;
        let (sql, from) = match page {
            Page::Before(before) => (DM_HISTORY, before.unwrap_or(i64::MAX)),
            Page::After(after) => (DM_HISTORY_AFTER, after),
        };
        let rows = conn.query(sql, &[&a, &b, &from, &(i64::from(limit) + 1)])?;
        let (mut messages, more) = paged(rows.iter().map(chat_message).collect(), limit, page);
        with_reactions(&mut conn.client, &mut messages, a)?;
        Ok((messages, more))
    }

    // --- Finding and fixing messages ---

    fn message(&self, id: i64) -> Result<Option<MessageRecord>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT m.id, m.room_id, m.recipient_id, m.sender_id, s.name,
                    coalesce(r.name, ru.name), m.body, m.created_at, m.deleted_at IS NOT NULL,
                    m.kind
             FROM messages m JOIN users s ON s.id = m.sender_id
             LEFT JOIN rooms r ON r.id = m.room_id
             LEFT JOIN users ru ON ru.id = m.recipient_id
             WHERE m.id = $1",
            &[&id],
        )?;
        Ok(row.map(|r| {
            let room: Option<RoomId> = r.get(1);
            let user: Option<UserId> = r.get(2);
            MessageRecord {
                id: r.get(0),
                to: match (room, user) {
                    (Some(room), _) => Destination::Room(room),
                    (None, user) => Destination::User(user.unwrap_or(0)),
                },
                sender: r.get(3),
                sender_name: r.get(4),
                to_name: r.get::<_, Option<String>>(5).unwrap_or_default(),
                body: r.get(6),
                created_at: r.get(7),
                deleted: r.get(8),
                kind: kind_of(r.get(9)).0,
            }
        }))
    }

    fn edit_message(
        &self,
        id: i64,
        body: &str,
        at: i64,
        keep_previous: bool,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        if keep_previous {
            tx.execute(
                "INSERT INTO message_edits (message_id, edited_at, body)
                 SELECT id, $2, body FROM messages WHERE id = $1 AND deleted_at IS NULL",
                &[&id, &at],
            )?;
        }
        tx.execute(
            "UPDATE messages SET body = $2, edited_at = $3 WHERE id = $1 AND deleted_at IS NULL",
            &[&id, &body, &at],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn edit_history(&self, id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT edited_at, body FROM message_edits WHERE message_id = $1 ORDER BY id",
                &[&id],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn delete_message(&self, id: i64, at: i64) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let file: Option<(i64, String)> = tx
            .query_opt(
                "SELECT f.id, f.sha256 FROM messages m JOIN files f ON f.id = m.file_id
                 WHERE m.id = $1",
                &[&id],
            )?
            .map(|r| (r.get(0), r.get(1)));
        tx.execute(
            "UPDATE messages SET body = '', deleted_at = $2, edited_at = NULL, file_id = NULL
             WHERE id = $1 AND deleted_at IS NULL",
            &[&id, &at],
        )?;
        tx.execute("DELETE FROM reactions WHERE message_id = $1", &[&id])?;
        tx.execute("DELETE FROM message_edits WHERE message_id = $1", &[&id])?;
        let mut unused = None;
        if let Some((file_id, sha)) = file {
            tx.execute("DELETE FROM files WHERE id = $1", &[&file_id])?;
            if !still_used(&mut tx, &sha)? {
                tx.execute("DELETE FROM file_contents WHERE sha256 = $1", &[&sha])?;
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
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // The message row's lock makes the check and the insert one step
        // (two users adding the 21st kind at once on two nodes).
        tx.execute("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", &[&id])?;
        let row = tx.query_one(
            "SELECT count(*), coalesce(bool_or(user_id = $3), false) FROM reactions
             WHERE message_id = $1 AND emoji = $2",
            &[&id, &emoji, &user],
        )?;
        let (count, mine): (i64, bool) = (row.get(0), row.get(1));
        if mine {
            return Ok(Reacted::Already(small(count)));
        }
        if count == 0 {
            let kinds: i64 = tx
                .query_one(
                    "SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = $1",
                    &[&id],
                )?
                .get(0);
            if kinds >= i64::from(max_kinds) {
                return Ok(Reacted::Full);
            }
        }
        // In the order first given even within one millisecond (see the
        // SQLite store).
        tx.execute(
            "INSERT INTO reactions (message_id, emoji, user_id, created_at)
             VALUES ($1, $2, $3, GREATEST($4, coalesce(
                 (SELECT max(created_at) + 1 FROM reactions WHERE message_id = $1), 0)))",
            &[&id, &emoji, &user, &now_ms()],
        )?;
        tx.commit()?;
        Ok(Reacted::Added(small(count) + 1))
    }

    fn unreact(&self, id: i64, user: UserId, emoji: &str) -> Result<Option<u32>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
            &[&id, &emoji, &user],
        )?;
        if removed == 0 {
            return Ok(None);
        }
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM reactions WHERE message_id = $1 AND emoji = $2",
                &[&id, &emoji],
            )?
            .get(0);
        tx.commit()?;
        Ok(Some(small(count)))
    }

    fn index_messages(&self, _max: u32) -> Result<u32, StoreError> {
        // The generated `search` column is written with each row.
        Ok(0)
    }

    fn search(&self, spec: &SearchSpec) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let (sql, values) = search_sql(spec);
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| match v {
                Param::Int(i) => i as &(dyn ToSql + Sync),
                Param::Text(s) => s as &(dyn ToSql + Sync),
            })
            .collect();
        let mut conn = self.conn()?;
        let mut rows: Vec<ChatMessage> = conn
            .query(sql.as_str(), &params)?
            .iter()
            .map(chat_message)
            .collect();
        let more = rows.len() > spec.limit as usize;
        rows.truncate(spec.limit as usize);
        with_reactions(&mut conn.client, &mut rows, spec.viewer)?;
        Ok((rows, more))
    }

    // --- Files ---

    fn insert_file(&self, f: &NewFile) -> Result<i64, StoreError> {
        let (room, user) = match f.to {
            Destination::Room(r) => (Some(r), None),
            Destination::User(u) => (None, Some(u)),
        };
        Ok(self
            .conn()?
            .query_one(
                "INSERT INTO files
                 (sha256, name, mime, size, uploader_id, room_id, recipient_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &f.sha256,
                    &f.name,
                    &f.mime,
                    &(f.size as i64),
                    &f.uploader,
                    &room,
                    &user,
                    &now_ms(),
                ],
            )?
            .get(0))
    }

    fn find_file(&self, id: i64) -> Result<Option<FileRecord>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT id, name, mime, size, sha256, uploader_id, room_id, recipient_id
             FROM files WHERE id = $1",
            &[&id],
        )?;
        Ok(row.map(|r| {
            let room: Option<RoomId> = r.get(6);
            let user: Option<UserId> = r.get(7);
            FileRecord {
                info: FileInfo {
                    id: r.get(0),
                    name: r.get(1),
                    mime: r.get(2),
                    size: r.get::<_, i64>(3) as u64,
                    sha256: r.get(4),
                },
                uploader: r.get(5),
                to: match (room, user) {
                    (Some(room), _) => Destination::Room(room),
                    (None, Some(user)) => Destination::User(user),
                    (None, None) => Destination::User(0),
                },
            }
        }))
    }

    fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .conn()?
            .query_one(
                "SELECT count(*) > 0 FROM room_members WHERE room_id = $1 AND user_id = $2",
                &[&room, &user],
            )?
            .get(0))
    }

    fn room_files(&self, room: RoomId, limit: u32) -> Result<Vec<SharedFile>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT f.id, f.name, f.mime, f.size, f.sha256, u.name, f.created_at
                 FROM files f JOIN users u ON u.id = f.uploader_id
                 WHERE f.room_id = $1 ORDER BY f.id DESC LIMIT $2",
                &[&room, &i64::from(limit)],
            )?
            .iter()
            .map(shared_file)
            .collect())
    }

    fn dm_files(&self, a: UserId, b: UserId, limit: u32) -> Result<Vec<SharedFile>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT f.id, f.name, f.mime, f.size, f.sha256, u.name, f.created_at
                 FROM files f JOIN users u ON u.id = f.uploader_id
                 WHERE (f.uploader_id = $1 AND f.recipient_id = $2)
                    OR (f.uploader_id = $2 AND f.recipient_id = $1)
                 ORDER BY f.id DESC LIMIT $3",
                &[&a, &b, &i64::from(limit)],
            )?
            .iter()
            .map(shared_file)
            .collect())
    }

    // --- Read state ---

    fn mark_room_read(&self, user: UserId, room: RoomId, id: i64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO room_reads (user_id, room_id, last_read) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, room_id)
             DO UPDATE SET last_read = greatest(room_reads.last_read, excluded.last_read)",
            &[&user, &room, &id],
        )?;
        Ok(())
    }

    fn mark_dm_read(&self, user: UserId, peer: UserId, id: i64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO dm_reads (user_id, peer_id, last_read) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, peer_id)
             DO UPDATE SET last_read = greatest(dm_reads.last_read, excluded.last_read)",
            &[&user, &peer, &id],
        )?;
        Ok(())
    }

    fn mark_room_read_to_latest(&self, user: UserId, room: RoomId) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO room_reads (user_id, room_id, last_read)
             SELECT $1, $2, coalesce(max(id), 0) FROM messages WHERE room_id = $2
             ON CONFLICT (user_id, room_id)
             DO UPDATE SET last_read = greatest(room_reads.last_read, excluded.last_read)",
            &[&user, &room],
        )?;
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
                 WHERE r.user_id = $1 AND r.room_id = $2",
                room,
            ),
            Destination::User(peer) => (
                "SELECT m.created_at FROM dm_reads r JOIN messages m ON m.id = r.last_read
                 WHERE r.user_id = $1 AND r.peer_id = $2",
                peer,
            ),
        };
        Ok(self
            .conn()?
            .query_opt(sql, &[&user, &other])?
            .map(|row| row.get(0)))
    }

    fn message_at_or_before(
        &self,
        user: UserId,
        place: Destination,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn()?;
        let row = match place {
            Destination::Room(room) => conn.query_opt(
                "SELECT id FROM messages WHERE room_id = $1 AND created_at <= $2
                 ORDER BY id DESC LIMIT 1",
                &[&room, &at],
            )?,
            Destination::User(peer) => conn.query_opt(
                "SELECT max(x) FROM (
                   SELECT (SELECT id FROM messages
                           WHERE recipient_id = $1 AND sender_id = $2 AND created_at <= $3
                           ORDER BY id DESC LIMIT 1) AS x
                   UNION ALL
                   SELECT (SELECT id FROM messages
                           WHERE recipient_id = $2 AND sender_id = $1 AND created_at <= $3
                           ORDER BY id DESC LIMIT 1)) AS both_ways",
                &[&user, &peer, &at],
            )?,
        };
        Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)))
    }

    fn conversations_between(
        &self,
        user: UserId,
        after: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<ConversationTime>, StoreError> {
        let mut conn = self.conn()?;
        let rooms = conn
            .query(ROOMS_NEWEST, &[&user])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let peers = conn
            .query(PEERS_NEWEST, &[&user])?
            .iter()
            .map(|r| (r.get(0), Some(r.get::<_, i64>(1)).filter(|t| *t > 0)))
            .collect();
        Ok(conversations_in_span(rooms, peers, after, before, limit))
    }

    fn unread(&self, user: UserId, name: &str) -> Result<Vec<Unread>, StoreError> {
        let mut conn = self.conn()?;
        let mut out = Vec::new();
        for r in conn.query(UNREAD_ROOMS, &[&user])? {
            let (room_id, room, last_read, count, newest): (i64, String, i64, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if count == 0 {
                continue;
            }
            let mentions = conn
                .query(MENTION_BODIES, &[&room_id, &last_read, &user, &name])?
                .iter()
                .filter(|b| crate::mention::mentions(b.get(0), name))
                .count() as u32;
            out.push(Unread {
                room: Some(room),
                with: None,
                count: small(count),
                mentions,
                last_read,
                newest,
            });
        }
        for r in conn.query(UNREAD_DMS, &[&user])? {
            out.push(Unread {
                room: None,
                with: Some(r.get(0)),
                last_read: r.get(1),
                count: small(r.get(2)),
                mentions: 0,
                newest: r.get(3),
            });
        }
        Ok(out)
    }

    // --- Security: secrets, passwords, tokens, admins, bans, mutes, audit ---

    fn server_secret(&self) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn()?;
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Random(e.to_string()))?;
        conn.execute(
            "INSERT INTO server_secret (id, secret) VALUES (1, $1) ON CONFLICT DO NOTHING",
            &[&&fresh[..]],
        )?;
        Ok(conn
            .query_one("SELECT secret FROM server_secret WHERE id = 1", &[])?
            .get(0))
    }

    fn set_password(&self, user: UserId, hash: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE users SET password = $2 WHERE id = $1",
            &[&user, &hash],
        )?;
        Ok(())
    }

    fn add_token(&self, user: UserId, digest: &str, expires_at: i64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO resume_tokens (digest, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
            &[&digest, &user, &now_ms(), &expires_at],
        )?;
        Ok(())
    }

    fn token_user(&self, digest: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT u.id, u.name, u.password
                 FROM resume_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.digest = $1 AND t.expires_at > $2",
                &[&digest, &now_ms()],
            )?
            .map(|r| user_record(&r)))
    }

    fn revoke_token(&self, digest: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM resume_tokens WHERE digest = $1", &[&digest])?;
        Ok(())
    }

    fn revoke_tokens(&self, user: UserId) -> Result<usize, StoreError> {
        Ok(self
            .conn()?
            .execute("DELETE FROM resume_tokens WHERE user_id = $1", &[&user])? as usize)
    }

    fn is_admin(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .conn()?
            .query_opt("SELECT is_admin FROM users WHERE id = $1", &[&user])?
            .is_some_and(|r| r.get(0)))
    }

    fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute(
            "UPDATE users SET is_admin = $2 WHERE lower(name) = lower($1)",
            &[&name, &admin],
        )? == 1)
    }

    fn ban_of(&self, user: UserId) -> Result<Option<Ban>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT u.name, b.reason, b.banned_by, b.expires_at
                 FROM bans b JOIN users u ON u.id = b.user_id
                 WHERE b.user_id = $1 AND (b.expires_at IS NULL OR b.expires_at > $2)",
                &[&user, &now_ms()],
            )?
            .map(|r| ban(&r)))
    }

    fn ban(
        &self,
        user: UserId,
        reason: &str,
        by: &str,
        until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO bans (user_id, reason, banned_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET reason = excluded.reason,
                 banned_by = excluded.banned_by, created_at = excluded.created_at,
                 expires_at = excluded.expires_at",
            &[&user, &reason, &by, &now_ms(), &until],
        )?;
        Ok(())
    }

    fn bans_created_since(&self, since_ms: i64) -> Result<Vec<NewBan>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT user_id, reason, banned_by, created_at FROM bans
                 WHERE created_at >= $1 AND (expires_at IS NULL OR expires_at > $2)
                 ORDER BY created_at, user_id",
                &[&since_ms, &now_ms()],
            )?
            .iter()
            .map(|r| NewBan {
                user_id: r.get(0),
                reason: r.get(1),
                by: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    fn unban(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .conn()?
            .execute("DELETE FROM bans WHERE user_id = $1", &[&user])?
            == 1)
    }

    fn bans(&self) -> Result<Vec<Ban>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT u.name, b.reason, b.banned_by, b.expires_at
                 FROM bans b JOIN users u ON u.id = b.user_id
                 WHERE b.expires_at IS NULL OR b.expires_at > $1 ORDER BY u.name",
                &[&now_ms()],
            )?
            .iter()
            .map(ban)
            .collect())
    }

    fn mute(
        &self,
        room: RoomId,
        user: UserId,
        by: &str,
        until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO room_mutes (room_id, user_id, muted_by, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (room_id, user_id) DO UPDATE SET muted_by = excluded.muted_by,
                 expires_at = excluded.expires_at",
            &[&room, &user, &by, &until],
        )?;
        Ok(())
    }

    fn unmute(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute(
            "DELETE FROM room_mutes WHERE room_id = $1 AND user_id = $2",
            &[&room, &user],
        )? == 1)
    }

    fn is_muted(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .conn()?
            .query_typed_one(
                "SELECT count(*) > 0 FROM room_mutes WHERE room_id = $1 AND user_id = $2
                 AND (expires_at IS NULL OR expires_at > $3)",
                &[
                    (&room, Type::INT8),
                    (&user, Type::INT8),
                    (&now_ms(), Type::INT8),
                ],
            )?
            .get(0))
    }

    fn mutes_in_force(&self) -> Result<Vec<(RoomId, UserId, Option<i64>)>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT room_id, user_id, expires_at FROM room_mutes
                 WHERE expires_at IS NULL OR expires_at > $1",
                &[&now_ms()],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn audit(
        &self,
        user: Option<&str>,
        ip: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO audit (at, \"user\", ip, action, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&now_ms(), &user, &ip, &action, &detail],
        )?;
        Ok(())
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT at, \"user\", ip, action, detail FROM audit ORDER BY id DESC LIMIT $1",
                &[&i64::from(limit)],
            )?
            .iter()
            .map(|r| AuditEntry {
                at: r.get(0),
                user: r.get(1),
                ip: r.get(2),
                action: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }

    fn last_audit_id(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()?
            .query_one("SELECT coalesce(max(id), 0) FROM audit", &[])?
            .get(0))
    }

    fn audit_after(
        &self,
        after: i64,
        action: &str,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT id, \"user\" FROM audit WHERE id > $1 AND action = $2 ORDER BY id",
                &[&after, &action],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn room_count(&self, user: UserId) -> Result<u32, StoreError> {
        let n: i64 = self
            .conn()?
            .query_one(
                "SELECT count(*) FROM room_members WHERE user_id = $1",
                &[&user],
            )?
            .get(0);
        Ok(small(n))
    }

    fn share_events(&self, node: NodeId, bodies: &[String]) -> Result<(), StoreError> {
        if bodies.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // Ids as for messages: the counter row is locked to commit.
        let n = bodies.len() as i64;
        let last: i64 = tx
            .query_one(
                "UPDATE event_ids SET last = last + $1 WHERE id = 1 RETURNING last",
                &[&n],
            )?
            .get(0);
        let ids: Vec<i64> = (last - n + 1..=last).collect();
        tx.execute(
            "INSERT INTO cluster_events (id, node, at, body)
             SELECT id, $2, $3, body FROM unnest($1::bigint[], $4::text[]) AS t(id, body)",
            &[&ids, &node, &now_ms(), &bodies],
        )?;
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&EVENTS_CHANNEL, &last.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn events_between(
        &self,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<ClusterEvent>, StoreError> {
        Ok(self
            .conn()?
            .query_typed(
                "SELECT id, node, body FROM cluster_events
                 WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
                &[
                    (&after, Type::INT8),
                    (&upto, Type::INT8),
                    (&i64::from(limit), Type::INT8),
                ],
            )?
            .iter()
            .map(|r| ClusterEvent {
                id: r.get(0),
                node: r.get(1),
                body: r.get(2),
            })
            .collect())
    }

    fn heartbeat(&self, node: NodeId, stale: Duration) -> Result<Heartbeat, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // The database's clock, not the nodes': theirs may differ.
        let known = tx.execute(
            "UPDATE cluster_nodes SET seen_at = now() WHERE id = $1",
            &[&node],
        )? == 1;
        if !known {
            tx.execute(
                "INSERT INTO cluster_nodes (id) VALUES ($1)
                 ON CONFLICT (id) DO UPDATE SET seen_at = now()",
                &[&node],
            )?;
        }
        let gone = tx
            .query(
                "DELETE FROM cluster_nodes
                 WHERE id <> $1 AND seen_at < now() - make_interval(secs => $2)
                 RETURNING id",
                &[&node, &stale.as_secs_f64()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            "DELETE FROM cluster_events WHERE at < $1",
            &[&(now_ms() - EVENTS_KEPT_MS)],
        )?;
        tx.commit()?;
        Ok(Heartbeat { known, gone })
    }

    fn put_file_content(&self, sha256: &str, data: &[u8]) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO file_contents (sha256, data) VALUES ($1, $2)
             ON CONFLICT (sha256) DO NOTHING",
            &[&sha256, &data],
        )?;
        Ok(())
    }

    fn file_content(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT data FROM file_contents WHERE sha256 = $1",
                &[&sha256],
            )?
            .map(|r| r.get(0)))
    }
}

/// Whether any file record still uses the content `sha`.
fn still_used(tx: &mut impl GenericClient, sha: &str) -> Result<bool, StoreError> {
    Ok(tx
        .query_one("SELECT count(*) > 0 FROM files WHERE sha256 = $1", &[&sha])?
        .get(0))
}

fn user_record(r: &Row) -> UserRecord {
    UserRecord {
        id: r.get(0),
        name: r.get(1),
        password: r.get(2),
    }
}

fn ban(r: &Row) -> Ban {
    Ban {
        user: r.get(0),
        reason: r.get(1),
        by: r.get(2),
        until: r.get(3),
    }
}

fn shared_file(r: &Row) -> SharedFile {
    SharedFile {
        file: FileInfo {
            id: r.get(0),
            name: r.get(1),
            mime: r.get(2),
            size: r.get::<_, i64>(3) as u64,
            sha256: r.get(4),
        },
        from: r.get(5),
        ts: r.get(6),
    }
}

/// Fills in each message's reactions as `viewer` sees them, with one
/// query for the whole page (a round trip per message would cost a page
/// of history fifty).
fn with_reactions(
    conn: &mut impl GenericClient,
    messages: &mut [ChatMessage],
    viewer: UserId,
) -> Result<(), StoreError> {
    let ids: Vec<i64> = messages
        .iter()
        .filter(|m| !m.deleted)
        .map(|m| m.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut by_message: std::collections::HashMap<i64, Vec<ReactionCount>> =
        std::collections::HashMap::new();
    for r in conn.query(REACTIONS, &[&ids, &viewer])? {
        by_message.entry(r.get(0)).or_default().push(ReactionCount {
            emoji: r.get(1),
            count: small(r.get(2)),
            me: r.get(3),
        });
    }
    for m in messages.iter_mut() {
        if let Some(reactions) = by_message.remove(&m.id) {
            m.reactions = reactions;
        }
    }
    Ok(())
}

/// A search parameter.
enum Param {
    Int(i64),
    Text(String),
}

/// A tsquery for terms joined by `op`: each word single-quoted (only
/// letters and digits, so nothing inside needs escaping and no input is
/// an operator), words of a phrase joined by `<->`, a prefix's last word
/// marked `:*`. Words are split where the stored text is (on anything
/// that is not a letter or digit). `None` if no term has a word.
fn tsquery(terms: &[Term], op: &str) -> Option<String> {
    let parts: Vec<String> = terms
        .iter()
        .filter_map(|t| {
            let (text, prefix) = match t {
                Term::Phrase(p) => (p, false),
                Term::Prefix(p) => (p, true),
            };
            let words: Vec<&str> = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() {
                return None;
            }
            let mut out = words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" <-> ");
            if prefix {
                out.push_str(":*");
            }
            Some(format!("({out})"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(op))
}

/// The SQL and parameters of a search. Only fixed fragments become SQL;
/// every value (the tsquery text too) is a bound parameter, folded in SQL
/// the way stored text is (accents removed, lower case).
fn search_sql(spec: &SearchSpec) -> (String, Vec<Param>) {
    let mut values: Vec<Param> = Vec::new();
    let mut arg = |v: Param| {
        values.push(v);
        format!("${}", values.len())
    };
    let Terms { all, none } = &spec.terms;
    let query = |q: String, arg: &mut dyn FnMut(Param) -> String| {
        format!(
            "to_tsquery('simple'::regconfig, public.unaccent('public.unaccent'::regdictionary, {}))",
            arg(Param::Text(q))
        )
    };
    let mut conds = vec!["m.deleted_at IS NULL".to_owned()];
    if let Some(q) = tsquery(all, " & ") {
        conds.push(format!("m.search @@ {}", query(q, &mut arg)));
    }
    if let Some(q) = tsquery(none, " | ") {
        conds.push(format!("NOT (m.search @@ {})", query(q, &mut arg)));
    }
    conds.extend(search_filters(spec, &mut |i| arg(Param::Int(i))));
    if let Some(before) = spec.before_id {
        conds.push(format!("m.id < {}", arg(Param::Int(before))));
    }
    let limit = arg(Param::Int(i64::from(spec.limit) + 1));
    let sql = format!(
        "{}FROM messages m{}WHERE {} ORDER BY m.id DESC LIMIT {limit}",
        message_columns!(),
        message_joins!(),
        conds.join(" AND ")
    );
    (sql, values)
}

fn chat_message(r: &Row) -> ChatMessage {
    let file = r.get::<_, Option<i64>>(6).map(|id| FileInfo {
        id,
        name: r.get(7),
        mime: r.get(8),
        size: r.get::<_, i64>(9) as u64,
        sha256: r.get(10),
    });
    let reply_to = r.get::<_, Option<i64>>(11).map(|id| ReplyRef {
        id,
        from: r.get::<_, Option<String>>(12).unwrap_or_default(),
        excerpt: r.get::<_, Option<String>>(13).unwrap_or_default(),
        deleted: r.get::<_, Option<bool>>(14).unwrap_or(true),
    });
    let room: Option<String> = r.get(1);
    let (kind, notice) = kind_of(r.get(17));
    ChatMessage {
        id: r.get(0),
        to: if room.is_some() { None } else { r.get(2) },
        room,
        from: r.get(3),
        body: r.get(4),
        ts: r.get(5),
        file,
        reply_to,
        edited_at: r.get(15),
        deleted: r.get(16),
        reactions: Vec::new(),
        kind,
        notice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_kept_out_of_logged_urls() {
        assert_eq!(
            redacted("postgres://confab:s3cret@db.example.org/chat"),
            "postgres://confab:***@db.example.org/chat"
        );
        assert_eq!(redacted("postgres://db/chat"), "postgres://db/chat");
        assert_eq!(redacted("postgresql://u@h/d"), "postgresql://u@h/d");
        assert!(is_url("postgresql://h/d") && is_url("postgres://h/d"));
        assert!(!is_url("data/confab.db"));
    }

    #[test]
    fn tsquery_quotes_every_word_and_cannot_carry_operators() {
        let t = crate::search::Query::parse("ship \"the café\" depl* a&b|!c").unwrap();
        assert_eq!(
            tsquery(&t.terms.all, " & ").unwrap(),
            "('ship') & ('the' <-> 'café') & ('depl':*) & ('a' <-> 'b' <-> 'c')"
        );
        // Quotes, colons and operators inside a term only split words.
        let terms = [Term::Phrase("')&!x:*".into()), Term::Prefix("<->".into())];
        assert_eq!(tsquery(&terms, " | ").unwrap(), "('x')");
        assert_eq!(tsquery(&terms[1..], " & "), None);
    }
}
