//! Request-signing keys: registering a TPM-resident key the host's AK
//! certified (TPM2_Certify), and tokens on requests that key signed — no
//! quote, while the host is trusted and its last passing appraisal is fresh
//! (`verifier_lib::decision::grant::signed_request`).

use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::decision::claims::{request_key_submod, ExecutionToken};
use verifier_lib::decision::grant::{request_key_host, signed_request, HostStanding, SignedGrant};
use verifier_lib::decision::{Denial, HostStatus, WorkloadRequest};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::token::VerifyingKey;
use verifier_lib::tpm::{self, AkPublic, CertifyError};

use super::{with_retry, DecisionError};
use crate::mint::{self, Minted};
use crate::state::AppState;
use crate::store::audit::{Entry, EntryError, NonceUse, StateChange};
use crate::store::{HostRecord, RequestKeyRecord};

/// Why a request key or a signed request was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestKeyError {
    #[error("request key: {0}")]
    Rejected(CertifyError),
    #[error("certified at reset/restart count {certified:?}, the last appraisal saw {appraised:?}; attest with a quote first")]
    OtherBoot {
        certified: (u32, u32),
        appraised: Option<(u32, u32)>,
    },
    #[error("the request key is not the host's registered one; certify it again")]
    Unknown,
    #[error("signed request: {0}")]
    BadSignature(CertifyError),
}

/// A registration or signed request refused by its own checks, or by the
/// decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    #[error(transparent)]
    Key(#[from] RequestKeyError),
    #[error(transparent)]
    Decision(#[from] DecisionError),
}

impl From<crate::store::StoreError> for SignedError {
    fn from(e: crate::store::StoreError) -> Self {
        SignedError::Decision(e.into())
    }
}

async fn host(st: &AppState, host_id: &str) -> Result<HostRecord, DecisionError> {
    let host = st
        .store
        .host(host_id)
        .await?
        .ok_or_else(|| DecisionError::UnknownHost {
            host: host_id.to_owned(),
        })?;
    Ok(host)
}

fn fresh(st: &AppState, host: &HostRecord) -> Result<i64, DecisionError> {
    request_key_host(
        HostStanding {
            host_id: &host.id,
            status: host.status,
            last_pass: host.last_attested_at,
        },
        st.config.hosts.signed_request_max_age_secs,
        st.now(),
    )
    .map_err(|denial| DecisionError::Denied {
        denial,
        appraisal: None,
    })
}

/// A certified request key to register.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    pub host_id: &'a str,
    pub nonce: &'a [u8],
    pub attest: &'a [u8],
    pub signature: &'a [u8],
    pub key_public: &'a [u8],
}

/// Verify the AK's certification of the host's request key (nonce from a
/// challenge) and register the key; it must be certified in the boot the
/// host's last appraisal saw, while the host is trusted and fresh.
pub async fn register(st: &AppState, r: Registration<'_>) -> Result<RequestKeyRecord, SignedError> {
    // The cheap check first: a challenge this fleet issued to this host.
    let nonce_use = super::nonce::verify(st, r.nonce, r.host_id).await?;
    // Read: one snapshot of the host and its clock baseline.
    let prior =
        st.store
            .host_state(r.host_id)
            .await?
            .ok_or_else(|| DecisionError::UnknownHost {
                host: r.host_id.to_owned(),
            })?;
    let (host, baseline) = (prior.host, prior.clock);
    if host.status == HostStatus::Revoked {
        return Err(DecisionError::Denied {
            denial: Denial::HostRevoked { host: host.id },
            appraisal: None,
        }
        .into());
    }
    fresh(st, &host)?;
    let ak = AkPublic::parse_any(&host.ak_public).map_err(|e| DecisionError::Internal {
        what: "stored attestation key",
        reason: e.to_string(),
    })?;
    let certified = tpm::verify_certify(r.attest, r.signature, &ak, r.key_public, r.nonce)
        .map_err(RequestKeyError::Rejected)?;
    let c = &certified.clock_info;
    match baseline {
        Some(b) if b.reset_count == c.reset_count && b.restart_count == c.restart_count => {}
        other => {
            return Err(RequestKeyError::OtherBoot {
                certified: (c.reset_count, c.restart_count),
                appraised: other.map(|b| (b.reset_count, b.restart_count)),
            }
            .into())
        }
    }
    let now = st.now();
    let record = RequestKeyRecord {
        host_id: host.id.clone(),
        key_name: certified.name.clone(),
        key_public: r.key_public.to_vec(),
        reset_count: c.reset_count,
        restart_count: c.restart_count,
        certified_at: now,
    };
    let leaf = Leaf::new(
        now,
        Decision::RequestKeyCertified {
            host: host.id.clone(),
            key_name: certified.name.clone(),
        },
    );
    let change = StateChange::RequestKey {
        key: record.clone(),
        nonce: NonceUse {
            at: now,
            ..nonce_use
        },
    };
    st.audit
        .apply(change, vec![leaf])
        .await
        .map_err(DecisionError::from)?;
    tracing::info!(host_id = %host.id, key_name = %hex::encode(&certified.name), "request key certified");
    Ok(record)
}

/// A token request signed by the host's request key.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub host_id: &'a str,
    pub nonce: &'a [u8],
    pub workload: &'a str,
    pub workload_digest: &'a [u8],
    /// The `cnf` COSE_Key as sent (bound by the signature) and parsed.
    pub cnf: Option<(&'a [u8], VerifyingKey)>,
    pub key_name: &'a [u8],
    pub signature: &'a [u8],
}

/// What a signed request got.
#[derive(Debug)]
pub struct SignedToken {
    pub minted: Minted,
    pub appraised_at: i64,
}

/// Decide and apply a signed token request.
pub async fn token(st: &AppState, req: SignedRequest<'_>) -> Result<SignedToken, SignedError> {
    with_retry(|| async {
        match token_pass(st, req.clone()).await {
            Ok(t) => Ok(Ok(t)),
            Err(SignedError::Decision(d)) => Err(d),
            Err(SignedError::Key(k)) => Ok(Err(k)),
        }
    })
    .await?
    .map_err(SignedError::Key)
}

async fn token_pass(st: &AppState, req: SignedRequest<'_>) -> Result<SignedToken, SignedError> {
    // The cheap check first: a challenge this fleet issued to this host.
    let nonce_use = super::nonce::verify(st, req.nonce, req.host_id).await?;
    // Read.
    let host = host(st, req.host_id).await?;
    let key = st
        .store
        .request_key(&host.id)
        .await?
        .filter(|k| k.key_name == req.key_name)
        .ok_or(RequestKeyError::Unknown)?;
    // The request's own evidence: the key's signature over the binding.
    let public = tpm::Public::parse(&key.key_public).map_err(|e| DecisionError::Internal {
        what: "stored request key",
        reason: e.to_string(),
    })?;
    let binding = TokenRequestBinding {
        host_id: &host.id,
        workload: req.workload,
        workload_digest: req.workload_digest,
        cnf_key: req.cnf.as_ref().map(|(bytes, _)| *bytes),
    };
    tpm::verify_request_signature(&public, &binding.quote_nonce(req.nonce), req.signature)
        .map_err(RequestKeyError::BadSignature)?;
    // Decide.
    let policy = st.policy.current();
    let now = st.now();
    let SignedGrant {
        grant,
        appraised_at,
        fresh_since,
    } = signed_request(
        HostStanding {
            host_id: &host.id,
            status: host.status,
            last_pass: host.last_attested_at,
        },
        st.config.hosts.signed_request_max_age_secs,
        &policy,
        WorkloadRequest {
            workload: req.workload,
            digest: req.workload_digest,
        },
        now,
    )
    .map_err(|denial| DecisionError::Denied {
        denial,
        appraisal: None,
    })?;
    // Apply.
    let (signing_key, issuer) = (st.signing_key.clone(), st.config.tokens.issuer.clone());
    let nonce = req.nonce.to_vec();
    let digest = req.workload_digest.to_vec();
    let cnf = req.cnf.map(|(_, k)| k);
    let host_id = host.id.clone();
    let slot = crate::governance::Governance::allocate(&st.store, &st.config, now).await?;
    let (_, minted) = st
        .audit
        .commit_with(move |index| {
            let verifier_id = mint::verifier_id();
            let claims = ExecutionToken {
                issuer: &issuer,
                verifier_id: &verifier_id,
                host_id: &host_id,
                grant: &grant,
                policy: &policy,
                nonce: &nonce,
                workload_digest: &digest,
                cnf,
                submod: (
                    "tpm",
                    request_key_submod(
                        &key.key_name,
                        key.reset_count,
                        key.restart_count,
                        appraised_at,
                    ),
                ),
            }
            .claims(mint::new_cti().map_err(EntryError::Mint)?, Some(index));
            let m =
                mint::sign(&claims, &signing_key, &policy.id, &slot).map_err(EntryError::Mint)?;
            let leaf = crate::audit::leaves::token_minted(&m.record, None, now);
            let entry = Entry {
                change: StateChange::SignedToken {
                    token: m.record.clone(),
                    key_name: key.key_name.clone(),
                    fresh_since,
                    nonce: NonceUse {
                        at: now,
                        ..nonce_use.clone()
                    },
                },
                leaves: vec![leaf],
            };
            Ok((entry, m))
        })
        .await
        .map_err(DecisionError::from)?;
    Ok(SignedToken {
        minted,
        appraised_at,
    })
}
