//! What the broker tells its operators about itself: Prometheus metrics
//! ([`Metrics`], served at `/metrics`), per-request ids and latency
//! ([`http`]) and the log format ([`logs`]).

pub mod http;
pub mod logs;
mod metrics;

pub use self::metrics::{Metrics, METRIC_NAMES};
