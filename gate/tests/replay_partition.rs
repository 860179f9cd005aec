//! The gate's replay cache is partitioned by the token's `cnf` key, and a
//! proof is recorded only once its token and status passed: one token holder
//! flooding proofs cannot block another's, and a refused request leaves no
//! trace in the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{status_list, Clock, Keys, AUDIENCE, ISSUER, T0};
use verifier_lib::pop::PopError;
use verifier_lib::token::{mint, SigningKey};
use writ_gate::{GateDenial, GateState};
use writ_workload::request_headers;

const BODY: &[u8] = b"{}";

fn list(version: u64, revoked: &[u8]) -> verifier_lib::status::StatusList {
    status_list(
        ISSUER,
        version,
        T0,
        T0 + 600,
        revoked.iter().map(|b| [*b; 16]),
    )
}

/// A token with `cti`, bound to `holder`, signed by the broker of `keys`.
fn token_for(keys: &Keys, holder: &SigningKey, cti: u8) -> Vec<u8> {
    let mut claims = keys.claims(AUDIENCE, cti);
    claims.cnf = Some(holder.verifying_key());
    mint(&claims, &keys.broker).unwrap()
}

fn headers(token: &[u8], holder: &SigningKey, at: i64) -> [(String, String); 2] {
    request_headers(token, holder, "POST", "/job", BODY, at).unwrap()
}

fn admit(gate: &GateState, h: &[(String, String); 2]) -> Result<(), GateDenial> {
    gate.admit("POST", "/job", Some(&h[0].1), Some(&h[1].1), BODY)
        .map(|_| ())
}

#[test]
fn a_flood_from_one_key_does_not_block_another_key() {
    let keys = Keys::new();
    let other = SigningKey::generate().unwrap();
    let mut config = keys.config(AUDIENCE, 30);
    config.replay_capacity_per_key = 3;
    let gate = GateState::new(config, Clock::at(T0).now()).unwrap();
    gate.install(list(1, &[]));

    let flooding = keys.token(AUDIENCE, 1);
    for _ in 0..3 {
        admit(&gate, &headers(&flooding, &keys.holder, T0)).unwrap();
    }
    let denial = admit(&gate, &headers(&flooding, &keys.holder, T0)).unwrap_err();
    assert_eq!(
        denial,
        GateDenial::Pop(PopError::ReplayKeyFull {
            key_entries: 3,
            max: 3
        })
    );
    assert_eq!(denial.code(), "pop_replay_key_full");

    // Another holder's token is admitted, and so are its next proofs.
    let token = token_for(&keys, &other, 2);
    admit(&gate, &headers(&token, &other, T0)).unwrap();
    admit(&gate, &headers(&token, &other, T0)).unwrap();
}

#[test]
fn a_proof_refused_for_its_token_status_is_not_recorded() {
    let keys = Keys::new();
    let mut config = keys.config(AUDIENCE, 30);
    config.replay_capacity_per_key = 1;
    let gate = GateState::new(config, Clock::at(T0).now()).unwrap();
    gate.install(list(1, &[7]));

    let token = keys.token(AUDIENCE, 7);
    let h = headers(&token, &keys.holder, T0);
    // Refused for revocation, again and again: none of these proofs fill the
    // key's one-entry partition, and this one is not remembered.
    for _ in 0..3 {
        let denial = admit(&gate, &headers(&token, &keys.holder, T0)).unwrap_err();
        assert_eq!(denial.code(), "token_revoked");
    }
    assert_eq!(admit(&gate, &h).unwrap_err().code(), "token_revoked");

    // Once a list no longer names the token, the same proof is admitted
    // (it was never recorded), and only once.
    gate.install(list(2, &[]));
    admit(&gate, &h).unwrap();
    assert_eq!(admit(&gate, &h), Err(GateDenial::Pop(PopError::Replayed)));
}
