-- EDUs waiting to be sent to other servers (to-device messages, device
-- list updates, receipts, typing...), per destination, in order.
CREATE TABLE federation_edu_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    edu_type    TEXT NOT NULL,
    content     TEXT NOT NULL
);
CREATE INDEX federation_edu_outbox_destination ON federation_edu_outbox (destination, seq);
