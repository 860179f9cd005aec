//! Fuzz entry points for what the broker reads from clients before any
//! decision: the JSON request bodies of every endpoint, the TPM structures
//! inside them, and the policy file.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::governance::{DeriveRequest, RevokeRequest};
use crate::api::request_key::{RequestKeyRegistration, SignedTokenRequest};
use crate::api::{
    AttestRequest, ChallengeRequest, EnrollFinishRequest, EnrollStartRequest, PolicyLearnRequest,
    SnpAttestRequest, SnpTokenRequest, TokenRequest, TpmEvidence,
};
use crate::policy::Policy;
use crate::tpm::{Attest, Public, Signature};

/// Parse `data` as JSON of type `T`; whatever parses must serialize and
/// parse back to the same value (a lossy field would let two brokers, or a
/// broker and its audit log, read one request differently).
fn round_trip<T: Serialize + DeserializeOwned + PartialEq>(data: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let again = serde_json::to_vec(&v).ok()?;
    let back: Option<T> = serde_json::from_slice(&again).ok();
    debug_assert!(
        back.as_ref() == Some(&v),
        "request body does not round-trip"
    );
    Some(v)
}

/// The TPM structures of a quote, as the broker parses them first.
fn tpm_evidence(e: &TpmEvidence) {
    let _ = Attest::parse(&e.attest);
    let _ = Signature::parse(&e.signature);
}

/// Arbitrary bytes as the body of every JSON endpoint (the first byte picks
/// the endpoint), then the structures inside that parse.
pub fn api_bodies(data: &[u8]) {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    match which % 13 {
        0 => {
            if let Some(r) = round_trip::<EnrollStartRequest>(body) {
                let _ = Public::parse(&r.ek_public);
                let _ = Public::parse(&r.ak_public);
                let _ = crate::ekcert::parse_ek_certificate(&r.ek_cert);
            }
        }
        1 => {
            round_trip::<EnrollFinishRequest>(body);
        }
        2 => {
            round_trip::<ChallengeRequest>(body);
        }
        3 => {
            if let Some(r) = round_trip::<AttestRequest>(body) {
                tpm_evidence(&r.evidence);
            }
        }
        4 => {
            if let Some(r) = round_trip::<TokenRequest>(body) {
                tpm_evidence(&r.evidence);
            }
        }
        5 => {
            if let Some(r) = round_trip::<SnpAttestRequest>(body) {
                let _ = crate::snp::AttestationReport::parse(&r.evidence.report);
            }
        }
        6 => {
            if let Some(r) = round_trip::<SnpTokenRequest>(body) {
                let _ = crate::snp::AttestationReport::parse(&r.evidence.report);
            }
        }
        7 => {
            round_trip::<PolicyLearnRequest>(body);
        }
        8 => {
            round_trip::<RevokeRequest>(body);
        }
        9 => {
            round_trip::<DeriveRequest>(body);
        }
        10 => {
            if let Some(r) = round_trip::<RequestKeyRegistration>(body) {
                let _ = Attest::parse(&r.attest);
                let _ = Signature::parse(&r.signature);
                let _ = Public::parse(&r.key_public);
            }
        }
        11 => {
            round_trip::<SignedTokenRequest>(body);
        }
        _ => {
            round_trip::<TpmEvidence>(body);
        }
    }
}

/// Arbitrary bytes as a policy file (what `writ-broker policy activate` and
/// the broker's start read). Must never panic.
pub fn policy_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::parse_toml(text);
    }
}

/// A Rego module as `[groups.rego]` source: compiled, and when it compiles,
/// evaluated on a TPM input with boot and IMA parts and on an SNP-shaped
/// one. Any outcome but a panic is fine; the budget bounds each run.
pub fn rego_module(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let raw = crate::policy::rego::RawRego::fuzzing(source);
    let Ok(rules) = crate::policy::rego::RegoRules::load("fuzz", &raw) else {
        return;
    };
    let inputs = [
        serde_json::json!({
            "tee": "tpm",
            "host": {"id": "h", "group": "fuzz"},
            "tpm": {"pcrs": {"sha256": {"0": "00", "7": "aa"}}, "firmware_version": 1},
            "boot": {"secure_boot": true, "kernels": [{"event_index": 3, "name": "/vmlinuz", "digest": "9f86"}], "cmdlines": [{"event_index": 4, "text": "ro quiet"}]},
            "ima": {"from": 0, "restarted": false, "entries": [{"index": 1, "path": "/usr/bin/sh", "digest": "ab", "violation": false}]},
            "snp": null,
        }),
        serde_json::json!({"tee": "snp", "snp": {"measurement": "ab", "reported_tcb_snp": 22, "vmpl": 0}}),
    ];
    for input in inputs {
        let _ = rules.evaluate(input);
    }
}
