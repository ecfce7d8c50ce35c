-- Profiles: NULL means "not set", which clients see as an absent field.
ALTER TABLE accounts ADD COLUMN displayname TEXT;
ALTER TABLE accounts ADD COLUMN avatar_url TEXT;

-- A user's devices. Deleting a device deletes its access tokens.
CREATE TABLE devices (
    localpart    TEXT NOT NULL REFERENCES accounts (localpart),
    device_id    TEXT NOT NULL,
    display_name TEXT,
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (localpart, device_id)
);

-- Access tokens are stored only as their SHA-256 hash: a copy of the
-- database does not let anyone act as the users.
CREATE TABLE access_tokens (
    token_hash BYTEA PRIMARY KEY,
    localpart  TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (localpart, device_id) REFERENCES devices (localpart, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (localpart, device_id);

-- Stream positions handed out in commit order, one counter per stream. A
-- writer increments its stream's row inside its transaction; the row lock
-- (PostgreSQL) or the database lock (SQLite) holds other writers until it
-- commits, so a reader that sees position N also sees everything before N.
CREATE TABLE stream_positions (
    stream TEXT PRIMARY KEY,
    pos    BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, pos) VALUES ('account_data', 0);

-- Account data, global (room_id '') and per room. Each write moves the row
-- to a new stream position, which is how /sync finds what changed.
CREATE TABLE account_data (
    localpart  TEXT NOT NULL REFERENCES accounts (localpart),
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (localpart, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (localpart, stream_pos);

-- Filters. Clients upload the same filter on every start, so identical
-- filters of a user share one row (and one ID), found by their hash.
CREATE TABLE filters (
    id          BIGSERIAL PRIMARY KEY,
    localpart   TEXT NOT NULL REFERENCES accounts (localpart),
    filter_hash BYTEA NOT NULL,
    filter_json TEXT NOT NULL,
    UNIQUE (localpart, filter_hash)
);

-- User-interactive authentication sessions, kept in the database so that any
-- server process can continue a session another one started.
CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    action     TEXT NOT NULL,
    localpart  TEXT NOT NULL,
    completed  TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX uia_sessions_expiry ON uia_sessions (expires_ts);

-- Single-use nonces of the shared-secret registration API.
CREATE TABLE registration_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX registration_nonces_expiry ON registration_nonces (expires_ts);
