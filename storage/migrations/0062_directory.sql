-- The user directory: the profile each user last showed in a room's
-- member event. Which users a searcher may find is decided at search time
-- from room_memberships and room_directory_flags.
CREATE TABLE user_directory (
    user_id      TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    avatar_url   TEXT NOT NULL DEFAULT '',
    -- The user ID and display name lower-cased (Unicode-aware, by the
    -- server), which searches match against.
    search_text  TEXT NOT NULL
);

-- Rooms whose joined members anyone may find in the user directory: a
-- public join rule or world_readable history.
CREATE TABLE room_directory_flags (
    room_id        TEXT PRIMARY KEY,
    public_join    BOOLEAN NOT NULL,
    world_readable BOOLEAN NOT NULL
);
