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
    dropped        INTEGER NOT NULL DEFAULT 0 CHECK (dropped IN (0, 1))
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
