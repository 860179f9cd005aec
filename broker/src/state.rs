//! Everything a request handler needs, built once at start-up and passed
//! down (no global singletons).

use std::sync::Arc;

use verifier_lib::ekcert::TrustStore;
use verifier_lib::token::{KeySet, SigningKey};

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::Config;
use crate::policy_source::PolicyHandle;
use crate::store::Store;

/// Shared broker state.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub signing_key: Arc<SigningKey>,
    pub key_set: Arc<KeySet>,
    pub policy: PolicyHandle,
    pub trust: Arc<TrustStore>,
    /// The SEV-SNP verifier; `None`: SNP endpoints answer `snp_unavailable`.
    pub snp: Option<Arc<crate::tee::snp::SnpService>>,
    /// The signed Merkle audit log every decision is appended to.
    pub audit: AuditLog,
    pub governance: Arc<crate::governance::Governance>,
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
        Self {
            governance,
            config: Arc::new(config),
            store,
            clock,
            signing_key: Arc::new(signing_key),
            key_set: Arc::new(key_set),
            policy,
            trust: Arc::new(trust),
            snp: None,
            audit,
        }
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
