//! Broker configuration: defaults → TOML file → `WRIT_` environment
//! variables, parsed once into typed structs and passed down.
//!
//! Environment variables use `__` between section and key, e.g.
//! `WRIT_SERVER__LISTEN=127.0.0.1:9000` or `WRIT_STORAGE__URL=sqlite://x.db`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod governance;
mod limits;
mod operators;
mod retention;

pub use governance::{HostsConfig, LineageConfig, StatusConfig};
pub use limits::LimitsConfig;
pub use operators::{Operator, OperatorToken, OperatorsConfig, UNAUTHENTICATED};
pub use retention::RetentionConfig;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole broker configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub broker: BrokerConfig,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub keys: KeysConfig,
    pub policy: PolicyConfig,
    pub trust: TrustConfig,
    pub tokens: TokensConfig,
    pub nonces: NonceConfig,
    pub snp: SnpConfig,
    pub audit: AuditConfig,
    pub hosts: HostsConfig,
    pub status: StatusConfig,
    pub lineage: LineageConfig,
    pub operators: OperatorsConfig,
    pub limits: LimitsConfig,
    pub retention: RetentionConfig,
}

/// This broker among several on one database.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// The broker's name, recorded with its checkpoint key in the store's
    /// audit key table. Empty: the host name.
    pub name: String,
}

impl BrokerConfig {
    /// `name`, or the host name when it is empty.
    pub fn name_or_host(&self) -> String {
        if self.name.is_empty() {
            crate::audit::key::host_name()
        } else {
            self.name.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the broker serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Maximum request body size in bytes.
    pub body_limit_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://path/to/writ.db` (created if missing).
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Directory holding the token signing key (`token-key.pem`, mode 0600).
    pub dir: PathBuf,
    /// After `writ-broker keys rotate`, the previous token key stays in the
    /// published key set (`/v1/keys`) this many seconds, so tokens it signed
    /// keep verifying; the broker retires it at its first start after that
    /// (or `writ-broker keys retire` does at once). At least the longest
    /// token lifetime plus `tokens.leeway_secs`.
    pub overlap_secs: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A policy document (TOML) to import: at start, and whenever it
    /// changes, it is stored as a version and activated unless it already
    /// is the active one. Empty: the store's active version is used as it
    /// is (`writ-broker policy activate`).
    pub file: PathBuf,
    /// How often the file is checked for changes, in seconds.
    pub reload_interval_secs: u64,
    /// How often the store's active and shadow policy pointers are polled
    /// (activations by other brokers or offline), in milliseconds.
    pub poll_interval_ms: u64,
    /// Operator public keys (P-256 SubjectPublicKeyInfo, PEM or DER files)
    /// whose signatures this broker accepts on policies. Non-empty: every
    /// policy must be signed by one of them (`writ-broker policy sign`) at
    /// import, and its stored signature is checked again when a broker
    /// loads it; signed policies cannot be rolled back.
    pub signing_keys: Vec<PathBuf>,
}

impl PolicyConfig {
    /// The file to import, when one is set.
    pub fn import_file(&self) -> Option<&std::path::Path> {
        (!self.file.as_os_str().is_empty()).then_some(self.file.as_path())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// Use the bundled TPM manufacturer CA store.
    pub bundled_manufacturers: bool,
    /// Extra EK roots: PEM/DER files, or directories of them.
    pub ek_roots: Vec<PathBuf>,
    /// Extra EK intermediates: PEM/DER files, or directories of them.
    pub ek_intermediates: Vec<PathBuf>,
    /// TESTS ONLY: extra SEV-SNP roots (self-signed ARKs) trusted next to
    /// the pinned AMD ARKs. `writ-broker serve` refuses to start with any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dangerous_snp_test_roots: Vec<SnpTestRoot>,
}

/// A test ARK for one product (see `trust.dangerous_snp_test_roots`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnpTestRoot {
    /// `Milan`, `Genoa` or `Turin`.
    pub product: String,
    /// The ARK certificate (PEM or DER).
    pub file: PathBuf,
}

/// Where SEV-SNP certificates and CRLs come from (see docs/configuration.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnpConfig {
    /// AMD Key Distribution Service base URL.
    pub kds_url: String,
    /// Fetch from KDS what the offline bundle and the cache lack.
    pub kds_fetch: bool,
    /// KDS request timeout, in seconds.
    pub kds_timeout_secs: u64,
    /// On-disk cache of fetched certificates and CRLs.
    pub cache_dir: PathBuf,
    /// Cached certificates are re-fetched after this many seconds.
    pub cert_cache_ttl_secs: u64,
    /// A cached CRL is re-fetched this many seconds before its nextUpdate.
    pub crl_refresh_margin_secs: i64,
    /// Offline bundle for air-gapped sites:
    /// `<dir>/<product>/cert_chain.pem`, `crl.der`, `vcek/<hwid-hex>-<tcb-hex>.der`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_dir: Option<PathBuf>,
    /// A 4xx answer from KDS (no such chip or TCB) is remembered this many
    /// seconds: the same URL is not fetched again meanwhile.
    pub kds_negative_cache_secs: u64,
    /// Sustained KDS fetches per minute, for all requests together.
    pub kds_fetches_per_min: u32,
    /// KDS fetches allowed in a burst above the sustained rate.
    pub kds_fetch_burst: u32,
    /// Most KDS fetches running at once. Beyond any of these bounds the
    /// request is refused with `503 kds_busy`.
    pub kds_max_in_flight: usize,
}

impl Default for SnpConfig {
    fn default() -> Self {
        Self {
            kds_url: "https://kdsintf.amd.com".into(),
            kds_fetch: true,
            kds_timeout_secs: 10,
            cache_dir: PathBuf::from("writ-state/kds-cache"),
            cert_cache_ttl_secs: 7 * 86_400,
            crl_refresh_margin_secs: 3600,
            offline_dir: None,
            kds_negative_cache_secs: 3600,
            kds_fetches_per_min: 60,
            kds_fetch_burst: 20,
            kds_max_in_flight: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// `iss` of every token.
    pub issuer: String,
    /// Clock leeway when the broker itself checks tokens, in seconds
    /// (`0..=`[`MAX_LEEWAY_SECS`]).
    pub leeway_secs: i64,
}

/// Largest accepted `tokens.leeway_secs`: more would let expired tokens,
/// proofs and status lists pass for minutes.
pub const MAX_LEEWAY_SECS: i64 = 300;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NonceConfig {
    /// Lifetime of a challenge nonce, in seconds.
    pub ttl_secs: i64,
    /// Lifetime of a pending enrollment (credential activation), in seconds.
    pub enrollment_ttl_secs: i64,
}

/// The signed Merkle audit log (docs/audit.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Log identity (first checkpoint line and checkpoint key name). Empty:
    /// `writ-broker/<hostname>`. Keep it fixed for the life of a log.
    pub origin: String,
    /// Sign a checkpoint at least this often (seconds) when the log grew.
    pub checkpoint_interval_secs: u64,
    /// Also sign one right after a committed batch once this many leaves
    /// were appended since the last checkpoint (1 = after every batch).
    pub checkpoint_min_leaves: u64,
    /// Most decisions committed in one transaction (group commit).
    pub max_batch: usize,
    /// Unauthenticated refusals (`enroll/start`) from one source within
    /// this many seconds are logged as one summary leaf when the window
    /// closes (or at shutdown).
    pub refusal_window_secs: u64,
    /// Load the leaves other brokers on the same database appended this
    /// often (milliseconds), so proofs and checkpoints cover them; 0: only
    /// when a batch commits, a checkpoint is signed or a reader asks beyond
    /// the tree.
    pub follow_interval_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            origin: String::new(),
            checkpoint_interval_secs: 10,
            checkpoint_min_leaves: 256,
            max_batch: 256,
            refusal_window_secs: 60,
            follow_interval_ms: 500,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            body_limit_bytes: 1024 * 1024,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://writ-state/writ.db".into(),
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("writ-state/keys"),
            overlap_secs: 3600,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("policy.toml"),
            reload_interval_secs: 2,
            poll_interval_ms: 2000,
            signing_keys: Vec::new(),
        }
    }
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            bundled_manufacturers: true,
            ek_roots: Vec::new(),
            ek_intermediates: Vec::new(),
            dangerous_snp_test_roots: Vec::new(),
        }
    }
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: "writ-broker".into(),
            leeway_secs: 30,
        }
    }
}

impl Default for NonceConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 60,
            enrollment_ttl_secs: 120,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("configuration: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Largest `status.list_capacity`: one list's statuses stay within the
/// relying parties' default decompression cap (16 MiB = 2^27 one-bit entries).
pub const MAX_STATUS_LIST_CAPACITY: u64 = 1 << 27;

impl Config {
    /// The URI of epoch `epoch`'s status list, as tokens carry it.
    pub fn status_list_uri(&self, epoch: u64) -> String {
        let base = match &self.status.public_base_url {
            Some(u) => u.clone(),
            None => {
                let scheme = if self.server.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.server.listen)
            }
        };
        format!("{base}/v1/status/lists/{epoch}")
    }

    /// Load defaults, then `file` (if given), then `WRIT_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        let cfg: Config = fig
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The environment provider used in production: `WRIT_SECTION__KEY`.
    /// Only names with a `__` are configuration; other `WRIT_*` variables
    /// (`WRIT_LOG`, the attester's `WRIT_TCTI`, ...) are not.
    pub fn process_env() -> Env {
        Env::prefixed("WRIT_")
            .filter(|k| k.as_str().contains("__"))
            .split("__")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tokens.issuer.is_empty() {
            return Err(ConfigError::Invalid {
                field: "tokens.issuer",
                reason: "must not be empty".into(),
            });
        }
        if !(0..=MAX_LEEWAY_SECS).contains(&self.tokens.leeway_secs) {
            return Err(ConfigError::Invalid {
                field: "tokens.leeway_secs",
                reason: format!(
                    "{} is outside 0..={MAX_LEEWAY_SECS}",
                    self.tokens.leeway_secs
                ),
            });
        }
        if self.keys.overlap_secs < 0 {
            return Err(ConfigError::Invalid {
                field: "keys.overlap_secs",
                reason: format!("{} is negative", self.keys.overlap_secs),
            });
        }
        if self.nonces.ttl_secs <= 0 || self.nonces.enrollment_ttl_secs <= 0 {
            return Err(ConfigError::Invalid {
                field: "nonces",
                reason: "lifetimes must be positive".into(),
            });
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                field: "server.tls_cert/tls_key",
                reason: "set both or neither".into(),
            });
        }
        if self.server.tls_cert.is_none() && !self.server.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                field: "server.listen",
                reason: "plain HTTP is only allowed on loopback; configure tls_cert and tls_key"
                    .into(),
            });
        }
        if self.status.list_capacity == 0 || self.status.list_capacity > MAX_STATUS_LIST_CAPACITY {
            return Err(ConfigError::Invalid {
                field: "status.list_capacity",
                reason: format!("must be in 1..={MAX_STATUS_LIST_CAPACITY}"),
            });
        }
        if let Some(u) = &self.status.public_base_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.ends_with('/') {
                return Err(ConfigError::Invalid {
                    field: "status.public_base_url",
                    reason: "an http(s):// URL without a trailing '/'".into(),
                });
            }
        }
        if self.audit.checkpoint_interval_secs == 0
            || self.audit.checkpoint_min_leaves == 0
            || !(1..=10_000).contains(&self.audit.max_batch)
        {
            return Err(ConfigError::Invalid {
                field: "audit",
                reason: "checkpoint_interval_secs and checkpoint_min_leaves must be positive, max_batch in 1..=10000".into(),
            });
        }
        if !self.audit.origin.is_empty()
            && self
                .audit
                .origin
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(ConfigError::Invalid {
                field: "audit.origin",
                reason: "no whitespace, control characters or '+'".into(),
            });
        }
        governance::validate(&self.hosts, &self.status, &self.lineage)?;
        self.operators.validate()?;
        limits::validate(&self.limits)?;
        retention::validate(&self.retention)?;
        let kds_bounds: [(&'static str, bool); 3] = [
            ("snp.kds_fetches_per_min", self.snp.kds_fetches_per_min >= 1),
            ("snp.kds_fetch_burst", self.snp.kds_fetch_burst >= 1),
            ("snp.kds_max_in_flight", self.snp.kds_max_in_flight >= 1),
        ];
        if let Some((field, _)) = kds_bounds.into_iter().find(|(_, ok)| !ok) {
            return Err(ConfigError::Invalid {
                field,
                reason: "must be at least 1".into(),
            });
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "server.body_limit_bytes",
                reason: "at least 1024".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    #[test]
    fn layers_defaults_file_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "b.toml",
                "[server]\nlisten = \"127.0.0.1:9000\"\n[tokens]\nissuer = \"file\"\n",
            )?;
            jail.set_env("WRIT_TOKENS__ISSUER", "env");
            jail.set_env("WRIT_LOG", "debug");
            jail.set_env("WRIT_TCTI", "swtpm:port=1");
            let cfg = Config::load(Some(Path::new("b.toml")), Config::process_env()).unwrap();
            assert_eq!(cfg.server.listen.port(), 9000);
            assert_eq!(cfg.tokens.issuer, "env");
            assert_eq!(cfg.nonces.ttl_secs, 60);
            Ok(())
        });
    }

    #[test]
    fn refuses_plain_http_off_loopback_and_unknown_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[server]\nlisten = \"0.0.0.0:9000\"\n")?;
            assert!(matches!(
                Config::load(Some(Path::new("a.toml")), Config::process_env()),
                Err(ConfigError::Invalid {
                    field: "server.listen",
                    ..
                })
            ));
            jail.create_file("c.toml", "[server]\nlisten_typo = 1\n")?;
            assert!(matches!(
                Config::load(Some(Path::new("c.toml")), Config::process_env()),
                Err(ConfigError::Parse(_))
            ));
            Ok(())
        });
    }

    #[test]
    fn leeway_is_capped_and_overlap_must_not_be_negative() {
        figment::Jail::expect_with(|jail| {
            for (leeway, ok) in [(0, true), (300, true), (301, false), (-1, false)] {
                jail.create_file("l.toml", &format!("[tokens]\nleeway_secs = {leeway}\n"))?;
                let loaded = Config::load(Some(Path::new("l.toml")), Config::process_env());
                match (ok, loaded) {
                    (true, Ok(c)) => assert_eq!(c.tokens.leeway_secs, leeway),
                    (
                        false,
                        Err(ConfigError::Invalid {
                            field: "tokens.leeway_secs",
                            reason,
                        }),
                    ) => assert!(reason.contains(&leeway.to_string()), "{reason}"),
                    (ok, other) => panic!("leeway {leeway}: expected ok={ok}, got {other:?}"),
                }
            }
            jail.set_env("WRIT_KEYS__OVERLAP_SECS", "-5");
            assert!(matches!(
                Config::load(None, Config::process_env()),
                Err(ConfigError::Invalid {
                    field: "keys.overlap_secs",
                    ..
                })
            ));
            Ok(())
        });
    }
}
