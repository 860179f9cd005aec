-- Token Status Lists (draft-ietf-oauth-status-list): every token has a slot
-- (epoch, index) in the list of its epoch. Indices are never reused.
ALTER TABLE tokens ADD COLUMN status_epoch INTEGER;
ALTER TABLE tokens ADD COLUMN status_idx INTEGER;
CREATE UNIQUE INDEX tokens_status_slot ON tokens (status_epoch, status_idx);
CREATE INDEX tokens_status_revoked ON tokens (status_epoch, revoked);

-- The allocator: one row, advanced by one UPDATE per slot. Epoch 0 is
-- "none yet"; its capacity 0 makes the first allocation open epoch 1.
CREATE TABLE status_allocator (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    epoch INTEGER NOT NULL,
    next_idx INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    started_at INTEGER NOT NULL
);
INSERT INTO status_allocator (id, epoch, next_idx, capacity, started_at) VALUES (1, 0, 0, 0, 0);

-- Every epoch ever opened, with the size of its list.
CREATE TABLE status_epochs (
    epoch INTEGER PRIMARY KEY NOT NULL,
    capacity INTEGER NOT NULL,
    started_at INTEGER NOT NULL
);
