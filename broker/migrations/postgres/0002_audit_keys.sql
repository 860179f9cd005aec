-- Several brokers, one audit log (docs/audit.md): each checkpoint names the
-- key that signed it (`<key name>+<8 hex key hash>`, the signed-note key id;
-- NULL on rows written before this migration: the id is then read from the
-- note's signature line), and every broker publishes its checkpoint verifier
-- key here at start.
ALTER TABLE audit_checkpoints ADD COLUMN key_id TEXT;
CREATE INDEX audit_checkpoints_key_id ON audit_checkpoints (key_id, id);

CREATE TABLE audit_keys (
    key_id TEXT PRIMARY KEY,
    vkey TEXT NOT NULL,
    broker TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    retired_at BIGINT
);
