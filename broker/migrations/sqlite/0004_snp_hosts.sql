-- SEV-SNP hosts, registered at their first affirming appraisal (their
-- `hosts` row has empty EK/AK columns: they are not TPM-enrolled).
CREATE TABLE snp_hosts (
    host_id TEXT PRIMARY KEY NOT NULL,
    chip_id BLOB NOT NULL,
    measurement BLOB NOT NULL,
    host_data BLOB NOT NULL,
    product TEXT NOT NULL,
    signer TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);
