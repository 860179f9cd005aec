//! `writ-attester --evidence snp|both`: the SEV-SNP commands on the real
//! device (`/dev/sev-guest`). Library users with another report source call
//! [`crate::snp`] directly.

use verifier_lib::api::AppraisalResponse;
use verifier_lib::token::VerifiedToken;

use crate::commands::{self, Settings};
use crate::error::CommandError;
use crate::program::Program;
use crate::snp::{self, SevGuest};
use crate::state::AttesterState;

/// Attest with SEV-SNP; with `both`, first with the TPM, then with an SNP
/// report whose REPORT_DATA binds the enrolled vTPM AK (TPM2B_PUBLIC).
pub fn attest(s: &Settings, both: bool, vmpl: u32) -> Result<Vec<AppraisalResponse>, CommandError> {
    let mut guest = SevGuest::open(vmpl)?;
    let brokers = commands::brokers(s)?;
    if both {
        let state = AttesterState::load(&s.state_dir)?;
        let tpm = commands::attest(s)?;
        let snp = brokers.run(|b| snp::attest(b, &mut guest, Some(&state.ak.public_tpm2b)))?;
        Ok(vec![tpm, snp])
    } else {
        Ok(vec![brokers.run(|b| snp::attest(b, &mut guest, None))?])
    }
}

/// Obtain an execution token backed by an SEV-SNP report.
pub fn obtain_token(
    s: &Settings,
    workload: &str,
    program: &Program,
    vmpl: u32,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    obtain_token_with(s, workload, program, None, vmpl)
}

/// Like [`obtain_token`], bound to the `cnf` COSE_Key when one is given.
pub fn obtain_token_with(
    s: &Settings,
    workload: &str,
    program: &Program,
    cnf: Option<&[u8]>,
    vmpl: u32,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    let mut guest = SevGuest::open(vmpl)?;
    commands::brokers(s)?.run(|b| {
        snp::obtain_token_with(
            b,
            &s.state_dir,
            &s.issuer,
            workload,
            program,
            cnf,
            &mut guest,
        )
    })
}
