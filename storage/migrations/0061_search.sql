-- Server-side search: the searchable text of events (m.room.message body,
-- m.room.name name, m.room.topic topic), one row per event. The full-text
-- index differs per engine: a GIN index over to_tsvector on PostgreSQL, an
-- FTS5 table reading this one (external content) on SQLite.
CREATE TABLE search_docs (
    doc_nid          BIGSERIAL PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    sender           TEXT NOT NULL,
    type             TEXT NOT NULL,
    -- The key the text comes from: content.body, content.name or content.topic.
    key              TEXT NOT NULL,
    stream_pos       BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    text             TEXT NOT NULL
);
CREATE INDEX search_docs_room ON search_docs (room_id, stream_pos);
-- engine: postgres
CREATE INDEX search_docs_fts ON search_docs USING GIN (to_tsvector('english', text));
-- engine: sqlite
CREATE VIRTUAL TABLE search_fts USING fts5(text, content = 'search_docs', content_rowid = 'doc_nid',
    tokenize = 'porter unicode61 remove_diacritics 2');
-- engine: all
