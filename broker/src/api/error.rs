//! The API's error format: clients see a stable `code` and a short message;
//! logs see the details.
//!
//! ```json
//! {"error": {"code": "nonce_reused", "message": "nonce was already used", "details": ...}}
//! ```

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use verifier_lib::api::AppraisalResponse;
use verifier_lib::decision::Denial;
use verifier_lib::policy::public::PublicFailure;

use crate::audit::AppendError;
use crate::decision::DecisionError;
use crate::store::audit::{ChangeRefused, EntryError};
use crate::store::NonceProblem;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, documented machine-readable code (see docs/api.md).
    pub code: &'static str,
    pub message: String,
    /// Structured detail a client may act on (e.g. every failing rule).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// A server-side failure: the client learns only the code.
    pub fn internal(code: &'static str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(code, %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            "internal error; see broker logs",
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal("storage_error", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::info!(code = self.code, message = %self.message, "request refused");
        }
        let mut body = json!({ "code": self.code, "message": self.message });
        if let (Some(d), Some(obj)) = (self.details, body.as_object_mut()) {
            obj.insert("details".into(), d);
        }
        let mut resp = (self.status, axum::Json(json!({ "error": body }))).into_response();
        resp.extensions_mut()
            .insert(crate::telemetry::http::ErrorCode(self.code));
        resp
    }
}

impl From<crate::audit::AppendError> for ApiError {
    fn from(e: crate::audit::AppendError) -> Self {
        ApiError::from(crate::decision::DecisionError::from(e))
    }
}

/// The client's view of a state change that did not apply.
fn refused(r: ChangeRefused) -> ApiError {
    match r {
        ChangeRefused::UnknownHost => ApiError::not_found("unknown_host", "no such host"),
        ChangeRefused::HostNotRevoked => ApiError::new(
            StatusCode::CONFLICT,
            "host_not_revoked",
            "only revoked hosts are reinstated",
        ),
        ChangeRefused::HostNotStale => ApiError::new(
            StatusCode::CONFLICT,
            "host_not_stale",
            "the host attested in the meantime",
        ),
        ChangeRefused::UnknownToken => ApiError::not_found("unknown_token", "no such token"),
        ChangeRefused::HostRevoked => ApiError::forbidden(
            "host_revoked",
            "host was revoked by an operator; re-enrollment refused",
        ),
        ChangeRefused::ParentRevoked => {
            ApiError::forbidden("parent_revoked", "the parent token is revoked")
        }
        ChangeRefused::HostNotFresh => ApiError::forbidden(
            "host_not_fresh",
            "the host is not trusted with a fresh passing appraisal; attest with a quote",
        ),
        ChangeRefused::RequestKeyUnknown => ApiError::forbidden(
            "request_key_unknown",
            "the request key is not the host's registered one; certify it again",
        ),
        ChangeRefused::Nonce(p) => nonce(p),
        ChangeRefused::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "decision_conflict",
            "the host changed while the request was decided; try again",
        ),
        ChangeRefused::PolicyChanged { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "policy_changed",
            "the active policy changed while the activation was decided; try again",
        ),
    }
}

fn nonce(p: NonceProblem) -> ApiError {
    let (code, message) = match p {
        NonceProblem::Unknown => (
            "nonce_unknown",
            "nonce was not issued by this broker to this host",
        ),
        NonceProblem::Expired => ("nonce_expired", "nonce expired"),
        NonceProblem::AlreadyUsed => ("nonce_reused", "nonce was already used"),
    };
    ApiError::forbidden(code, message)
}

/// A denial as the client sees it: the code, the rules that failed and the
/// client's own values, never what the policy allows. The full denial goes
/// to the broker's log (and its audit leaf).
fn denied(denial: &Denial, appraisal: Option<&AppraisalResponse>) -> ApiError {
    tracing::info!(code = denial.code(), %denial, "request denied");
    let failures: Vec<PublicFailure> = match denial {
        Denial::Appraisal { failures } => PublicFailure::all(failures),
        Denial::Workload { failure } => vec![PublicFailure::from(failure)],
        _ => Vec::new(),
    };
    let message = match (denial, failures.first()) {
        (Denial::Appraisal { .. } | Denial::Workload { .. }, Some(f)) => format!("denied: {f}"),
        (Denial::Appraisal { .. } | Denial::Workload { .. }, None) => "denied".to_owned(),
        _ => denial.to_string(),
    };
    let err = ApiError::forbidden(denial.code(), message);
    let details = match appraisal {
        // An appraisal response carries only public failures already; a
        // workload refusal adds its rule.
        Some(a) => {
            let mut a = a.clone();
            for f in failures {
                if !a.failures.contains(&f) {
                    a.failures.push(f);
                }
            }
            serde_json::to_value(&a).ok()
        }
        None if !failures.is_empty() => Some(json!({ "failures": failures })),
        None => None,
    };
    match details {
        Some(d) => err.with_details(d),
        None => err,
    }
}

impl From<DecisionError> for ApiError {
    fn from(e: DecisionError) -> Self {
        match e {
            DecisionError::UnknownHost { host } => {
                ApiError::not_found("unknown_host", format!("no enrolled host {host}"))
            }
            DecisionError::Denied { denial, appraisal } => denied(&denial, appraisal.as_deref()),
            DecisionError::Nonce(p) => nonce(p),
            DecisionError::Refused(r) => refused(r),
            DecisionError::Conflict { attempts } => ApiError::new(
                StatusCode::CONFLICT,
                "decision_conflict",
                format!(
                    "the host changed {attempts} times while the request was decided; try again"
                ),
            ),
            DecisionError::SnpUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "snp_unavailable",
                "this broker does not appraise SEV-SNP evidence",
            ),
            DecisionError::SnpNotAllowed { reason } => {
                // The reason names policy groups: it is for the broker log,
                // not for the client (finding 6).
                tracing::warn!(%reason, "SEV-SNP challenge refused");
                ApiError::forbidden(
                    "snp_not_allowed",
                    "no policy group admits SEV-SNP evidence for this host",
                )
            }
            DecisionError::KdsBusy { reason } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "kds_busy", reason)
            }
            DecisionError::Store(e) => ApiError::internal("storage_error", e),
            DecisionError::Mint(e) => ApiError::internal("token_mint_failed", e),
            DecisionError::Rng => ApiError::internal("rng_failure", "system RNG failed"),
            e @ DecisionError::Internal { .. } => ApiError::internal("internal_error", e),
            e @ DecisionError::Audit(AppendError::Entry(EntryError::Store(_))) => {
                ApiError::internal("storage_error", e)
            }
            e => ApiError::internal("audit_log_failed", e),
        }
    }
}
