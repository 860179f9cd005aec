//! `/v1` messages of request-signing keys: a TPM-resident key certified by
//! the host's AK (TPM2_Certify) that signs token requests between
//! attestations, so they need no quote.

use serde::{Deserialize, Serialize};

use super::b64;

/// `POST /v1/request-keys`: certify the host's request key. `nonce` comes
/// from `POST /v1/challenge` and is the certification's qualifying data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestKeyRegistration {
    pub host_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// The key's `TPM2B_PUBLIC`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub key_public: Vec<u8>,
    /// `TPMS_ATTEST` of TPM2_Certify (type `TPM_ST_ATTEST_CERTIFY`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub attest: Vec<u8>,
    /// The AK's `TPMT_SIGNATURE` over `attest`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// The registered request key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestKeyResponse {
    pub host_id: String,
    /// The key's TPM name.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub key_name: Vec<u8>,
    /// Signed requests are accepted while the host's last passing appraisal
    /// is at most this old.
    pub max_appraisal_age_secs: i64,
}

/// `POST /v1/tokens/signed`: a token request signed by the host's request
/// key instead of carrying a quote. `signature` is a `TPMT_SIGNATURE`
/// (ECDSA-SHA256) over the same 32 bytes a quote would carry as
/// `extraData` for this request: SHA-256(nonce ‖ canonical request), see
/// [`crate::request`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedTokenRequest {
    pub host_id: String,
    pub workload: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub workload_digest: Vec<u8>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Vec<u8>>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// Name of the request key that signed.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub key_name: Vec<u8>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}
