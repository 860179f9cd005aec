//! Fail closed when a component is gone: the TPM disappears under an
//! enrolled host, or the broker's database is held by another process. Each
//! ends in a typed refusal, no token, and the workload never starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use support::{broker_for, fresh_pcrs, stderr, Host, Workload};
use writ_attester::client::ClientError;
use writ_attester::commands::{self, CommandError};
use writ_attester::tpm::AkAlg;

#[test]
fn tpm_gone_after_enrollment_refuses_attest_and_run() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("no-tpm");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let mut host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    assert_eq!(
        commands::attest(&host.settings).unwrap().verdict,
        "affirming"
    );
    let tokens_before = broker.block_on(broker.store.counts()).unwrap().tokens;

    host.swtpm.kill().unwrap();
    let e = commands::attest(&host.settings).unwrap_err();
    assert!(matches!(e, CommandError::Tpm(_)), "{e:?}");
    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!w.ran());
    assert_eq!(
        broker.block_on(broker.store.counts()).unwrap().tokens,
        tokens_before
    );
}

/// Another process holds the broker's SQLite database (an exclusive
/// transaction from the `sqlite3` shell): the broker cannot record a
/// decision, so it answers 500 (`audit_log_failed` or `storage_error`) and
/// mints nothing; once the lock
/// is gone, the same host gets its token.
#[test]
fn database_unavailable_gets_no_token() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("db-held");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let program = commands::resolve_program(w.path.to_str().unwrap()).unwrap();

    let mut holder = Command::new("sqlite3")
        .arg(broker.dir().join("writ.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    stdin
        .write_all(b"BEGIN EXCLUSIVE;\nSELECT 'locked';\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    let e = commands::obtain_token(&host.settings, "hello", &program).unwrap_err();
    // A 500 is a broker failure: retried within the budget, then typed as
    // every broker (here the only one) having failed, with its last answer.
    let last = match &e {
        CommandError::Broker(ClientError::AllBrokersFailed { tried, .. }) if tried.len() == 1 => {
            &*tried[0].error
        }
        other => panic!("expected AllBrokersFailed, got {other:?}"),
    };
    match last {
        ClientError::Refused { code, status, .. } => {
            // The decision's write goes through the audit writer: a store
            // failure there is `audit_log_failed`, elsewhere `storage_error`.
            assert!(
                matches!(code.as_str(), "audit_log_failed" | "storage_error") && *status == 500,
                "{e:?}"
            );
        }
        other => panic!("expected storage_error, got {other:?}"),
    }
    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!w.ran());

    drop(stdin);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().tokens, 0);
    commands::obtain_token(&host.settings, "hello", &program).unwrap();
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().tokens, 1);
}
