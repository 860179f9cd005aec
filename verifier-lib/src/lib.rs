//! # verifier-lib
//!
//! Writ's verifier core. It is pure and synchronous: bytes, trust anchors,
//! policy and `now` go in; typed verdicts and claims come out. There is no
//! tokio, no file access, no network and no clock read in this crate, so every
//! function can be tested against vectors and fuzzed.
//!
//! Every parser produces a checked type before any cryptography runs
//! (`RawQuote` → `VerifiedQuote`), rejects trailing bytes and never panics.
#![forbid(unsafe_code)]

pub mod api;
pub mod appraisal;
pub mod audit;
pub mod credential;
pub mod crypto;
pub mod decision;
pub mod ekcert;
pub mod error;
pub mod eventlog;
/// Fuzz-target entry points. Compiled only with the `fuzzing` feature, which
/// only `fuzz/Cargo.toml` enables: the module embeds a published test signing
/// key and must never be part of a production build.
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod host_clock;
pub mod ima;
pub mod lineage;
pub mod pem;
pub mod policy;
pub mod pop;
pub mod request;
mod signed;
pub mod snp;
pub mod snp_appraisal;
pub mod status;
pub mod token;
pub mod tpm;
pub mod wire;

pub use error::Error;
