//! The gate's admission decision, through `GateState::admit` and through the
//! tower layer: every refusal has its code and HTTP status, and a request is
//! admitted only with a valid token for this audience, a fresh unrevoked
//! status and a fresh, unreplayed proof.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use support::{status_list, Clock, Keys, AUDIENCE, ISSUER, T0};
use tower::ServiceExt;
use verifier_lib::pop::PopError;
use verifier_lib::token::{Expectations, TokenError, TokenVerifier, VerifiedToken};
use writ_gate::{GateConfigError, GateDenial, GateLayer, GateState};
use writ_workload::request_headers;

const BODY: &[u8] = br#"{"job":1}"#;

fn list(version: u64, at: i64, revoked: &[u8]) -> verifier_lib::status::StatusList {
    status_list(
        ISSUER,
        version,
        at,
        at + 600,
        revoked.iter().map(|b| [*b; 16]),
    )
}

/// Present `token` with a fresh proof by the holder at `at`.
fn present(
    gate: &GateState,
    keys: &Keys,
    token: &[u8],
    at: i64,
) -> Result<VerifiedToken, GateDenial> {
    let h = request_headers(token, &keys.holder, "POST", "/work", BODY, at).unwrap();
    gate.admit("POST", "/work", Some(&h[0].1), Some(&h[1].1), BODY)
}

#[test]
fn a_gate_that_accepts_any_audience_is_refused() {
    let keys = Keys::new();
    let mut config = keys.config(AUDIENCE, 30);
    config.verifier = TokenVerifier::new(keys.set(), Expectations::any_audience(ISSUER));
    assert_eq!(
        GateState::new(config, Clock::at(T0).now()).unwrap_err(),
        GateConfigError::AnyAudience {
            issuer: ISSUER.into()
        }
    );
}

#[test]
fn admits_a_valid_token_with_fresh_status_and_proof() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    gate.install(list(1, T0, &[9]));
    assert_eq!(gate.status_version(), Some(1));
    let t = present(&gate, &keys, &keys.token(AUDIENCE, 1), T0).unwrap();
    assert_eq!(t.claims.aud, AUDIENCE);
    assert_eq!(t.claims.cti, vec![1; 16]);
}

#[test]
fn a_token_for_another_audience_is_refused_with_both_audiences() {
    let keys = Keys::new();
    let gate = GateState::new(keys.config(AUDIENCE, 30), Clock::at(T0).now()).unwrap();
    gate.install(list(1, T0, &[]));
    let denial = present(&gate, &keys, &keys.token("other", 1), T0).unwrap_err();
    assert_eq!(
        denial,
        GateDenial::TokenInvalid(TokenError::AudienceMismatch {
            expected: AUDIENCE.into(),
            actual: "other".into()
        })
    );
    assert_eq!(denial.code(), "token_wrong_audience");
    assert_eq!(denial.status(), StatusCode::FORBIDDEN);
}

#[test]
fn missing_or_malformed_credentials_are_refused_in_order() {
    let keys = Keys::new();
    let gate = GateState::new(keys.config(AUDIENCE, 30), Clock::at(T0).now()).unwrap();
    gate.install(list(1, T0, &[]));
    let token = keys.token(AUDIENCE, 1);
    let h = request_headers(&token, &keys.holder, "POST", "/work", BODY, T0).unwrap();

    let cases: [(Option<&str>, Option<&str>, &str); 5] = [
        (None, Some(&h[1].1), "token_missing"),
        (Some("Bearer abc"), Some(&h[1].1), "token_missing"),
        (Some("Writ !!!"), Some(&h[1].1), "token_malformed"),
        (Some(&h[0].1), None, "pop_missing"),
        (Some("Writ AAAA"), Some(&h[1].1), "token_invalid"),
    ];
    for (authorization, proof, code) in cases {
        let denial = gate
            .admit("POST", "/work", authorization, proof, BODY)
            .unwrap_err();
        assert_eq!(denial.code(), code, "{authorization:?}: {denial}");
        assert_eq!(denial.status(), StatusCode::UNAUTHORIZED);
    }
    // A proof for another request (body) is refused.
    let denial = gate
        .admit("POST", "/work", Some(&h[0].1), Some(&h[1].1), b"other")
        .unwrap_err();
    assert!(
        matches!(denial, GateDenial::Pop(PopError::Mismatch { .. })),
        "{denial:?}"
    );
}

#[test]
fn a_replayed_proof_is_refused() {
    let keys = Keys::new();
    let gate = GateState::new(keys.config(AUDIENCE, 30), Clock::at(T0).now()).unwrap();
    gate.install(list(1, T0, &[]));
    let token = keys.token(AUDIENCE, 1);
    let h = request_headers(&token, &keys.holder, "POST", "/work", BODY, T0).unwrap();
    gate.admit("POST", "/work", Some(&h[0].1), Some(&h[1].1), BODY)
        .unwrap();
    let denial = gate
        .admit("POST", "/work", Some(&h[0].1), Some(&h[1].1), BODY)
        .unwrap_err();
    assert_eq!(denial, GateDenial::Pop(PopError::Replayed));
    assert_eq!(denial.code(), "pop_replayed");
}

#[test]
fn revocation_and_stale_status_are_refused() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let token = keys.token(AUDIENCE, 7);

    // No list at all.
    let denial = present(&gate, &keys, &token, T0).unwrap_err();
    assert_eq!(
        denial,
        GateDenial::StatusUnavailable {
            max_age_secs: 30,
            age: format!("none for {}", support::LIST_URI)
        }
    );
    assert_eq!(denial.status(), StatusCode::FORBIDDEN);

    // A fresh list admits; once it was signed more than max_status_age_secs
    // ago, not.
    gate.install(list(1, T0, &[]));
    present(&gate, &keys, &token, T0).unwrap();
    clock.advance(31);
    let denial = present(&gate, &keys, &token, clock.get()).unwrap_err();
    assert_eq!(denial.code(), "status_unavailable");
    // Installing the same signed list again (a re-fetch) changes nothing:
    // freshness is its signed issued_at, not when the gate last saw it.
    gate.install(list(1, T0, &[]));
    assert_eq!(gate.status_issued_at(), Some(T0));
    let denial = present(&gate, &keys, &token, clock.get()).unwrap_err();
    assert_eq!(denial.code(), "status_unavailable");
    // The same version re-signed now is fresh again.
    gate.install(list(1, clock.get(), &[]));
    assert_eq!(gate.status_issued_at(), Some(clock.get()));
    present(&gate, &keys, &token, clock.get()).unwrap();
    // An older signature of the held version does not replace it.
    gate.install(list(1, T0, &[]));
    assert_eq!(gate.status_issued_at(), Some(clock.get()));

    // A newer list revokes the token; an older version does not replace it.
    gate.install(list(2, clock.get(), &[7]));
    gate.install(list(1, clock.get(), &[]));
    assert_eq!(gate.status_version(), Some(2));
    let denial = present(&gate, &keys, &token, clock.get()).unwrap_err();
    assert_eq!(
        denial,
        GateDenial::TokenRevoked {
            cti: hex::encode([7u8; 16]),
            uri: support::LIST_URI.into(),
            status: 1,
            version: 2
        }
    );
    // ... and stays refused when the list grows old.
    clock.advance(60);
    let denial = present(&gate, &keys, &token, clock.get()).unwrap_err();
    assert_eq!(denial.code(), "token_revoked");
}

#[test]
fn offline_acceptance_needs_the_token_claim_or_the_configured_audience() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let strict = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let mut offline_claims = keys.claims(AUDIENCE, 2);
    offline_claims.offline_ok = true;
    let offline_token = verifier_lib::token::mint(&offline_claims, &keys.broker).unwrap();
    present(&strict, &keys, &offline_token, T0).unwrap();
    assert_eq!(
        present(&strict, &keys, &keys.token(AUDIENCE, 3), T0)
            .unwrap_err()
            .code(),
        "status_unavailable"
    );

    let mut config = keys.config(AUDIENCE, 30);
    config.allow_offline.insert(AUDIENCE.into());
    let lenient = GateState::new(config, clock.now()).unwrap();
    present(&lenient, &keys, &keys.token(AUDIENCE, 3), T0).unwrap();
}

fn app(gate: std::sync::Arc<GateState>) -> axum::Router {
    axum::Router::new()
        .route(
            "/work",
            axum::routing::post(
                |axum::Extension(t): axum::Extension<VerifiedToken>, body: String| async move {
                    format!("{} {body}", t.claims.aud)
                },
            ),
        )
        .layer(GateLayer::new(gate))
}

async fn send(
    app: axum::Router,
    headers: &[(String, String)],
    body: &[u8],
) -> (StatusCode, String) {
    let mut req = Request::post("/work");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = app
        .oneshot(req.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_layer_passes_admitted_requests_and_answers_refusals_as_json() {
    let keys = Keys::new();
    let gate = GateState::new(keys.config(AUDIENCE, 30), Clock::at(T0).now()).unwrap();
    gate.install(list(1, T0, &[]));
    let token = keys.token(AUDIENCE, 1);

    let h = request_headers(&token, &keys.holder, "POST", "/work", BODY, T0).unwrap();
    let (status, text) = send(app(gate.clone()), &h, BODY).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        text,
        format!("{AUDIENCE} {}", String::from_utf8_lossy(BODY))
    );

    let (status, text) = send(app(gate.clone()), &h[..1], BODY).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "pop_missing");
    assert!(v["error"]["message"].as_str().unwrap().contains("Writ-PoP"));

    let big = vec![b'x'; 2048];
    let h = request_headers(&token, &keys.holder, "POST", "/work", &big, T0).unwrap();
    let (status, text) = send(app(gate), &h, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
}

/// A token whose status claim is missing, names another list or points
/// past the end of its list is refused with a typed code.
#[test]
fn unlisted_or_out_of_range_tokens_are_refused() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    gate.install(list(1, T0, &[]));
    let mut unlisted = keys.claims(AUDIENCE, 4);
    unlisted.status = None;
    let t = verifier_lib::token::mint(&unlisted, &keys.broker).unwrap();
    assert_eq!(
        present(&gate, &keys, &t, T0).unwrap_err().code(),
        "token_unlisted"
    );
    let mut past_end = keys.claims(AUDIENCE, 5);
    past_end.status = Some(verifier_lib::token::StatusRef {
        idx: 256,
        uri: support::LIST_URI.into(),
    });
    let t = verifier_lib::token::mint(&past_end, &keys.broker).unwrap();
    assert_eq!(
        present(&gate, &keys, &t, T0).unwrap_err(),
        GateDenial::TokenStatus(verifier_lib::status::StatusError::IndexOutOfRange {
            idx: 256,
            len: 256
        })
    );
    let mut elsewhere = keys.claims(AUDIENCE, 6);
    elsewhere.status = Some(verifier_lib::token::StatusRef {
        idx: 6,
        uri: "https://other.example/v1/status/lists/1".into(),
    });
    let t = verifier_lib::token::mint(&elsewhere, &keys.broker).unwrap();
    assert_eq!(
        present(&gate, &keys, &t, T0).unwrap_err().code(),
        "status_unavailable"
    );
}
