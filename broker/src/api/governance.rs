//! Governance endpoints: operator revocation and reinstatement, the signed
//! status list (`/v1/status`, `/v1/status/stream`) and derived tokens.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::Stream;
use verifier_lib::api::governance::{
    DeriveRequest, DeriveResponse, HostStateResponse, RevocationResponse, RevokeRequest,
    StatusEvent, AUTH_SCHEME, POP_HEADER, STATUS_MEDIA_TYPE,
};
use verifier_lib::crypto::HashAlg;
use verifier_lib::lineage;
use verifier_lib::pop::{self, RequestContext, Window};
use verifier_lib::token::{self, Claims, Expectations, Lineage, TokenVerifier};

use super::ApiError;
use crate::audit::decisions as audit_log;
use crate::governance::{require_fresh_host, Published};
use crate::mint;
use crate::operator::Operator;
use crate::state::AppState;
use crate::store::audit::{Appended, Entry, StateChange};
use crate::store::{HostStatus, TokenRecord};

fn reason_from(body: &Bytes, default: &str) -> Result<String, ApiError> {
    if body.is_empty() {
        return Ok(default.to_owned());
    }
    let req: RevokeRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    Ok(req.reason.unwrap_or_else(|| default.to_owned()))
}

/// The answer to an applied revocation: tokens revoked and the status-list
/// version that lists them.
async fn revocation(st: &AppState, applied: &Appended) -> Result<RevocationResponse, ApiError> {
    st.governance.poke();
    Ok(RevocationResponse {
        revoked_tokens: applied.tokens_revoked,
        status_version: st.store.status_version().await?,
    })
}

/// `POST /v1/hosts/{id}/revoke`: status `revoked`, every token of the host
/// (and their descendants) revoked, one audited decision.
pub async fn revoke_host(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<HostStateResponse>, ApiError> {
    let reason = reason_from(&body, "revoked by operator")?;
    let now = st.now();
    let change = StateChange::RevokeHost {
        host_id: id.clone(),
        reason: reason.clone(),
        at: now,
    };
    let leaves = vec![
        audit_log::operator_action(&op, &format!("revoke host {id}"), now),
        audit_log::host_revoked(&id, &reason, now),
    ];
    let applied = st.audit.apply(change, leaves).await?;
    let o = revocation(&st, &applied).await?;
    tracing::warn!(host_id = %id, %reason, tokens = o.revoked_tokens, "host revoked");
    Ok(Json(HostStateResponse {
        host_id: id,
        status: "revoked".into(),
        revocation: Some(o),
    }))
}

/// `POST /v1/hosts/{id}/reinstate`: revoked → enrolled (it must attest again).
pub async fn reinstate_host(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
) -> Result<Json<HostStateResponse>, ApiError> {
    let now = st.now();
    let change = StateChange::ReinstateHost {
        host_id: id.clone(),
        at: now,
    };
    let leaves = vec![
        audit_log::operator_action(&op, &format!("reinstate host {id}"), now),
        audit_log::host_state_changed(
            &id,
            HostStatus::Revoked,
            HostStatus::Enrolled,
            "reinstated by operator",
            now,
        ),
    ];
    st.audit.apply(change, leaves).await?;
    tracing::warn!(host_id = %id, "host reinstated (enrolled; must attest again)");
    Ok(Json(HostStateResponse {
        host_id: id,
        status: "enrolled".into(),
        revocation: None,
    }))
}

/// `GET /v1/hosts/{id}/events`: reboots, clock refusals, state changes.
pub async fn host_events(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::store::HostEvent>>, ApiError> {
    if st.store.host(&id).await?.is_none() {
        return Err(ApiError::not_found("unknown_host", format!("no host {id}")));
    }
    Ok(Json(st.store.host_events(&id).await?))
}

/// A token id given as 32 hex digits or 22 base64url characters.
fn parse_cti(s: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = hex::decode(s)
        .ok()
        .or_else(|| URL_SAFE_NO_PAD.decode(s).ok())
        .filter(|b| b.len() == token::CTI_LEN);
    bytes.ok_or_else(|| {
        ApiError::bad_request("invalid_cti", "cti: expected 16 bytes as hex or base64url")
    })
}

/// `POST /v1/tokens/{cti}/revoke`: the token and all its descendants.
pub async fn revoke_token(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(cti): Path<String>,
    body: Bytes,
) -> Result<Json<RevocationResponse>, ApiError> {
    let id = parse_cti(&cti)?;
    let reason = reason_from(&body, "revoked by operator")?;
    let now = st.now();
    let change = StateChange::RevokeToken {
        cti: id.clone(),
        reason: reason.clone(),
        at: now,
    };
    let leaves = vec![
        audit_log::operator_action(&op, &format!("revoke token {}", hex::encode(&id)), now),
        audit_log::token_revoked(&id, &reason, now),
    ];
    let applied = st.audit.apply(change, leaves).await?;
    let o = revocation(&st, &applied).await?;
    tracing::warn!(cti = %hex::encode(&id), %reason, tokens = o.revoked_tokens, "token revoked");
    Ok(Json(o))
}

/// `POST /v1/workloads/{name}/revoke`: every token of the workload.
pub async fn revoke_workload(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<RevocationResponse>, ApiError> {
    let reason = reason_from(&body, "workload revoked by operator")?;
    let now = st.now();
    let change = StateChange::RevokeWorkload {
        workload: name.clone(),
        reason: reason.clone(),
        at: now,
    };
    let leaves = vec![
        audit_log::operator_action(&op, &format!("revoke workload {name}"), now),
        audit_log::workload_revoked(&name, &reason, now),
    ];
    let applied = st.audit.apply(change, leaves).await?;
    let o = revocation(&st, &applied).await?;
    tracing::warn!(workload = %name, %reason, tokens = o.revoked_tokens, "workload revoked");
    Ok(Json(o))
}

/// `GET /v1/status`: the signed status list, with ETag / If-None-Match.
pub async fn status(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = st.governance.published(&st).await?;
    let etag = HeaderValue::from_str(&p.etag).map_err(|e| ApiError::internal("status_etag", e))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == p.etag || t.trim() == "*"));
    let version = HeaderValue::from(p.version);
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (
                    header::HeaderName::from_static("writ-status-version"),
                    version,
                ),
            ],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(STATUS_MEDIA_TYPE),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("writ-status-version"),
                version,
            ),
        ],
        p.bytes.as_ref().clone(),
    )
        .into_response())
}

fn status_event(p: &Published, inline_max: usize) -> Event {
    let ev = StatusEvent {
        version: p.version,
        issued_at: p.issued_at,
        expires_at: p.expires_at,
        entries: p.entries,
        url: "/v1/status".into(),
        etag: p.etag.clone(),
        list: (p.bytes.len() <= inline_max).then(|| p.bytes.as_ref().clone()),
    };
    let data = serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into());
    Event::default()
        .event("status")
        .id(p.version.to_string())
        .data(data)
}

/// `GET /v1/status/stream`: Server-Sent Events, one `status` event now and
/// one on every new status version.
pub async fn status_stream(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.governance.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(st.config.status.stream_max_secs);
    let stream =
        futures_util::stream::unfold((st, rx, true), move |(st, mut rx, first)| async move {
            if !first {
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return None,
                }
            }
            let ev = match st.governance.published(&st).await {
                Ok(p) => status_event(&p, st.config.status.inline_max_bytes),
                Err(e) => Event::default().event("error").data(e.code),
            };
            Some((Ok(ev), (st, rx, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The token of an `Authorization: Writ <b64url>` header.
pub(crate) fn presented_token(headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("token_missing", "Authorization: Writ <token> required"))?;
    let b64 = value
        .strip_prefix(AUTH_SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| unauthorized("token_missing", "Authorization scheme must be Writ"))?;
    URL_SAFE_NO_PAD
        .decode(b64.trim())
        .map_err(|_| unauthorized("token_malformed", "token is not base64url"))
}

fn presented_proof(headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
    let v = headers
        .get(POP_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("pop_missing", "Writ-PoP header required"))?;
    URL_SAFE_NO_PAD
        .decode(v.trim())
        .map_err(|_| unauthorized("pop_malformed", "Writ-PoP is not base64url"))
}

/// `POST /v1/tokens/derive`: a narrower child of a presented, key-bound,
/// unrevoked parent token, proven by a PoP with the parent's `cnf` key.
pub async fn derive(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DeriveResponse>, ApiError> {
    let parent_bytes = presented_token(&headers)?;
    let proof = presented_proof(&headers)?;
    let req: DeriveRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    let now = st.now();
    let verifier = TokenVerifier::new(
        (*st.key_set).clone(),
        Expectations {
            issuer: st.config.tokens.issuer.clone(),
            audience: token::Audience::Any,
            leeway_secs: st.config.tokens.leeway_secs,
            max_lifetime_secs: i64::from(verifier_lib::policy::HARD_MAX_TOKEN_LIFETIME_SECS),
            require_workload_digest: false,
        },
    );
    let parent = verifier
        .verify(&parent_bytes, now)
        .map_err(|e| unauthorized("token_invalid", format!("parent token: {e}")))?;
    let body_digest = HashAlg::Sha256.digest(&body);
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let ctx = RequestContext {
        method: "POST",
        path,
        body_digest: &body_digest,
        challenge: None,
    };
    let window = Window {
        max_age_secs: st.config.lineage.pop_max_age_secs,
        max_future_secs: st.config.tokens.leeway_secs.max(0),
    };
    {
        let mut cache = st
            .governance
            .replay
            .lock()
            .map_err(|_| ApiError::internal("replay_cache", "poisoned"))?;
        pop::verify(&proof, &parent, &ctx, now, window, &mut *cache)
            .map_err(|e| unauthorized(e.code(), e.to_string()))?;
    }
    let state = st
        .store
        .token_state(&parent.claims.cti)
        .await?
        .ok_or_else(|| {
            ApiError::forbidden("parent_unknown", "the parent token was not issued here")
        })?;
    if state.revoked {
        return Err(ApiError::forbidden(
            "parent_revoked",
            "the parent token is revoked",
        ));
    }
    require_fresh_host(&st, &parent.claims.sub).await?;
    let depth = lineage::child_depth(&parent.claims)
        .map_err(|e| ApiError::forbidden(e.code(), e.to_string()))?;
    let cnf = mint::parse_cnf(&req.cnf)
        .map_err(|e| ApiError::bad_request("invalid_cnf", format!("cnf: {e}")))?;
    let lifetime = req.lifetime_secs.map_or(i64::MAX, i64::from);
    let exp = parent.claims.exp.min(now.saturating_add(lifetime));
    if exp <= now {
        return Err(ApiError::forbidden(
            "parent_expired",
            "the parent token has expired",
        ));
    }
    let cti = token::new_cti(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|e| ApiError::internal("token_mint_failed", e))?;
    let child = Claims {
        iss: parent.claims.iss.clone(),
        sub: parent.claims.sub.clone(),
        aud: req.aud.clone().unwrap_or_else(|| parent.claims.aud.clone()),
        exp,
        nbf: now.max(parent.claims.nbf),
        iat: now,
        cti: cti.clone(),
        eat_nonce: None,
        eat_profile: token::PROFILE.to_owned(),
        appraisal: parent.claims.appraisal.clone(),
        workload_digest: parent.claims.workload_digest.clone(),
        cnf: Some(cnf),
        lineage: Some(Lineage {
            parent_cti: parent.claims.cti.clone(),
            parent_digest: parent.digest.clone(),
            depth,
        }),
        scope: req.scope.clone(),
        audit_index: None,
        // Never wider than the parent (checked by `check_narrower`).
        offline_ok: parent.claims.offline_ok,
    };
    lineage::check_narrower(&parent.claims, &child)
        .map_err(|e| ApiError::forbidden(e.code(), e.to_string()))?;
    // Minted inside the audit writer: the child carries the index of its own
    // `token_minted` leaf and exists only if that leaf, and its record under
    // an unrevoked parent, commit.
    let key = st.signing_key.clone();
    let policy_id = state.record.policy_id.clone();
    let parent_cti = parent.claims.cti.clone();
    let (_, bytes) = st
        .audit
        .commit_with(move |index| {
            let mut child = child;
            child.audit_index = Some(index);
            let bytes =
                token::mint(&child, &key).map_err(|e| format!("{}{e}", audit_log::MINT_FAILED))?;
            let record = TokenRecord {
                cti: child.cti.clone(),
                host_id: child.sub.clone(),
                workload: child.aud.clone(),
                workload_digest: child.workload_digest.clone().unwrap_or_default(),
                iat: child.iat,
                exp: child.exp,
                policy_id,
                token_digest: HashAlg::Sha256.digest(&bytes),
            };
            let leaf = audit_log::token_minted(
                &record,
                Some(&parent_cti),
                &record.token_digest,
                child.iat,
            );
            let entry = Entry {
                change: StateChange::DerivedToken {
                    token: record,
                    parent_cti,
                },
                leaves: vec![leaf],
            };
            Ok((entry, bytes))
        })
        .await?;
    tracing::info!(cti = %hex::encode(&cti), parent = %hex::encode(&parent.claims.cti), depth, "derived token issued");
    Ok(Json(DeriveResponse {
        token: bytes,
        cti,
        expires_at: exp,
        depth,
    }))
}
