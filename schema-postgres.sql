-- confab database schema for PostgreSQL (`confab-server --db postgres://...`).
--
-- The same tables, columns and meanings as schema.sql (read that file for
-- what each one holds); this file differs only where PostgreSQL does:
-- BIGINT ids and times, BOOLEAN flags, BYTEA for the secret, names unique
-- case-insensitively through an index on lower(name), and search through a
-- generated tsvector column instead of SQLite's FTS5 table. It is applied
-- at every start inside one transaction under an advisory lock (so two
-- nodes starting together do not race); every statement is idempotent.
-- confab_schema.version records the version (migrations: MIGRATIONS in
-- src/store/postgres.rs).
--
-- Times are milliseconds since the Unix epoch (UTC). To read one in psql:
--   SELECT to_timestamp(created_at / 1000.0) FROM messages ORDER BY id DESC LIMIT 5;
-- Inspect a running server's data with `psql postgres://...` (reads never
-- block the server's writes).

-- Accent folding for search (a contrib extension, trusted since
-- PostgreSQL 13: the database owner may create it).
CREATE EXTENSION IF NOT EXISTS unaccent;

CREATE TABLE IF NOT EXISTS confab_schema (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL,
    password    TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    dm_cursor   BIGINT  NOT NULL DEFAULT 0,
    is_admin    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX IF NOT EXISTS users_by_name ON users (lower(name));

CREATE TABLE IF NOT EXISTS rooms (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL,
    topic       TEXT    NOT NULL DEFAULT '',
    created_by  BIGINT  REFERENCES users(id),
    created_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rooms_by_name ON rooms (lower(name));

CREATE TABLE IF NOT EXISTS room_members (
    room_id     BIGINT  NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at   BIGINT  NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_members_by_user ON room_members(user_id);

CREATE TABLE IF NOT EXISTS files (
    id           BIGSERIAL PRIMARY KEY,
    sha256       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    mime         TEXT    NOT NULL,
    size         BIGINT  NOT NULL,
    uploader_id  BIGINT  NOT NULL REFERENCES users(id),
    room_id      BIGINT  REFERENCES rooms(id),
    recipient_id BIGINT  REFERENCES users(id),
    created_at   BIGINT  NOT NULL,
    CHECK ((room_id IS NULL) <> (recipient_id IS NULL))
);
CREATE INDEX IF NOT EXISTS files_by_sha ON files(sha256);
CREATE INDEX IF NOT EXISTS files_by_room ON files(room_id, id) WHERE room_id IS NOT NULL;

-- The words of a message as search sees them: accents removed, ASCII
-- punctuation made a space (so "example.com" is two words, as in SQLite's
-- unicode61 tokenizer), lower-cased by the 'simple' configuration (no
-- stemming, no stop words). IMMUTABLE so a generated column may use it;
-- unaccent is called with its dictionary named, which makes that true.
CREATE OR REPLACE FUNCTION confab_search_words(body TEXT) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_tsvector('simple'::regconfig,
                  regexp_replace(public.unaccent('public.unaccent'::regdictionary, body),
                                 '[[:punct:]]+', ' ', 'g')) $$;

-- Message ids are not a sequence: a sequence hands ids out in allocation
-- order, not commit order, so a reader of "everything after id N" could
-- skip for good a lower id committed later. Each batch of messages takes
-- its ids from this one row inside its own transaction; the row lock is
-- held to commit, so ids become visible in order, without gaps.
CREATE TABLE IF NOT EXISTS message_ids (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last        BIGINT  NOT NULL
);
INSERT INTO message_ids (id, last) VALUES (1, 0) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS messages (
    id           BIGINT  PRIMARY KEY,
    room_id      BIGINT  REFERENCES rooms(id),
    recipient_id BIGINT  REFERENCES users(id),
    sender_id    BIGINT  NOT NULL REFERENCES users(id),
    body         TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    file_id      BIGINT  REFERENCES files(id),
    reply_to     BIGINT,
    edited_at    BIGINT,
    deleted_at   BIGINT,
    kind         TEXT,
    -- Kept by PostgreSQL in the row's own transaction: a message is
    -- searchable once committed, an edit by its new words only.
    search       tsvector GENERATED ALWAYS AS (confab_search_words(body)) STORED,
    CHECK ((room_id IS NULL) <> (recipient_id IS NULL))
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages(room_id, id)
    WHERE room_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_dm ON messages(recipient_id, sender_id, id)
    WHERE recipient_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_to_user ON messages(recipient_id, id)
    WHERE recipient_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_search ON messages USING gin (search);

CREATE TABLE IF NOT EXISTS reactions (
    message_id  BIGINT  NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    emoji       TEXT    NOT NULL,
    user_id     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE IF NOT EXISTS message_edits (
    id          BIGSERIAL PRIMARY KEY,
    message_id  BIGINT  NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    edited_at   BIGINT  NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS message_edits_by_message ON message_edits(message_id);

CREATE TABLE IF NOT EXISTS room_reads (
    user_id     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id     BIGINT  NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    last_read   BIGINT  NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE TABLE IF NOT EXISTS dm_reads (
    user_id     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    peer_id     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    last_read   BIGINT  NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);

CREATE TABLE IF NOT EXISTS resume_tokens (
    digest      TEXT    PRIMARY KEY,
    user_id     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS resume_tokens_by_user ON resume_tokens(user_id);

CREATE TABLE IF NOT EXISTS server_secret (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    secret      BYTEA   NOT NULL
);

CREATE TABLE IF NOT EXISTS bans (
    user_id     BIGINT  PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    reason      TEXT    NOT NULL,
    banned_by   TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT
);

CREATE TABLE IF NOT EXISTS room_mutes (
    room_id     BIGINT  NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    muted_by    TEXT    NOT NULL,
    expires_at  BIGINT,
    PRIMARY KEY (room_id, user_id)
);

-- "user" is quoted: USER is a keyword in PostgreSQL.
CREATE TABLE IF NOT EXISTS audit (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT  NOT NULL,
    "user"      TEXT,
    ip          TEXT,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at);

-- Several nodes on this database. What a node changes in its memory and
-- the others must mirror (presence, joins and leaves, topics, kicks,
-- edits, failed logins, ...) is appended here as a JSON event; the other
-- nodes read the table in id order after a NOTIFY on `confab_events` (a
-- hint) or a poll. Ids come from `event_ids` as message ids come from
-- `message_ids`: gap-free, in commit order. Rows older than an hour are
-- pruned by the nodes' heartbeats.
CREATE TABLE IF NOT EXISTS event_ids (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last        BIGINT  NOT NULL
);
INSERT INTO event_ids (id, last) VALUES (1, 0) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS cluster_events (
    id          BIGINT  PRIMARY KEY,
    node        BIGINT  NOT NULL,
    at          BIGINT  NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS cluster_events_by_time ON cluster_events(at);

-- The nodes alive now: each updates its row every few seconds; a row not
-- updated for long is deleted by another node, which tells the others that
-- the node's users are offline.
CREATE TABLE IF NOT EXISTS cluster_nodes (
    id          BIGINT  PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- File contents, by SHA-256, so a file uploaded through one node can be
-- downloaded through any (each node keeps a copy on its disk as a cache).
CREATE TABLE IF NOT EXISTS file_contents (
    sha256      TEXT    PRIMARY KEY,
    data        BYTEA   NOT NULL
);

INSERT INTO rooms (name, topic, created_at)
    SELECT 'general', 'Welcome to confab', 0
    WHERE NOT EXISTS (SELECT 1 FROM rooms WHERE lower(name) = 'general');
