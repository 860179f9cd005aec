//! Building execution tokens from a passing appraisal.

use std::collections::BTreeMap;

use verifier_lib::appraisal::TpmAppraisal;
use verifier_lib::crypto::HashAlg;
use verifier_lib::policy::{Policy, WorkloadRule};
use verifier_lib::token::{
    self, Appraisal, ClaimValue, Claims, EarStatus, SubmodClaims, TokenError, TrustVector,
    VerifyingKey,
};
use verifier_lib::tpm::VerifiedQuote;

use crate::state::AppState;
use crate::store::TokenRecord;

/// EAR trustworthiness claim value "affirming" for a vector component.
const TV_AFFIRMING: i8 = 2;

/// A freshly minted token and what the store records of it.
#[derive(Debug)]
pub struct Minted {
    pub token: Vec<u8>,
    pub record: TokenRecord,
}

/// Parse the workload's `cnf` COSE_Key.
pub fn parse_cnf(bytes: &[u8]) -> Result<VerifyingKey, TokenError> {
    VerifyingKey::from_cose_key_bytes(bytes)
}

/// The `verifier-id` every token carries.
pub fn verifier_id() -> String {
    format!("writ-broker/{}", env!("CARGO_PKG_VERSION"))
}

/// Mint the execution token for `rule` on `host_id`.
#[allow(clippy::too_many_arguments)]
pub fn execution_token(
    st: &AppState,
    policy: &Policy,
    host_id: &str,
    rule: &WorkloadRule,
    req: &verifier_lib::api::TokenRequest,
    cnf: Option<VerifyingKey>,
    appraisal: &TpmAppraisal,
    now: i64,
) -> Result<Minted, TokenError> {
    execution_token_at(st, policy, host_id, rule, req, cnf, appraisal, now, None)
}

/// [`execution_token`] carrying `audit_index`: the log index of the token's
/// own `token_minted` leaf (known inside the audit writer, see `crate::audit`).
#[allow(clippy::too_many_arguments)]
pub fn execution_token_at(
    st: &AppState,
    policy: &Policy,
    host_id: &str,
    rule: &WorkloadRule,
    req: &verifier_lib::api::TokenRequest,
    cnf: Option<VerifyingKey>,
    appraisal: &TpmAppraisal,
    now: i64,
    audit_index: Option<u64>,
) -> Result<Minted, TokenError> {
    let mut submods = BTreeMap::new();
    if let Some(q) = &appraisal.quote {
        submods.insert("tpm".to_owned(), tpm_submod(q));
    }
    let request = Request {
        host_id,
        nonce: &req.nonce,
        workload_digest: &req.workload_digest,
    };
    mint(st, policy, rule, request, cnf, submods, now, audit_index)
}

/// The execution token for a request signed by the host's request key
/// (`/v1/tokens/signed`): no quote backs it, so its `tpm` submodule says
/// `evidence = "request-key"`, names the key and the TPM boot it was
/// certified in, and gives `appraised-at`, the time of the host's last
/// passing appraisal.
#[allow(clippy::too_many_arguments)]
pub fn signed_request_token(
    st: &AppState,
    policy: &Policy,
    rule: &WorkloadRule,
    req: &verifier_lib::api::request_key::SignedTokenRequest,
    cnf: Option<VerifyingKey>,
    key: &crate::store::RequestKeyRecord,
    appraised_at: i64,
    now: i64,
    audit_index: Option<u64>,
) -> Result<Minted, TokenError> {
    let mut tpm = SubmodClaims::new();
    tpm.insert(
        "evidence".into(),
        ClaimValue::Text("request-key".to_owned()),
    );
    tpm.insert(
        "request-key".into(),
        ClaimValue::Bytes(key.key_name.clone()),
    );
    tpm.insert("appraised-at".into(), ClaimValue::Int(appraised_at));
    tpm.insert(
        "reset-count".into(),
        ClaimValue::Int(i64::from(key.reset_count)),
    );
    tpm.insert(
        "restart-count".into(),
        ClaimValue::Int(i64::from(key.restart_count)),
    );
    let mut submods = BTreeMap::new();
    submods.insert("tpm".to_owned(), tpm);
    let request = Request {
        host_id: &req.host_id,
        nonce: &req.nonce,
        workload_digest: &req.workload_digest,
    };
    mint(st, policy, rule, request, cnf, submods, now, audit_index)
}

/// What a token request asked for.
#[derive(Debug, Clone, Copy)]
struct Request<'a> {
    host_id: &'a str,
    nonce: &'a [u8],
    workload_digest: &'a [u8],
}

#[allow(clippy::too_many_arguments)]
fn mint(
    st: &AppState,
    policy: &Policy,
    rule: &WorkloadRule,
    req: Request<'_>,
    cnf: Option<VerifyingKey>,
    submods: BTreeMap<String, SubmodClaims>,
    now: i64,
    audit_index: Option<u64>,
) -> Result<Minted, TokenError> {
    let host_id = req.host_id;
    let lifetime = i64::from(rule.lifetime_secs.min(policy.max_lifetime_secs));
    let cti = token::new_cti(&aws_lc_rs::rand::SystemRandom::new())?;
    let claims = Claims {
        iss: st.config.tokens.issuer.clone(),
        sub: host_id.to_owned(),
        aud: rule.name.clone(),
        exp: now + lifetime,
        nbf: now,
        iat: now,
        cti: cti.clone(),
        eat_nonce: Some(req.nonce.to_vec()),
        eat_profile: token::PROFILE.to_owned(),
        appraisal: Appraisal {
            status: EarStatus::Affirming,
            trust_vector: TrustVector {
                instance_identity: Some(TV_AFFIRMING),
                configuration: Some(TV_AFFIRMING),
                executables: Some(TV_AFFIRMING),
                hardware: Some(TV_AFFIRMING),
                ..TrustVector::default()
            },
            policy_id: format!("{}@sha256:{}", policy.id, policy.hash_hex()),
            verifier_id: verifier_id(),
            submods,
        },
        workload_digest: Some(req.workload_digest.to_vec()),
        cnf,
        lineage: None,
        scope: Vec::new(),
        audit_index,
        offline_ok: rule.allow_offline,
    };
    let bytes = token::mint(&claims, &st.signing_key)?;
    Ok(Minted {
        record: TokenRecord {
            cti,
            host_id: host_id.to_owned(),
            workload: rule.name.clone(),
            workload_digest: req.workload_digest.to_vec(),
            iat: now,
            exp: now + lifetime,
            policy_id: policy.id.clone(),
            token_digest: HashAlg::Sha256.digest(&bytes),
        },
        token: bytes,
    })
}

/// The `tpm` submodule claims: what the verified quote says of the TPM.
fn tpm_submod(q: &VerifiedQuote) -> SubmodClaims {
    let mut m = SubmodClaims::new();
    m.insert(
        "firmware-version".into(),
        ClaimValue::Int(i64::try_from(q.firmware_version).unwrap_or(i64::MAX)),
    );
    m.insert(
        "reset-count".into(),
        ClaimValue::Int(i64::from(q.clock_info.reset_count)),
    );
    m.insert(
        "restart-count".into(),
        ClaimValue::Int(i64::from(q.clock_info.restart_count)),
    );
    m.insert("clock-safe".into(), ClaimValue::Bool(q.clock_info.safe));
    m.insert(
        "qualified-signer".into(),
        ClaimValue::Bytes(q.qualified_signer.clone()),
    );
    for (bank, pcrs) in &q.pcrs.0 {
        for (pcr, value) in pcrs {
            m.insert(
                format!("pcr-{bank}-{pcr}"),
                ClaimValue::Bytes(value.clone()),
            );
        }
    }
    m
}
