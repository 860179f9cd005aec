//! The attester's command error and the SEV-SNP guest error it wraps.
//!
//! Kept apart from the commands so that `commands`, `logs`, `snp` and
//! `program` all import it and none of them imports another for its error
//! type: this module depends only on leaf modules (`client`, `state`,
//! `tpm`, `revocation`).

use crate::client::ClientError;
use crate::pinning::PinningError;
use crate::revocation::RevocationCheckError;
use crate::state::StateError;
use crate::tpm::{EkAlg, TpmError};
use verifier_lib::token::TokenError;

/// Why a command failed. Each names the stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("TPM: {0}")]
    Tpm(#[from] TpmError),
    #[error("{0}")]
    Broker(#[from] ClientError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Pinning(#[from] PinningError),
    #[error("no EK certificate in the TPM's NV for {alg:?}")]
    NoEkCertificate { alg: EkAlg },
    #[error("workload program {path}: {source}")]
    Program {
        path: String,
        source: std::io::Error,
    },
    #[error("workload program {path} is not a regular file")]
    ProgramNotRegular { path: String },
    #[error("workload program {name} not found in PATH")]
    ProgramNotFound { name: String },
    #[error("log {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("token from the broker is invalid: {0}")]
    TokenInvalid(#[from] TokenError),
    #[error("token is for {field} {actual}, expected {expected}")]
    TokenMismatch {
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("appraisal {verdict}: {reasons}")]
    Denied { verdict: String, reasons: String },
    #[error("exec {path}: {source}")]
    Exec {
        path: String,
        source: std::io::Error,
    },
    #[error("--env {spec:?}: not NAME or NAME=VALUE with a non-empty NAME")]
    EnvSpec { spec: String },
    #[error(
        "--env {name}: a dynamic-loader variable; it injects code into the workload \
         (pass --dangerous-allow-loader-env to allow it anyway)"
    )]
    LoaderEnv { name: String },
    #[error("--env {name}: set by run itself")]
    ReservedEnv { name: String },
    #[error("SEV-SNP: {0}")]
    Snp(#[from] SnpGuestError),
    #[error("the system random number generator failed")]
    Random,
    #[error("state file: request_key_secret is not {expected} bytes of hex")]
    RequestKeySecret { expected: usize },
    /// The token's entry in its status list is not VALID, or no verifiable
    /// list shows it.
    #[error("{0}")]
    Status(#[from] RevocationCheckError),
}

impl CommandError {
    /// Every broker failed (connection, timeout or 5xx) until the retry
    /// budget was spent: nobody answered, so nothing was decided, and the
    /// same command may succeed later. A refusal is not this.
    pub fn is_brokers_unreachable(&self) -> bool {
        matches!(
            self,
            CommandError::Broker(ClientError::AllBrokersFailed { .. })
                | CommandError::Pinning(PinningError::Broker(ClientError::AllBrokersFailed { .. }))
        )
    }
}

/// Why SEV-SNP evidence could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnpGuestError {
    #[error("{device}: {source} (not an SEV-SNP guest, or the sev-guest driver is not loaded)")]
    Open {
        device: &'static str,
        source: std::io::Error,
    },
    #[error("SNP_GET_EXT_REPORT failed: {0}")]
    Firmware(String),
    #[error("the report from the firmware does not parse: {0}")]
    Report(verifier_lib::snp::SnpError),
    #[error("the report's CHIP_ID is masked: this guest has no SNP host id")]
    Unidentifiable,
}

/// One line naming why a run was refused, from a broker refusal's details.
pub fn denial_reasons(e: &CommandError) -> String {
    if let CommandError::Broker(ClientError::Refused {
        code,
        message,
        details,
        ..
    }) = e
    {
        if let Some(failures) = details
            .as_ref()
            .and_then(|d| d.get("failures"))
            .and_then(|f| f.as_array())
        {
            let parts: Vec<String> = failures
                .iter()
                .filter_map(|f| {
                    serde_json::from_value::<verifier_lib::policy::public::PublicFailure>(f.clone())
                        .ok()
                })
                .map(|f| f.to_string())
                .collect();
            if !parts.is_empty() {
                return format!("{code}: {}", parts.join("; "));
            }
        }
        return format!("{code}: {message}");
    }
    e.to_string()
}
