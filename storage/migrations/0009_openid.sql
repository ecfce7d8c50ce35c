-- OpenID tokens: short-lived tokens a user hands to a third party (an
-- integration manager, a widget) so that it can ask this server, over
-- federation, who the user is. Stored only as hashes.
CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
