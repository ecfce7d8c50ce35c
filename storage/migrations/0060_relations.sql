-- Relations between events: one row per event whose content has an
-- m.relates_to with a rel_type and an event_id, written by the relations
-- index as events reach the timeline. Readers join events to leave out
-- redacted children: a redaction breaks the relation.
CREATE TABLE event_relations (
    event_id         TEXT PRIMARY KEY,
    room_id          TEXT NOT NULL,
    -- The parent event.
    relates_to       TEXT NOT NULL,
    rel_type         TEXT NOT NULL,
    -- The child's event type and sender.
    type             TEXT NOT NULL,
    sender           TEXT NOT NULL,
    -- The key of an m.annotation; '' for other relations.
    aggregation_key  TEXT NOT NULL DEFAULT '',
    stream_pos       BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to, rel_type, stream_pos);
CREATE INDEX event_relations_room ON event_relations (room_id, rel_type, stream_pos);

-- How far each index built from the timeline (relations, search, user
-- directory) has read it: every event at or below pos is indexed.
CREATE TABLE event_index_positions (
    name TEXT PRIMARY KEY,
    pos  BIGINT NOT NULL
);
