//! `[retention]`: how long rows that no decision needs any more are kept
//! (docs/configuration.md, docs/operations.md). Audit leaves are never
//! deleted.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between retention passes (the first runs at start).
    pub interval_secs: u64,
    /// Appraisal rows older than this many days are deleted, except each
    /// host's latest. Expired used nonces and expired or answered
    /// enrollments are deleted at every pass.
    pub appraisal_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            appraisal_days: 90,
        }
    }
}

impl RetentionConfig {
    pub fn appraisal_secs(&self) -> i64 {
        i64::from(self.appraisal_days).saturating_mul(86_400)
    }
}

pub(super) fn validate(r: &RetentionConfig) -> Result<(), ConfigError> {
    let checks: [(&'static str, bool); 2] = [
        ("retention.interval_secs", r.interval_secs >= 1),
        ("retention.appraisal_days", r.appraisal_days >= 1),
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
    fn finding3_retention_defaults_pass_and_zero_is_refused() {
        let d = RetentionConfig::default();
        assert!(validate(&d).is_ok());
        assert_eq!(d.appraisal_secs(), 90 * 86_400);
        let zero = RetentionConfig {
            appraisal_days: 0,
            ..d
        };
        assert!(matches!(
            validate(&zero),
            Err(ConfigError::Invalid {
                field: "retention.appraisal_days",
                ..
            })
        ));
    }
}
