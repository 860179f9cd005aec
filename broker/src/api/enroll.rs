//! Enrollment: EK certificate chain + credential activation proving that the
//! AK lives in the same TPM as the certified EK.
//!
//! `start` checks the EK certificate against the trust store, that it
//! certifies the presented EK public key, that the EK public area is a TCG
//! default EK template, that the TPM (its EK key or certificate) was not
//! revoked, and that the AK is a restricted signing key; it then makes a
//! credential (a random secret) that only the TPM holding that EK can open,
//! and only for that AK name. `finish` accepts the host once it returns the
//! secret, re-checking the revocation inside the write transaction.
//!
//! A host's id is derived from its EK key ([`EkIdentity`]), so every
//! encoding of one EK is one host.

use axum::extract::State;
use axum::Json;
use verifier_lib::api::{
    EnrollFinishRequest, EnrollFinishResponse, EnrollStartRequest, EnrollStartResponse,
};
use verifier_lib::credential::{make_credential, CredentialTarget};
use verifier_lib::crypto::{ct_eq, HashAlg};
use verifier_lib::ekcert::{self, EkIdentity};
use verifier_lib::tpm::{check_ek_template, Public};

use super::json::ApiJson;
use super::source::Source;
use super::ApiError;
use crate::audit::leaves as audit_log;
use crate::decision::nonce::random_bytes;
use crate::state::AppState;
use crate::store::audit::StateChange;
use crate::store::{revocation_names, EnrollmentProblem, EnrollmentRecord, HostRecord, HostStatus};

/// `POST /v1/enroll/start`. Refusals cost no write of their own: they are
/// counted per source and logged as one summary leaf per window
/// (`crate::audit::refusals`).
#[utoipa::path(
    post,
    path = "/v1/enroll/start",
    tag = "enrollment",
    request_body = EnrollStartRequest,
    responses((status = 200, description = "A credential only the EK holder can open", body = EnrollStartResponse), super::openapi::ApiErrors)
)]
pub async fn start(
    State(st): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<EnrollStartRequest>,
) -> Result<Json<EnrollStartResponse>, ApiError> {
    match start_checked(&st, &req).await {
        Ok(r) => Ok(r),
        Err(e) if e.status.is_client_error() => {
            st.refusals.record(source, e.code, st.now());
            Err(e)
        }
        Err(e) => Err(e),
    }
}

async fn start_checked(
    st: &AppState,
    req: &EnrollStartRequest,
) -> Result<Json<EnrollStartResponse>, ApiError> {
    let now = st.now();
    let ek_public = Public::parse(&req.ek_public)
        .map_err(|e| ApiError::bad_request("invalid_ek_public", format!("ek_public: {e}")))?;
    let ak_public = Public::parse(&req.ak_public)
        .map_err(|e| ApiError::bad_request("invalid_ak_public", format!("ak_public: {e}")))?;
    ak_public
        .check_ak_attributes()
        .map_err(|e| ApiError::forbidden("ak_not_restricted_signing", format!("ak_public: {e}")))?;
    let cert = ekcert::parse_ek_certificate(&req.ek_cert)
        .map_err(|e| ApiError::bad_request("invalid_ek_cert", format!("ek_cert: {e}")))?;
    ekcert::verify_ek_chain(&cert, &req.ek_chain, &st.trust, now)
        .map_err(|e| ApiError::forbidden("ek_cert_untrusted", format!("ek_cert: {e}")))?;
    let identity = EkIdentity::of_certified_key(&ek_public.key, &cert)
        .map_err(|e| ApiError::forbidden("ek_public_mismatch", format!("ek_public: {e}")))?;
    check_ek_template(&ek_public)
        .map_err(|e| ApiError::forbidden("ek_template_mismatch", format!("ek_public: {e}")))?;
    // The host id derives from the EK key ([`EkIdentity::host_id`]): stable
    // across re-enrollments, the same for every encoding of the EK public
    // area, and not chosen by the host.
    let host_id = identity.host_id();
    let revoked_host = st
        .store
        .host(&host_id)
        .await?
        .is_some_and(|h| h.status == HostStatus::Revoked);
    if revoked_host
        || st
            .store
            .revoked_identity(&identity.revocation_names())
            .await?
            .is_some()
    {
        return Err(ApiError::forbidden(
            "host_revoked",
            "host was revoked by an operator; re-enrollment refused",
        ));
    }
    let sym_key_bits = ek_public
        .symmetric
        .as_ref()
        .map(|s| s.key_bits)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_ek_public",
                "ek_public: not a storage key (no symmetric algorithm)",
            )
        })?;

    let ak_name = ak_public.name();
    let secret = random_bytes::<32>()?;
    let target = CredentialTarget {
        ek_key: ek_public.key.clone(),
        name_alg: ek_public.name_alg,
        sym_key_bits,
    };
    let made = make_credential(
        &target,
        &ak_name,
        &secret,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .map_err(|e| ApiError::bad_request("unsupported_ek", format!("ek_public: {e}")))?;

    let enrollment_id = hex::encode(random_bytes::<16>()?);
    let expires_at = now + st.config.nonces.enrollment_ttl_secs;
    st.store
        .insert_enrollment(&EnrollmentRecord {
            id: enrollment_id.clone(),
            host_id: host_id.clone(),
            ek_public: req.ek_public.clone(),
            ek_cert_digest: HashAlg::Sha256.digest(&cert.der),
            ak_public: req.ak_public.clone(),
            ak_name,
            secret_digest: HashAlg::Sha256.digest(&secret),
            expires_at,
        })
        .await?;
    tracing::info!(%host_id, %enrollment_id, ek_issuer = %cert.issuer, "enrollment started");
    Ok(Json(EnrollStartResponse {
        enrollment_id,
        host_id,
        id_object: made.id_object,
        encrypted_secret: made.encrypted_secret,
        expires_at,
    }))
}

/// `POST /v1/enroll/finish`.
#[utoipa::path(
    post,
    path = "/v1/enroll/finish",
    tag = "enrollment",
    request_body = EnrollFinishRequest,
    responses((status = 200, description = "The host is enrolled", body = EnrollFinishResponse), super::openapi::ApiErrors)
)]
pub async fn finish(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<EnrollFinishRequest>,
) -> Result<Json<EnrollFinishResponse>, ApiError> {
    let now = st.now();
    let rec = match st.store.take_enrollment(&req.enrollment_id, now).await? {
        Ok(r) => r,
        Err(EnrollmentProblem::Unknown) => {
            return Err(ApiError::not_found(
                "unknown_enrollment",
                "no such enrollment",
            ))
        }
        Err(EnrollmentProblem::Expired) => {
            return Err(ApiError::forbidden(
                "enrollment_expired",
                "enrollment expired",
            ))
        }
        Err(EnrollmentProblem::AlreadyAnswered) => {
            return Err(ApiError::forbidden(
                "enrollment_already_answered",
                "enrollment was already answered",
            ))
        }
    };
    let refused = |code: &str| {
        audit_log::enrollment(
            &rec.host_id,
            false,
            Some(rec.ek_cert_digest.clone()),
            rec.ak_name.clone(),
            Some(code),
            now,
        )
    };
    if !ct_eq(&HashAlg::Sha256.digest(&req.secret), &rec.secret_digest) {
        tracing::warn!(host_id = %rec.host_id, "credential activation answer is wrong");
        audit_log::log_refusal(&st.audit, refused("activation_failed")).await;
        return Err(ApiError::forbidden(
            "activation_failed",
            "the activated credential does not match: the AK is not in the TPM holding the EK",
        ));
    }
    // Read → decide: a revoked host or TPM is refused here; the same rule
    // is applied again inside the write transaction (`store::apply`), so a
    // revocation between this read and the write still refuses.
    let revoked_host = st
        .store
        .host(&rec.host_id)
        .await?
        .is_some_and(|h| h.status == HostStatus::Revoked);
    let revoked_identity = st
        .store
        .revoked_identity(&revocation_names(&HostRecord {
            id: rec.host_id.clone(),
            status: HostStatus::Enrolled,
            ek_public: rec.ek_public.clone(),
            ek_cert_digest: rec.ek_cert_digest.clone(),
            ak_public: Vec::new(),
            ak_name: Vec::new(),
            enrolled_at: now,
            last_attested_at: None,
            last_failure: None,
            policy_id: None,
        }))
        .await?
        .is_some();
    if revoked_host || revoked_identity {
        audit_log::log_refusal(&st.audit, refused("host_revoked")).await;
        return Err(ApiError::forbidden(
            "host_revoked",
            "host was revoked by an operator; re-enrollment refused",
        ));
    }
    let host = HostRecord {
        id: rec.host_id.clone(),
        status: HostStatus::Enrolled,
        ek_public: rec.ek_public,
        ek_cert_digest: rec.ek_cert_digest,
        ak_public: rec.ak_public,
        ak_name: rec.ak_name,
        enrolled_at: now,
        last_attested_at: None,
        last_failure: None,
        policy_id: None,
    };
    let accepted = audit_log::enrollment(
        &host.id,
        true,
        Some(host.ek_cert_digest.clone()),
        host.ak_name.clone(),
        None,
        now,
    );
    st.audit
        .append(StateChange::Host(host.clone()), vec![accepted])
        .await?;
    tracing::info!(host_id = %host.id, "host enrolled");
    Ok(Json(EnrollFinishResponse {
        host_id: host.id,
        status: host.status.as_str().to_owned(),
    }))
}
