//! Execution tokens from a passing SEV-SNP appraisal: the same profile as
//! TPM-backed tokens, with the report's claims in the EAR submodule `cpu`.

use std::collections::BTreeMap;

use verifier_lib::crypto::HashAlg;
use verifier_lib::policy::{Policy, WorkloadRule};
use verifier_lib::snp::{TcbParts, VerifiedReport};
use verifier_lib::token::{
    self, Appraisal, ClaimValue, Claims, EarStatus, SubmodClaims, TokenError, TrustVector,
    VerifyingKey,
};

use crate::mint::{verifier_id, Minted};
use crate::state::AppState;
use crate::store::TokenRecord;

/// EAR trustworthiness claim value "affirming" for a vector component.
const TV_AFFIRMING: i8 = 2;

/// What the token request asked for.
#[derive(Debug, Clone, Copy)]
pub struct SnpTokenInput<'a> {
    pub host_id: &'a str,
    pub nonce: &'a [u8],
    pub workload_digest: &'a [u8],
}

/// Mint the execution token for `rule` on SNP host `input.host_id`,
/// carrying `audit_index`, the log index of its `token_minted` leaf.
#[allow(clippy::too_many_arguments)]
pub fn snp_execution_token(
    st: &AppState,
    policy: &Policy,
    rule: &WorkloadRule,
    input: SnpTokenInput<'_>,
    cnf: Option<VerifyingKey>,
    verified: &VerifiedReport,
    now: i64,
    audit_index: Option<u64>,
) -> Result<Minted, TokenError> {
    let lifetime = i64::from(rule.lifetime_secs.min(policy.max_lifetime_secs));
    let cti = token::new_cti(&aws_lc_rs::rand::SystemRandom::new())?;
    let mut submods = BTreeMap::new();
    submods.insert("cpu".to_owned(), cpu_submod(verified));
    let claims = Claims {
        iss: st.config.tokens.issuer.clone(),
        sub: input.host_id.to_owned(),
        aud: rule.name.clone(),
        exp: now + lifetime,
        nbf: now,
        iat: now,
        cti: cti.clone(),
        eat_nonce: Some(input.nonce.to_vec()),
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
        workload_digest: Some(input.workload_digest.to_vec()),
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
            host_id: input.host_id.to_owned(),
            workload: rule.name.clone(),
            workload_digest: input.workload_digest.to_vec(),
            iat: now,
            exp: now + lifetime,
            policy_id: policy.id.clone(),
            token_digest: HashAlg::Sha256.digest(&bytes),
        },
        token: bytes,
    })
}

fn tcb_claims(m: &mut SubmodClaims, prefix: &str, t: &TcbParts) {
    if let Some(fmc) = t.fmc {
        m.insert(format!("{prefix}-fmc"), ClaimValue::Int(i64::from(fmc)));
    }
    for (name, v) in [
        ("bootloader", t.bootloader),
        ("tee", t.tee),
        ("snp", t.snp),
        ("microcode", t.microcode),
    ] {
        m.insert(format!("{prefix}-{name}"), ClaimValue::Int(i64::from(v)));
    }
}

/// The `cpu` submodule claims: what the verified report says of the guest
/// and the platform. See docs/token-profile.md ("cpu submodule").
pub fn cpu_submod(v: &VerifiedReport) -> SubmodClaims {
    let r = &v.report;
    let mut m = SubmodClaims::new();
    m.insert("tee".into(), ClaimValue::Text("sev-snp".into()));
    m.insert(
        "product".into(),
        ClaimValue::Text(format!("{:?}", v.product)),
    );
    m.insert(
        "signer".into(),
        ClaimValue::Text(format!("{:?}", v.signer).to_lowercase()),
    );
    m.insert(
        "measurement".into(),
        ClaimValue::Bytes(v.measurement.to_vec()),
    );
    if let Some(chip) = &v.chip_id {
        m.insert("chip-id".into(), ClaimValue::Bytes(chip.clone()));
    }
    m.insert("host-data".into(), ClaimValue::Bytes(r.host_data.to_vec()));
    m.insert(
        "report-version".into(),
        ClaimValue::Int(i64::from(r.version)),
    );
    m.insert("guest-svn".into(), ClaimValue::Int(i64::from(r.guest_svn)));
    m.insert(
        "guest-policy".into(),
        ClaimValue::Int(i64::try_from(r.policy.0).unwrap_or(i64::MAX)),
    );
    m.insert("vmpl".into(), ClaimValue::Int(i64::from(r.vmpl)));
    m.insert("debug".into(), ClaimValue::Bool(r.policy.debug()));
    tcb_claims(&mut m, "reported-tcb", &v.reported_tcb);
    tcb_claims(&mut m, "committed-tcb", &v.committed_tcb);
    tcb_claims(&mut m, "launch-tcb", &v.launch_tcb);
    m.insert(
        "revocation-checked".into(),
        ClaimValue::Bool(v.revocation_checked),
    );
    if v.dangerous_root {
        m.insert("dangerous-test-root".into(), ClaimValue::Bool(true));
    }
    m
}
