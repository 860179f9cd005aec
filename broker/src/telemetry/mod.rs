//! What the broker tells its operators about itself: Prometheus metrics
//! ([`Metrics`], served at `/metrics`), per-request ids and latency
//! ([`http`]), the log format ([`logs`]) and the readiness report behind
//! `/readyz` ([`readiness`]).

pub mod http;
pub mod logs;
mod metrics;
pub mod readiness;

pub use self::metrics::{Metrics, METRIC_NAMES};
