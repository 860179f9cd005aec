//! # writ-broker
//!
//! The broker is a thin I/O shell around `verifier-lib`: it issues nonces,
//! keeps per-host state, appraises evidence with the active policy and mints
//! execution tokens. All parsing and cryptographic verification happen in
//! `verifier-lib`.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decision;
pub mod governance;
pub mod keys;
pub mod mint;
pub mod policy;
pub mod server;
pub mod state;
pub mod store;
pub mod tee;
pub mod telemetry;
pub mod token_filter;
pub mod ui;

pub use api::app;
