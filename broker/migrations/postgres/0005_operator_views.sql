-- Operator views (docs/operations.md).
--
-- Each token records the index of its own `token_minted` audit leaf (the
-- `audit_index` claim it carries); NULL for tokens minted before this.
ALTER TABLE tokens ADD COLUMN audit_index BIGINT CHECK (audit_index >= 0);
-- `GET /v1/tokens` pages newest first by (iat, cti).
CREATE INDEX tokens_iat ON tokens (iat, cti);

-- An activation records since when the version had been the shadow
-- candidate (NULL: it was never evaluated in shadow before it became
-- active, so which hosts it affected is not known).
ALTER TABLE policy_activations ADD COLUMN shadowed_since BIGINT;

-- The host page's status timeline reads a host's events newest first.
CREATE INDEX host_events_host_id ON host_events (host_id, id);
