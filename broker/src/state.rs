//! Everything a request handler needs, built once at start-up and passed
//! down (no global singletons).

use std::sync::Arc;

use verifier_lib::ekcert::TrustStore;
use verifier_lib::token::{KeySet, SigningKey};

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::Config;
use crate::policy::PolicyHandle;
use crate::store::Store;

/// Shared broker state.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub signing_key: Arc<SigningKey>,
    /// Every token key loaded at start (the signing key first, then a
    /// rotated-out previous key). What verifies and is published at a given
    /// time is [`AppState::key_set_at`]: the previous key only until
    /// `previous_retire_at`.
    pub key_set: Arc<KeySet>,
    /// `(kid, time)`: the previous token key leaves the key set at `time`.
    pub previous_retire_at: Option<(String, i64)>,
    /// The token-key rotation endorsements (`/v1/keys/endorsements`).
    pub key_endorsements: Arc<Vec<u8>>,
    pub policy: PolicyHandle,
    pub trust: Arc<TrustStore>,
    /// The SEV-SNP verifier; `None`: SNP endpoints answer `snp_unavailable`.
    pub snp: Option<Arc<crate::tee::snp::SnpService>>,
    /// The signed Merkle audit log every decision is appended to.
    pub audit: AuditLog,
    pub governance: Arc<crate::governance::Governance>,
    /// Unauthenticated refusals, coalesced per source and window.
    pub refusals: Arc<crate::audit::refusals::RefusalLog>,
    /// The fleet challenge key, read (or created once) from the store on
    /// first use (`crate::decision::nonce`).
    pub(crate) challenge_key: Arc<tokio::sync::OnceCell<crate::decision::challenge::ChallengeKey>>,
    /// This broker's Prometheus metrics (its own recorder, not a global).
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// The last `/readyz` result, reused for a second.
    pub readiness: crate::telemetry::readiness::ReadinessCache,
}

impl AppState {
    pub fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
        signing_key: SigningKey,
        policy: PolicyHandle,
        trust: TrustStore,
        audit: AuditLog,
    ) -> Self {
        let key_set = KeySet {
            keys: vec![signing_key.verifying_key()],
        };
        let governance = Arc::new(crate::governance::Governance::new(&config.lineage));
        let refusals = Arc::new(crate::audit::refusals::RefusalLog::new(
            config.audit.refusal_window_secs,
        ));
        Self {
            governance,
            config: Arc::new(config),
            store,
            clock,
            signing_key: Arc::new(signing_key),
            key_set: Arc::new(key_set),
            previous_retire_at: None,
            // An empty CBOR array: no rotation yet.
            key_endorsements: Arc::new(vec![0x80]),
            policy,
            trust: Arc::new(trust),
            snp: None,
            audit,
            challenge_key: Arc::default(),
            refusals,
            metrics: Arc::default(),
            readiness: Default::default(),
        }
    }

    /// Publish (and accept tokens from) a rotated-out token key until its
    /// overlap ends (see `crate::keys::rotate`).
    pub fn with_previous_key(mut self, previous: crate::keys::PreviousKey) -> Self {
        if previous.key.kid != self.signing_key.kid() {
            let mut set = (*self.key_set).clone();
            set.keys.push(previous.key.clone());
            self.key_set = Arc::new(set);
            self.previous_retire_at = Some((previous.key.kid, previous.retire_at));
        }
        self
    }

    /// Serve these rotation endorsements (see `crate::keys::ENDORSEMENTS_FILE`).
    pub fn with_key_endorsements(mut self, encoded: Vec<u8>) -> Self {
        self.key_endorsements = Arc::new(encoded);
        self
    }

    /// The token keys in force at `now`: what `/v1/keys` publishes and what
    /// the broker accepts tokens from.
    pub fn key_set_at(&self, now: i64) -> KeySet {
        let mut set = (*self.key_set).clone();
        if let Some((kid, retire_at)) = &self.previous_retire_at {
            if now >= *retire_at {
                set.keys.retain(|k| &k.kid != kid);
            }
        }
        set
    }

    /// Record into `metrics` (the registry the audit log was started with).
    pub fn with_metrics(mut self, metrics: Arc<crate::telemetry::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Enable SEV-SNP appraisal.
    pub fn with_snp(mut self, snp: crate::tee::snp::SnpService) -> Self {
        self.snp = Some(Arc::new(snp));
        self
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
