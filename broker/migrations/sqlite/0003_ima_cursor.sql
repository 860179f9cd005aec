-- Per-host IMA appraisal cursor: how many IMA entries were accepted and the
-- running PCR 10 after them, in the boot identified by the quote's
-- resetCount/restartCount, under the policy with this hash. Written only
-- after an affirming appraisal.
CREATE TABLE ima_cursors (
    host_id TEXT PRIMARY KEY NOT NULL,
    entries INTEGER NOT NULL,
    pcr10_sha1 BLOB NOT NULL,
    pcr10_sha256 BLOB NOT NULL,
    reset_count INTEGER NOT NULL,
    restart_count INTEGER NOT NULL,
    policy_hash TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
