-- The media repository. Files live in a content-addressed store (by the
-- SHA-256 of their bytes, so identical uploads are kept once): these tables
-- hold what the store does not: which media IDs point at which content, and
-- what the uploader said about it.
--
-- A row with a NULL content_hash is a reservation made by
-- POST /_matrix/media/v1/create that has not been uploaded yet, and it lapses at
-- expires_ts. remote marks a copy cached from another server (server_name is
-- then that server), which purge_media_cache may drop again.
CREATE TABLE media (
    server_name    TEXT NOT NULL,
    media_id       TEXT NOT NULL,
    content_hash   TEXT,
    content_type   TEXT NOT NULL DEFAULT '',
    filename       TEXT NOT NULL DEFAULT '',
    size_bytes     BIGINT NOT NULL DEFAULT 0,
    uploader       TEXT NOT NULL DEFAULT '',
    created_ts     BIGINT NOT NULL,
    expires_ts     BIGINT,
    quarantined    BOOLEAN NOT NULL DEFAULT FALSE,
    remote         BOOLEAN NOT NULL DEFAULT FALSE,
    last_access_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, media_id)
);

-- Reference counting: is any media or thumbnail still using this content?
CREATE INDEX media_content_hash ON media (content_hash);
-- Quotas and the pending-upload limit are per uploader.
CREATE INDEX media_uploader ON media (uploader, created_ts);
-- Purging the remote cache by age.
CREATE INDEX media_remote_access ON media (remote, last_access_ts);

-- Thumbnails are generated once per media, size and method, then kept.
CREATE TABLE media_thumbnails (
    server_name  TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (server_name, media_id, width, height, method)
);

CREATE INDEX media_thumbnails_content_hash ON media_thumbnails (content_hash);

-- URL previews, cached so that a link posted in a busy room is fetched once,
-- not once per reader. og is the JSON answer.
CREATE TABLE media_url_previews (
    url        TEXT PRIMARY KEY,
    fetched_ts BIGINT NOT NULL,
    og         TEXT NOT NULL
);
