//! The claims a Writ token carries and their deterministic CBOR form.
//! `docs/token-profile.md` is the normative description of every claim.

use std::collections::BTreeMap;

use ciborium::value::Value;
use serde::{Deserialize, Serialize};

use super::cbor::{self, as_bytes, as_fixed_bytes, as_i64, as_text, as_u64, int, required, IntMap};
use super::hex_serde;
use super::keys::VerifyingKey;
use super::status_ref::StatusRef;
use super::TokenError;

/// The `eat_profile` every Writ token carries.
pub const PROFILE: &str = "tag:writ.dev,2026:token/v1";
/// The `developer` member of the EAR `ear.verifier-id` Writ writes.
pub const VERIFIER_DEVELOPER: &str = "tag:writ.dev,2026:writ";
/// Length of `cti`.
pub const CTI_LEN: usize = 16;
/// Length of the SHA-256 digests carried in claims.
pub const DIGEST_LEN: usize = 32;
/// Deepest allowed derivation chain (a root token has no lineage claim; its
/// first-generation children have depth 1).
pub const MAX_LINEAGE_DEPTH: u8 = 8;
/// RFC 9711 bounds on a byte-string `eat_nonce`.
pub const NONCE_LEN_MIN: usize = 8;
pub const NONCE_LEN_MAX: usize = 64;

/// Claim keys (labels) of the claims set and of its nested maps.
pub mod label {
    /// RFC 8392 CWT claims.
    pub const ISS: i64 = 1;
    pub const SUB: i64 = 2;
    pub const AUD: i64 = 3;
    pub const EXP: i64 = 4;
    pub const NBF: i64 = 5;
    pub const IAT: i64 = 6;
    pub const CTI: i64 = 7;
    /// RFC 8747 confirmation claim.
    pub const CNF: i64 = 8;
    /// RFC 9711 EAT claims.
    pub const EAT_NONCE: i64 = 10;
    pub const EAT_PROFILE: i64 = 265;
    pub const SUBMODS: i64 = 266;
    /// draft-ietf-rats-ear claims.
    pub const EAR_STATUS: i64 = 1000;
    pub const EAR_TRUSTWORTHINESS_VECTOR: i64 = 1001;
    pub const EAR_APPRAISAL_POLICY_ID: i64 = 1003;
    pub const EAR_VERIFIER_ID: i64 = 1004;
    /// Writ-private claims, in the CWT "Private Use" range (< -65536).
    pub const WRIT_WORKLOAD_DIGEST: i64 = -65537;
    pub const WRIT_LINEAGE: i64 = -65538;
    pub const WRIT_AUDIT_INDEX: i64 = -65539;
    pub const WRIT_SCOPE: i64 = -65540;
    pub const WRIT_OFFLINE_OK: i64 = -65541;
    /// draft-ietf-oauth-status-list referenced-token claim.
    pub const STATUS: i64 = 65535;

    /// Inside `cnf`: RFC 8747 `COSE_Key`.
    pub const CNF_COSE_KEY: i64 = 1;
    /// Inside `ear.verifier-id`.
    pub const VERIFIER_ID_DEVELOPER: i64 = 0;
    pub const VERIFIER_ID_BUILD: i64 = 1;
    /// Inside `writ.lineage`.
    pub const LINEAGE_PARENT_CTI: i64 = 1;
    pub const LINEAGE_PARENT_DIGEST: i64 = 2;
    pub const LINEAGE_DEPTH: i64 = 3;
}

/// EAR trust tier of the overall appraisal (`ear.status`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EarStatus {
    None,
    Affirming,
    Warning,
    Contraindicated,
}

impl EarStatus {
    /// The AR4SI integer code point: none 0, affirming 2, warning 32, contraindicated 96.
    pub fn tier(self) -> i64 {
        match self {
            EarStatus::None => 0,
            EarStatus::Affirming => 2,
            EarStatus::Warning => 32,
            EarStatus::Contraindicated => 96,
        }
    }

    /// The status for an AR4SI code point.
    pub fn from_tier(tier: i64) -> Option<Self> {
        match tier {
            0 => Some(EarStatus::None),
            2 => Some(EarStatus::Affirming),
            32 => Some(EarStatus::Warning),
            96 => Some(EarStatus::Contraindicated),
            _ => None,
        }
    }
}

/// AR4SI trustworthiness vector (`ear.trustworthiness-vector`); each claim is
/// a small signed code point (e.g. 2 affirming, 32 warning, 96 contraindicated).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TrustVector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_identity: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executables: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_opaque: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_opaque: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourced_data: Option<i8>,
}

/// Names of the trustworthiness-vector claims, indexed by their CBOR key (0..=7).
const TRUST_VECTOR_NAMES: [&str; 8] = [
    "ear.trustworthiness-vector/instance-identity",
    "ear.trustworthiness-vector/configuration",
    "ear.trustworthiness-vector/executables",
    "ear.trustworthiness-vector/file-system",
    "ear.trustworthiness-vector/hardware",
    "ear.trustworthiness-vector/runtime-opaque",
    "ear.trustworthiness-vector/storage-opaque",
    "ear.trustworthiness-vector/sourced-data",
];

impl TrustVector {
    fn slots(&self) -> [Option<i8>; 8] {
        [
            self.instance_identity,
            self.configuration,
            self.executables,
            self.file_system,
            self.hardware,
            self.runtime_opaque,
            self.storage_opaque,
            self.sourced_data,
        ]
    }

    fn from_slots(s: [Option<i8>; 8]) -> Self {
        let [instance_identity, configuration, executables, file_system, hardware, runtime_opaque, storage_opaque, sourced_data] =
            s;
        TrustVector {
            instance_identity,
            configuration,
            executables,
            file_system,
            hardware,
            runtime_opaque,
            storage_opaque,
            sourced_data,
        }
    }

    /// True when no claim is set (the CBOR claim is then omitted).
    pub fn is_empty(&self) -> bool {
        self.slots().iter().all(Option::is_none)
    }
}

/// One value inside a submodule's claims (`submods`): deliberately only the
/// CBOR types that encode deterministically and print unambiguously.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClaimValue {
    /// Shown as hex in JSON.
    Bytes(#[serde(with = "hex_serde::bytes")] Vec<u8>),
    Text(String),
    Int(i64),
    Bool(bool),
}

/// The claims of one EAT submodule (e.g. `"tpm"`, `"cpu"`), keyed by text.
pub type SubmodClaims = BTreeMap<String, ClaimValue>;

/// The broker's appraisal of the evidence, in EAR terms.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Appraisal {
    pub status: EarStatus,
    pub trust_vector: TrustVector,
    /// `ear.appraisal-policy-id`.
    pub policy_id: String,
    /// The `build` member of `ear.verifier-id`, e.g. `"writ-broker/0.1.0"`.
    pub verifier_id: String,
    /// EAT `submods`: per-component claims (TPM, SEV-SNP CPU, …).
    #[serde(default)]
    pub submods: BTreeMap<String, SubmodClaims>,
}

/// Where a derived token comes from (`writ.lineage`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    /// The parent token's `cti` (16 bytes).
    #[serde(with = "hex_serde::bytes")]
    pub parent_cti: Vec<u8>,
    /// SHA-256 of the parent token's bytes.
    #[serde(with = "hex_serde::bytes")]
    pub parent_digest: Vec<u8>,
    /// 1 for a child of a root token, parent depth + 1 below that.
    pub depth: u8,
}

/// Everything a Writ token asserts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The attested host.
    pub sub: String,
    /// The workload the token is for.
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    /// Token id: 16 random bytes.
    #[serde(with = "hex_serde::bytes")]
    pub cti: Vec<u8>,
    /// Freshness nonce from the relying party (8..=64 bytes).
    #[serde(default, with = "hex_serde::option")]
    pub eat_nonce: Option<Vec<u8>>,
    /// Must be [`PROFILE`].
    pub eat_profile: String,
    pub appraisal: Appraisal,
    /// SHA-256 of the workload binary.
    #[serde(default, with = "hex_serde::option")]
    pub workload_digest: Option<Vec<u8>>,
    /// RFC 8747 proof-of-possession key of the workload (P-256).
    #[serde(default)]
    pub cnf: Option<VerifyingKey>,
    #[serde(default)]
    pub lineage: Option<Lineage>,
    /// Permissions granted to the workload; may be empty.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Index of the audit-log entry recording this issuance.
    #[serde(default)]
    pub audit_index: Option<u64>,
    /// The policy lets relying parties accept this token while they cannot
    /// get a fresh revocation status list (until `exp`). Encoded only when true.
    #[serde(default)]
    pub offline_ok: bool,
    /// Where the token's revocation status is published (the
    /// draft-ietf-oauth-status-list `status` claim). The broker sets it on
    /// every token it mints.
    #[serde(default)]
    pub status: Option<StatusRef>,
}

impl Claims {
    /// Check the length and range constraints the profile puts on claim values.
    pub fn validate(&self) -> Result<(), TokenError> {
        check_len(&self.cti, "cti", CTI_LEN)?;
        if let Some(nonce) = &self.eat_nonce {
            check_nonce(nonce)?;
        }
        if let Some(d) = &self.workload_digest {
            check_len(d, "writ.workload-digest", DIGEST_LEN)?;
        }
        if let Some(l) = &self.lineage {
            check_len(&l.parent_cti, "writ.lineage/parent-cti", CTI_LEN)?;
            check_len(&l.parent_digest, "writ.lineage/parent-digest", DIGEST_LEN)?;
            check_depth(u64::from(l.depth))?;
        }
        if let Some(s) = &self.status {
            s.check()?;
        }
        Ok(())
    }

    /// The claims set as deterministic CBOR (RFC 8949 §4.2.1: definite
    /// lengths, shortest integers, map keys sorted bytewise by encoding).
    pub fn to_cbor_bytes(&self) -> Result<Vec<u8>, TokenError> {
        self.validate()?;
        cbor::encode(&self.to_value()?, "claims-set")
    }

    /// Decode a claims set (type and length checks only; no policy).
    pub fn from_cbor_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        Self::from_value(cbor::read_exact(bytes, "claims-set")?)
    }

    fn to_value(&self) -> Result<Value, TokenError> {
        use label::*;
        let mut m: Vec<(Value, Value)> = vec![
            (int(ISS), Value::Text(self.iss.clone())),
            (int(SUB), Value::Text(self.sub.clone())),
            (int(AUD), Value::Text(self.aud.clone())),
            (int(EXP), int(self.exp)),
            (int(NBF), int(self.nbf)),
            (int(IAT), int(self.iat)),
            (int(CTI), Value::Bytes(self.cti.clone())),
            (int(EAT_PROFILE), Value::Text(self.eat_profile.clone())),
            (int(EAR_STATUS), int(self.appraisal.status.tier())),
            (
                int(EAR_APPRAISAL_POLICY_ID),
                Value::Text(self.appraisal.policy_id.clone()),
            ),
            (
                int(EAR_VERIFIER_ID),
                cbor::canonical_map(
                    vec![
                        (
                            int(VERIFIER_ID_DEVELOPER),
                            Value::Text(VERIFIER_DEVELOPER.to_string()),
                        ),
                        (
                            int(VERIFIER_ID_BUILD),
                            Value::Text(self.appraisal.verifier_id.clone()),
                        ),
                    ],
                    "ear.verifier-id",
                )?,
            ),
        ];
        if let Some(key) = &self.cnf {
            let cnf = cbor::canonical_map(vec![(int(CNF_COSE_KEY), key.cose_key_value()?)], "cnf")?;
            m.push((int(CNF), cnf));
        }
        if let Some(nonce) = &self.eat_nonce {
            m.push((int(EAT_NONCE), Value::Bytes(nonce.clone())));
        }
        if !self.appraisal.submods.is_empty() {
            m.push((int(SUBMODS), submods_value(&self.appraisal.submods)?));
        }
        if !self.appraisal.trust_vector.is_empty() {
            let entries = (0i64..)
                .zip(self.appraisal.trust_vector.slots())
                .filter_map(|(k, v)| v.map(|v| (int(k), int(i64::from(v)))))
                .collect();
            m.push((
                int(EAR_TRUSTWORTHINESS_VECTOR),
                cbor::canonical_map(entries, "ear.trustworthiness-vector")?,
            ));
        }
        if let Some(d) = &self.workload_digest {
            m.push((int(WRIT_WORKLOAD_DIGEST), Value::Bytes(d.clone())));
        }
        if let Some(l) = &self.lineage {
            let lineage = cbor::canonical_map(
                vec![
                    (int(LINEAGE_PARENT_CTI), Value::Bytes(l.parent_cti.clone())),
                    (
                        int(LINEAGE_PARENT_DIGEST),
                        Value::Bytes(l.parent_digest.clone()),
                    ),
                    (int(LINEAGE_DEPTH), int(i64::from(l.depth))),
                ],
                "writ.lineage",
            )?;
            m.push((int(WRIT_LINEAGE), lineage));
        }
        if let Some(i) = self.audit_index {
            m.push((int(WRIT_AUDIT_INDEX), Value::Integer(i.into())));
        }
        if !self.scope.is_empty() {
            let scope = self.scope.iter().cloned().map(Value::Text).collect();
            m.push((int(WRIT_SCOPE), Value::Array(scope)));
        }
        if self.offline_ok {
            m.push((int(WRIT_OFFLINE_OK), Value::Bool(true)));
        }
        if let Some(s) = &self.status {
            m.push((int(STATUS), s.to_value()?));
        }
        cbor::canonical_map(m, "claims-set")
    }

    pub(crate) fn from_value(value: Value) -> Result<Self, TokenError> {
        use label::*;
        let mut m = IntMap::from_value(value, "claims-set")?;
        let text = |m: &mut IntMap, label: i64, name: &'static str| {
            as_text(required(m.take(label), name)?, name)
        };
        let time = |m: &mut IntMap, label: i64, name: &'static str| {
            as_i64(required(m.take(label), name)?, name)
        };
        let iss = text(&mut m, ISS, "iss")?;
        let sub = text(&mut m, SUB, "sub")?;
        let aud = text(&mut m, AUD, "aud")?;
        let exp = time(&mut m, EXP, "exp")?;
        let nbf = time(&mut m, NBF, "nbf")?;
        let iat = time(&mut m, IAT, "iat")?;
        let cti = as_fixed_bytes(required(m.take(CTI), "cti")?, "cti", CTI_LEN)?;
        let cnf = m.take(CNF).map(cnf_from_value).transpose()?;
        let eat_nonce = m
            .take(EAT_NONCE)
            .map(|v| {
                let n = as_bytes(v, "eat_nonce")?;
                check_nonce(&n)?;
                Ok::<_, TokenError>(n)
            })
            .transpose()?;
        let eat_profile = text(&mut m, EAT_PROFILE, "eat_profile")?;
        let submods = m
            .take(SUBMODS)
            .map(submods_from_value)
            .transpose()?
            .unwrap_or_default();
        let status_code = as_i64(required(m.take(EAR_STATUS), "ear.status")?, "ear.status")?;
        let status = EarStatus::from_tier(status_code).ok_or(TokenError::ClaimType {
            claim: "ear.status".to_string(),
            expected: "trust tier 0, 2, 32 or 96",
        })?;
        let trust_vector = m
            .take(EAR_TRUSTWORTHINESS_VECTOR)
            .map(trust_vector_from_value)
            .transpose()?
            .unwrap_or_default();
        let policy_id = text(&mut m, EAR_APPRAISAL_POLICY_ID, "ear.appraisal-policy-id")?;
        let verifier_id =
            verifier_id_from_value(required(m.take(EAR_VERIFIER_ID), "ear.verifier-id")?)?;
        let workload_digest = m
            .take(WRIT_WORKLOAD_DIGEST)
            .map(|v| as_fixed_bytes(v, "writ.workload-digest", DIGEST_LEN))
            .transpose()?;
        let lineage = m.take(WRIT_LINEAGE).map(lineage_from_value).transpose()?;
        let audit_index = m
            .take(WRIT_AUDIT_INDEX)
            .map(|v| as_u64(v, "writ.audit-index"))
            .transpose()?;
        let scope = m
            .take(WRIT_SCOPE)
            .map(scope_from_value)
            .transpose()?
            .unwrap_or_default();
        // Present only as `true`: a `false` would have two encodings.
        let offline_ok = match m.take(WRIT_OFFLINE_OK) {
            None => false,
            Some(Value::Bool(true)) => true,
            Some(_) => {
                return Err(TokenError::ClaimType {
                    claim: "writ.offline-ok".into(),
                    expected: "true (omitted when false)",
                })
            }
        };
        let status_ref = m.take(STATUS).map(StatusRef::from_value).transpose()?;
        Ok(Claims {
            iss,
            sub,
            aud,
            exp,
            nbf,
            iat,
            cti,
            eat_nonce,
            eat_profile,
            appraisal: Appraisal {
                status,
                trust_vector,
                policy_id,
                verifier_id,
                submods,
            },
            workload_digest,
            cnf,
            lineage,
            scope,
            audit_index,
            offline_ok,
            status: status_ref,
        })
    }
}

fn check_len(b: &[u8], claim: &'static str, len: usize) -> Result<(), TokenError> {
    if b.len() != len {
        return Err(TokenError::ClaimLength {
            claim,
            expected: len,
            actual: b.len(),
        });
    }
    Ok(())
}

fn check_nonce(n: &[u8]) -> Result<(), TokenError> {
    if !(NONCE_LEN_MIN..=NONCE_LEN_MAX).contains(&n.len()) {
        return Err(TokenError::ClaimType {
            claim: "eat_nonce".to_string(),
            expected: "byte string of 8 to 64 bytes",
        });
    }
    Ok(())
}

fn check_depth(depth: u64) -> Result<u8, TokenError> {
    match u8::try_from(depth) {
        Ok(d) if (1..=MAX_LINEAGE_DEPTH).contains(&d) => Ok(d),
        _ => Err(TokenError::ClaimType {
            claim: "writ.lineage/depth".to_string(),
            expected: "integer 1..=8 (MAX_LINEAGE_DEPTH)",
        }),
    }
}

fn submods_value(submods: &BTreeMap<String, SubmodClaims>) -> Result<Value, TokenError> {
    let outer = submods
        .iter()
        .map(|(name, claims)| {
            let inner = claims
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        ClaimValue::Bytes(b) => Value::Bytes(b.clone()),
                        ClaimValue::Text(t) => Value::Text(t.clone()),
                        ClaimValue::Int(i) => int(*i),
                        ClaimValue::Bool(b) => Value::Bool(*b),
                    };
                    (Value::Text(k.clone()), v)
                })
                .collect();
            Ok((
                Value::Text(name.clone()),
                cbor::canonical_map(inner, "submods")?,
            ))
        })
        .collect::<Result<Vec<_>, TokenError>>()?;
    cbor::canonical_map(outer, "submods")
}

fn submods_from_value(value: Value) -> Result<BTreeMap<String, SubmodClaims>, TokenError> {
    let mut out = BTreeMap::new();
    for (name, inner) in cbor::text_map(value, "submods")? {
        let what = format!("submods/{name}");
        let mut claims = SubmodClaims::new();
        for (key, v) in cbor::text_map(inner, &what)? {
            let cv = match v {
                Value::Bytes(b) => ClaimValue::Bytes(b),
                Value::Text(t) => ClaimValue::Text(t),
                Value::Bool(b) => ClaimValue::Bool(b),
                Value::Integer(i) => {
                    ClaimValue::Int(i64::try_from(i).map_err(|_| TokenError::ClaimType {
                        claim: format!("{what}/{key}"),
                        expected: "integer in i64 range",
                    })?)
                }
                _ => {
                    return Err(TokenError::ClaimType {
                        claim: format!("{what}/{key}"),
                        expected: "byte string, text, integer or boolean",
                    })
                }
            };
            claims.insert(key, cv);
        }
        out.insert(name, claims);
    }
    Ok(out)
}

fn trust_vector_from_value(value: Value) -> Result<TrustVector, TokenError> {
    let mut m = IntMap::from_value(value, "ear.trustworthiness-vector")?;
    let mut slots = [None; 8];
    for ((slot, name), key) in slots.iter_mut().zip(TRUST_VECTOR_NAMES).zip(0i64..) {
        if let Some(v) = m.take(key) {
            let code = as_i64(v, name)?;
            *slot = Some(i8::try_from(code).map_err(|_| TokenError::ClaimType {
                claim: name.to_string(),
                expected: "integer -128..=127",
            })?);
        }
    }
    Ok(TrustVector::from_slots(slots))
}

fn verifier_id_from_value(value: Value) -> Result<String, TokenError> {
    let mut m = IntMap::from_value(value, "ear.verifier-id")?;
    as_text(
        required(
            m.take(label::VERIFIER_ID_DEVELOPER),
            "ear.verifier-id/developer",
        )?,
        "ear.verifier-id/developer",
    )?;
    as_text(
        required(m.take(label::VERIFIER_ID_BUILD), "ear.verifier-id/build")?,
        "ear.verifier-id/build",
    )
}

fn cnf_from_value(value: Value) -> Result<VerifyingKey, TokenError> {
    let mut m = IntMap::from_value(value, "cnf")?;
    let key = m.take(label::CNF_COSE_KEY).ok_or(TokenError::ClaimType {
        claim: "cnf".to_string(),
        expected: "map holding a COSE_Key under key 1",
    })?;
    VerifyingKey::from_cose_key_value_deferred(key)
}

fn lineage_from_value(value: Value) -> Result<Lineage, TokenError> {
    let mut m = IntMap::from_value(value, "writ.lineage")?;
    let parent_cti = as_fixed_bytes(
        required(m.take(label::LINEAGE_PARENT_CTI), "writ.lineage/parent-cti")?,
        "writ.lineage/parent-cti",
        CTI_LEN,
    )?;
    let parent_digest = as_fixed_bytes(
        required(
            m.take(label::LINEAGE_PARENT_DIGEST),
            "writ.lineage/parent-digest",
        )?,
        "writ.lineage/parent-digest",
        DIGEST_LEN,
    )?;
    let depth = as_u64(
        required(m.take(label::LINEAGE_DEPTH), "writ.lineage/depth")?,
        "writ.lineage/depth",
    )?;
    Ok(Lineage {
        parent_cti,
        parent_digest,
        depth: check_depth(depth)?,
    })
}

fn scope_from_value(value: Value) -> Result<Vec<String>, TokenError> {
    let Value::Array(items) = value else {
        return Err(TokenError::ClaimType {
            claim: "writ.scope".to_string(),
            expected: "array of text strings",
        });
    };
    items
        .into_iter()
        .map(|v| as_text(v, "writ.scope"))
        .collect()
}
