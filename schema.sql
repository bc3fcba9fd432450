-- confab database schema.
--
-- This file is the one source of the schema. A new database is created from
-- it. For a database made by an older version, the server first runs the
-- numbered migrations in src/store/sqlite.rs (the ALTERs this file cannot
-- express), then applies this file (every statement is idempotent, so new
-- tables and indexes appear); `PRAGMA user_version` records the version.
--
-- Times are integers: milliseconds since the Unix epoch (UTC). To read one
-- in sqlite3: datetime(created_at / 1000, 'unixepoch').
--
-- Inspect a running server's data safely with `make db-shell` (sqlite3 in
-- WAL mode reads while the server writes). README.md lists useful queries.

-- Accounts. `name` is lower-case [a-z0-9_-], 3 to 32 characters.
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    -- 'pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>'; never the password.
    password    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Highest direct-message id handed to one of this user's sessions; DMs
    -- above it are delivered at the user's next login.
    dm_cursor   INTEGER NOT NULL DEFAULT 0,
    -- 1 for administrators (`confab-server admin grant USER`).
    is_admin    INTEGER NOT NULL DEFAULT 0
);

-- Rooms. `general` always exists.
CREATE TABLE IF NOT EXISTS rooms (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    topic       TEXT    NOT NULL DEFAULT '',
    created_by  INTEGER REFERENCES users(id),   -- NULL for built-in rooms
    created_at  INTEGER NOT NULL
);

-- Who is in which room. Membership lasts until the user leaves, across
-- logins and server restarts.
CREATE TABLE IF NOT EXISTS room_members (
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS room_members_by_user ON room_members(user_id);

-- Shared files. A row is written only once the content is complete and its
-- SHA-256 verified; the content is at <data_dir>/files/<sha[0:2]>/<sha[2:4]>/<sha>
-- (shared by identical uploads). Exactly one of room_id and recipient_id
-- is set: who may download it (room members, or the two users).
CREATE TABLE IF NOT EXISTS files (
    id           INTEGER PRIMARY KEY,
    sha256       TEXT    NOT NULL,          -- lower-case hex
    name         TEXT    NOT NULL,          -- sanitised: no paths, no control characters
    mime         TEXT    NOT NULL,          -- decided from the content, not the name
    size         INTEGER NOT NULL,
    uploader_id  INTEGER NOT NULL REFERENCES users(id),
    room_id      INTEGER REFERENCES rooms(id),
    recipient_id INTEGER REFERENCES users(id),
    created_at   INTEGER NOT NULL,
    CHECK ((room_id IS NULL) <> (recipient_id IS NULL))
);
CREATE INDEX IF NOT EXISTS files_by_sha ON files(sha256);
CREATE INDEX IF NOT EXISTS files_by_room ON files(room_id, id) WHERE room_id IS NOT NULL;

-- Every chat message, room or direct. A row exists before the sender is
-- told `ack`; `id` increases with time and is the order of history.
-- Exactly one of room_id (room message) and recipient_id (DM) is set.
-- file_id is set on the message that announces a shared file.
-- A deleted message keeps its row as a tombstone: body '' and deleted_at
-- set (its text, reactions, earlier versions and file record are gone).
CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id      INTEGER REFERENCES rooms(id),
    recipient_id INTEGER REFERENCES users(id),
    sender_id    INTEGER NOT NULL REFERENCES users(id),
    body         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    file_id      INTEGER REFERENCES files(id),
    -- The message this one answers, in the same room or conversation (not
    -- a foreign key: deleting a room's messages would then look up every
    -- reply to each of them).
    reply_to     INTEGER,
    edited_at    INTEGER,                       -- NULL unless edited
    deleted_at   INTEGER,                       -- NULL unless deleted
    kind         TEXT,                          -- NULL: chat; 'topic': a topic change (body: the topic)
    CHECK ((room_id IS NULL) <> (recipient_id IS NULL))
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages(room_id, id)
    WHERE room_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_dm ON messages(recipient_id, sender_id, id)
    WHERE recipient_id IS NOT NULL;
-- Direct messages to a user in id order: the offline-DM replay at login
-- reads only those above the user's dm_cursor (without it, every DM the
-- user ever received was scanned at each login).
CREATE INDEX IF NOT EXISTS messages_to_user ON messages(recipient_id, id)
    WHERE recipient_id IS NOT NULL;

-- The search index over messages.body (SQLite FTS5, external content: the
-- text lives only in messages). Messages are indexed in bulk, not by an
-- insert trigger: FTS5 writes its pending terms out at every statement
-- savepoint, so a trigger made each message its own index segment and
-- cut the stored messages/s eightfold. search_index.indexed_through is the
-- newest message id in the index; the server indexes newer ones every
-- thousand messages, when idle, and before every search, so a search sees
-- every stored message. The triggers keep indexed rows in step (an edit
-- is found by its new text only, a deletion by none); rows not yet
-- indexed are indexed with whatever text they have then. Tokenizer
-- unicode61 with diacritics removed: words in any alphabet, case- and
-- accent-insensitive ("cafe" finds "Café"); prefix queries ("depl*") use
-- the main index. Search in sqlite3:
--   SELECT rowid, body FROM messages_fts WHERE messages_fts MATCH '"word"';
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    body, content='messages', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS search_index (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL
);
-- A new database has nothing to index; an older one was indexed in full
-- by its migration (see MIGRATIONS in src/store/sqlite.rs).
INSERT OR IGNORE INTO search_index (id, indexed_through)
    SELECT 1, coalesce(max(id), 0) FROM messages;
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages
WHEN old.id <= (SELECT indexed_through FROM search_index) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF body ON messages
WHEN old.id <= (SELECT indexed_through FROM search_index) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;

-- Reactions: each user gives each reaction to a message at most once.
CREATE TABLE IF NOT EXISTS reactions (
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    emoji       TEXT    NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;

-- Earlier versions of edited messages, kept only when the server runs with
-- keep_edit_history = true (an audit trail for admins; off by default).
-- Deleting a message deletes its earlier versions too.
CREATE TABLE IF NOT EXISTS message_edits (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    edited_at   INTEGER NOT NULL,
    body        TEXT    NOT NULL                -- the text before this edit
);
CREATE INDEX IF NOT EXISTS message_edits_by_message ON message_edits(message_id);

-- Where each user stopped reading each room and each direct conversation:
-- messages with a larger id are unread. Kept by the server so unread counts
-- survive reconnects and are shared between a user's devices.
CREATE TABLE IF NOT EXISTS room_reads (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    last_read   INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dm_reads (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    peer_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    last_read   INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer_id)
) WITHOUT ROWID;

-- Resume tokens: a client that logged in with its password gets a random
-- token to reconnect without it. Only HMAC-SHA256(server secret, token) is
-- stored. Logout revokes one, a password change all of a user's.
CREATE TABLE IF NOT EXISTS resume_tokens (
    digest      TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS resume_tokens_by_user ON resume_tokens(user_id);

-- The key of the token HMAC, made at the first start.
CREATE TABLE IF NOT EXISTS server_secret (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    secret      BLOB    NOT NULL
);

-- Banned users: they cannot log in until expires_at (NULL: for good).
CREATE TABLE IF NOT EXISTS bans (
    user_id     INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    reason      TEXT    NOT NULL,
    banned_by   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);

-- Users muted in a room: they can read it but not write to it.
CREATE TABLE IF NOT EXISTS room_mutes (
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    muted_by    TEXT    NOT NULL,
    expires_at  INTEGER,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

-- What happened, for admins: logins, failed logins, registrations, admin
-- actions, bans, rejected files. `user` is the name as given (it may not
-- exist, for failed logins).
CREATE TABLE IF NOT EXISTS audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    user        TEXT,
    ip          TEXT,
    action      TEXT    NOT NULL,  -- login, login_failed, register, kick, ban, unban, mute, unmute, grant, revoke, password_reset, password_change, file_rejected
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at);

INSERT OR IGNORE INTO rooms (name, topic, created_at)
    VALUES ('general', 'Welcome to confab', 0);
