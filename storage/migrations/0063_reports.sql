-- Reports of rooms, events and users, for the server's admins.
CREATE TABLE content_reports (
    report_nid   BIGSERIAL PRIMARY KEY,
    received_ts  BIGINT NOT NULL,
    reporter     TEXT NOT NULL,
    room_id      TEXT NOT NULL DEFAULT '',
    event_id     TEXT NOT NULL DEFAULT '',
    -- The reported user: a user report's target or the reported event's sender.
    target_user  TEXT NOT NULL DEFAULT '',
    reason       TEXT NOT NULL DEFAULT ''
);

-- The server notices room of each user who was sent a notice.
CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL
);
