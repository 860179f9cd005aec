//! Probes for systemd and Kubernetes: `GET /healthz` (the process answers;
//! no I/O) and `GET /readyz` (the broker can do its work: the database
//! answers within [`DATABASE_TIMEOUT`], the policy and token keys are
//! loaded, the audit writer runs and the status list is fresh).
//!
//! Both are unauthenticated and outside the rate limiter. `/readyz` is
//! bounded instead: one check runs at a time and its result is reused for
//! [`READY_CACHE`](crate::telemetry::readiness::READY_CACHE), so probes cost at most one database query a second.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::telemetry::readiness::Readiness;

/// How long `/readyz` waits for the database and the status list.
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Alive {
    /// Always `alive`.
    pub status: &'static str,
}

/// `GET /healthz`: the process is alive. No I/O.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Alive))
)]
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "alive" })
}

/// `GET /readyz`: 200 when every check passes, else 503 naming the failing
/// checks.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: every check is `ok`", body = Readiness),
        (status = 503, description = "Not ready: `failing` names the checks", body = Readiness),
    )
)]
pub async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let report = st.readiness.get_or_check(|| check(&st)).await;
    let code = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

/// Run every check now.
pub async fn check(st: &AppState) -> Readiness {
    let mut checks = BTreeMap::new();
    let database = match tokio::time::timeout(DATABASE_TIMEOUT, st.store.status_version()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database refused a query");
            Err("query failed".to_owned())
        }
        Err(_) => Err(format!(
            "no answer within {} ms",
            DATABASE_TIMEOUT.as_millis()
        )),
    };
    checks.insert("database", database);
    let policy = st.policy.current();
    checks.insert(
        "policy",
        if policy.id.is_empty() {
            Err("no policy id".to_owned())
        } else {
            Ok(())
        },
    );
    let now = st.now();
    let kid = st.signing_key.kid();
    checks.insert(
        "keys",
        if st.key_set_at(now).keys.iter().any(|k| k.kid == kid) {
            Ok(())
        } else {
            Err("the signing key is not in the published key set".to_owned())
        },
    );
    checks.insert(
        "audit_writer",
        if st.audit.writer_alive() {
            Ok(())
        } else {
            Err("the audit writer stopped".to_owned())
        },
    );
    let status_list = match tokio::time::timeout(
        DATABASE_TIMEOUT,
        st.governance
            .current(&st.store, &st.signing_key, &st.config, now),
    )
    .await
    {
        Ok(Ok(p)) if now < p.expires_at => Ok(()),
        Ok(Ok(p)) => Err(format!("expired at {}", p.expires_at)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: cannot publish the status list");
            Err("cannot publish".to_owned())
        }
        Err(_) => Err(format!(
            "not published within {} ms",
            DATABASE_TIMEOUT.as_millis()
        )),
    };
    checks.insert("status_list", status_list);
    Readiness::from_checks(checks)
}
