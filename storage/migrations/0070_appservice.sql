-- Application services (bridges): how far the event stream has been
-- examined for each, what each has yet to receive, the transaction being
-- delivered, and the rooms each publishes in its third-party directories.

-- One row per configured service: events up to stream_pos have been
-- examined (and queued when the service is interested in them);
-- next_txn_id numbers the service's next transaction.
CREATE TABLE appservice_streams (
    service_id  TEXT PRIMARY KEY,
    stream_pos  BIGINT NOT NULL,
    next_txn_id BIGINT NOT NULL DEFAULT 1
);

-- What a service has yet to receive, in order: kind 'event' names a
-- timeline event (formatted when its transaction is built); kind
-- 'ephemeral' carries the JSON of a typing, receipt or presence update.
CREATE TABLE appservice_queue (
    seq        BIGSERIAL PRIMARY KEY,
    service_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    event_id   TEXT NOT NULL DEFAULT '',
    json       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX appservice_queue_service ON appservice_queue (service_id, seq);

-- The transaction a service has not acknowledged yet, at most one per
-- service. Its body is kept as sent, so that a retry (also after a
-- restart) sends exactly the same events under the same transaction ID.
CREATE TABLE appservice_txns (
    service_id TEXT PRIMARY KEY,
    txn_id     TEXT NOT NULL,
    body       TEXT NOT NULL
);

-- Rooms a service lists in the public directory of one of its networks
-- (PUT /directory/list/appservice/{networkId}/{roomId}).
CREATE TABLE appservice_room_directory (
    service_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    PRIMARY KEY (service_id, network_id, room_id)
);
