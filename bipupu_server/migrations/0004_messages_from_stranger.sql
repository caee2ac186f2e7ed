-- The stranger quota counts only cards sent while the sender was not the receiver's contact;
-- cards stored before this column are taken as a stranger's (as they were counted until now).
ALTER TABLE messages ADD COLUMN from_stranger INTEGER NOT NULL DEFAULT 1 CHECK (from_stranger IN (0, 1));
