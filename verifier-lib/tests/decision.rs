//! The one pure decision per request: every host-status transition, the
//! clock baseline (reboot, rollback), refused workloads (never failing the
//! host, on TPM and SEV-SNP alike), revoked, stale and unfresh hosts — all
//! without a database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use verifier_lib::appraisal::Verdict;
use verifier_lib::audit::{self, Decision as Leaf};
use verifier_lib::decision::grant::{host_may_derive, signed_request, HostStanding};
use verifier_lib::decision::{
    appraisal::Prior, decide, Appraised, Denial, EvidenceKind, HostStatus, Input, WorkloadRequest,
};
use verifier_lib::host_clock::{ClockState, ClockTransition};
use verifier_lib::policy::{EvidenceStage, Failure, Policy};

const DIGEST: [u8; 32] = [7; 32];
const NOW: i64 = 1_800_000_000;

fn policy() -> Policy {
    let text = format!(
        r#"id = "test"

[[groups]]
name = "default"
hosts = ["*"]
pcr_bank = "sha256"
[groups.pcrs]
16 = ["{zero}"]

[[workloads]]
name = "hello"
digests = ["{digest}"]
lifetime_secs = 240

[tokens]
default_lifetime_secs = 300
max_lifetime_secs = 300
"#,
        zero = "00".repeat(32),
        digest = hex::encode(DIGEST)
    );
    Policy::parse_toml(&text).unwrap()
}

fn clock(reset: u32, restart: u32, clock: u64) -> ClockState {
    ClockState {
        reset_count: reset,
        restart_count: restart,
        clock,
    }
}

fn tpm(verdict: Verdict, authentic: bool, failures: Vec<Failure>) -> Appraised {
    Appraised {
        kind: EvidenceKind::Tpm,
        verdict,
        authentic,
        failures,
        warnings: Vec::new(),
        group: Some("default".into()),
        clock: authentic.then_some(clock(1, 0, 500)),
        new_boot_log: false,
        evidence_digest: vec![1; 32],
        endorsement_digest: None,
    }
}

fn snp(verdict: Verdict, authentic: bool, failures: Vec<Failure>) -> Appraised {
    Appraised {
        kind: EvidenceKind::SevSnp,
        clock: None,
        endorsement_digest: Some(vec![9; 32]),
        ..tpm(verdict, authentic, failures)
    }
}

fn pass() -> Appraised {
    tpm(Verdict::Affirming, true, vec![])
}

fn pcr_failure() -> Failure {
    Failure::PcrMissing {
        bank: verifier_lib::crypto::HashAlg::Sha256,
        pcr: 16,
    }
}

fn fail() -> Appraised {
    tpm(Verdict::Contraindicated, true, vec![pcr_failure()])
}

fn forged() -> Appraised {
    tpm(
        Verdict::Contraindicated,
        false,
        vec![Failure::EvidenceRejected {
            stage: EvidenceStage::Quote,
            reason: "bad signature".into(),
        }],
    )
}

fn prior(status: Option<HostStatus>) -> Prior {
    Prior {
        status,
        clock: status.map(|_| clock(1, 0, 400)),
    }
}

fn run(
    prior: Prior,
    appraised: Appraised,
    request: Option<WorkloadRequest<'_>>,
) -> verifier_lib::decision::Decision {
    let policy = policy();
    decide(Input {
        host_id: "host-a",
        prior,
        appraised,
        request,
        policy: &policy,
        boot_log_required: false,
        now: NOW,
    })
}

fn hello() -> Option<WorkloadRequest<'static>> {
    Some(WorkloadRequest {
        workload: "hello",
        digest: &DIGEST,
    })
}

fn kinds(d: &verifier_lib::decision::Decision) -> Vec<&'static str> {
    d.leaves.iter().map(|l| l.decision.kind()).collect()
}

#[test]
fn status_transitions_follow_genuine_evidence() {
    use HostStatus::*;
    // (prior, evidence, next status, a host_state_changed leaf?)
    let cases = [
        (Enrolled, pass(), Trusted, true),
        (Trusted, pass(), Trusted, false),
        (Failed, pass(), Trusted, true),
        (Stale, pass(), Trusted, true),
        (Enrolled, fail(), Failed, true),
        (Trusted, fail(), Failed, true),
        (Failed, fail(), Failed, false),
        (Stale, fail(), Failed, true),
        // Forged evidence changes no status.
        (Enrolled, forged(), Enrolled, false),
        (Trusted, forged(), Trusted, false),
        (Failed, forged(), Failed, false),
        (Stale, forged(), Stale, false),
        // A revoked host stays revoked whatever the evidence says.
        (Revoked, pass(), Revoked, false),
        (Revoked, fail(), Revoked, false),
        (Revoked, forged(), Revoked, false),
    ];
    for (from, evidence, to, changed) in cases {
        let d = run(prior(Some(from)), evidence, None);
        assert_eq!(d.previous, Some(from));
        assert_eq!(d.status, Some(to), "{from} -> {to}");
        let leaf_kinds = kinds(&d);
        assert_eq!(
            leaf_kinds.contains(&"host_state_changed"),
            changed,
            "{from} -> {to}: {leaf_kinds:?}"
        );
        assert_eq!(leaf_kinds[0], "appraisal");
        assert!(d.token.is_none());
        if changed {
            let Leaf::HostStateChanged { from: f, to: t, .. } = &d.leaves[1].decision else {
                panic!("second leaf is not a state change")
            };
            assert_eq!((f.as_str(), t.as_str()), (from.as_str(), to.as_str()));
        }
    }
}

#[test]
fn affirming_token_request_grants_the_rule_lifetime() {
    let d = run(prior(Some(HostStatus::Trusted)), pass(), hello());
    let grant = d.token.clone().unwrap().unwrap();
    assert_eq!(grant.rule.name, "hello");
    assert_eq!(grant.iat, NOW);
    // The rule's lifetime (within the policy's maximum).
    assert_eq!(grant.exp, NOW + 240);
    assert_eq!(d.verdict, Verdict::Affirming);
    assert!(d.advance_ima_cursor);
    let Leaf::Appraisal { verdict, .. } = &d.leaves[0].decision else {
        panic!("first leaf is not the appraisal")
    };
    assert_eq!(*verdict, audit::Verdict::Pass);
}

#[test]
fn refused_workload_denies_the_token_but_never_fails_the_host() {
    let unknown = Some(WorkloadRequest {
        workload: "nope",
        digest: &DIGEST,
    });
    let wrong_digest = Some(WorkloadRequest {
        workload: "hello",
        digest: &[8; 32],
    });
    for request in [unknown, wrong_digest] {
        for (kind, evidence) in [
            ("tpm", pass()),
            ("snp", snp(Verdict::Affirming, true, vec![])),
        ] {
            for from in [HostStatus::Enrolled, HostStatus::Trusted] {
                let d = run(prior(Some(from)), evidence.clone(), request);
                assert_eq!(d.status, Some(HostStatus::Trusted), "{kind} from {from}");
                assert!(
                    matches!(d.token, Some(Err(Denial::Workload { .. }))),
                    "{kind}: {:?}",
                    d.token
                );
                // The recorded verdict says the request was refused, and why.
                assert_eq!(d.verdict, Verdict::Contraindicated);
                assert!(matches!(
                    d.failures.last(),
                    Some(
                        Failure::WorkloadUnknown { .. } | Failure::WorkloadDigestNotAllowed { .. }
                    )
                ));
                // No IMA progress is stored for a refused request.
                assert!(!d.advance_ima_cursor);
                assert!(!kinds(&d).contains(&"host_state_changed") || from == HostStatus::Enrolled);
            }
        }
    }
}

#[test]
fn failing_or_forged_evidence_grants_nothing() {
    for evidence in [fail(), forged()] {
        let d = run(prior(Some(HostStatus::Trusted)), evidence, hello());
        assert!(matches!(d.token, Some(Err(Denial::Appraisal { .. }))));
    }
    let d = run(prior(Some(HostStatus::Revoked)), pass(), hello());
    assert_eq!(
        d.token,
        Some(Err(Denial::HostRevoked {
            host: "host-a".into()
        }))
    );
    assert!(!d.advance_ima_cursor);
}

#[test]
fn clock_baseline_moves_forward_and_is_in_the_appraisal_leaf() {
    let d = run(prior(Some(HostStatus::Trusted)), pass(), None);
    let update = d.clock.unwrap();
    assert_eq!(update.state, clock(1, 0, 500));
    assert_eq!(update.transition, ClockTransition::SameBoot);
    let Leaf::Appraisal { tpm_clock, .. } = &d.leaves[0].decision else {
        panic!()
    };
    let c = tpm_clock.as_ref().unwrap();
    assert_eq!((c.reset_count, c.clock), (1, 500));
    assert_eq!(c.transition, "same_boot");
    // First appraisal: no baseline yet.
    let d = run(Prior::default_with(HostStatus::Enrolled), pass(), None);
    assert_eq!(d.clock.unwrap().transition, ClockTransition::First);
}

#[test]
fn the_appraisal_leaf_names_the_policy_hash_and_signer() {
    let unsigned = run(prior(Some(HostStatus::Trusted)), pass(), None);
    let Leaf::Appraisal {
        policy_signer,
        policy_hash,
        ..
    } = &unsigned.leaves[0].decision
    else {
        panic!()
    };
    assert_eq!(policy_signer, &None);
    assert_eq!(policy_hash, &policy().hash);
    let mut signed = policy();
    signed.signer = Some("operator-kid".into());
    let d = decide(Input {
        host_id: "host-a",
        prior: prior(Some(HostStatus::Trusted)),
        appraised: fail(),
        request: None,
        policy: &signed,
        boot_log_required: false,
        now: NOW,
    });
    let Leaf::Appraisal { policy_signer, .. } = &d.leaves[0].decision else {
        panic!()
    };
    assert_eq!(policy_signer.as_deref(), Some("operator-kid"));
}

trait WithStatus {
    fn default_with(s: HostStatus) -> Prior;
}
impl WithStatus for Prior {
    fn default_with(s: HostStatus) -> Prior {
        Prior {
            status: Some(s),
            clock: None,
        }
    }
}

#[test]
fn clock_rollback_fails_the_host_and_keeps_the_baseline() {
    let mut evidence = pass();
    evidence.clock = Some(clock(1, 0, 100)); // earlier than the baseline's 400
    let d = run(prior(Some(HostStatus::Trusted)), evidence, hello());
    assert_eq!(d.status, Some(HostStatus::Failed));
    assert!(d.clock.is_none());
    assert!(matches!(
        d.clock_refused,
        Some(Failure::TpmClockRollback {
            previous: 400,
            current: 100,
            ..
        })
    ));
    assert!(matches!(d.token, Some(Err(Denial::Appraisal { .. }))));
    let mut evidence = pass();
    evidence.clock = Some(clock(0, 0, 900)); // reset counter went down
    let d = run(prior(Some(HostStatus::Trusted)), evidence, None);
    assert!(matches!(
        d.clock_refused,
        Some(Failure::TpmCounterRollback { .. })
    ));
    assert_eq!(d.status, Some(HostStatus::Failed));
}

#[test]
fn reboot_needs_a_boot_log_when_required() {
    let policy = policy();
    let rebooted = |new_boot_log| {
        let mut e = pass();
        e.clock = Some(clock(2, 0, 10));
        e.new_boot_log = new_boot_log;
        decide(Input {
            host_id: "host-a",
            prior: prior(Some(HostStatus::Trusted)),
            appraised: e,
            request: None,
            policy: &policy,
            boot_log_required: true,
            now: NOW,
        })
    };
    let d = rebooted(true);
    assert_eq!(d.clock.unwrap().transition, ClockTransition::Rebooted);
    assert_eq!(d.status, Some(HostStatus::Trusted));
    let d = rebooted(false);
    assert!(matches!(
        d.clock_refused,
        Some(Failure::RebootWithoutBootLog { .. })
    ));
    assert_eq!(d.status, Some(HostStatus::Failed));
}

#[test]
fn forged_quote_does_not_touch_the_clock() {
    let mut e = forged();
    e.clock = Some(clock(0, 0, 1)); // would be a rollback if it counted
    let d = run(prior(Some(HostStatus::Trusted)), e, None);
    assert!(d.clock.is_none() && d.clock_refused.is_none());
    assert_eq!(d.status, Some(HostStatus::Trusted));
    // Finding 3: nothing moved, so the broker may coalesce it.
    assert!(!d.evidence_authentic && !d.status_changed() && !d.advance_ima_cursor);
    assert!(run(prior(Some(HostStatus::Trusted)), fail(), None).evidence_authentic);
}

#[test]
fn snp_host_registers_at_its_first_affirming_appraisal_only() {
    let d = run(
        Prior::default(),
        snp(Verdict::Affirming, true, vec![]),
        hello(),
    );
    assert!(d.register);
    assert_eq!(d.status, Some(HostStatus::Trusted));
    assert_eq!(kinds(&d), ["enrollment", "appraisal", "host_state_changed"]);
    assert!(matches!(d.token, Some(Ok(_))));
    let Leaf::Enrollment { ek_cert_digest, .. } = &d.leaves[0].decision else {
        panic!()
    };
    assert_eq!(ek_cert_digest.as_deref(), Some(&[9u8; 32][..]));
    // Failing or forged evidence does not register, and changes nothing.
    for e in [
        snp(Verdict::Contraindicated, true, vec![pcr_failure()]),
        snp(Verdict::Contraindicated, false, vec![]),
    ] {
        let d = run(Prior::default(), e, hello());
        assert!(!d.register);
        assert_eq!(d.status, None);
        assert_eq!(d.status_name(), "unregistered");
        assert_eq!(kinds(&d), ["appraisal"]);
        assert!(matches!(d.token, Some(Err(Denial::Appraisal { .. }))));
    }
    // A registered SNP host fails on genuine failing evidence, like TPM.
    let d = run(
        Prior {
            status: Some(HostStatus::Trusted),
            clock: None,
        },
        snp(Verdict::Contraindicated, true, vec![pcr_failure()]),
        None,
    );
    assert_eq!(d.status, Some(HostStatus::Failed));
}

#[test]
fn signed_requests_need_a_trusted_freshly_appraised_host() {
    let policy = policy();
    let standing = |status, last_pass| HostStanding {
        host_id: "host-a",
        status,
        last_pass,
    };
    let ok = signed_request(
        standing(HostStatus::Trusted, Some(NOW - 60)),
        120,
        &policy,
        hello().unwrap(),
        NOW,
    )
    .unwrap();
    assert_eq!(ok.appraised_at, NOW - 60);
    assert_eq!(ok.fresh_since, NOW - 120);
    assert_eq!(ok.grant.exp, NOW + 240);
    let too_old = signed_request(
        standing(HostStatus::Trusted, Some(NOW - 121)),
        120,
        &policy,
        hello().unwrap(),
        NOW,
    );
    assert_eq!(too_old.unwrap_err().code(), "host_not_fresh");
    // Whatever keeps the host from being trusted, the remedy is a quote.
    for (status, code) in [
        (HostStatus::Failed, "host_not_fresh"),
        (HostStatus::Stale, "host_not_fresh"),
        (HostStatus::Enrolled, "host_not_fresh"),
        (HostStatus::Revoked, "host_revoked"),
    ] {
        let e = signed_request(
            standing(status, Some(NOW)),
            120,
            &policy,
            hello().unwrap(),
            NOW,
        );
        assert_eq!(e.unwrap_err().code(), code);
    }
    // Disabled (max age 0): never fresh.
    let e = signed_request(
        standing(HostStatus::Trusted, Some(NOW)),
        0,
        &policy,
        hello().unwrap(),
        NOW,
    );
    assert_eq!(e.unwrap_err().code(), "host_not_fresh");
    let e = signed_request(
        standing(HostStatus::Trusted, Some(NOW)),
        120,
        &policy,
        WorkloadRequest {
            workload: "nope",
            digest: &DIGEST,
        },
        NOW,
    );
    assert!(matches!(e, Err(Denial::Workload { .. })));
}

#[test]
fn derived_tokens_need_a_host_that_is_not_stale() {
    let standing = |status, last_pass| HostStanding {
        host_id: "host-a",
        status,
        last_pass,
    };
    assert_eq!(
        host_may_derive(standing(HostStatus::Trusted, Some(NOW - 10)), 60, NOW),
        Ok(NOW - 60)
    );
    let e = host_may_derive(standing(HostStatus::Trusted, Some(NOW - 61)), 60, NOW);
    assert_eq!(e.unwrap_err().code(), "host_stale");
    let e = host_may_derive(standing(HostStatus::Revoked, Some(NOW)), 60, NOW);
    assert_eq!(e.unwrap_err().code(), "host_revoked");
}
