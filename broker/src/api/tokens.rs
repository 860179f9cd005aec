//! Operator views of execution tokens: `GET /v1/tokens` (filtered, newest
//! first, paged by a cursor) and `GET /v1/tokens/{cti}` (claims summary,
//! lineage, revocation, audit leaf). Neither answers a token itself: the
//! broker keeps only its SHA-256.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use verifier_lib::api::governance::{StatusListEntry, TokenDetail, TokenPage, TokenSummary};

use super::ApiError;
use crate::state::AppState;
use crate::store::token_query::MAX_TOKEN_CHILDREN;
use crate::store::{TokenCursor, TokenLifecycle, TokenState};
use crate::token_filter::{page, TokenFilter};

/// A stored token as the API shows it, its state judged at `now`.
pub fn summary(t: &TokenState, now: i64) -> TokenSummary {
    TokenSummary {
        cti: hex::encode(&t.record.cti),
        host_id: t.record.host_id.clone(),
        workload: t.record.workload.clone(),
        workload_digest: hex::encode(&t.record.workload_digest),
        iat: t.record.iat,
        exp: t.record.exp,
        policy_id: t.record.policy_id.clone(),
        state: TokenLifecycle::of(t, now).as_str().to_owned(),
        parent_cti: t.parent_cti.as_deref().map(hex::encode),
        revoked_at: t.revoked_at,
        revocation_reason: t.revocation_reason.clone(),
        status_list: t.record.status.map(|s| StatusListEntry {
            epoch: s.epoch,
            idx: s.idx,
        }),
    }
}

/// `GET /v1/tokens`.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "list_tokens",
    tag = "operator",
    params(
        ("host" = Option<String>, Query, description = "Only tokens issued to this host"),
        ("workload" = Option<String>, Query, description = "Only tokens of this workload"),
        ("state" = Option<String>, Query, description = "`active`, `revoked` or `expired`"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)"),
    ),
    responses((status = 200, description = "One page of tokens, newest first", body = TokenPage), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<TokenPage>, ApiError> {
    let filter = TokenFilter::parse(q.as_deref())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let now = st.now();
    let rows = st.store.tokens(&filter.query(now)).await?;
    let (rows, next) = page(&filter, rows, TokenCursor::after);
    Ok(Json(TokenPage {
        tokens: rows.iter().map(|t| summary(t, now)).collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// `GET /v1/tokens/{cti}`.
#[utoipa::path(
    get,
    path = "/v1/tokens/{cti}",
    operation_id = "show_token",
    tag = "operator",
    params(("cti" = String, Path, description = "Token id: 16 bytes as hex or base64url")),
    responses((status = 200, description = "The token, its lineage, revocation and audit leaf", body = TokenDetail), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn show(
    State(st): State<AppState>,
    Path(cti): Path<String>,
) -> Result<Json<TokenDetail>, ApiError> {
    let id = super::revoke::parse_cti(&cti)?;
    let now = st.now();
    let t = st
        .store
        .token_state(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_token", format!("no token {cti}")))?;
    let parent = match &t.parent_cti {
        Some(p) => st.store.token_state(p).await?,
        None => None,
    };
    let mut children = st
        .store
        .token_children(&id, MAX_TOKEN_CHILDREN.saturating_add(1))
        .await?;
    let more_children = children.len() > MAX_TOKEN_CHILDREN as usize;
    children.truncate(MAX_TOKEN_CHILDREN as usize);
    Ok(Json(TokenDetail {
        token: summary(&t, now),
        token_sha256: hex::encode(&t.record.token_digest),
        audit_index: t.record.audit_index,
        parent: parent.as_ref().map(|p| summary(p, now)),
        children: children.iter().map(|c| summary(c, now)).collect(),
        more_children,
    }))
}
