-- Push notifications: the events each local user was notified about, their
-- unread counts per room and thread, where they have read up to, and their
-- pushers. Push rules themselves are the m.push_rules account data.

-- One row per notifying event per user (an event whose push actions
-- included "notify"). stream_pos is the event's stream position, unique per
-- event, so (user_id, stream_pos) identifies a row and orders
-- /notifications. thread_id is "main" for the main timeline, else the
-- thread root's event ID. actions is the JSON array of the matching rule.
CREATE TABLE push_notifications (
    user_id    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    room_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    actions    TEXT NOT NULL,
    highlight  BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, stream_pos)
);
-- Recounting after a receipt: the notifications of one thread after a position.
CREATE INDEX push_notifications_unread ON push_notifications (user_id, room_id, thread_id, stream_pos);
-- Pruning by age.
CREATE INDEX push_notifications_ts ON push_notifications (ts);

-- The unread counts /sync shows, kept up to date as notifications arrive
-- and receipts move, so that /sync reads them instead of counting. stream_pos
-- (of the push_counts stream) is when the row last changed, for incremental
-- /sync.
CREATE TABLE push_unread_counts (
    user_id            TEXT NOT NULL,
    room_id            TEXT NOT NULL,
    thread_id          TEXT NOT NULL,
    notification_count BIGINT NOT NULL,
    highlight_count    BIGINT NOT NULL,
    stream_pos         BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- Where each user has read up to, from their read receipts (and their own
-- messages): thread_id "" is an unthreaded receipt, which covers every
-- thread; "main" the main timeline; otherwise a thread root. stream_pos is
-- the position of the event read.
CREATE TABLE push_read_markers (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, thread_id)
);

INSERT INTO stream_positions (stream, pos) VALUES ('push_counts', 0);
-- Not a stream: the watermark below which every timeline event has been
-- evaluated for push. It starts at the newest event, so that a server
-- upgraded to this version does not notify anyone of its history.
INSERT INTO stream_positions (stream, pos) SELECT 'push_evaluated', COALESCE(MAX(stream_pos), 0) FROM events;

-- Pushers: where to send a user's notifications. A pusher is identified by
-- its user, app_id and pushkey. data is the JSON object the client gave
-- (including url); pushkey_ts is in seconds, as the push gateway API wants.
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    pushkey_ts          BIGINT NOT NULL,
    device_id           TEXT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);
