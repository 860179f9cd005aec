//! What `writ-attester run` does before it execs a workload: obtain a token
//! bound to a proof-of-possession key for the program (the daemon's prepared
//! token and key when its socket exists; else a new key and a token from
//! the brokers with the TPM), check the token and its revocation status,
//! and write the key for the child.

use std::path::{Path, PathBuf};
use std::time::Duration;

use verifier_lib::token::{
    Audience, Expectations, KeySet, SigningKey, TokenError, TokenVerifier, VerifiedToken,
};

use crate::commands::{self, Settings};
use crate::error::{denial_reasons, CommandError};
use crate::program::{Program, SealedProgram};
use crate::revocation::{self, RevocationCheckError};
use crate::workload_api::{self, WorkloadApiError, WorkloadRequest, WorkloadToken};
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
    /// The daemon's answer lacks what `run` checks the token with.
    #[error("attester daemon: the answer has no {field}")]
    DaemonAnswerIncomplete { field: &'static str },
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
    /// The program to exec, with the digest the token names.
    pub program: Program,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn verifier(issuer: &str, keys: verifier_lib::token::KeySet, workload: &str) -> TokenVerifier {
    TokenVerifier::new(
        keys,
        Expectations {
            issuer: issuer.to_owned(),
            audience: Audience::Exactly(workload.to_owned()),
            leeway_secs: 30,
            max_lifetime_secs: i64::from(verifier_lib::policy::HARD_MAX_TOKEN_LIFETIME_SECS),
            require_workload_digest: true,
        },
    )
}

/// Obtain a key-bound token for `program` and prepare the child's key:
/// from the daemon when its socket exists (no HTTP client, no trust store,
/// no key-set fetch: see [`from_daemon`]), else directly from the brokers.
pub fn prepare(
    s: &Settings,
    workload: &str,
    sealed: SealedProgram,
    runtime_dir: Option<&Path>,
    socket: Option<&Path>,
    evidence: Evidence,
) -> Result<Prepared, LaunchError> {
    if let Some(path) = socket.filter(|p| p.exists()) {
        return prepare_via_daemon(&s.issuer, workload, sealed, runtime_dir, path);
    }
    let dir = workload_key::runtime_dir(runtime_dir)?;
    workload_key::ensure_private_dir(&dir)?;
    let program = sealed.measure()?;
    let (token, verified, key) = from_brokers(s, workload, &program, evidence)?;
    finish(&dir, workload, token, verified, &key, program, false)
}

/// [`prepare`] through the daemon at `socket` only: what `writ-run` does.
/// It needs no broker settings, TPM or HTTP client (so a binary calling
/// only this links none of them); `issuer` is the expected `iss`.
pub fn prepare_via_daemon(
    issuer: &str,
    workload: &str,
    sealed: SealedProgram,
    runtime_dir: Option<&Path>,
    socket: &Path,
) -> Result<Prepared, LaunchError> {
    let dir = workload_key::runtime_dir(runtime_dir)?;
    workload_key::ensure_private_dir(&dir)?;
    let (token, verified, key, program) = from_daemon(issuer, workload, sealed, socket)?;
    finish(&dir, workload, token, verified, &key, program, true)
}

/// Writes (or reuses) the child's key file next to the token's id.
fn finish(
    dir: &Path,
    workload: &str,
    token: Vec<u8>,
    verified: VerifiedToken,
    key: &SigningKey,
    program: Program,
    via_daemon: bool,
) -> Result<Prepared, LaunchError> {
    let name = format!(
        "{}-{}.pem",
        workload.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        hex::encode(&verified.claims.cti)
    );
    let key_path = workload_key::write_or_reuse_key(dir, &name, key)?;
    Ok(Prepared {
        token,
        verified,
        key_path,
        via_daemon,
        program,
    })
}

/// The daemon's prepared token and key for the sealed program, checked
/// here against what the daemon hands over with them: the pinned key set it
/// verified the token with, and a signed status list (fetched by the daemon
/// at most `status_max_age_ms` ago) in which the token is VALID. The daemon
/// hashes the sealed image `run` will exec and the token names that digest,
/// so the image is hashed once, by the daemon. `run` trusts the daemon it
/// reached, whose socket is served by root or by this user (see
/// `writ_workload::socket`); these checks catch a token that is not for
/// this workload, key or time, or that the list revokes.
fn from_daemon(
    issuer: &str,
    workload: &str,
    sealed: SealedProgram,
    socket: &Path,
) -> Result<(Vec<u8>, VerifiedToken, SigningKey, Program), LaunchError> {
    let t = workload_api::request_launch(
        socket,
        &WorkloadRequest::Launch {
            workload: workload.to_owned(),
            workload_digest: None,
            cnf: None,
        },
        sealed.image(),
        Duration::from_secs(60),
    )?;
    let (v, key) = check_daemon_answer(issuer, workload, &t)?;
    let named = v.claims.workload_digest.clone().unwrap_or_default();
    let digest: [u8; 32] =
        named
            .as_slice()
            .try_into()
            .map_err(|_| CommandError::TokenMismatch {
                field: "workload digest",
                expected: "32 bytes (SHA-256)".into(),
                actual: hex::encode(&named),
            })?;
    let program = sealed.measured_as(digest);
    check_bound(&v, &program, &key)?;
    Ok((t.token, v, key, program))
}

/// Check a token the daemon handed out with its prepared key: signature by
/// the key set that came with it, issuer, audience `workload`, lifetime,
/// bound to that key, and VALID in the status list that came with it.
pub fn check_daemon_answer(
    issuer: &str,
    workload: &str,
    t: &WorkloadToken,
) -> Result<(VerifiedToken, SigningKey), LaunchError> {
    let missing = |field| LaunchError::DaemonAnswerIncomplete { field };
    let keys = KeySet::from_cose_key_set(t.keys.as_deref().ok_or(missing("keys"))?)?;
    let key = SigningKey::from_pkcs8_pem(t.key_pem.as_deref().ok_or(missing("key_pem"))?)?;
    let list = t.status_list.as_deref().ok_or(missing("status_list"))?;
    let now = now();
    let v = verifier(issuer, keys.clone(), workload).verify(&t.token, now)?;
    if v.claims.cnf.as_ref().map(|k| k.kid.clone()) != Some(key.kid()) {
        return Err(LaunchError::CnfMismatch);
    }
    revocation::check_listed(list, &keys, v.claims.status.as_ref(), &v.claims.cti, now)?;
    Ok((v, key))
}

/// A token obtained from the brokers with this host's TPM (or SEV-SNP
/// guest) for a new key, and its status checked against the list a broker
/// serves now.
fn from_brokers(
    s: &Settings,
    workload: &str,
    program: &Program,
    evidence: Evidence,
) -> Result<(Vec<u8>, VerifiedToken, SigningKey), LaunchError> {
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
    let (token, verified) = match evidence {
        Evidence::Tpm => commands::obtain_token_with(s, workload, &program.digest, Some(&cnf))?,
        Evidence::Snp { vmpl } => {
            crate::snp_cli::obtain_token_with(s, workload, program, Some(&cnf), vmpl)?
        }
    };
    check_bound(&verified, program, &key)?;
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
    Ok((token, verified, key))
}

/// The token names `program`'s digest and is bound to `key`.
fn check_bound(v: &VerifiedToken, program: &Program, key: &SigningKey) -> Result<(), LaunchError> {
    if v.claims.workload_digest.as_deref() != Some(&program.digest[..]) {
        return Err(CommandError::TokenMismatch {
            field: "workload digest",
            expected: hex::encode(program.digest),
            actual: hex::encode(v.claims.workload_digest.clone().unwrap_or_default()),
        }
        .into());
    }
    if v.claims.cnf.as_ref().map(|k| k.kid.clone()) != Some(key.kid()) {
        return Err(LaunchError::CnfMismatch);
    }
    Ok(())
}
