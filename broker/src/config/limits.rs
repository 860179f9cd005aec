//! `[limits]`: bounds on connections, requests, request rates and status
//! streams (docs/configuration.md, docs/operations.md).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[limits]`: what one client, or all of them together, may hold open or
/// ask for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A connection must complete its TLS handshake and send the complete
    /// headers of each request (and of the first one after connecting or
    /// after the previous answer) within this many seconds, or it is closed.
    pub header_read_timeout_secs: u64,
    /// A request (body included) must be answered within this many seconds,
    /// or it gets `408 request_timeout`. The status stream is exempt: it
    /// ends after `status.stream_max_secs`.
    pub request_timeout_secs: u64,
    /// Most connections open at once; beyond it new connections are closed
    /// at once. Keep it below the open-file limit (the broker raises its
    /// soft limit to the hard limit at start and logs both).
    pub max_connections: usize,
    /// Sustained requests per second one source address may make to the
    /// unauthenticated endpoints that write or cost (enrollment, challenges,
    /// attestation, tokens, request keys, derived tokens); one bucket per
    /// IPv4 address or IPv6 /64.
    pub per_source_per_sec: u32,
    /// Requests a source may make in a burst above the sustained rate.
    pub per_source_burst: u32,
    /// Most source addresses tracked at once; sources beyond it share one
    /// bucket until idle ones are dropped.
    pub max_sources: usize,
    /// Most `/v1/status/stream` subscribers at once; beyond it
    /// `503 stream_capacity`.
    pub max_status_streams: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            request_timeout_secs: 60,
            max_connections: 1024,
            per_source_per_sec: 200,
            per_source_burst: 400,
            max_sources: 10_000,
            max_status_streams: 256,
        }
    }
}

pub(super) fn validate(limits: &LimitsConfig) -> Result<(), ConfigError> {
    let checks: [(&'static str, bool); 7] = [
        (
            "limits.header_read_timeout_secs",
            limits.header_read_timeout_secs >= 1,
        ),
        (
            "limits.request_timeout_secs",
            limits.request_timeout_secs >= 1,
        ),
        ("limits.max_connections", limits.max_connections >= 1),
        ("limits.per_source_per_sec", limits.per_source_per_sec >= 1),
        ("limits.per_source_burst", limits.per_source_burst >= 1),
        ("limits.max_sources", limits.max_sources >= 1),
        ("limits.max_status_streams", limits.max_status_streams >= 1),
    ];
    match checks.into_iter().find(|(_, ok)| !ok) {
        Some((field, _)) => Err(ConfigError::Invalid {
            field,
            reason: "must be at least 1".into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_zero_is_refused_with_the_field_named() {
        assert!(validate(&LimitsConfig::default()).is_ok());
        let zeroed = LimitsConfig {
            per_source_burst: 0,
            ..LimitsConfig::default()
        };
        assert!(matches!(
            validate(&zeroed),
            Err(ConfigError::Invalid {
                field: "limits.per_source_burst",
                ..
            })
        ));
    }
}
