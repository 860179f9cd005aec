//! The broker's HTTP API messages (`/v1`), shared by the broker (server) and
//! the attester (client) so that both sides agree on one definition.
//!
//! Binary fields are base64url without padding. PCR values use the JSON
//! shape `{"sha256": {"0": "hex", ...}}`.

use serde::{Deserialize, Serialize};

pub mod governance;
pub mod request_key;

use crate::policy::public::PublicFailure;
use crate::policy::Failure;
use crate::tpm::PcrValues;

/// `POST /v1/enroll/start`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollStartRequest {
    /// The EK certificate as read from NV (DER, NV padding allowed).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub ek_cert: Vec<u8>,
    /// Chain certificates found in NV, if any (DER).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    #[serde(with = "b64::list", default)]
    pub ek_chain: Vec<Vec<u8>>,
    /// TPM2B_PUBLIC of the EK.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub ek_public: Vec<u8>,
    /// TPM2B_PUBLIC of the AK.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
}

/// Answer to `POST /v1/enroll/start`: a credential only the TPM holding the
/// EK can open, and only for that AK.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollStartResponse {
    pub enrollment_id: String,
    pub host_id: String,
    /// TPM2B_ID_OBJECT buffer (without its outer size).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET buffer (without its outer size).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub encrypted_secret: Vec<u8>,
    pub expires_at: i64,
}

/// `POST /v1/enroll/finish`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollFinishRequest {
    pub enrollment_id: String,
    /// The secret ActivateCredential returned.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub secret: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollFinishResponse {
    pub host_id: String,
    pub status: String,
}

/// `POST /v1/challenge`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub host_id: String,
}

/// One bank of a PCR selection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PcrBankSelection {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub bank: crate::crypto::HashAlg,
    pub pcrs: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    pub expires_at: i64,
    /// What the quote must cover.
    pub pcr_selection: Vec<PcrBankSelection>,
    pub policy_id: String,
    /// IMA entries the broker already appraised for this host in the boot
    /// identified by `ima_reset_count`/`ima_restart_count`. If the quote the
    /// attester takes shows the same counters, it sends the list from this
    /// entry on (`ima_offset`); otherwise the whole list. Absent: whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_entries_known: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_reset_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_restart_count: Option<u32>,
}

/// TPM evidence: a quote, its signature and the PCR values it covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// TPMS_ATTEST (or TPM2B_ATTEST).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub pcrs: PcrValues,
    /// The TCG event log (`binary_bios_measurements`), if the host has one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub eventlog: Option<Vec<u8>>,
    /// IMA `ascii_runtime_measurements` lines from entry `ima_offset` on.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub ima: Option<Vec<u8>>,
    /// Index of the first IMA entry in `ima` (0: the whole list).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ima_offset: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// `POST /v1/policy/learn`: draft a policy from a golden host's logs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyLearnRequest {
    /// Policy id of the draft (default `learned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Group name of the draft (default `learned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Host ids the group covers (default `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub eventlog: Option<Vec<u8>>,
    /// ASCII IMA list.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub ima: Option<Vec<u8>>,
}

/// `POST /v1/attest`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    pub host_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    pub evidence: TpmEvidence,
}

/// The outcome of one appraisal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppraisalResponse {
    pub host_id: String,
    /// `affirming` or `contraindicated`.
    pub verdict: String,
    /// The host's status after this appraisal.
    pub host_status: String,
    pub policy_id: String,
    pub policy_hash: String,
    pub appraised_at: i64,
    /// Every failing rule (empty when affirming), as clients see it: the
    /// rule and the evidence's own values, never the policy's.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub failures: Vec<PublicFailure>,
}

/// `POST /v1/tokens`: a token for one workload, backed by a quote whose
/// extraData is `SHA-256(nonce ‖ canonical request)` (see [`crate::request`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub host_id: String,
    pub workload: String,
    /// SHA-256 of the workload executable.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub workload_digest: Vec<u8>,
    /// The workload's COSE_Key (P-256) for the `cnf` claim.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Vec<u8>>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    pub evidence: TpmEvidence,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The COSE_Sign1 execution token.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub token: Vec<u8>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub cti: Vec<u8>,
    pub expires_at: i64,
    pub appraisal: AppraisalResponse,
}

/// SEV-SNP evidence: the attestation report and, optionally, the
/// certificates the guest obtained with it (the extended report's
/// certificate table). Anything absent is taken from the broker's KDS
/// cache, its offline bundle or AMD KDS. See docs/api.md ("SEV-SNP").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SnpEvidence {
    /// The raw 1184-byte ATTESTATION_REPORT.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub report: Vec<u8>,
    /// The VCEK or VLEK certificate (DER).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub vcek: Option<Vec<u8>>,
    /// The ASK/ASVK (and optionally the ARK) certificates (DER), untrusted:
    /// the chain must still end in a trusted ARK.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    #[serde(with = "b64::list", default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Vec<u8>>,
}

/// `POST /v1/snp/attest`: REPORT_DATA must be `SHA-512(nonce ‖ attester_key)`
/// (`attester_key` empty when absent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SnpAttestRequest {
    pub host_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// The public key the guest binds to this report (e.g. a COSE_Key, or
    /// the vTPM AK's TPM2B_PUBLIC in `both` mode), exactly as hashed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub attester_key: Option<Vec<u8>>,
    pub evidence: SnpEvidence,
}

/// `POST /v1/snp/tokens`: like [`TokenRequest`], but backed by an SEV-SNP
/// report whose REPORT_DATA is `SHA-512(nonce ‖ canonical request)` (see
/// [`crate::request::TokenRequestBinding::snp_report_data`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SnpTokenRequest {
    pub host_id: String,
    pub workload: String,
    /// SHA-256 of the workload executable.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub workload_digest: Vec<u8>,
    /// The workload's COSE_Key (P-256) for the `cnf` claim.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Vec<u8>>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    pub evidence: SnpEvidence,
}

/// A host as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostView {
    pub id: String,
    pub status: String,
    pub enrolled_at: i64,
    pub last_attested_at: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub last_failure: Option<Vec<Failure>>,
    pub policy_id: Option<String>,
    pub ak_name: String,
}

/// The error body every `/v1` endpoint uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Value>,
}

/// Serde helpers for base64url (no padding) byte fields.
pub mod b64 {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| serde::de::Error::custom(format!("invalid base64url: {e}")))
    }

    /// `Option<Vec<u8>>` fields.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| {
                URL_SAFE_NO_PAD
                    .decode(s.trim_end_matches('='))
                    .map_err(|e| serde::de::Error::custom(format!("invalid base64url: {e}")))
            })
            .transpose()
        }
    }

    /// `Vec<Vec<u8>>` fields.
    pub mod list {
        use super::*;
        use serde::ser::SerializeSeq;

        pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for b in v {
                seq.serialize_element(&URL_SAFE_NO_PAD.encode(b))?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            Vec::<String>::deserialize(d)?
                .into_iter()
                .map(|s| {
                    URL_SAFE_NO_PAD
                        .decode(s.trim_end_matches('='))
                        .map_err(|e| serde::de::Error::custom(format!("invalid base64url: {e}")))
                })
                .collect()
        }
    }
}
