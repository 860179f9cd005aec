//! One exchange of a simulated host with the broker, over HTTP, with the
//! broker's own `/v1` message types (`verifier_lib::api`): enrollment
//! (start → credential activation → finish), attestation (challenge →
//! quote → attest), a key-bound token (challenge → quote over the request
//! → token, then the token verified against the broker's keys), and the
//! request-key path (TPM2_Certify of a request key → registration; then
//! tokens on requests the key signed, with no quote).

use std::net::IpAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use verifier_lib::api::request_key::{
    RequestKeyRegistration, RequestKeyResponse, SignedTokenRequest,
};
use verifier_lib::api::{
    AppraisalResponse, AttestRequest, ChallengeRequest, ChallengeResponse, EnrollFinishRequest,
    EnrollFinishResponse, EnrollStartRequest, EnrollStartResponse, ErrorBody, TokenRequest,
    TokenResponse, TpmEvidence,
};
use verifier_lib::crypto::HashAlg;
use verifier_lib::token::{
    Audience, Expectations, KeySet, SigningKey, TokenVerifier, VerifyingKey,
};

use crate::fleet::{quoted_pcrs, token_request_binding, workload_digest, Fleet, SimHost, WORKLOAD};
use crate::soft_tpm::eventlog::LOG_PCRS;
use crate::soft_tpm::{RequestKey, SoftTpmError};
use crate::target::Target;

/// Why an exchange failed. [`ExchangeError::code`] is what a run counts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The broker answered with its error body: `code` is its stable code.
    #[error("{path}: HTTP {status}: {code}: {message}")]
    Refused {
        path: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection refused or reset, or the request timed out.
    #[error("{path}: {reason}")]
    Transport { path: &'static str, reason: String },
    /// An answer that is not the expected message.
    #[error("{path}: unreadable answer: {reason}")]
    BadResponse { path: &'static str, reason: String },
    /// The simulated TPM failed (e.g. the credential did not activate).
    #[error("software TPM: {0}")]
    Tpm(#[from] SoftTpmError),
    /// The appraisal did not affirm the host.
    #[error("appraisal {expected}, got {actual}")]
    Verdict {
        expected: &'static str,
        actual: String,
    },
    /// The challenge asks for PCRs the simulated log does not cover.
    #[error("challenge selects {actual}, the simulated TPM quotes sha256 PCRs 0-7")]
    PcrSelection { actual: String },
    /// The returned token does not verify, or is not for this request.
    #[error("token: {reason}")]
    TokenInvalid { reason: String },
    /// The host has no broker id yet.
    #[error("host {index} is not enrolled")]
    NotEnrolled { index: usize },
    /// The host has no registered request key.
    #[error("host {index} has no registered request key")]
    NoRequestKey { index: usize },
    /// A verified token's id could not be written to `--tokens-out`.
    #[error("--tokens-out: {reason}")]
    TokensOut { reason: String },
}

impl ExchangeError {
    /// The code a run counts this error under: the broker's own code for a
    /// refusal, `loadgen_*` for what the load generator saw.
    pub fn code(&self) -> String {
        match self {
            ExchangeError::Refused { code, .. } => code.clone(),
            ExchangeError::Transport { .. } => "loadgen_transport".into(),
            ExchangeError::BadResponse { .. } => "loadgen_bad_response".into(),
            ExchangeError::Tpm(_) => "loadgen_soft_tpm".into(),
            ExchangeError::Verdict { .. } => "loadgen_not_affirming".into(),
            ExchangeError::PcrSelection { .. } => "loadgen_pcr_selection".into(),
            ExchangeError::TokenInvalid { .. } => "loadgen_token_invalid".into(),
            ExchangeError::NotEnrolled { .. } => "loadgen_not_enrolled".into(),
            ExchangeError::NoRequestKey { .. } => "loadgen_no_request_key".into(),
            ExchangeError::TokensOut { .. } => "loadgen_tokens_out".into(),
        }
    }
}

/// How long one HTTP request may take before it counts as a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Key-bound tokens rotate over this many workload keys.
const CNF_KEYS: usize = 16;

/// The broker under test, as the simulated hosts see it.
#[derive(Debug)]
pub struct Broker {
    target: Target,
    /// One client (connection pool) per source address.
    clients: Vec<reqwest::Client>,
    verifier: TokenVerifier,
    /// `kid` of the broker's first token key: names its enrolled-hosts file.
    pub kid: String,
    cnf_keys: Vec<Vec<u8>>,
    /// Where the id of every token received and verified is appended.
    tokens_out: Option<std::sync::Mutex<std::fs::File>>,
}

impl Broker {
    /// Append the id (`cti`, hex) of every token received and verified to
    /// `path`, one per line, each line written when the token is checked
    /// (a reconciliation for `writ-broker audit verify --expect-tokens`).
    pub fn record_tokens_to(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.tokens_out = Some(std::sync::Mutex::new(file));
        Ok(())
    }

    /// Clients for every source address, and the broker's token keys
    /// (`GET /v1/keys`) to verify tokens issued by `issuer`.
    pub async fn connect(
        target: Target,
        sources: &[IpAddr],
        issuer: &str,
    ) -> Result<Broker, ExchangeError> {
        let clients = sources
            .iter()
            .map(|&ip| {
                reqwest::Client::builder()
                    .local_address(ip)
                    .timeout(REQUEST_TIMEOUT)
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| ExchangeError::Transport {
                        path: "(client)",
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = clients.first().ok_or(ExchangeError::Transport {
            path: "(client)",
            reason: "no source address".into(),
        })?;
        let url = format!("{}/v1/keys", target.base);
        let resp = first
            .get(&url)
            .send()
            .await
            .map_err(|e| transport("/v1/keys", &e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport("/v1/keys", &e))?;
        if !status.is_success() {
            return Err(refusal("/v1/keys", status.as_u16(), &bytes));
        }
        let keys = KeySet::from_cose_key_set(&bytes).map_err(|e| ExchangeError::BadResponse {
            path: "/v1/keys",
            reason: e.to_string(),
        })?;
        let kid = keys
            .keys
            .first()
            .map(|k| k.kid.clone())
            .ok_or(ExchangeError::BadResponse {
                path: "/v1/keys",
                reason: "empty key set".into(),
            })?;
        let verifier = TokenVerifier::new(
            keys,
            Expectations {
                issuer: issuer.to_owned(),
                audience: Audience::Exactly(WORKLOAD.to_owned()),
                leeway_secs: 30,
                max_lifetime_secs: i64::from(verifier_lib::policy::HARD_MAX_TOKEN_LIFETIME_SECS),
                require_workload_digest: true,
            },
        );
        let cnf_keys = (0..CNF_KEYS)
            .map(|_| {
                SigningKey::generate()
                    .and_then(|k| k.verifying_key().to_cose_key_bytes())
                    .map_err(|e| ExchangeError::TokenInvalid {
                        reason: format!("workload key: {e}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Broker {
            target,
            clients,
            verifier,
            kid,
            cnf_keys,
            tokens_out: None,
        })
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        host: &SimHost,
        path: &'static str,
        body: &Req,
    ) -> Result<Resp, ExchangeError> {
        let client = &self.clients[host.source % self.clients.len()];
        let resp = client
            .post(format!("{}{path}", self.target.base))
            .json(body)
            .send()
            .await
            .map_err(|e| transport(path, &e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport(path, &e))?;
        if !status.is_success() {
            return Err(refusal(path, status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ExchangeError::BadResponse {
            path,
            reason: e.to_string(),
        })
    }

    /// Enroll `host`: its EK certificate (issued now by the test CA), EK
    /// and AK; activate the credential; finish. Records the host id.
    pub async fn enroll(&self, fleet: &Fleet, host: &SimHost) -> Result<(), ExchangeError> {
        let now = unix_now();
        let mut serial = (host.index as u64 + 1).to_be_bytes().to_vec();
        serial.extend_from_slice(&now.to_be_bytes());
        let ek_cert = fleet.ca.issue_ek_cert(&serial, host.tpm.ek_point(), now)?;
        let start: EnrollStartResponse = self
            .post(
                host,
                "/v1/enroll/start",
                &EnrollStartRequest {
                    ek_cert,
                    ek_chain: Vec::new(),
                    ek_public: host.tpm.ek_public.clone(),
                    ak_public: host.tpm.ak_public.clone(),
                },
            )
            .await?;
        let secret = host
            .tpm
            .activate_credential(&start.id_object, &start.encrypted_secret)?;
        let done: EnrollFinishResponse = self
            .post(
                host,
                "/v1/enroll/finish",
                &EnrollFinishRequest {
                    enrollment_id: start.enrollment_id,
                    secret,
                },
            )
            .await?;
        host.set_host_id(done.host_id);
        Ok(())
    }

    async fn challenge(&self, host: &SimHost) -> Result<(String, Vec<u8>), ExchangeError> {
        let host_id = host
            .host_id()
            .ok_or(ExchangeError::NotEnrolled { index: host.index })?
            .to_owned();
        let ch: ChallengeResponse = self
            .post(
                host,
                "/v1/challenge",
                &ChallengeRequest {
                    host_id: host_id.clone(),
                },
            )
            .await?;
        let covered = ch
            .pcr_selection
            .iter()
            .all(|s| s.bank == HashAlg::Sha256 && s.pcrs.iter().all(|p| LOG_PCRS.contains(p)));
        if !covered {
            return Err(ExchangeError::PcrSelection {
                actual: format!("{:?}", ch.pcr_selection),
            });
        }
        Ok((host_id, ch.nonce))
    }

    fn evidence(
        &self,
        fleet: &Fleet,
        host: &SimHost,
        extra_data: &[u8],
    ) -> Result<TpmEvidence, ExchangeError> {
        let quote = host.tpm.quote(extra_data, host.clock(), &fleet.log)?;
        Ok(TpmEvidence {
            attest: quote.attest,
            signature: quote.signature,
            pcrs: quoted_pcrs(&fleet.log),
            eventlog: Some(fleet.log.bytes.clone()),
            ima: None,
            ima_offset: 0,
        })
    }

    /// Re-attest `host`: challenge, quote over the nonce, appraisal. The
    /// appraisal must affirm.
    pub async fn attest(&self, fleet: &Fleet, host: &SimHost) -> Result<(), ExchangeError> {
        let (host_id, nonce) = self.challenge(host).await?;
        let evidence = self.evidence(fleet, host, &nonce)?;
        let appraisal: AppraisalResponse = self
            .post(
                host,
                "/v1/attest",
                &AttestRequest {
                    host_id,
                    nonce,
                    evidence,
                },
            )
            .await?;
        affirming(&appraisal)
    }

    /// Ask a key-bound token for the simulated workload and verify it:
    /// signature under the broker's keys, issuer, audience, lifetime, and
    /// that it names this host, the workload digest and the `cnf` key.
    pub async fn token(&self, fleet: &Fleet, host: &SimHost) -> Result<(), ExchangeError> {
        let (host_id, nonce) = self.challenge(host).await?;
        let digest = workload_digest().to_vec();
        let cnf = self.cnf_keys[host.index % self.cnf_keys.len()].clone();
        let extra_data = token_request_binding(&host_id, &nonce, &cnf);
        let evidence = self.evidence(fleet, host, &extra_data)?;
        let resp: TokenResponse = self
            .post(
                host,
                "/v1/tokens",
                &TokenRequest {
                    host_id: host_id.clone(),
                    workload: WORKLOAD.to_owned(),
                    workload_digest: digest.clone(),
                    cnf: Some(cnf.clone()),
                    nonce,
                    evidence,
                },
            )
            .await?;
        affirming(&resp.appraisal)?;
        self.check_token(&resp, &host_id, &digest, &cnf)
    }

    /// Certify a new request key with the AK (over a fresh challenge) and
    /// register it; the host must be trusted and freshly appraised.
    pub async fn register_request_key(
        &self,
        _fleet: &Fleet,
        host: &SimHost,
    ) -> Result<(), ExchangeError> {
        let (host_id, nonce) = self.challenge(host).await?;
        let key = RequestKey::generate()?;
        let certified = host.tpm.certify(&key, &nonce, host.clock())?;
        let resp: RequestKeyResponse = self
            .post(
                host,
                "/v1/request-keys",
                &RequestKeyRegistration {
                    host_id,
                    nonce,
                    key_public: key.public.clone(),
                    attest: certified.attest,
                    signature: certified.signature,
                },
            )
            .await?;
        if resp.key_name != key.name {
            return Err(ExchangeError::BadResponse {
                path: "/v1/request-keys",
                reason: "registered another key name".into(),
            });
        }
        host.set_request_key(key);
        Ok(())
    }

    /// A key-bound token on a request signed by the host's request key (no
    /// quote), verified like [`Self::token`]'s.
    pub async fn signed_token(&self, _fleet: &Fleet, host: &SimHost) -> Result<(), ExchangeError> {
        let key = host
            .request_key()
            .ok_or(ExchangeError::NoRequestKey { index: host.index })?;
        let (host_id, nonce) = self.challenge(host).await?;
        let digest = workload_digest().to_vec();
        let cnf = self.cnf_keys[host.index % self.cnf_keys.len()].clone();
        let message = token_request_binding(&host_id, &nonce, &cnf);
        let resp: TokenResponse = self
            .post(
                host,
                "/v1/tokens/signed",
                &SignedTokenRequest {
                    host_id: host_id.clone(),
                    workload: WORKLOAD.to_owned(),
                    workload_digest: digest.clone(),
                    cnf: Some(cnf.clone()),
                    nonce,
                    key_name: key.name.clone(),
                    signature: key.sign(&message)?,
                },
            )
            .await?;
        self.check_token(&resp, &host_id, &digest, &cnf)
    }

    /// Verify a returned token: signature under the broker's keys, issuer,
    /// audience, lifetime, and that it names this host, the workload digest
    /// and the `cnf` key sent.
    fn check_token(
        &self,
        resp: &TokenResponse,
        host_id: &str,
        digest: &[u8],
        cnf: &[u8],
    ) -> Result<(), ExchangeError> {
        let verified = self.verifier.verify(&resp.token, unix_now()).map_err(|e| {
            ExchangeError::TokenInvalid {
                reason: e.to_string(),
            }
        })?;
        let claims = &verified.claims;
        let sent = VerifyingKey::from_cose_key_bytes(cnf).ok();
        let cnf_matches = match (&claims.cnf, &sent) {
            (Some(bound), Some(sent)) => bound.sec1_point() == sent.sec1_point(),
            _ => false,
        };
        if claims.sub != host_id
            || claims.workload_digest.as_deref() != Some(digest)
            || !cnf_matches
            || claims.cti != resp.cti
        {
            return Err(ExchangeError::TokenInvalid {
                reason: format!(
                    "claims are not this request's: sub {}, cnf bound to this key {cnf_matches}",
                    claims.sub
                ),
            });
        }
        if let Some(out) = &self.tokens_out {
            use std::io::Write as _;
            let line = format!("{}\n", hex::encode(&claims.cti));
            let mut file = out.lock().map_err(|_| ExchangeError::TokensOut {
                reason: "the file's lock is poisoned".into(),
            })?;
            file.write_all(line.as_bytes())
                .map_err(|e| ExchangeError::TokensOut {
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }
}

fn affirming(a: &AppraisalResponse) -> Result<(), ExchangeError> {
    if a.verdict == "affirming" {
        Ok(())
    } else {
        Err(ExchangeError::Verdict {
            expected: "affirming",
            actual: format!("{} ({} failures)", a.verdict, a.failures.len()),
        })
    }
}

fn transport(path: &'static str, e: &reqwest::Error) -> ExchangeError {
    ExchangeError::Transport {
        path,
        reason: if e.is_timeout() {
            "timed out".into()
        } else {
            e.to_string()
        },
    }
}

fn refusal(path: &'static str, status: u16, body: &[u8]) -> ExchangeError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ExchangeError::Refused {
            path,
            status,
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => ExchangeError::Refused {
            path,
            status,
            code: format!("http_{status}"),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
