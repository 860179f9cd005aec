CREATE TABLE hosts (
    id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    ek_public BLOB NOT NULL,
    ek_cert_digest BLOB NOT NULL,
    ak_public BLOB NOT NULL,
    ak_name BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_attested_at INTEGER,
    last_failure TEXT,
    policy_id TEXT
);

CREATE TABLE enrollments (
    id TEXT PRIMARY KEY NOT NULL,
    host_id TEXT NOT NULL,
    ek_public BLOB NOT NULL,
    ek_cert_digest BLOB NOT NULL,
    ak_public BLOB NOT NULL,
    ak_name BLOB NOT NULL,
    secret_digest BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE nonces (
    nonce BLOB PRIMARY KEY NOT NULL,
    host_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE appraisals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    evidence_digest BLOB NOT NULL,
    failures TEXT NOT NULL
);
CREATE INDEX appraisals_host ON appraisals (host_id, at);

CREATE TABLE tokens (
    cti BLOB PRIMARY KEY NOT NULL,
    host_id TEXT NOT NULL,
    workload TEXT NOT NULL,
    workload_digest BLOB NOT NULL,
    iat INTEGER NOT NULL,
    exp INTEGER NOT NULL,
    policy_id TEXT NOT NULL,
    token_digest BLOB NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_host ON tokens (host_id, exp);
