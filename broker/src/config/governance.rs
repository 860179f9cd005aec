//! Configuration of continuous governance: `[hosts]`, `[status]`, `[lineage]`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[hosts]`: re-attestation cadence and staleness.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostsConfig {
    /// How often hosts are expected to re-attest, in seconds.
    pub attestation_interval_secs: u64,
    /// A trusted host whose last passing attestation is older than this many
    /// intervals becomes `stale` (and its tokens are revoked).
    pub stale_after_intervals: u32,
    /// A reboot (new TPM resetCount) is accepted only with a new boot log.
    pub boot_log_required: bool,
    /// Requests signed by a host's request key (`/v1/tokens/signed`) are
    /// accepted while its last passing appraisal is at most this old, in
    /// seconds; `0` refuses every signed request.
    pub signed_request_max_age_secs: i64,
}

impl Default for HostsConfig {
    fn default() -> Self {
        Self {
            attestation_interval_secs: 60,
            stale_after_intervals: 3,
            boot_log_required: false,
            signed_request_max_age_secs: 120,
        }
    }
}

impl HostsConfig {
    /// Seconds after the last passing attestation at which a host is stale.
    pub fn stale_after_secs(&self) -> i64 {
        let secs = self
            .attestation_interval_secs
            .saturating_mul(u64::from(self.stale_after_intervals));
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// How often the stale-host sweeper runs.
    pub fn sweep_period(&self) -> std::time::Duration {
        std::time::Duration::from_millis((self.attestation_interval_secs * 1000 / 2).max(500))
    }
}

/// `[status]`: the signed revocation status list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Validity of a published list, in seconds.
    pub ttl_secs: i64,
    /// An unchanged list is re-signed (a new `iat`) once it is this old, and
    /// pushed again to `/v1/status/stream` subscribers, so relying parties
    /// that measure freshness from the signed `iat` stay fresh while nothing
    /// changes. At least 1, below `ttl_secs` (and at most half of it).
    pub resign_secs: i64,
    /// How often the broker checks the database for revocations made
    /// elsewhere (other brokers, the sweeper), in milliseconds.
    pub poll_interval_ms: u64,
    /// Lists up to this size ride inline in stream events.
    pub inline_max_bytes: usize,
    /// A stream is closed after this long (clients reconnect); bounds shutdown.
    pub stream_max_secs: u64,
    /// The fleet's public base URL: tokens name their list as
    /// `{public_base_url}/v1/status/lists/{epoch}`. Every broker of a fleet
    /// must have the same one (e.g. the load balancer's URL). Default:
    /// `https://{server.listen}` (`http://` without TLS).
    pub public_base_url: Option<String>,
    /// Entries of one status list: a new list (epoch) opens when it is full.
    pub list_capacity: u64,
    /// A new list also opens once the current one is this old, in seconds
    /// (0: only when full).
    pub epoch_period_secs: i64,
}

impl StatusConfig {
    /// When new epochs open.
    pub fn epoch_plan(&self) -> crate::store::EpochPlan {
        crate::store::EpochPlan {
            capacity: self.list_capacity.max(1),
            period_secs: self.epoch_period_secs.max(0),
        }
    }
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 300,
            resign_secs: 10,
            poll_interval_ms: 250,
            inline_max_bytes: 64 * 1024,
            stream_max_secs: 300,
            public_base_url: None,
            list_capacity: 1_048_576,
            epoch_period_secs: 0,
        }
    }
}

/// `[lineage]`: derived tokens and proofs of possession at the broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LineageConfig {
    /// Oldest accepted proof of possession, in seconds.
    pub pop_max_age_secs: i64,
    /// Proofs remembered for replay detection, in all (refuses when full).
    pub replay_cache_entries: usize,
    /// Proofs remembered per parent `cnf` key (refuses that key's proofs
    /// when full): one key cannot fill the cache for the others. With
    /// `pop_max_age_secs` = 60 the default allows one key ≈ 16 derivations
    /// per second, sustained.
    pub replay_cache_entries_per_key: usize,
}

impl Default for LineageConfig {
    fn default() -> Self {
        Self {
            pop_max_age_secs: 60,
            replay_cache_entries: 100_000,
            replay_cache_entries_per_key: 1_000,
        }
    }
}

/// Checks of the governance sections.
pub fn validate(
    hosts: &HostsConfig,
    status: &StatusConfig,
    lineage: &LineageConfig,
) -> Result<(), ConfigError> {
    let invalid = |field, reason: &str| ConfigError::Invalid {
        field,
        reason: reason.into(),
    };
    if hosts.attestation_interval_secs == 0 || hosts.stale_after_intervals == 0 {
        return Err(invalid(
            "hosts",
            "interval and stale_after_intervals must be ≥ 1",
        ));
    }
    if hosts.signed_request_max_age_secs < 0 {
        return Err(invalid("hosts.signed_request_max_age_secs", "must be ≥ 0"));
    }
    if status.ttl_secs < 2 || status.poll_interval_ms == 0 || status.stream_max_secs == 0 {
        return Err(invalid(
            "status",
            "ttl_secs ≥ 2, poll_interval_ms and stream_max_secs ≥ 1",
        ));
    }
    if status.resign_secs < 1 || status.resign_secs >= status.ttl_secs {
        return Err(invalid("status.resign_secs", "1 ≤ resign_secs < ttl_secs"));
    }
    if lineage.pop_max_age_secs <= 0
        || lineage.replay_cache_entries == 0
        || lineage.replay_cache_entries_per_key == 0
    {
        return Err(invalid(
            "lineage",
            "pop_max_age_secs, replay_cache_entries and replay_cache_entries_per_key ≥ 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_intervals_are_refused() {
        let (h, s, l) = (
            HostsConfig::default(),
            StatusConfig::default(),
            LineageConfig::default(),
        );
        assert!(validate(&h, &s, &l).is_ok());
        assert_eq!(h.stale_after_secs(), 180);
        assert_eq!(h.sweep_period(), std::time::Duration::from_secs(30));
        let zero = HostsConfig {
            attestation_interval_secs: 0,
            ..h.clone()
        };
        assert!(matches!(
            validate(&zero, &s, &l),
            Err(ConfigError::Invalid { field: "hosts", .. })
        ));
        let no_per_key = LineageConfig {
            replay_cache_entries_per_key: 0,
            ..l.clone()
        };
        assert!(matches!(
            validate(&h, &s, &no_per_key),
            Err(ConfigError::Invalid {
                field: "lineage",
                ..
            })
        ));
        let short = StatusConfig { ttl_secs: 1, ..s };
        assert!(matches!(
            validate(&h, &short, &l),
            Err(ConfigError::Invalid {
                field: "status",
                ..
            })
        ));
    }
}
