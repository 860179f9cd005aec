//! Request-signing keys: `POST /v1/request-keys` registers a TPM-resident
//! key the host's AK certified (TPM2_Certify); `POST /v1/tokens/signed`
//! mints a token on a request that key signed, without a quote, while the
//! host is trusted and its last passing appraisal is fresh.

use axum::extract::State;
use axum::Json;
use verifier_lib::api::request_key::{
    RequestKeyRegistration, RequestKeyResponse, SignedTokenRequest,
};
use verifier_lib::api::TokenResponse;
use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::tpm::{self, AkPublic, CertifyError};

use super::attest::{consume_nonce, enrolled_host, request_fields};
use super::json::ApiJson;
use super::ApiError;
use crate::audit::decisions as audit_log;
use crate::mint;
use crate::state::AppState;
use crate::store::audit::{Entry, StateChange};
use crate::store::{HostRecord, HostStatus, RequestKeyRecord};

/// The host must be trusted with a passing appraisal no older than the
/// configured maximum age; returns the time of that appraisal and the
/// oldest one still fresh.
fn require_fresh(st: &AppState, host: &HostRecord) -> Result<(i64, i64), ApiError> {
    let max_age = st.config.hosts.signed_request_max_age_secs;
    let fresh_since = st.now().saturating_sub(max_age);
    let refuse = |what: String| {
        ApiError::forbidden(
            "host_not_fresh",
            format!("host {} {what}; attest with a quote", host.id),
        )
    };
    if host.status != HostStatus::Trusted {
        return Err(refuse(format!("is {}", host.status.as_str())));
    }
    match host.last_attested_at {
        Some(at) if max_age > 0 && at >= fresh_since => Ok((at, fresh_since)),
        Some(at) => Err(refuse(format!(
            "last passed an appraisal at {at}, more than {max_age} s ago"
        ))),
        None => Err(refuse("has never passed an appraisal".into())),
    }
}

fn rejected(e: &CertifyError) -> ApiError {
    ApiError::forbidden("request_key_rejected", format!("request key: {e}"))
}

/// `POST /v1/request-keys`: verify the AK's certification of the host's
/// request key (nonce from `/v1/challenge`) and register the key.
pub async fn register(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<RequestKeyRegistration>,
) -> Result<Json<RequestKeyResponse>, ApiError> {
    let host = enrolled_host(&st, &req.host_id).await?;
    consume_nonce(&st, &req.nonce, &host.id).await?;
    require_fresh(&st, &host)?;
    let ak = AkPublic::parse_any(&host.ak_public)
        .map_err(|e| ApiError::internal("stored_ak_unreadable", e))?;
    let certified = tpm::verify_certify(
        &req.attest,
        &req.signature,
        &ak,
        &req.key_public,
        &req.nonce,
    )
    .map_err(|e| rejected(&e))?;
    // The key must belong to the boot the last appraisal covered.
    let baseline = st.store.host_clock(&host.id).await?;
    let c = &certified.clock_info;
    match baseline {
        Some(b) if b.reset_count == c.reset_count && b.restart_count == c.restart_count => {}
        other => {
            return Err(ApiError::forbidden(
                "request_key_other_boot",
                format!(
                    "certified at reset/restart count {}/{}, the last appraisal saw {}; attest with a quote first",
                    c.reset_count,
                    c.restart_count,
                    other.map_or("nothing".to_owned(), |b| format!(
                        "{}/{}",
                        b.reset_count, b.restart_count
                    )),
                ),
            ))
        }
    }
    let now = st.now();
    let record = RequestKeyRecord {
        host_id: host.id.clone(),
        key_name: certified.name.clone(),
        key_public: req.key_public.clone(),
        reset_count: c.reset_count,
        restart_count: c.restart_count,
        certified_at: now,
    };
    let leaf = Leaf::new(
        now,
        Decision::RequestKeyCertified {
            host: host.id.clone(),
            key_name: certified.name.clone(),
        },
    );
    st.audit
        .apply(StateChange::RequestKey(record), vec![leaf])
        .await?;
    tracing::info!(host_id = %host.id, key_name = %hex::encode(&certified.name), "request key certified");
    Ok(Json(RequestKeyResponse {
        host_id: host.id,
        key_name: certified.name,
        max_appraisal_age_secs: st.config.hosts.signed_request_max_age_secs,
    }))
}

/// `POST /v1/tokens/signed`: a token for a request signed by the host's
/// registered request key, with no quote, while the host is trusted and
/// freshly appraised.
pub async fn token(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SignedTokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let host = enrolled_host(&st, &req.host_id).await?;
    let cnf = request_fields(&req.workload_digest, req.cnf.as_deref())?;
    consume_nonce(&st, &req.nonce, &host.id).await?;
    let key = st
        .store
        .request_key(&host.id)
        .await?
        .filter(|k| k.key_name == req.key_name)
        .ok_or_else(|| {
            ApiError::forbidden(
                "request_key_unknown",
                "the request key is not the host's registered one; certify it again",
            )
        })?;
    let public = tpm::Public::parse(&key.key_public)
        .map_err(|e| ApiError::internal("stored_request_key_unreadable", e))?;
    let binding = TokenRequestBinding {
        host_id: &host.id,
        workload: &req.workload,
        workload_digest: &req.workload_digest,
        cnf_key: req.cnf.as_deref(),
    };
    tpm::verify_request_signature(&public, &binding.quote_nonce(&req.nonce), &req.signature)
        .map_err(|e| {
            ApiError::forbidden("request_signature_invalid", format!("signed request: {e}"))
        })?;
    let (appraised_at, fresh_since) = require_fresh(&st, &host)?;
    let policy = st.policy.current();
    let rule = policy
        .group_for(&host.id)
        .and_then(|g| policy.check_workload(g, &req.workload, &req.workload_digest))
        .map_err(|f| ApiError::forbidden("denied", format!("denied: {f}")))?
        .clone();
    let now = st.now();
    let key_name = key.key_name.clone();
    let (st2, policy2) = (st.clone(), policy.clone());
    let (_, minted) = st
        .audit
        .commit_with(move |index| {
            let m = mint::signed_request_token(
                &st2,
                &policy2,
                &rule,
                &req,
                cnf,
                &key,
                appraised_at,
                now,
                Some(index),
            )
            .map_err(|e| format!("{}{e}", audit_log::MINT_FAILED))?;
            let leaf = audit_log::token_minted(&m.record, None, &m.record.token_digest, now);
            let entry = Entry {
                change: StateChange::SignedToken {
                    token: m.record.clone(),
                    key_name,
                    fresh_since,
                },
                leaves: vec![leaf],
            };
            Ok((entry, m))
        })
        .await?;
    Ok(Json(TokenResponse {
        token: minted.token,
        cti: minted.record.cti,
        expires_at: minted.record.exp,
        appraisal: verifier_lib::api::AppraisalResponse {
            host_id: host.id,
            verdict: "affirming".into(),
            host_status: HostStatus::Trusted.as_str().to_owned(),
            policy_id: policy.id.clone(),
            policy_hash: policy.hash_hex(),
            appraised_at,
            failures: Vec::new(),
        },
    }))
}
