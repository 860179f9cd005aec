//! The in-process ceiling: the broker's necessary work for one token
//! request — quote and 100-event log appraisal, the decision, the token's
//! claims and its ES256 signature — with verifier-lib, as the broker's
//! `decision::appraisal` calls it, on every core, with no HTTP and no
//! database. End-to-end rates are reported as a fraction of it, measured in
//! the same run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use verifier_lib::appraisal::{appraise_tpm_with_logs, LogEvidenceRef, TpmEvidenceRef};
use verifier_lib::crypto::HashAlg;
use verifier_lib::decision::appraisal::Prior;
use verifier_lib::decision::claims::{tpm_submod, ExecutionToken};
use verifier_lib::decision::{decide, Appraised, EvidenceKind, HostStatus, Input, WorkloadRequest};
use verifier_lib::host_clock::ClockState;
use verifier_lib::policy::Policy;
use verifier_lib::token::{self, SigningKey};
use verifier_lib::tpm::PcrValues;

use crate::fleet::{
    policy_toml, quoted_pcrs, token_request_binding, workload_digest, Fleet, WORKLOAD,
};

/// Why the ceiling could not be measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeilingError {
    #[error("ceiling setup: {what}: {reason}")]
    Setup { what: &'static str, reason: String },
    /// A prepared request was not granted: the measured work would not be
    /// the broker's.
    #[error("ceiling: request of host {host} expected a granted token, got {actual}")]
    NotGranted { host: usize, actual: String },
}

/// One prepared token request: what a broker would have after parsing it.
#[derive(Debug)]
struct Prepared {
    host_id: String,
    ak_public: Vec<u8>,
    nonce: Vec<u8>,
    extra_data: Vec<u8>,
    cnf: Vec<u8>,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: PcrValues,
    eventlog: Vec<u8>,
}

/// The ceiling's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CeilingReport {
    pub threads: usize,
    pub seconds: f64,
    pub decisions: u64,
    pub per_sec: f64,
    /// Mean wall time of one decision on one thread.
    pub us_per_decision: f64,
}

/// Prepare one token request per host of `fleet` (at most `max_hosts`).
fn prepare(fleet: &Fleet, max_hosts: usize) -> Result<Vec<Prepared>, CeilingError> {
    let cnf = SigningKey::generate()
        .and_then(|k| k.verifying_key().to_cose_key_bytes())
        .map_err(|e| CeilingError::Setup {
            what: "workload key",
            reason: e.to_string(),
        })?;
    let pcrs = quoted_pcrs(&fleet.log);
    fleet
        .hosts
        .iter()
        .take(max_hosts)
        .map(|h| {
            let host_id = format!("loadgen-ceiling-{}", h.index);
            let nonce = HashAlg::Sha256.digest(host_id.as_bytes());
            let extra_data = token_request_binding(&host_id, &nonce, &cnf);
            let quote = h
                .tpm
                .quote(&extra_data, h.clock(), &fleet.log)
                .map_err(|e| CeilingError::Setup {
                    what: "quote",
                    reason: e.to_string(),
                })?;
            Ok(Prepared {
                host_id,
                ak_public: h.tpm.ak_public.clone(),
                nonce,
                extra_data,
                cnf: cnf.clone(),
                attest: quote.attest,
                signature: quote.signature,
                pcrs: pcrs.clone(),
                eventlog: fleet.log.bytes.clone(),
            })
        })
        .collect()
}

/// Appraise, decide, build the claims and sign the token of `p`; the
/// token's length (so the work cannot be skipped).
fn decide_and_mint(
    p: &Prepared,
    policy: &Policy,
    key: &SigningKey,
    now: i64,
) -> Result<usize, String> {
    let digest = workload_digest();
    let cnf = verifier_lib::token::VerifyingKey::from_cose_key_bytes(&p.cnf)
        .map_err(|e| e.to_string())?;
    let logs = appraise_tpm_with_logs(
        policy,
        &p.host_id,
        &p.ak_public,
        TpmEvidenceRef {
            attest: &p.attest,
            signature: &p.signature,
            pcrs: &p.pcrs,
        },
        &p.extra_data,
        LogEvidenceRef {
            eventlog: Some(&p.eventlog),
            ima: None,
            ima_offset: 0,
        },
        None,
    );
    let appraisal = logs.tpm;
    let evidence_digest = HashAlg::Sha256.digest_parts([
        p.attest.as_slice(),
        p.signature.as_slice(),
        serde_json::to_string(&p.pcrs)
            .unwrap_or_default()
            .as_bytes(),
    ]);
    let clock = appraisal
        .quote
        .as_ref()
        .map(|q| ClockState::from(&q.clock_info));
    let decision = decide(Input {
        host_id: &p.host_id,
        prior: Prior {
            status: Some(HostStatus::Trusted),
            clock: None,
        },
        appraised: Appraised {
            kind: EvidenceKind::Tpm,
            verdict: appraisal.verdict,
            authentic: appraisal.authentic(),
            failures: appraisal.failures.clone(),
            warnings: appraisal.warnings.clone(),
            group: appraisal.group.clone(),
            clock,
            new_boot_log: true,
            evidence_digest,
            endorsement_digest: None,
        },
        request: Some(WorkloadRequest {
            workload: WORKLOAD,
            digest: &digest,
        }),
        policy,
        boot_log_required: false,
        now,
    });
    let grant = match (&decision.token, appraisal.quote.as_ref()) {
        (Some(Ok(grant)), Some(q)) => (grant.clone(), tpm_submod(q)),
        (other, _) => return Err(format!("{other:?}")),
    };
    let cti = token::new_cti(&aws_lc_rs::rand::SystemRandom::new()).map_err(|e| e.to_string())?;
    let claims = ExecutionToken {
        issuer: "writ-broker",
        verifier_id: "writ-loadgen-ceiling",
        host_id: &p.host_id,
        grant: &grant.0,
        policy,
        nonce: &p.nonce,
        workload_digest: &digest,
        cnf: Some(cnf),
        submod: ("tpm", grant.1),
    }
    .claims(cti, Some(decision.leaves.len() as u64));
    let bytes = token::mint(&claims, key).map_err(|e| e.to_string())?;
    Ok(bytes.len())
}

/// Measure the ceiling for `duration` on `threads` threads over token
/// requests of up to 256 hosts of `fleet`.
pub fn measure(
    fleet: &Fleet,
    threads: usize,
    duration: Duration,
    now: i64,
) -> Result<CeilingReport, CeilingError> {
    let prepared = Arc::new(prepare(fleet, 256)?);
    let policy = Arc::new(Policy::parse_toml(&policy_toml(&fleet.log)).map_err(|e| {
        CeilingError::Setup {
            what: "policy",
            reason: e.to_string(),
        }
    })?);
    let key = Arc::new(SigningKey::generate().map_err(|e| CeilingError::Setup {
        what: "token key",
        reason: e.to_string(),
    })?);
    // Every prepared request must be granted, or the work is not the broker's.
    for (host, p) in prepared.iter().enumerate() {
        decide_and_mint(p, &policy, &key, now)
            .map_err(|actual| CeilingError::NotGranted { host, actual })?;
    }
    let threads = threads.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let busy_ns = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (prepared, policy, key, stop, done, busy_ns) = (
                Arc::clone(&prepared),
                Arc::clone(&policy),
                Arc::clone(&key),
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&busy_ns),
            );
            s.spawn(move || {
                let t0 = Instant::now();
                let mut n = 0u64;
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let p = &prepared[i % prepared.len()];
                    if decide_and_mint(p, &policy, &key, now).is_ok() {
                        n += 1;
                    }
                    i += threads;
                }
                done.fetch_add(n, Ordering::Relaxed);
                let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                busy_ns.fetch_add(ns, Ordering::Relaxed);
            });
        }
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
    });
    let seconds = start.elapsed().as_secs_f64();
    let decisions = done.load(Ordering::Relaxed);
    Ok(CeilingReport {
        threads,
        seconds,
        decisions,
        per_sec: decisions as f64 / seconds.max(1e-9),
        us_per_decision: if decisions == 0 {
            0.0
        } else {
            busy_ns.load(Ordering::Relaxed) as f64 / 1000.0 / decisions as f64
        },
    })
}
