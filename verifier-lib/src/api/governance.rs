//! `/v1` messages of continuous governance: revocation, status lists,
//! derived tokens, and the HTTP presentation of key-bound tokens.

use serde::{Deserialize, Serialize};

use super::b64;

/// Authorization scheme of a presented token: `Authorization: Writ <b64url token>`.
pub const AUTH_SCHEME: &str = "Writ";
/// Header carrying the proof of possession (base64url COSE_Sign1).
pub const POP_HEADER: &str = "writ-pop";
/// Media type of a signed status list (draft-ietf-oauth-status-list).
pub const STATUS_MEDIA_TYPE: &str = "application/statuslist+cwt";

/// Body of the operator revocation endpoints (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a revocation changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevocationResponse {
    /// Tokens newly revoked (descendants included).
    pub revoked_tokens: u64,
    /// Status-list version after the change.
    pub status_version: u64,
}

/// A host's state after an operator action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostStateResponse {
    pub host_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationResponse>,
}

/// `POST /v1/tokens/derive` body (the parent token and its proof of
/// possession ride in the `Authorization` and `Writ-PoP` headers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeriveRequest {
    /// Audience of the child: the parent's (default) or a sub-workload `parent/…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Scope of the child (see the narrowing rules).
    #[serde(default)]
    pub scope: Vec<String>,
    /// Requested lifetime; capped by the parent's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u32>,
    /// The child's own COSE_Key (P-256) for its `cnf`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub cnf: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeriveResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub token: Vec<u8>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub cti: Vec<u8>,
    pub expires_at: i64,
    pub depth: u8,
}

/// One `/v1/status/stream` event (`event: status`): a new list version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusEvent {
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
    /// Revoked tokens listed.
    pub entries: usize,
    /// The list's `sub`: the URI its tokens carry.
    pub uri: String,
    /// Where to fetch the list on the broker that sent the event (a path).
    pub url: String,
    pub etag: String,
    /// The signed list itself, when small enough.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<u8>>,
}

/// A token as operators see it (`GET /v1/tokens`, `GET /v1/tokens/{cti}`):
/// its claims summary and state, never the token itself (the broker does
/// not keep it; `token_sha256` lets an operator match a token they hold).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenSummary {
    /// The token id (`cti`), 32 hex digits.
    pub cti: String,
    /// The host it was issued to (`sub`).
    pub host_id: String,
    /// The workload it authorizes (`aud`).
    pub workload: String,
    /// SHA-256 of the workload build it was issued for, hex (empty: none).
    pub workload_digest: String,
    pub iat: i64,
    pub exp: i64,
    /// The policy it was granted under.
    pub policy_id: String,
    /// `active`, `revoked` or `expired` (at the time of the answer).
    pub state: String,
    /// The token it was derived from (lineage), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_cti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// Its entry in the status list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_list: Option<StatusListEntry>,
}

/// A token's entry in the status list of an epoch
/// (`/v1/status/lists/{epoch}`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusListEntry {
    pub epoch: u64,
    pub idx: u64,
}

/// `GET /v1/tokens`: one page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenPage {
    pub tokens: Vec<TokenSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/tokens/{cti}`: one token with its lineage and audit record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenDetail {
    pub token: TokenSummary,
    /// SHA-256 of the signed token, hex.
    pub token_sha256: String,
    /// The index of its `token_minted` leaf in the audit log (absent for
    /// tokens minted before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_index: Option<u64>,
    /// The token it was derived from, if it is still recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TokenSummary>,
    /// Tokens derived from it, newest first (at most 100).
    pub children: Vec<TokenSummary>,
    /// Whether more children exist than are listed.
    pub more_children: bool,
}
