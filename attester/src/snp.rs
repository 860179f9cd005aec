//! SEV-SNP evidence from inside the guest and the SNP side of the broker
//! protocol: challenge → extended report (with the host's certificate
//! table) → appraisal or token → token verification.
//!
//! On a guest with `/dev/sev-guest`, [`SevGuest`] asks the AMD secure
//! processor for an extended report through the `sev` crate's firmware
//! ioctls (no OpenSSL). Any other [`SnpReportSource`] can stand in for it
//! in library use and tests; the `writ-attester` binary only ever uses the
//! device.
//!
//! REPORT_DATA layouts (64 bytes, exact, never padded or truncated):
//! * attest: `SHA-512(nonce ‖ attester_key)`;
//! * token:  `SHA-512(nonce ‖ canonical token request)`
//!   ([`TokenRequestBinding::snp_report_data`]);
//! * `both`: attest with `attester_key` = the vTPM AK's TPM2B_PUBLIC, so the
//!   report vouches for the AK that signs the TPM quotes (what Azure's HCL
//!   does with its runtime JSON, here without the JSON).

use verifier_lib::api::{
    AppraisalResponse, ChallengeRequest, ChallengeResponse, SnpAttestRequest, SnpEvidence,
    SnpTokenRequest, TokenResponse,
};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::snp::{expected_report_data, AttestationReport};
use verifier_lib::snp_appraisal::snp_host_id;
use verifier_lib::token::{Audience, Expectations, TokenVerifier, VerifiedToken};

use crate::client::BrokerClient;
use crate::error::CommandError;
use crate::program::Program;

pub use crate::error::SnpGuestError;

/// The guest firmware device.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// Where SEV-SNP reports come from.
pub trait SnpReportSource {
    /// A report carrying `report_data`, with whatever certificates the
    /// host supplies (VCEK/VLEK, ASK/ASVK, ARK).
    fn evidence(&mut self, report_data: [u8; 64]) -> Result<SnpEvidence, SnpGuestError>;
}

/// `/dev/sev-guest` through the `sev` crate.
#[derive(Debug)]
pub struct SevGuest {
    firmware: sev::firmware::guest::Firmware,
    vmpl: u32,
}

impl SevGuest {
    /// Open the device; reports are requested for `vmpl` (0 without an SVSM).
    pub fn open(vmpl: u32) -> Result<Self, SnpGuestError> {
        let firmware =
            sev::firmware::guest::Firmware::open().map_err(|source| SnpGuestError::Open {
                device: SEV_GUEST_DEVICE,
                source,
            })?;
        Ok(Self { firmware, vmpl })
    }
}

impl SnpReportSource for SevGuest {
    fn evidence(&mut self, report_data: [u8; 64]) -> Result<SnpEvidence, SnpGuestError> {
        use sev::firmware::host::CertType;
        let (report, certs) = self
            .firmware
            .get_ext_report(None, Some(report_data), Some(self.vmpl))
            .map_err(|e| SnpGuestError::Firmware(e.to_string()))?;
        let mut evidence = SnpEvidence {
            report,
            vcek: None,
            chain: Vec::new(),
        };
        for entry in certs.unwrap_or_default() {
            match entry.cert_type {
                CertType::VCEK | CertType::VLEK => evidence.vcek = Some(entry.data),
                CertType::ASK => evidence.chain.insert(0, entry.data),
                CertType::ARK => evidence.chain.push(entry.data),
                _ => {}
            }
        }
        Ok(evidence)
    }
}

/// This guest's SNP host id, computed from a report of its own (see
/// `verifier_lib::snp_appraisal`).
pub fn host_id(source: &mut dyn SnpReportSource) -> Result<String, SnpGuestError> {
    let ev = source.evidence([0; 64])?;
    let report = AttestationReport::parse(&ev.report).map_err(SnpGuestError::Report)?;
    snp_host_id(&report).ok_or(SnpGuestError::Unidentifiable)
}

/// Attest once with SEV-SNP evidence binding `attester_key`.
pub fn attest(
    broker: &BrokerClient,
    source: &mut dyn SnpReportSource,
    attester_key: Option<&[u8]>,
) -> Result<AppraisalResponse, CommandError> {
    let host_id = host_id(source)?;
    let challenge: ChallengeResponse = broker.post(
        "/v1/snp/challenge",
        &ChallengeRequest {
            host_id: host_id.clone(),
        },
    )?;
    let rd = expected_report_data(&challenge.nonce, attester_key.unwrap_or_default());
    let evidence = source.evidence(rd)?;
    Ok(broker.post(
        "/v1/snp/attest",
        &SnpAttestRequest {
            host_id,
            nonce: challenge.nonce,
            attester_key: attester_key.map(<[u8]>::to_vec),
            evidence,
        },
    )?)
}

/// Attest for this exact request with SEV-SNP evidence and obtain a
/// verified execution token for `program` as `workload`. The token is
/// checked against the broker keys pinned in `pins` (a state directory;
/// pinned at the first request, see `crate::pinning`).
pub fn obtain_token(
    broker: &BrokerClient,
    pins: &std::path::Path,
    issuer: &str,
    workload: &str,
    program: &Program,
    source: &mut dyn SnpReportSource,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    obtain_token_with(broker, pins, issuer, workload, program, None, source)
}

/// Like [`obtain_token`], for a token bound to the `cnf` COSE_Key (proof of
/// possession, RFC 8747) when one is given.
pub fn obtain_token_with(
    broker: &BrokerClient,
    pins: &std::path::Path,
    issuer: &str,
    workload: &str,
    program: &Program,
    cnf: Option<&[u8]>,
    source: &mut dyn SnpReportSource,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    let keys = crate::pinning::trusted_key_set(broker, pins, true)?;
    let host_id = host_id(source)?;
    let challenge: ChallengeResponse = broker.post(
        "/v1/snp/challenge",
        &ChallengeRequest {
            host_id: host_id.clone(),
        },
    )?;
    let binding = TokenRequestBinding {
        host_id: &host_id,
        workload,
        workload_digest: &program.digest,
        cnf_key: cnf,
    };
    let evidence = source.evidence(binding.snp_report_data(&challenge.nonce))?;
    let resp: TokenResponse = broker.post(
        "/v1/snp/tokens",
        &SnpTokenRequest {
            host_id: host_id.clone(),
            workload: workload.to_owned(),
            workload_digest: program.digest.to_vec(),
            cnf: cnf.map(<[u8]>::to_vec),
            nonce: challenge.nonce,
            evidence,
        },
    )?;
    let verifier = TokenVerifier::new(
        keys,
        Expectations {
            issuer: issuer.to_owned(),
            audience: Audience::Exactly(workload.to_owned()),
            leeway_secs: 30,
            max_lifetime_secs: i64::from(verifier_lib::policy::HARD_MAX_TOKEN_LIFETIME_SECS),
            require_workload_digest: true,
        },
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = verifier.verify(&resp.token, now)?;
    let digest = verified.claims.workload_digest.clone().unwrap_or_default();
    if digest != program.digest {
        return Err(CommandError::TokenMismatch {
            field: "workload digest",
            expected: hex::encode(program.digest),
            actual: hex::encode(digest),
        });
    }
    if verified.claims.sub != host_id {
        return Err(CommandError::TokenMismatch {
            field: "host",
            expected: host_id,
            actual: verified.claims.sub.clone(),
        });
    }
    Ok((resp.token, verified))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No SEV-SNP hardware here: opening the device fails with a typed
    /// error naming it (on an SNP guest this test would instead get a report).
    #[test]
    fn device_absent_is_a_typed_error() {
        if std::path::Path::new(SEV_GUEST_DEVICE).exists() {
            let mut g = SevGuest::open(0).unwrap();
            let ev = g.evidence([7; 64]).unwrap();
            assert_eq!(ev.report.len(), verifier_lib::snp::REPORT_LEN);
            return;
        }
        let err = SevGuest::open(0).unwrap_err();
        assert!(matches!(
            err,
            SnpGuestError::Open {
                device: "/dev/sev-guest",
                ..
            }
        ));
        assert!(err.to_string().contains("not an SEV-SNP guest"), "{err}");
    }
}
