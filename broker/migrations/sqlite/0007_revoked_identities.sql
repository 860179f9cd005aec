-- Revocations recorded against a TPM's identity, not only against its host
-- row: the EK key (`ek-key:` + SHA-256 of its canonical encoding) and the EK
-- certificate (`ek-cert:` + SHA-256 of its DER). Enrollment of a TPM whose
-- key, under any encoding, or whose certificate is listed here is refused;
-- reinstating the host deletes its rows. Hosts revoked before this table
-- existed are added when the store is opened.
CREATE TABLE revoked_identities (
    name TEXT PRIMARY KEY NOT NULL,
    host_id TEXT NOT NULL REFERENCES hosts (id),
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revoked_identities_by_host ON revoked_identities (host_id);
