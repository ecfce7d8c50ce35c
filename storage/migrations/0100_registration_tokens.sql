-- Registration tokens (m.login.registration_token): invitations to register
-- while registration.requires_token keeps /register closed to everyone else.
-- pending counts the uses reserved by registrations under way, completed the
-- accounts created with the token. A token is valid while pending + completed
-- is below uses_allowed (NULL: unlimited) and expiry_time (ms since the
-- epoch; NULL: never) is ahead.
CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    pending      BIGINT NOT NULL DEFAULT 0,
    completed    BIGINT NOT NULL DEFAULT 0,
    expiry_time  BIGINT
);

-- The use a registration reserved when it passed the token stage of its UIA
-- session, one row per pending use: it becomes a completed use in the
-- transaction that creates the account, or is given back when it expires
-- with the session. Not a column of uia_sessions: the session ends as the
-- account is created, and a reservation must not be lost with it.
CREATE TABLE registration_token_reservations (
    session_id TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX registration_token_reservations_expires ON registration_token_reservations (expires_ts);
