-- Continuous governance: TPM clock baseline per host (reboot/rollback
-- detection), why a host is stale/revoked, token lineage and revocation
-- metadata, the status-list version, and a per-host event history.
ALTER TABLE hosts ADD COLUMN tpm_reset_count INTEGER;
ALTER TABLE hosts ADD COLUMN tpm_restart_count INTEGER;
ALTER TABLE hosts ADD COLUMN tpm_clock INTEGER;
ALTER TABLE hosts ADD COLUMN status_reason TEXT;

ALTER TABLE tokens ADD COLUMN parent_cti BLOB;
ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;
ALTER TABLE tokens ADD COLUMN revocation_reason TEXT;
CREATE INDEX tokens_parent ON tokens (parent_cti);
CREATE INDEX tokens_revoked ON tokens (revoked, exp);
CREATE INDEX tokens_workload ON tokens (workload, exp);

CREATE TABLE status_list_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO status_list_state (id, version) VALUES (1, 1);

CREATE TABLE host_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX host_events_host ON host_events (host_id, at);
