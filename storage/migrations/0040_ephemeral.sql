-- Read receipts and presence. Typing notifications are not stored: they
-- last seconds and are rebuilt by clients that keep typing.

-- The latest receipt of each user per room, receipt type (m.read,
-- m.read.private) and thread (thread_id '' for an unthreaded receipt, 'main'
-- or a thread root's event ID for a threaded one). Each write moves the row
-- to a new position of the receipts stream, which is how /sync finds what
-- changed; an initial /sync sends the rows of the user's rooms as they are.
CREATE TABLE receipts (
    room_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    receipt_type     TEXT NOT NULL,
    thread_id        TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    -- The receipted event's position in the event stream, which orders
    -- receipts ("read up to"); 0 when this server does not hold the event
    -- (a remote receipt that arrived before the event did).
    event_stream_pos BIGINT NOT NULL,
    ts               BIGINT NOT NULL,
    stream_pos       BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream ON receipts (stream_pos);
INSERT INTO stream_positions (stream, pos) VALUES ('receipts', 0);

-- The presence of local users and of the remote users who share a room
-- with them. status_msg '' means none. A change that clients must hear of
-- moves the row to a new position of the presence stream.
CREATE TABLE presence (
    user_id          TEXT PRIMARY KEY,
    presence         TEXT NOT NULL,
    status_msg       TEXT NOT NULL,
    last_active_ts   BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL,
    stream_pos       BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_pos);
INSERT INTO stream_positions (stream, pos) VALUES ('presence', 0);
