//! The evidence side of the broker, per kind of hardware: gathering what the
//! pure appraisers in `verifier_lib` need (stored keys and cursors for TPM
//! quotes; certificates and CRLs for SEV-SNP reports) and calling them.

pub mod snp;
pub mod tpm;
