-- End-to-end encryption: device keys, one-time and fallback keys,
-- cross-signing keys and signatures, device list changes, to-device messages
-- and server-side key backups. The server only ever holds public keys and
-- ciphertext. Tables are keyed by full user ID (not localpart) so that keys
-- of remote users can be cached in them later.

-- A device's identity keys, as the device signed them. They never change
-- once uploaded; deleting the device deletes them.
CREATE TABLE e2e_device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys. id orders them by upload, the order in which
-- /keys/claim hands them out; claiming deletes the row.
CREATE TABLE e2e_one_time_keys (
    id        BIGSERIAL PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    UNIQUE (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, id);

-- At most one fallback key per device and algorithm, handed out when the
-- one-time keys run out; used records that it was.
CREATE TABLE e2e_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing;
-- public_key is the unpadded base64 ed25519 key, which is also the key's ID
-- in signatures.
CREATE TABLE e2e_cross_signing_keys (
    user_id    TEXT NOT NULL,
    key_type   TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded with /keys/signatures/upload, merged into the keys
-- /keys/query returns. target_key_id is a device ID or a cross-signing
-- public key; signer_key_id is a full key ID such as "ed25519:ABCDEF".
CREATE TABLE e2e_cross_signing_sigs (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);
CREATE INDEX e2e_cross_signing_sigs_signer ON e2e_cross_signing_sigs (signer_user_id);

-- The last device-list stream position at which each user's devices or
-- cross-signing keys changed. One row per user keeps the table small: a
-- reader that misses an older change of a user sees the newer one instead.
CREATE TABLE e2e_device_list_changes (
    user_id    TEXT PRIMARY KEY,
    stream_pos BIGINT NOT NULL
);
CREATE INDEX e2e_device_list_changes_stream ON e2e_device_list_changes (stream_pos);

-- Pending to-device messages, one stream position each, deleted once the
-- device's next /sync acknowledges them.
CREATE TABLE to_device_messages (
    stream_pos BIGINT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL
);
CREATE INDEX to_device_messages_device ON to_device_messages (user_id, device_id, stream_pos);

-- Transaction IDs of /sendToDevice requests, so that a retried request is
-- delivered once. Rows older than a day are pruned.
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, event_type, txn_id)
);

-- Server-side key backup versions. Versions count up per user and are never
-- reused; a deleted version keeps its row (deleted) so that deleting it
-- again succeeds. etag counts changes to the version's keys.
CREATE TABLE e2e_room_keys_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

INSERT INTO stream_positions (stream, pos) VALUES ('to_device', 0);
INSERT INTO stream_positions (stream, pos) VALUES ('device_lists', 0);
