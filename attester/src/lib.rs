//! # writ-attester
//!
//! The host agent: enrolls the host (EK certificate + credential
//! activation), answers challenges with TPM quotes, and runs workloads only
//! with a valid execution token. All verification is done by `verifier-lib`;
//! this crate talks to the TPM and the broker.
#![forbid(unsafe_code)]

pub mod client;
pub mod commands;
pub mod daemon;
pub mod error;
pub mod launch;
pub mod logs;
pub mod pinning;
pub mod program;
pub mod reference;
pub mod request_key;
pub mod revocation;
pub mod snp;
pub mod snp_cli;
pub mod state;
pub mod token_cache;
pub mod tpm;
pub mod workload_api;
pub mod workload_cli;
pub mod workload_key;
