-- Rooms, their events, state and memberships.

CREATE TABLE rooms (
    room_id          TEXT PRIMARY KEY,
    room_version     TEXT NOT NULL,
    created_ts       BIGINT NOT NULL,
    -- The state snapshot after the room's latest event, and the depth of
    -- that event: where the next local event starts from.
    current_snapshot BIGINT NOT NULL DEFAULT 0,
    depth            BIGINT NOT NULL DEFAULT 0,
    -- Listed in the public room directory.
    published        BOOLEAN NOT NULL DEFAULT FALSE
);

-- Every event we hold. stream_pos orders events for /sync and /messages;
-- state_before is the state snapshot before the event.
CREATE TABLE events (
    event_nid        BIGSERIAL PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    depth            BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    stream_pos       BIGINT NOT NULL UNIQUE,
    state_before     BIGINT NOT NULL,
    json             TEXT NOT NULL,
    -- The redaction event that redacted this one, if any. The original JSON
    -- is kept; readers serve the redacted form.
    redacted_by      TEXT,
    -- For local events: who sent it from which device with which
    -- transaction ID, so that /send is idempotent and the sender sees
    -- unsigned.transaction_id.
    txn_user         TEXT,
    txn_device       TEXT,
    txn_id           TEXT
);
CREATE INDEX events_room_stream ON events (room_id, stream_pos);
CREATE UNIQUE INDEX events_txn ON events (txn_user, txn_device, txn_id);

CREATE TABLE room_forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State snapshots: a snapshot is its parent plus these entries (a full
-- snapshot has no parent). Chains are cut every few levels so that reading
-- a snapshot touches a bounded number of rows.
CREATE TABLE state_snapshots (
    snapshot_nid BIGSERIAL PRIMARY KEY,
    room_id      TEXT NOT NULL,
    parent_nid   BIGINT,
    chain_len    INTEGER NOT NULL
);
CREATE TABLE state_snapshot_entries (
    snapshot_nid BIGINT NOT NULL,
    type         TEXT NOT NULL,
    state_key    TEXT NOT NULL,
    -- '' removes the key inherited from the parent.
    event_id     TEXT NOT NULL,
    PRIMARY KEY (snapshot_nid, type, state_key)
);

-- The current membership of every user in every room, with the stream
-- position of the event that set it.
CREATE TABLE room_memberships (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    forgotten  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, stream_pos);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
