//! The attester's commands: enroll, attest, and run a workload only with a
//! valid execution token.

use std::path::PathBuf;

use verifier_lib::api::{
    AppraisalResponse, AttestRequest, ChallengeRequest, ChallengeResponse, EnrollFinishRequest,
    EnrollFinishResponse, EnrollStartRequest, EnrollStartResponse, TokenRequest, TokenResponse,
    TpmEvidence,
};
use verifier_lib::crypto::HashAlg;
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::token::{Audience, Expectations, TokenVerifier, VerifiedToken};
use verifier_lib::tpm::PcrValues;

use crate::client::{BrokerClient, BrokerOutcome, BrokerPool, ClientError, Failover};
use crate::logs::LogSources;
use crate::pinning::PinningError;
use crate::state::AttesterState;
use crate::tpm::{AkAlg, Tpm};

pub use crate::error::{denial_reasons, CommandError};
pub use crate::program::{resolve_program, Program};

/// Common settings of every command.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broker's base URL, or a fleet's brokers as `URL,URL,...`: every
    /// exchange runs against one of them (see [`crate::client::BrokerPool`]).
    pub broker: String,
    /// Retry settings over that list, and the broker that answered last.
    pub failover: Failover,
    pub ca_cert: Option<PathBuf>,
    pub tcti: String,
    pub state_dir: PathBuf,
    /// Expected `iss` of tokens.
    pub issuer: String,
    /// Event log and IMA list to send with quotes.
    pub logs: LogSources,
}

/// The brokers of `s`, for [`BrokerPool::run`].
pub fn brokers(s: &Settings) -> Result<BrokerPool, CommandError> {
    Ok(BrokerPool::new(
        &s.broker,
        s.ca_cert.as_deref(),
        &s.failover,
    )?)
}

impl BrokerOutcome for CommandError {
    fn into_broker_failure(self) -> Result<ClientError, Self> {
        match self {
            CommandError::Broker(e) | CommandError::Pinning(PinningError::Broker(e)) => {
                e.into_broker_failure().map_err(CommandError::from)
            }
            other => Err(other),
        }
    }
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

/// What [`enroll_unless_enrolled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// The host was enrolled now.
    Enrolled(EnrollFinishResponse),
    /// The state directory already holds an enrollment; nothing was sent.
    AlreadyEnrolled { host_id: String },
}

impl Enrollment {
    /// The broker's answer, or for an existing enrollment the same shape
    /// with status `already_enrolled`.
    pub fn response(self) -> EnrollFinishResponse {
        match self {
            Enrollment::Enrolled(done) => done,
            Enrollment::AlreadyEnrolled { host_id } => EnrollFinishResponse {
                host_id,
                status: "already_enrolled".to_owned(),
            },
        }
    }
}

/// Enroll unless the state directory already holds an enrollment (the boot
/// unit's command: idempotent). "Enrolled" means what the daemon's
/// `ensure_enrolled` means: the state file exists and reads back. A state
/// file that exists but cannot be read (corrupt, readable by others) is an
/// error, not a reason to enroll again.
pub fn enroll_unless_enrolled(s: &Settings, ak_alg: AkAlg) -> Result<Enrollment, CommandError> {
    match AttesterState::load(&s.state_dir) {
        Ok(state) => Ok(Enrollment::AlreadyEnrolled {
            host_id: state.host_id,
        }),
        Err(crate::state::StateError::NotEnrolled { .. }) => {
            enroll(s, ak_alg).map(Enrollment::Enrolled)
        }
        Err(e) => Err(e.into()),
    }
}

/// Enroll this host: EK certificate + credential activation of a new AK.
/// After a broker failure the whole enrollment starts again on the next
/// broker (a new AK, a new credential challenge).
pub fn enroll(s: &Settings, ak_alg: AkAlg) -> Result<EnrollFinishResponse, CommandError> {
    let mut tpm = open_tpm(s)?;
    brokers(s)?.run(|broker| enroll_with(s, broker, &mut tpm, ak_alg))
}

fn enroll_with(
    s: &Settings,
    broker: &BrokerClient,
    tpm: &mut Tpm,
    ak_alg: AkAlg,
) -> Result<EnrollFinishResponse, CommandError> {
    let ek_alg = tpm.detect_ek_alg()?;
    let ek_cert = tpm
        .ek_certificate(ek_alg)?
        .ok_or(CommandError::NoEkCertificate { alg: ek_alg })?;
    let ek_chain = tpm.ek_chain_certificates()?;
    let ek = tpm.create_ek(ek_alg)?;
    let ak = tpm.create_ak(&ek, ak_alg)?;
    let start: Result<EnrollStartResponse, _> = broker.post(
        "/v1/enroll/start",
        &EnrollStartRequest {
            ek_cert,
            ek_chain,
            ek_public: ek.public_tpm2b.clone(),
            ak_public: ak.public_tpm2b.clone(),
        },
    );
    let start = match start {
        Ok(start) => start,
        Err(e) => {
            // The next broker's attempt loads its own EK.
            tpm.flush_ek(ek)?;
            return Err(e.into());
        }
    };
    let secret = tpm.activate_credential(&ek, &ak, &start.id_object, &start.encrypted_secret)?;
    tpm.flush_ek(ek)?;
    let done: EnrollFinishResponse = broker.post(
        "/v1/enroll/finish",
        &EnrollFinishRequest {
            enrollment_id: start.enrollment_id,
            secret,
        },
    )?;
    // Pin the broker's token keys now, over the connection the host just
    // enrolled through; later key sets must chain to these (every broker
    // of a fleet signs with the same token key).
    crate::pinning::pin_served(broker, &s.state_dir)?;
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

/// Attest once and return the broker's appraisal. After a broker failure
/// the exchange starts again, from a fresh challenge, on the next broker.
pub fn attest(s: &Settings) -> Result<AppraisalResponse, CommandError> {
    let state = AttesterState::load(&s.state_dir)?;
    let mut tpm = open_tpm(s)?;
    brokers(s)?.run(|broker| attest_with(s, broker, &mut tpm, &state))
}

fn attest_with(
    s: &Settings,
    broker: &BrokerClient,
    tpm: &mut Tpm,
    state: &AttesterState,
) -> Result<AppraisalResponse, CommandError> {
    let challenge: ChallengeResponse = broker.post(
        "/v1/challenge",
        &ChallengeRequest {
            host_id: state.host_id.clone(),
        },
    )?;
    let evidence = quote(tpm, state, &challenge, &challenge.nonce)?;
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

/// Attest for this exact request and obtain a verified execution token.
pub fn obtain_token(
    s: &Settings,
    workload: &str,
    program: &Program,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    obtain_token_with(s, workload, &program.digest, None)
}

/// Like [`obtain_token`], for a workload digest and an optional `cnf`
/// COSE_Key the token is bound to (proof of possession). After a broker
/// failure the exchange starts again, from a fresh challenge and quote, on
/// the next broker.
pub fn obtain_token_with(
    s: &Settings,
    workload: &str,
    workload_digest: &[u8; 32],
    cnf: Option<&[u8]>,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    obtain_token_via(&brokers(s)?, s, workload, workload_digest, cnf)
}

/// Like [`obtain_token_with`], over an existing broker pool (the daemon
/// keeps one, so its HTTP client and trust store are built once).
pub fn obtain_token_via(
    pool: &BrokerPool,
    s: &Settings,
    workload: &str,
    workload_digest: &[u8; 32],
    cnf: Option<&[u8]>,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    let state = AttesterState::load(&s.state_dir)?;
    pool.run(|broker| token_with(s, broker, &state, workload, workload_digest, cnf))
}

fn token_with(
    s: &Settings,
    broker: &BrokerClient,
    state: &AttesterState,
    workload: &str,
    program_digest: &[u8; 32],
    cnf: Option<&[u8]>,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    let keys = crate::pinning::trusted_key_set(broker, &s.state_dir, false)?;
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
        state,
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
