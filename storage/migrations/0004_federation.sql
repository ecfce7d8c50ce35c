-- Events held outside the timeline: auth chains and state fetched for joins
-- and gaps, and soft-failed events (kept, never shown, never built upon).
CREATE TABLE outlier_events (
    event_id    TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    json        TEXT NOT NULL,
    soft_failed BOOLEAN NOT NULL DEFAULT FALSE
);

-- Events that failed the authorization rules, so that they are not fetched
-- and checked again.
CREATE TABLE rejected_events (
    event_id TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL,
    reason   TEXT NOT NULL
);

-- Invites of local users to rooms this server is not in: the signed invite
-- event and the stripped state the inviting server sent with it, shown in
-- /sync until the user joins or rejects.
CREATE TABLE remote_invites (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    room_version TEXT NOT NULL,
    sender       TEXT NOT NULL,
    invite_state TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
