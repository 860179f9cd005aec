//! Shared fixtures: a broker key, key-bound tokens, a settable clock.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use verifier_lib::pop::Window;
use verifier_lib::status::{Bits, StatusArray, StatusList, INVALID};
use verifier_lib::token::{
    mint, Appraisal, Claims, EarStatus, Expectations, KeySet, SigningKey, StatusRef, TokenVerifier,
    PROFILE,
};
use writ_gate::{GateConfig, Now};

pub const ISSUER: &str = "writ-broker";
pub const AUDIENCE: &str = "hello";
/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600;

/// The status list every test token points into (index = its cti byte).
pub const LIST_URI: &str = "https://writ.example/v1/status/lists/1";

/// The list at [`LIST_URI`] (`issuer` = [`ISSUER`]; any other names a list
/// of another fleet) where the tokens with the given ctis are revoked.
pub fn status_list(
    issuer: &str,
    version: u64,
    iat: i64,
    exp: i64,
    revoked: impl IntoIterator<Item = [u8; 16]>,
) -> StatusList {
    let mut statuses = StatusArray::new(Bits::One, 256);
    for cti in revoked {
        statuses.set(u64::from(cti[0]), INVALID).unwrap();
    }
    StatusList {
        uri: if issuer == ISSUER {
            LIST_URI.into()
        } else {
            format!("https://{issuer}/v1/status/lists/1")
        },
        version,
        issued_at: iat,
        expires_at: exp,
        ttl: Some(60),
        statuses,
    }
}

/// A clock the test moves.
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn at(t: i64) -> Self {
        Clock(Arc::new(AtomicI64::new(t)))
    }
    pub fn now(&self) -> Now {
        let c = Arc::clone(&self.0);
        Arc::new(move || c.load(Ordering::SeqCst))
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// The broker's signing key and the holder's proof-of-possession key.
pub struct Keys {
    pub broker: SigningKey,
    pub holder: SigningKey,
}

impl Keys {
    pub fn new() -> Self {
        Keys {
            broker: SigningKey::generate().unwrap(),
            holder: SigningKey::generate().unwrap(),
        }
    }

    pub fn set(&self) -> KeySet {
        KeySet::new(vec![self.broker.verifying_key()]).unwrap()
    }

    pub fn claims(&self, aud: &str, cti: u8) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "host-1".into(),
            aud: aud.into(),
            exp: T0 + 300,
            nbf: T0,
            iat: T0,
            cti: vec![cti; 16],
            eat_nonce: None,
            eat_profile: PROFILE.into(),
            appraisal: Appraisal {
                status: EarStatus::Affirming,
                trust_vector: Default::default(),
                policy_id: "gate-1".into(),
                verifier_id: "writ-broker".into(),
                submods: Default::default(),
            },
            workload_digest: None,
            cnf: Some(self.holder.verifying_key()),
            lineage: None,
            scope: Vec::new(),
            audit_index: None,
            offline_ok: false,
            status: Some(StatusRef {
                idx: u64::from(cti),
                uri: LIST_URI.into(),
            }),
        }
    }

    /// A key-bound token for `aud` with a `cti` of sixteen `cti` bytes.
    pub fn token(&self, aud: &str, cti: u8) -> Vec<u8> {
        mint(&self.claims(aud, cti), &self.broker).unwrap()
    }

    pub fn config(&self, aud: &str, max_status_age_secs: i64) -> GateConfig {
        GateConfig {
            verifier: TokenVerifier::new(self.set(), Expectations::new(ISSUER, aud)),
            pop_window: Window::default(),
            max_status_age_secs,
            allow_offline: Default::default(),
            replay_capacity: 100,
            replay_capacity_per_key: 100,
            max_body_bytes: 1024,
        }
    }
}
