-- Local user accounts. Password hashes are bcrypt; an empty hash means the
-- account cannot log in with a password (application service users).
CREATE TABLE accounts (
    localpart     TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL DEFAULT '',
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL
);
