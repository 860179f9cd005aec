//! `writ-loadgen`: simulated TPM hosts that enroll, re-attest and request
//! tokens from one Writ broker on this machine (loopback only), with
//! latency percentiles, errors by the broker's code, offered and achieved
//! rates and the broker's CPU per decision; and the in-process ceiling of
//! the same appraisal and mint work (no HTTP, no database).
//!
//! - [`soft_tpm`]: the simulated TPMs (EK, EK certificate, credential
//!   activation, AK, quotes, event log), encoded from the specifications.
//! - [`target`]: the broker URL (loopback only) and the source addresses.
//! - [`exchange`]: one enrollment, attestation or token request over HTTP,
//!   with the broker's own `/v1` message types (`verifier_lib::api`).
//! - [`fleet`]: the simulated hosts and which of them a broker enrolled.
//! - [`run`]: the modes (`enroll`, `fleet`, `tokens`, `mixed`) and their
//!   schedules; [`stats`] what they record; [`proc_cpu`] CPU time of a
//!   process; [`report`] the printed and JSON report.
//! - [`ceiling`]: the same appraisal and mint in-process, on every core.

pub mod ceiling;
pub mod cli;
pub mod exchange;
pub mod fleet;
pub mod proc_cpu;
pub mod report;
pub mod run;
pub mod soft_tpm;
pub mod stats;
pub mod target;
