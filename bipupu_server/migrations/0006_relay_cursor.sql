-- The BLE relay (SPEC §8): for its owner, the newest card the pupu device acknowledged, so that after
-- a restart or a device that was away the relay goes on right after it — no gap, no duplicate.
CREATE TABLE relay_cursor (
    owner_id       TEXT PRIMARY KEY,            -- BIPUPU_BLE_OWNER
    last_acked_id  TEXT,                        -- a message id; NULL: from the first card of the inbox
    updated_at     TEXT NOT NULL
) STRICT, WITHOUT ROWID;
