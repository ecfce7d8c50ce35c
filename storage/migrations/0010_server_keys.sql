-- Signing keys of remote servers (federation/keyring), fetched from the
-- servers themselves or through notaries. One row per key. response_json is
-- the server's self-signed key response (its own signatures only) the key
-- last appeared in, kept so that this server's notary endpoint can serve it
-- again and so that old events stay verifiable while the server is down.
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     BYTEA NOT NULL,
    -- valid_until_ts of the response, as published.
    valid_until_ts BIGINT NOT NULL,
    -- When the key moved to old_verify_keys; 0 while it is a verify key.
    expired_ts     BIGINT NOT NULL DEFAULT 0,
    fetched_ts     BIGINT NOT NULL,
    response_json  TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
