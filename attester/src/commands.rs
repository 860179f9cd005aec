//! The attester's commands: enroll, attest, and run a workload only with a
//! valid execution token.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verifier_lib::api::{
    AppraisalResponse, AttestRequest, ChallengeRequest, ChallengeResponse, EnrollFinishRequest,
    EnrollFinishResponse, EnrollStartRequest, EnrollStartResponse, TokenRequest, TokenResponse,
    TpmEvidence,
};
use verifier_lib::crypto::HashAlg;
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::token::{Audience, Expectations, TokenError, TokenVerifier, VerifiedToken};
use verifier_lib::tpm::PcrValues;

use crate::client::{BrokerClient, ClientError};
use crate::state::{AttesterState, StateError};
use crate::tpm::{AkAlg, EkAlg, Tpm, TpmError};

/// Common settings of every command.
#[derive(Debug, Clone)]
pub struct Settings {
    pub broker: String,
    pub ca_cert: Option<PathBuf>,
    pub tcti: String,
    pub state_dir: PathBuf,
    /// Expected `iss` of tokens.
    pub issuer: String,
    /// Event log and IMA list to send with quotes.
    pub logs: crate::logs::LogSources,
}

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
    #[error("no EK certificate in the TPM's NV for {alg:?}")]
    NoEkCertificate { alg: EkAlg },
    #[error("workload program {path}: {source}")]
    Program {
        path: String,
        source: std::io::Error,
    },
    #[error("workload program {name} not found in PATH")]
    ProgramNotFound { name: String },
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
    #[error("workload program {path} changed between hashing and exec")]
    ProgramChanged { path: String },
    #[error("SEV-SNP: {0}")]
    Snp(#[from] crate::snp::SnpGuestError),
    #[error("the system random number generator failed")]
    Random,
    #[error("state file: request_key_secret is not {expected} bytes of hex")]
    RequestKeySecret { expected: usize },
}

pub(crate) fn client(s: &Settings) -> Result<BrokerClient, CommandError> {
    Ok(BrokerClient::new(&s.broker, s.ca_cert.as_deref())?)
}

pub(crate) fn open_tpm(s: &Settings) -> Result<Tpm, CommandError> {
    let mut tpm = Tpm::open(&s.tcti)?;
    let id = tpm.identity()?;
    if id.software {
        eprintln!(
            "WARNING: writ-attester is talking to a SOFTWARE TPM (manufacturer {:?}, vendor {:?}); \
             its evidence proves nothing about real hardware",
            id.manufacturer, id.vendor
        );
    }
    Ok(tpm)
}

/// Enroll this host: EK certificate + credential activation of a new AK.
pub fn enroll(s: &Settings, ak_alg: AkAlg) -> Result<EnrollFinishResponse, CommandError> {
    let broker = client(s)?;
    let mut tpm = open_tpm(s)?;
    let ek_alg = tpm.detect_ek_alg()?;
    let ek_cert = tpm
        .ek_certificate(ek_alg)?
        .ok_or(CommandError::NoEkCertificate { alg: ek_alg })?;
    let ek_chain = tpm.ek_chain_certificates()?;
    let ek = tpm.create_ek(ek_alg)?;
    let ak = tpm.create_ak(&ek, ak_alg)?;
    let start: EnrollStartResponse = broker.post(
        "/v1/enroll/start",
        &EnrollStartRequest {
            ek_cert,
            ek_chain,
            ek_public: ek.public_tpm2b.clone(),
            ak_public: ak.public_tpm2b.clone(),
        },
    )?;
    let secret = tpm.activate_credential(&ek, &ak, &start.id_object, &start.encrypted_secret)?;
    tpm.flush_ek(ek)?;
    let done: EnrollFinishResponse = broker.post(
        "/v1/enroll/finish",
        &EnrollFinishRequest {
            enrollment_id: start.enrollment_id,
            secret,
        },
    )?;
    AttesterState {
        host_id: done.host_id.clone(),
        ek_alg,
        ak,
        request_key_secret: None,
    }
    .save(&s.state_dir)?;
    Ok(done)
}

/// Take a quote over the challenge's selection with `qualifying_data`.
fn quote(
    tpm: &mut Tpm,
    state: &AttesterState,
    challenge: &ChallengeResponse,
    qualifying_data: &[u8],
) -> Result<TpmEvidence, CommandError> {
    let selection: Vec<(HashAlg, Vec<u8>)> = challenge
        .pcr_selection
        .iter()
        .map(|b| (b.bank, b.pcrs.clone()))
        .collect();
    let ek = tpm.create_ek(state.ek_alg)?;
    let q = tpm.quote(&ek, &state.ak, qualifying_data, &selection);
    tpm.flush_ek(ek)?;
    let q = q?;
    Ok(TpmEvidence {
        attest: q.attest,
        signature: q.signature,
        pcrs: PcrValues(q.pcrs),
        eventlog: None,
        ima: None,
        ima_offset: 0,
    })
}

/// Attest once and return the broker's appraisal.
pub fn attest(s: &Settings) -> Result<AppraisalResponse, CommandError> {
    let state = AttesterState::load(&s.state_dir)?;
    let broker = client(s)?;
    let mut tpm = open_tpm(s)?;
    let challenge: ChallengeResponse = broker.post(
        "/v1/challenge",
        &ChallengeRequest {
            host_id: state.host_id.clone(),
        },
    )?;
    let evidence = quote(&mut tpm, &state, &challenge, &challenge.nonce)?;
    let evidence = crate::logs::attach(evidence, &challenge, &s.logs)?;
    let appraisal: AppraisalResponse = broker.post(
        "/v1/attest",
        &AttestRequest {
            host_id: state.host_id.clone(),
            nonce: challenge.nonce,
            evidence,
        },
    )?;
    Ok(appraisal)
}

/// A workload executable, resolved and hashed.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
    pub digest: [u8; 32],
    identity: FileIdentity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn identity(path: &Path) -> std::io::Result<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(FileIdentity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

/// Resolve `name` like execvp does (PATH lookup when it has no `/`), then
/// hash the file that will actually be executed (symlinks resolved).
pub fn resolve_program(name: &str) -> Result<Program, CommandError> {
    let candidate = if name.contains('/') {
        PathBuf::from(name)
    } else {
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .find(|c| c.is_file())
            })
            .unwrap_or_default()
            .ok_or_else(|| CommandError::ProgramNotFound {
                name: name.to_owned(),
            })?
    };
    let err = |source| CommandError::Program {
        path: candidate.display().to_string(),
        source,
    };
    let path = std::fs::canonicalize(&candidate).map_err(err)?;
    let before = identity(&path).map_err(err)?;
    let bytes = std::fs::read(&path).map_err(err)?;
    let digest: [u8; 32] =
        HashAlg::Sha256
            .digest(&bytes)
            .try_into()
            .map_err(|_| CommandError::Program {
                path: path.display().to_string(),
                source: std::io::Error::other("digest length"),
            })?;
    if identity(&path).map_err(err)? != before {
        return Err(CommandError::ProgramChanged {
            path: path.display().to_string(),
        });
    }
    Ok(Program {
        path,
        digest,
        identity: before,
    })
}

/// Attest for this exact request and obtain a verified execution token.
pub fn obtain_token(
    s: &Settings,
    workload: &str,
    program: &Program,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    obtain_token_with(s, workload, &program.digest, None)
}

/// Like [`obtain_token`], for a workload digest and an optional `cnf`
/// COSE_Key the token is bound to (proof of possession).
pub fn obtain_token_with(
    s: &Settings,
    workload: &str,
    workload_digest: &[u8; 32],
    cnf: Option<&[u8]>,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    let program_digest = workload_digest;
    let state = AttesterState::load(&s.state_dir)?;
    let broker = client(s)?;
    let keys = broker.key_set()?;
    let mut tpm = open_tpm(s)?;
    let challenge: ChallengeResponse = broker.post(
        "/v1/challenge",
        &ChallengeRequest {
            host_id: state.host_id.clone(),
        },
    )?;
    let binding = TokenRequestBinding {
        host_id: &state.host_id,
        workload,
        workload_digest: program_digest,
        cnf_key: cnf,
    };
    let evidence = quote(
        &mut tpm,
        &state,
        &challenge,
        &binding.quote_nonce(&challenge.nonce),
    )?;
    let evidence = crate::logs::attach(evidence, &challenge, &s.logs)?;
    drop(tpm);
    let resp: TokenResponse = broker.post(
        "/v1/tokens",
        &TokenRequest {
            host_id: state.host_id.clone(),
            workload: workload.to_owned(),
            workload_digest: program_digest.to_vec(),
            cnf: cnf.map(<[u8]>::to_vec),
            nonce: challenge.nonce,
            evidence,
        },
    )?;
    let verified = check_token(
        s,
        keys,
        &resp.token,
        workload,
        program_digest,
        &state.host_id,
    )?;
    Ok((resp.token, verified))
}

/// Verify a token the broker returned: signature, issuer, audience
/// `workload`, lifetime, and that it is for this host and workload digest.
pub(crate) fn check_token(
    s: &Settings,
    keys: verifier_lib::token::KeySet,
    token: &[u8],
    workload: &str,
    workload_digest: &[u8],
    host_id: &str,
) -> Result<VerifiedToken, CommandError> {
    let verifier = TokenVerifier::new(
        keys,
        Expectations {
            issuer: s.issuer.clone(),
            audience: Audience::Exactly(workload.to_owned()),
            leeway_secs: 30,
            max_lifetime_secs: i64::from(verifier_lib::policy::HARD_MAX_TOKEN_LIFETIME_SECS),
            require_workload_digest: true,
        },
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = verifier.verify(token, now)?;
    let digest = verified.claims.workload_digest.clone().unwrap_or_default();
    if digest != workload_digest {
        return Err(CommandError::TokenMismatch {
            field: "workload digest",
            expected: hex::encode(workload_digest),
            actual: hex::encode(digest),
        });
    }
    if verified.claims.sub != host_id {
        return Err(CommandError::TokenMismatch {
            field: "host",
            expected: host_id.to_owned(),
            actual: verified.claims.sub.clone(),
        });
    }
    Ok(verified)
}

/// Replace this process with `program`, passing the token in `WRIT_TOKEN`.
/// Only returns on failure.
pub fn exec_with_token(program: &Program, args: &[String], token: &[u8]) -> CommandError {
    exec_with(program, args, token, &[])
}

/// [`exec_with_token`] with extra environment variables (e.g. `WRIT_KEY`).
pub fn exec_with(
    program: &Program,
    args: &[String],
    token: &[u8],
    envs: &[(&str, &std::ffi::OsStr)],
) -> CommandError {
    use std::os::unix::process::CommandExt;
    // Refuse if the file changed since it was hashed and the token minted.
    match identity(&program.path) {
        Ok(now) if now == program.identity => {}
        Ok(_) => {
            return CommandError::ProgramChanged {
                path: program.path.display().to_string(),
            }
        }
        Err(source) => {
            return CommandError::Program {
                path: program.path.display().to_string(),
                source,
            }
        }
    }
    let err = std::process::Command::new(&program.path)
        .args(args)
        .env("WRIT_TOKEN", URL_SAFE_NO_PAD.encode(token))
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .exec();
    CommandError::Exec {
        path: program.path.display().to_string(),
        source: err,
    }
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
                    serde_json::from_value::<verifier_lib::policy::Failure>(f.clone()).ok()
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
