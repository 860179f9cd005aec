-- Signed policies (docs/policy.md): the detached COSE_Sign1 signature of a
-- policy version, checked at import and again whenever a broker loads the
-- version; `signer` holds the kid of the operator key that made it.
ALTER TABLE policy_versions ADD COLUMN signature BYTEA;
