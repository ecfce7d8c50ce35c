-- End-to-end encryption over federation: the per-user sequence of the
-- m.device_list_update EDUs we send for local users, and our cache of the
-- device lists of remote users who share a room with local users.

-- The stream_id of each local user's latest m.device_list_update. It counts
-- per user, as the spec asks, so that another server can tell from prev_id
-- whether it missed one of the user's updates; /user/devices reports it.
CREATE TABLE e2e_device_list_outbound (
    user_id   TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- A remote user's device list as we hold it: the stream_id of the latest
-- update applied (from their server's m.device_list_update EDUs or
-- /user/devices) and their public cross-signing keys ('' when none).
-- stale marks a list that missed an update and waits for a resync; it is
-- not used to answer key queries until then. Rows are dropped when no local
-- user shares a room with the user any more, since their server stops
-- sending us updates then.
CREATE TABLE e2e_remote_device_lists (
    user_id          TEXT PRIMARY KEY,
    stream_id        BIGINT NOT NULL,
    stale            BOOLEAN NOT NULL DEFAULT FALSE,
    master_key       TEXT NOT NULL DEFAULT '',
    self_signing_key TEXT NOT NULL DEFAULT '',
    updated_ts       BIGINT NOT NULL
);

-- The devices of the cached lists: key_json is the device's signed identity
-- keys ('' for a device without keys).
CREATE TABLE e2e_remote_devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    key_json     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, device_id)
);
