-- Bipupu schema: the current shape of a new database (PRAGMA user_version = SCHEMA_VERSION, the
-- highest number in bipupu_server/migrations/). Older databases reach it through those numbered
-- files, one step each; a change goes into a new file and here, and tests/test_db.py checks they agree.
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
    revoked_why   TEXT,
    kind          TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'admin')),  -- 'admin': an admin page login
    verified_ts   INTEGER                       -- admin logins: when the password was last checked
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

-- Postcards. A row is one card; each side's mailbox shows it while its flag is 1. A card
-- silently dropped (block, contacts_only privacy) is stored for the sender only.
CREATE TABLE messages (
    id             TEXT NOT NULL PRIMARY KEY,   -- UUIDv7: string order = acceptance order
    sender_id      TEXT NOT NULL,               -- a bipupu_id or a service id
    receiver_id    TEXT NOT NULL,               -- a bipupu_id or a service id
    content        TEXT NOT NULL,
    msg_type       TEXT NOT NULL
                   CHECK (msg_type IN ('USER_POSTCARD', 'VOICE_TRANSCRIPT', 'COSMIC_BROADCAST')),
    pattern        TEXT NOT NULL DEFAULT '{}',  -- JSON object
    created_at     TEXT NOT NULL,
    client_msg_id  TEXT,                        -- the sender's idempotency key
    in_inbox       INTEGER NOT NULL DEFAULT 1 CHECK (in_inbox IN (0, 1)),
    in_outbox      INTEGER NOT NULL DEFAULT 1 CHECK (in_outbox IN (0, 1)),
    dropped        INTEGER NOT NULL DEFAULT 0 CHECK (dropped IN (0, 1)),
    -- 1 when the sender was not among the receiver's contacts then: what the stranger quota counts
    from_stranger  INTEGER NOT NULL DEFAULT 1 CHECK (from_stranger IN (0, 1))
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_client_id ON messages (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_by_receiver ON messages (receiver_id, id);
CREATE INDEX messages_by_sender ON messages (sender_id, id);
CREATE INDEX messages_by_pair ON messages (sender_id, receiver_id, id);

CREATE TABLE trusted_contacts (
    owner_id    TEXT NOT NULL REFERENCES users (bipupu_id),
    contact_id  TEXT NOT NULL REFERENCES users (bipupu_id),
    alias       TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (owner_id, contact_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE user_blocks (
    blocker_id  TEXT NOT NULL REFERENCES users (bipupu_id),
    blocked_id  TEXT NOT NULL REFERENCES users (bipupu_id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) STRICT, WITHOUT ROWID;

-- Service accounts: cards to them are commands; they answer and broadcast as COSMIC_BROADCAST.
-- kind: 'fortune' (a generated daily fortune), 'notice' (reaches every active user, no
-- subscription), 'custom' (sends daily_content every day when it is set).
CREATE TABLE services (
    id             TEXT PRIMARY KEY
                   CHECK (id GLOB '[a-z]*.[a-z]*' AND id NOT GLOB '*[^a-z0-9_.]*'),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('fortune', 'notice', 'custom')),
    commands       TEXT NOT NULL,               -- JSON {"subscribe": [...], "unsubscribe": [...], "help": [...]}
    send_time      TEXT NOT NULL DEFAULT '00:00' CHECK (send_time GLOB '[0-2][0-9]:[0-5][0-9]'),
    daily_content  TEXT,
    is_active      INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at     TEXT NOT NULL
) STRICT;
INSERT INTO services (id, name, description, kind, commands, created_at) VALUES
    ('cosmic.fortune', '宇宙运势', '每天一份属于你的运势：宜忌、幸运色和幸运数字，幸运色会点亮你的 pupu。', 'fortune',
     '{"subscribe": ["TD", "订阅", "SUB"], "unsubscribe": ["退订", "STOP", "UNSUB"], "help": ["?", "HELP", "帮助"]}',
     strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('bipupu.notice', '系统通知', '来自 Bipupu 管理员的公告，发给每一位用户。', 'notice',
     '{"subscribe": ["TD", "订阅", "SUB"], "unsubscribe": ["退订", "STOP", "UNSUB"], "help": ["?", "HELP", "帮助"]}',
     strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

CREATE TABLE subscriptions (
    service_id  TEXT NOT NULL REFERENCES services (id),
    bipupu_id   TEXT NOT NULL REFERENCES users (bipupu_id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (service_id, bipupu_id)
) STRICT, WITHOUT ROWID;

-- One row per (service, local day, user) that got that day's broadcast: the primary key is
-- what makes the daily broadcast exactly-once across restarts, clock jumps and double ticks.
CREATE TABLE daily_deliveries (
    service_id  TEXT NOT NULL,
    day         TEXT NOT NULL,                  -- YYYY-MM-DD in BIPUPU_TIMEZONE
    bipupu_id   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    PRIMARY KEY (service_id, day, bipupu_id)
) STRICT, WITHOUT ROWID;

-- A day's broadcast of a service that ran to its end (an unfinished one resumes at start-up).
CREATE TABLE broadcast_runs (
    service_id   TEXT NOT NULL,
    day          TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    sent         INTEGER NOT NULL,
    duration_s   REAL NOT NULL,
    PRIMARY KEY (service_id, day)
) STRICT, WITHOUT ROWID;

-- Every admin action: who, what, whom, when, from where. Never a password or a token.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    actor_id    TEXT NOT NULL,                  -- the admin's bipupu_id
    action      TEXT NOT NULL,                  -- e.g. 'user.deactivate', 'service.broadcast'
    target      TEXT,                           -- a bipupu_id or a service id
    detail      TEXT NOT NULL DEFAULT '{}',     -- JSON object
    address     TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_by_target ON audit_log (target, id);

-- The BLE relay: for its owner, the newest card the pupu device acknowledged (SPEC §8).
CREATE TABLE relay_cursor (
    owner_id       TEXT PRIMARY KEY,            -- BIPUPU_BLE_OWNER
    last_acked_id  TEXT,                        -- a message id; NULL: from the first card of the inbox
    updated_at     TEXT NOT NULL
) STRICT, WITHOUT ROWID;
