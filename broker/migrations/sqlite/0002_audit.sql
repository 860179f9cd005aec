-- Signed Merkle audit log (docs/audit.md). One row per leaf; `idx` is the
-- leaf's position in the RFC 9162 tree and is assigned consecutively by the
-- writer inside the transaction that also applies the decision's state
-- change. `leaf_hash` = SHA-256(0x00 || leaf), kept so an audit can name
-- the exact row that was edited.
CREATE TABLE audit_leaves (
    idx INTEGER PRIMARY KEY NOT NULL,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    time INTEGER NOT NULL
);

-- Every signed checkpoint (C2SP signed note) in issue order.
CREATE TABLE audit_checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX audit_checkpoints_size ON audit_checkpoints (size);
