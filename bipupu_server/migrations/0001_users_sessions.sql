-- Version 1, the first schema: users, the bipupu_id counter, sessions and their refresh tokens.
-- A new database is made from schema.sql in one step; this file is where the numbered steps start.
-- Times: *_at TEXT columns are RFC 3339 UTC ("2026-02-10T16:00:00Z"); *_ts INTEGER columns are
-- epoch seconds used for expiry arithmetic.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,            -- internal UUID, never leaves the server
    bipupu_id      TEXT NOT NULL UNIQUE
                   CHECK (bipupu_id GLOB '[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'),
    username       TEXT NOT NULL,               -- as chosen, NFKC-normalised
    username_key   TEXT NOT NULL UNIQUE,        -- NFKC + casefold: what uniqueness and login compare
    password_hash  TEXT NOT NULL,               -- bcrypt
    nickname       TEXT NOT NULL,
    avatar_url     TEXT,
    cosmic_profile TEXT NOT NULL DEFAULT '{}',  -- JSON object, <= 2 KB
    privacy        TEXT NOT NULL DEFAULT 'everyone' CHECK (privacy IN ('everyone', 'contacts_only')),
    is_active      INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_admin       INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created_at     TEXT NOT NULL
) STRICT;

-- Identity never changes once given.
CREATE TRIGGER users_identity_immutable BEFORE UPDATE OF id, bipupu_id, username, username_key ON users
WHEN NEW.id IS NOT OLD.id OR NEW.bipupu_id IS NOT OLD.bipupu_id
  OR NEW.username IS NOT OLD.username OR NEW.username_key IS NOT OLD.username_key
BEGIN
    SELECT RAISE(ABORT, 'user identity is immutable');
END;

-- Monotonic counters; `bipupu_id` holds the last number handed out (never reused, never lowered).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO counters (name, value) VALUES ('bipupu_id', 0);

CREATE TRIGGER counters_never_lowered BEFORE UPDATE OF value ON counters
WHEN NEW.value < OLD.value
BEGIN
    SELECT RAISE(ABORT, 'counters never go backwards');
END;

-- One row per login (a device); revoking it ends its access and refresh tokens.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id),
    created_at    TEXT NOT NULL,
    refreshed_at  TEXT NOT NULL,
    expires_ts    INTEGER NOT NULL,             -- when its refresh token lapses
    revoked_at    TEXT,
    revoked_why   TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Refresh tokens, stored only as SHA-256 digests. Rotated ones are kept until they lapse so
-- that presenting one again is recognised as reuse and revokes the session.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    issued_ts   INTEGER NOT NULL,
    expires_ts  INTEGER NOT NULL,
    rotated_ts  INTEGER
) STRICT;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
