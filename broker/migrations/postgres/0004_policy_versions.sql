-- Policy lives in the store (docs/policy.md): every imported policy
-- document is a version (identified by the SHA-256 of its exact text, hex);
-- the active and the shadow version are pointers; every activation is a
-- history row; shadow evaluation records where a candidate's verdict
-- differs from the active policy's.
CREATE TABLE policy_versions (
    id BIGSERIAL PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    policy_id TEXT NOT NULL,
    body TEXT NOT NULL,
    signer TEXT,
    created_at BIGINT NOT NULL,
    activated_at BIGINT
);

CREATE TABLE policy_pointers (
    slot TEXT PRIMARY KEY CHECK (slot IN ('active', 'shadow')),
    version_id BIGINT REFERENCES policy_versions (id),
    updated_at BIGINT NOT NULL
);

CREATE TABLE policy_activations (
    seq BIGSERIAL PRIMARY KEY,
    version_id BIGINT NOT NULL REFERENCES policy_versions (id),
    previous_version_id BIGINT REFERENCES policy_versions (id),
    at BIGINT NOT NULL
);

CREATE TABLE policy_shadow_differences (
    id BIGSERIAL PRIMARY KEY,
    host_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    active_hash TEXT NOT NULL,
    shadow_hash TEXT NOT NULL,
    active_verdict TEXT NOT NULL,
    shadow_verdict TEXT NOT NULL,
    active_failures TEXT NOT NULL,
    shadow_failures TEXT NOT NULL
);
CREATE INDEX policy_shadow_differences_shadow ON policy_shadow_differences (shadow_hash, id);
