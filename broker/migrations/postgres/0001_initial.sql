-- The PostgreSQL schema: the SQLite schema as it stands after its migration
-- 0008 (migrations/sqlite/), translated: BYTEA for blobs, BIGINT for
-- integers and times, BOOLEAN for flags, identity columns for row ids.
-- Later changes get a migration in both folders.

CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL
        CHECK (status IN ('enrolled', 'trusted', 'failed', 'stale', 'revoked')),
    ek_public BYTEA NOT NULL,
    ek_cert_digest BYTEA NOT NULL,
    ak_public BYTEA NOT NULL,
    ak_name BYTEA NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_attested_at BIGINT,
    last_failure TEXT,
    policy_id TEXT,
    -- TPM clock baseline (all three or none), reboot/rollback detection.
    tpm_reset_count BIGINT,
    tpm_restart_count BIGINT,
    tpm_clock BIGINT,
    status_reason TEXT,
    CHECK ((tpm_reset_count IS NULL) = (tpm_restart_count IS NULL)
       AND (tpm_reset_count IS NULL) = (tpm_clock IS NULL))
);

CREATE TABLE enrollments (
    id TEXT PRIMARY KEY,
    host_id TEXT NOT NULL,
    ek_public BYTEA NOT NULL,
    ek_cert_digest BYTEA NOT NULL,
    ak_public BYTEA NOT NULL,
    ak_name BYTEA NOT NULL,
    secret_digest BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed BOOLEAN NOT NULL DEFAULT FALSE
);
-- Retention deletes expired enrollments by time.
CREATE INDEX enrollments_expiry ON enrollments (expires_at);

CREATE TABLE appraisals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    evidence_digest BYTEA NOT NULL,
    failures TEXT NOT NULL
);
CREATE INDEX appraisals_host ON appraisals (host_id, at);
CREATE INDEX appraisals_at ON appraisals (at);

CREATE TABLE tokens (
    cti BYTEA PRIMARY KEY,
    host_id TEXT NOT NULL,
    workload TEXT NOT NULL,
    workload_digest BYTEA NOT NULL,
    iat BIGINT NOT NULL,
    exp BIGINT NOT NULL,
    policy_id TEXT NOT NULL,
    token_digest BYTEA NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    -- Lineage: the token this one was derived from.
    parent_cti BYTEA,
    revoked_at BIGINT,
    revocation_reason TEXT
);
CREATE INDEX tokens_host ON tokens (host_id, exp);
CREATE INDEX tokens_parent ON tokens (parent_cti);
CREATE INDEX tokens_revoked ON tokens (revoked, exp);
CREATE INDEX tokens_workload ON tokens (workload, exp);

-- Signed Merkle audit log (docs/audit.md). One row per leaf; `idx` is the
-- leaf's position in the RFC 9162 tree, assigned consecutively by the
-- writer inside the transaction that also applies the decision's state
-- change. `leaf_hash` = SHA-256(0x00 || leaf).
CREATE TABLE audit_leaves (
    idx BIGINT PRIMARY KEY CHECK (idx >= 0),
    leaf BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32),
    time BIGINT NOT NULL
);

-- The log head: one row, locked (SELECT ... FOR UPDATE) by every append
-- transaction before it reads the next free index, so two brokers on this
-- database can never both append leaf N.
CREATE TABLE audit_log_head (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);
INSERT INTO audit_log_head (id) VALUES (1);

-- Every signed checkpoint (C2SP signed note) in issue order.
CREATE TABLE audit_checkpoints (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0),
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_checkpoints_size ON audit_checkpoints (size);

-- Per-host IMA appraisal cursor (written only after an affirming appraisal).
CREATE TABLE ima_cursors (
    host_id TEXT PRIMARY KEY,
    entries BIGINT NOT NULL,
    pcr10_sha1 BYTEA NOT NULL,
    pcr10_sha256 BYTEA NOT NULL,
    reset_count BIGINT NOT NULL,
    restart_count BIGINT NOT NULL,
    policy_hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- SEV-SNP hosts, registered at their first affirming appraisal.
CREATE TABLE snp_hosts (
    host_id TEXT PRIMARY KEY,
    chip_id BYTEA NOT NULL,
    measurement BYTEA NOT NULL,
    host_data BYTEA NOT NULL,
    product TEXT NOT NULL,
    signer TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);

CREATE TABLE status_list_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO status_list_state (id, version) VALUES (1, 1);

CREATE TABLE host_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX host_events_host ON host_events (host_id, at);

-- Request-signing keys: one per host, certified by the host's AK.
CREATE TABLE request_keys (
    host_id TEXT PRIMARY KEY REFERENCES hosts (id),
    key_name BYTEA NOT NULL,
    key_public BYTEA NOT NULL,
    reset_count BIGINT NOT NULL,
    restart_count BIGINT NOT NULL,
    certified_at BIGINT NOT NULL
);

-- Revocations recorded against a TPM's identity (EK key and certificate).
CREATE TABLE revoked_identities (
    name TEXT PRIMARY KEY,
    host_id TEXT NOT NULL REFERENCES hosts (id),
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_identities_by_host ON revoked_identities (host_id);

-- Used challenge nonces (by SHA-256) until they expire; the primary key
-- makes a second use, through any broker, conflict.
CREATE TABLE used_nonces (
    digest BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_nonces_expiry ON used_nonces (expires_at);

-- Secrets every broker on this database shares (the challenge key),
-- created once by whichever broker needs one first.
CREATE TABLE fleet_secrets (
    name TEXT PRIMARY KEY,
    secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
