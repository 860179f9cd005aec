//! TPM access.
