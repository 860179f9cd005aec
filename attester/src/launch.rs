//! What `writ-attester run` does before it execs a workload: generate the
//! workload's proof-of-possession key, obtain a token bound to it (through
//! the local daemon's socket when one is running, else directly with the
//! TPM), check the token, write the key for the child, and re-check
//! revocation against the broker's signed status list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use verifier_lib::token::{
    Audience, Expectations, SigningKey, TokenError, TokenVerifier, VerifiedToken,
};

use crate::commands::{self, Settings};
use crate::error::{denial_reasons, CommandError};
use crate::program::Program;
use crate::revocation::{self, RevocationCheckError};
use crate::workload_api::{self, WorkloadApiError, WorkloadRequest};
use crate::workload_key::{self, KeyFileError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    #[error("{}", denial_reasons(.0))]
    Command(#[from] CommandError),
    #[error("{0}")]
    Key(#[from] KeyFileError),
    #[error("{0}")]
    Revocation(#[from] RevocationCheckError),
    #[error("attester daemon: {0}")]
    Daemon(#[from] WorkloadApiError),
    #[error("token from the daemon is invalid: {0}")]
    Token(#[from] TokenError),
    #[error("token is not bound to the workload's key")]
    CnfMismatch,
}

/// Where a token comes from when no daemon socket answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// A TPM quote taken for this request.
    Tpm,
    /// An SEV-SNP report from `/dev/sev-guest` at this VMPL.
    Snp { vmpl: u32 },
}

/// A token ready to hand to the workload.
#[derive(Debug)]
pub struct Prepared {
    pub token: Vec<u8>,
    pub verified: VerifiedToken,
    /// The workload's private key (PKCS#8 PEM, 0600), for `WRIT_KEY`.
    pub key_path: PathBuf,
    /// Whether the token came through the daemon's socket.
    pub via_daemon: bool,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn verifier(s: &Settings, keys: verifier_lib::token::KeySet, workload: &str) -> TokenVerifier {
    TokenVerifier::new(
        keys,
        Expectations {
            issuer: s.issuer.clone(),
            audience: Audience::Exactly(workload.to_owned()),
            leeway_secs: 30,
            max_lifetime_secs: i64::from(verifier_lib::policy::HARD_MAX_TOKEN_LIFETIME_SECS),
            require_workload_digest: true,
        },
    )
}

/// Obtain a key-bound token for `program` and prepare the child's key.
pub fn prepare(
    s: &Settings,
    workload: &str,
    program: &Program,
    runtime_dir: Option<&Path>,
    socket: Option<&Path>,
    evidence: Evidence,
) -> Result<Prepared, LaunchError> {
    let dir = workload_key::runtime_dir(runtime_dir)?;
    workload_key::ensure_private_dir(&dir)?;
    let key = SigningKey::generate().map_err(KeyFileError::from)?;
    let cnf = key.verifying_key().to_cose_key_bytes()?;
    let brokers = commands::brokers(s)?;
    let keys = brokers.run(|broker| {
        crate::pinning::trusted_key_set(
            broker,
            &s.state_dir,
            matches!(evidence, Evidence::Snp { .. }),
        )
        .map_err(CommandError::from)
    })?;

    let daemon = socket.filter(|p| p.exists());
    let (token, verified, via_daemon) = match daemon {
        Some(path) => {
            let t = workload_api::request_launch(
                path,
                &WorkloadRequest::Launch {
                    workload: workload.to_owned(),
                    workload_digest: program.digest.to_vec(),
                    cnf: cnf.clone(),
                },
                program.image(),
                Duration::from_secs(60),
            )?;
            let v = verifier(s, keys.clone(), workload).verify(&t.token, now())?;
            if v.claims.workload_digest.as_deref() != Some(&program.digest[..]) {
                return Err(CommandError::TokenMismatch {
                    field: "workload digest",
                    expected: hex::encode(program.digest),
                    actual: hex::encode(v.claims.workload_digest.clone().unwrap_or_default()),
                }
                .into());
            }
            (t.token, v, true)
        }
        None => {
            let (t, v) = match evidence {
                Evidence::Tpm => {
                    commands::obtain_token_with(s, workload, &program.digest, Some(&cnf))?
                }
                Evidence::Snp { vmpl } => {
                    crate::snp_cli::obtain_token_with(s, workload, program, Some(&cnf), vmpl)?
                }
            };
            (t, v, false)
        }
    };
    let bound = verified.claims.cnf.as_ref().map(|k| k.kid.clone());
    if bound != Some(key.kid()) {
        return Err(LaunchError::CnfMismatch);
    }
    // Any broker's list will do: every broker of a fleet serves the one
    // list of the shared store, signed with the shared token key.
    brokers.run(|broker| {
        revocation::ensure_not_revoked(
            broker,
            &keys,
            verified.claims.status.as_ref(),
            &verified.claims.cti,
            now(),
        )
    })?;
    let name = format!(
        "{}-{}.pem",
        workload.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        hex::encode(&verified.claims.cti)
    );
    let key_path = workload_key::write_key(&dir, &name, &key)?;
    Ok(Prepared {
        token,
        verified,
        key_path,
        via_daemon,
    })
}
