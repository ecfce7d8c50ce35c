-- Events waiting to be sent to other servers, per destination, in order.
CREATE TABLE federation_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    json        TEXT NOT NULL
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, seq);

-- Transactions received from other servers, so that a retried transaction
-- is answered without being processed twice.
CREATE TABLE federation_inbound_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
