//! The claims of every execution token, built in one place: TPM-quote,
//! SEV-SNP and request-key tokens differ only in their EAR submodule.

use std::collections::BTreeMap;

use crate::policy::Policy;
use crate::snp::{TcbParts, VerifiedReport};
use crate::token::{
    Appraisal, ClaimValue, Claims, EarStatus, SubmodClaims, TrustVector, VerifyingKey, PROFILE,
};
use crate::tpm::VerifiedQuote;

use super::Grant;

/// EAR trustworthiness claim value "affirming" for a vector component.
const TV_AFFIRMING: i8 = 2;

/// What an execution token says, besides its id and audit index.
#[derive(Debug, Clone)]
pub struct ExecutionToken<'a> {
    /// The broker fleet's issuer name.
    pub issuer: &'a str,
    /// The `build` member of `ear.verifier-id`.
    pub verifier_id: &'a str,
    pub host_id: &'a str,
    pub grant: &'a Grant,
    pub policy: &'a Policy,
    /// The nonce the evidence (or signed request) was bound to.
    pub nonce: &'a [u8],
    pub workload_digest: &'a [u8],
    /// The workload's proof-of-possession key.
    pub cnf: Option<VerifyingKey>,
    /// The evidence's EAR submodule (`tpm` or `cpu`).
    pub submod: (&'static str, SubmodClaims),
}

impl ExecutionToken<'_> {
    /// The token's claims with `cti` and the index of its `token_minted` leaf.
    pub fn claims(self, cti: Vec<u8>, audit_index: Option<u64>) -> Claims {
        let mut submods = BTreeMap::new();
        submods.insert(self.submod.0.to_owned(), self.submod.1);
        Claims {
            iss: self.issuer.to_owned(),
            sub: self.host_id.to_owned(),
            aud: self.grant.rule.name.clone(),
            exp: self.grant.exp,
            nbf: self.grant.iat,
            iat: self.grant.iat,
            cti,
            eat_nonce: Some(self.nonce.to_vec()),
            eat_profile: PROFILE.to_owned(),
            appraisal: Appraisal {
                status: EarStatus::Affirming,
                trust_vector: TrustVector {
                    instance_identity: Some(TV_AFFIRMING),
                    configuration: Some(TV_AFFIRMING),
                    executables: Some(TV_AFFIRMING),
                    hardware: Some(TV_AFFIRMING),
                    ..TrustVector::default()
                },
                policy_id: format!("{}@sha256:{}", self.policy.id, self.policy.hash_hex()),
                verifier_id: self.verifier_id.to_owned(),
                submods,
            },
            workload_digest: Some(self.workload_digest.to_vec()),
            cnf: self.cnf,
            lineage: None,
            scope: Vec::new(),
            audit_index,
            offline_ok: self.grant.rule.allow_offline,
            status: None,
        }
    }
}

/// The `tpm` submodule: what the verified quote says of the TPM.
pub fn tpm_submod(q: &VerifiedQuote) -> SubmodClaims {
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

/// The `tpm` submodule of a token minted on a request signed by the host's
/// request key: no quote backs it, so it says `evidence = "request-key"`,
/// names the key and the TPM boot it was certified in, and gives
/// `appraised-at`, the time of the host's last passing appraisal.
pub fn request_key_submod(
    key_name: &[u8],
    reset_count: u32,
    restart_count: u32,
    appraised_at: i64,
) -> SubmodClaims {
    let mut m = SubmodClaims::new();
    m.insert(
        "evidence".into(),
        ClaimValue::Text("request-key".to_owned()),
    );
    m.insert("request-key".into(), ClaimValue::Bytes(key_name.to_vec()));
    m.insert("appraised-at".into(), ClaimValue::Int(appraised_at));
    m.insert(
        "reset-count".into(),
        ClaimValue::Int(i64::from(reset_count)),
    );
    m.insert(
        "restart-count".into(),
        ClaimValue::Int(i64::from(restart_count)),
    );
    m
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

/// The `cpu` submodule: what the verified SEV-SNP report says of the guest
/// and the platform. See docs/token-profile.md ("cpu submodule").
pub fn cpu_submod(v: &VerifiedReport) -> SubmodClaims {
    let r = &v.report;
    let mut m = SubmodClaims::new();
    m.insert("tee".into(), ClaimValue::Text("sev-snp".into()));
    m.insert(
        "product".into(),
        ClaimValue::Text(v.product.as_str().to_owned()),
    );
    m.insert(
        "signer".into(),
        ClaimValue::Text(v.signer.as_str().to_owned()),
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
