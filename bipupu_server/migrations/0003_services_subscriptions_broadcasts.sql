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
