//! Start-up: build the state from configuration and serve the API over
//! HTTPS (rustls) or, on loopback only, plain HTTP — with graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::policy_source::{PolicyHandle, PolicyLoadError};
use crate::state::AppState;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Policy(#[from] PolicyLoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Trust(#[from] crate::tee::tpm::trust::TrustError),
    #[error("SEV-SNP: {0}")]
    Snp(#[from] crate::tee::snp::SnpSetupError),
    #[error("refusing to serve with {setting}: it is for tests only (see docs/configuration.md)")]
    Dangerous { setting: &'static str },
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditStartError),
    #[error("logging the active policy: {0}")]
    AuditAppend(#[from] crate::audit::AppendError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(std::io::Error),
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Build the broker state from configuration (opens the store, loads keys,
/// policy and trust anchors).
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, ServeError> {
    let policy = PolicyHandle::load(&config.policy.file)?;
    let store = Store::open(&config.storage.url).await?;
    let keys =
        crate::keys::load_token_keys(&config.keys.dir, config.keys.overlap_secs, clock.now())?;
    let trust = crate::tee::tpm::trust::ek_trust_store(&config.trust)?;
    let snp = crate::tee::snp::SnpService::from_config(&config)?;
    let origin = if config.audit.origin.is_empty() {
        crate::audit::key::default_origin()
    } else {
        config.audit.origin.clone()
    };
    let checkpoint_key = crate::audit::key::load_or_generate(&config.keys.dir, &origin)
        .map_err(crate::audit::AuditStartError::from)?;
    let audit = crate::audit::AuditLog::start(
        store.clone(),
        Arc::clone(&clock),
        checkpoint_key,
        &config.audit,
    )
    .await?;
    crate::audit::policy::log_active(&audit, &policy, clock.as_ref()).await?;
    let key = keys.current;
    tracing::info!(kid = %key.kid(), ek_anchors = trust.len(), audit_origin = %audit.origin(), "broker state ready");
    let mut state = AppState::new(config, store, clock, key, policy, trust, audit).with_snp(snp);
    if let Some(previous) = keys.previous {
        state = state.with_previous_key(previous);
    }
    state.governance.spawn_watcher(
        state.store.clone(),
        std::time::Duration::from_millis(state.config.status.poll_interval_ms),
    );
    crate::decision::stale::spawn(&state);
    Ok(state)
}

/// Run the broker until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    // Test roots are accepted by `build_state` (tests, embedding) only.
    if !config.trust.dangerous_snp_test_roots.is_empty() {
        return Err(ServeError::Dangerous {
            setting: "trust.dangerous_snp_test_roots",
        });
    }
    if config.operators.dangerous_unauthenticated {
        return Err(ServeError::Dangerous {
            setting: "operators.dangerous_unauthenticated",
        });
    }
    if config.operators.tokens.is_empty() {
        tracing::warn!("no [operators] tokens configured: operator endpoints (hosts, revoke, reinstate, policy learn) refuse every request");
    }
    let state = build_state(config, Arc::new(SystemClock)).await?;
    let _watcher = crate::audit::policy::spawn_watcher(
        state.audit.clone(),
        state.policy.clone(),
        Arc::clone(&state.clock),
        Duration::from_secs(state.config.policy.reload_interval_secs.max(1)),
    );
    let cfg = Arc::clone(&state.config);
    let app = crate::app(state);
    let addr = cfg.server.listen;
    match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(cert), Some(key)) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(ServeError::Tls)?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                h.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            tracing::info!(%addr, "writ-broker listening (HTTPS)");
            axum_server::bind_rustls(addr, tls)
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .map_err(ServeError::Serve)
        }
        _ => {
            tracing::warn!(%addr, "serving plain HTTP on loopback; configure server.tls_cert/tls_key for anything else");
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Listen { addr, source })?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "writ-broker listening (HTTP)");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(ServeError::Serve)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
