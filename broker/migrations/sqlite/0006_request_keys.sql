-- Request-signing keys: one per host, certified by the host's AK
-- (TPM2_Certify) during the boot given by reset/restart count; signed token
-- requests are accepted with it while the host's last appraisal is fresh.
CREATE TABLE request_keys (
    host_id TEXT PRIMARY KEY NOT NULL REFERENCES hosts (id),
    key_name BLOB NOT NULL,
    key_public BLOB NOT NULL,
    reset_count INTEGER NOT NULL,
    restart_count INTEGER NOT NULL,
    certified_at INTEGER NOT NULL
);
