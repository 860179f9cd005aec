-- Challenges are stateless: a nonce is an HMAC under the fleet challenge
-- key over host id, expiry and randomness, so issuing one writes nothing.
-- Only a used nonce is recorded (by SHA-256, until it expires), in the
-- transaction of the decision that used it; a second use conflicts.
DROP TABLE nonces;
CREATE TABLE used_nonces (
    digest BLOB PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX used_nonces_expiry ON used_nonces (expires_at);
-- Secrets every broker on this database shares (the challenge key),
-- created once by whichever broker needs one first.
CREATE TABLE fleet_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    secret BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
-- Retention deletes expired enrollments and old appraisals by time.
CREATE INDEX enrollments_expiry ON enrollments (expires_at);
CREATE INDEX appraisals_at ON appraisals (at);
