//! Start-up: build the state from configuration and serve the API over
//! HTTPS (rustls) or, on loopback only, plain HTTP — with graceful shutdown
//! and the connection bounds of `[limits]` ([`serve_connections`]), and
//! systemd readiness and watchdog notifications ([`systemd`]).

mod connections;
pub mod retention;
pub mod systemd;

pub use connections::serve_connections;

use std::sync::Arc;
use std::time::Duration;

use crate::audit::policy::ActivationLog;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::policy::file::FileImportError;
use crate::policy::{PolicyHandle, PolicyLoadError};
use crate::state::AppState;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Policy(#[from] PolicyLoadError),
    #[error(transparent)]
    PolicyImport(#[from] FileImportError),
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
}

/// Build the broker state from configuration (opens the store, loads keys,
/// policy and trust anchors).
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, ServeError> {
    // Refuse an invalid policy file before anything is opened.
    if let Some(path) = config.policy.import_file() {
        crate::policy::file::read(path)?;
    }
    let store = Store::open(&config.storage.url).await?;
    let backfilled = store.backfill_revoked_identities(clock.now()).await?;
    if backfilled > 0 {
        tracing::info!(
            backfilled,
            "recorded the EK identities of hosts revoked before identities were recorded"
        );
    }
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
    let metrics = Arc::new(crate::telemetry::Metrics::new());
    let audit = crate::audit::AuditLog::start(
        store.clone(),
        Arc::clone(&clock),
        checkpoint_key,
        &config.audit,
        &config.broker.name_or_host(),
        metrics.audit_instruments(),
    )
    .await?;
    let signers = crate::policy::signers(&config.policy.signing_keys)?;
    if let Some(path) = config.policy.import_file() {
        crate::policy::file::import_file(
            ActivationLog::Writer(&audit),
            &store,
            &signers,
            path,
            clock.now(),
        )
        .await?;
    }
    let policy = PolicyHandle::from_store(store.clone(), signers).await?;
    policy.spawn_refresher(Duration::from_millis(
        config.policy.poll_interval_ms.max(100),
    ));
    let key = keys.current;
    tracing::info!(kid = %key.kid(), ek_anchors = trust.len(), audit_origin = %audit.origin(), "broker state ready");
    let mut state = AppState::new(config, store, clock, key, policy, trust, audit)
        .with_metrics(metrics)
        .with_snp(snp)
        .with_key_endorsements(keys.endorsements);
    if let Some(previous) = keys.previous {
        state = state.with_previous_key(previous);
    }
    state.governance.spawn_watcher(
        state.store.clone(),
        std::time::Duration::from_millis(state.config.status.poll_interval_ms),
    );
    crate::decision::stale::spawn(&state);
    retention::spawn(&state);
    crate::audit::refusals::spawn_flusher(
        Arc::clone(&state.refusals),
        state.audit.clone(),
        Arc::clone(&state.clock),
    );
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
    let _watcher = state.config.policy.import_file().map(|path| {
        crate::policy::file::spawn_watcher(
            state.audit.clone(),
            state.policy.clone(),
            Arc::clone(&state.clock),
            path.to_owned(),
            Duration::from_secs(state.config.policy.reload_interval_secs.max(1)),
        )
    });
    let cfg = Arc::clone(&state.config);
    let app = crate::app(state.clone());
    let addr = cfg.server.listen;
    raise_open_file_limit(cfg.limits.max_connections);
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(cert), Some(key)) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(ServeError::Tls)?;
            Some(tokio_rustls::TlsAcceptor::from(tls.get_inner()))
        }
        _ => {
            tracing::warn!(%addr, "serving plain HTTP on loopback; configure server.tls_cert/tls_key for anything else");
            None
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    tracing::info!(
        addr = %listener.local_addr().unwrap_or(addr),
        tls = tls.is_some(),
        max_connections = cfg.limits.max_connections,
        header_read_timeout_secs = cfg.limits.header_read_timeout_secs,
        request_timeout_secs = cfg.limits.request_timeout_secs,
        "writ-broker listening"
    );
    // Listening, with the store, keys, policy and audit log loaded: a
    // `Type=notify` unit is started now.
    let notifier = systemd::Notifier::from_env();
    notifier.notify_logged("READY=1");
    let watchdog = notifier.spawn_watchdog();
    let shutdown = async {
        shutdown_signal().await;
        notifier.notify_logged("STOPPING=1");
    };
    serve_connections(listener, app, tls, &cfg.limits, shutdown).await;
    if let Some(task) = watchdog {
        task.abort();
    }
    // Refusal windows still open are logged before exit.
    state.refusals.flush(&state.audit, state.now(), true).await;
    // Every leaf appended so far is signed before exit: a checkpoint
    // request waits behind whatever the writer is doing, so the log does
    // not end with leaves no checkpoint covers.
    match state.audit.checkpoint_now().await {
        Ok(Some(cp)) => tracing::info!(size = cp.size, "final audit checkpoint signed"),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "signing the final audit checkpoint failed"),
    }
    Ok(())
}

/// Raise the soft open-file limit to the hard limit (each connection holds a
/// descriptor), and log both; warn when `max_connections` does not fit.
fn raise_open_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current == before.maximum {
        // Nothing to raise (e.g. a unit's LimitNOFILE= sets both, and its
        // system-call filter may refuse setrlimit).
        log_open_file_limit(before, before, max_connections);
        return;
    }
    let raised = Rlimit {
        current: before.maximum,
        maximum: before.maximum,
    };
    let now = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => getrlimit(Resource::Nofile),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            before
        }
    };
    log_open_file_limit(before, now, max_connections);
}

fn log_open_file_limit(
    before: rustix::process::Rlimit,
    now: rustix::process::Rlimit,
    max_connections: usize,
) {
    // Unlimited (`None`) needs no check.
    let soft = now.current;
    tracing::info!(
        soft = ?soft,
        hard = ?now.maximum,
        previous_soft = ?before.current,
        "open-file limit"
    );
    // Headroom for the database, keys, logs and the listener.
    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(64);
    if soft.is_some_and(|soft| soft < needed) {
        tracing::warn!(
            soft = ?soft,
            max_connections,
            "limits.max_connections does not fit the open-file limit; lower it or raise the hard limit (e.g. LimitNOFILE)"
        );
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
