-- Admin pages: a page login is a session of its own kind (no refresh token; signing out everywhere,
-- a password reset or a deactivation ends it like any login), with when its password was last
-- checked (dangerous actions ask again after a few minutes). Every admin action is in audit_log.
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'admin'));
ALTER TABLE sessions ADD COLUMN verified_ts INTEGER;

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    actor_id    TEXT NOT NULL,                  -- the admin's bipupu_id
    action      TEXT NOT NULL,                  -- e.g. 'user.deactivate', 'service.broadcast'
    target      TEXT,                           -- a bipupu_id or a service id
    detail      TEXT NOT NULL DEFAULT '{}',     -- JSON object; never a password or a token
    address     TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_by_target ON audit_log (target, id);
