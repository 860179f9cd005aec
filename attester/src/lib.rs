//! writ-attester library.
#![forbid(unsafe_code)]
pub mod tpm;
