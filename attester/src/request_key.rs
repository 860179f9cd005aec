//! Token requests signed by the host's request key instead of a quote.
//!
//! `register` has the AK certify the request key (TPM2_Certify over a
//! broker nonce) and registers it with `POST /v1/request-keys`; the broker
//! accepts it only from a trusted host in the boot its last appraisal saw.
//! `obtain_token_signed` then signs a token request with it
//! (`POST /v1/tokens/signed`): one TPM signature, no quote, no logs — the
//! broker accepts it only while the host's last passing appraisal is fresh.
//! Both fail over across the broker list like the quote exchanges (the
//! registration is in the fleet's shared store, so any broker honours it).

use aws_lc_rs::rand::SecureRandom;
use verifier_lib::api::request_key::{
    RequestKeyRegistration, RequestKeyResponse, SignedTokenRequest,
};
use verifier_lib::api::{ChallengeRequest, ChallengeResponse, TokenResponse};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::token::VerifiedToken;

use crate::client::{BrokerClient, BrokerPool};
use crate::commands::{self, CommandError, Settings};
use crate::state::AttesterState;
use crate::tpm::REQUEST_KEY_SECRET_LEN;

/// The secret the request key is derived from, created and saved on first use.
fn secret(s: &Settings, state: &mut AttesterState) -> Result<Vec<u8>, CommandError> {
    let bad = CommandError::RequestKeySecret {
        expected: REQUEST_KEY_SECRET_LEN,
    };
    if let Some(hex_secret) = &state.request_key_secret {
        let bytes = hex::decode(hex_secret).map_err(|_| bad)?;
        return if bytes.len() == REQUEST_KEY_SECRET_LEN {
            Ok(bytes)
        } else {
            Err(CommandError::RequestKeySecret {
                expected: REQUEST_KEY_SECRET_LEN,
            })
        };
    }
    let mut bytes = vec![0u8; REQUEST_KEY_SECRET_LEN];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CommandError::Random)?;
    state.request_key_secret = Some(hex::encode(&bytes));
    state.save(&s.state_dir)?;
    Ok(bytes)
}

/// Have the AK certify the request key and register it with the broker.
pub fn register(s: &Settings) -> Result<RequestKeyResponse, CommandError> {
    let mut state = AttesterState::load(&s.state_dir)?;
    let secret = secret(s, &mut state)?;
    commands::brokers(s)?.run(|broker| register_with(s, broker, &state, &secret))
}

fn register_with(
    s: &Settings,
    broker: &BrokerClient,
    state: &AttesterState,
    secret: &[u8],
) -> Result<RequestKeyResponse, CommandError> {
    let challenge: ChallengeResponse = broker.post(
        "/v1/challenge",
        &ChallengeRequest {
            host_id: state.host_id.clone(),
        },
    )?;
    let mut tpm = commands::open_tpm(s)?;
    let ek = tpm.create_ek(state.ek_alg)?;
    let certified = tpm.certify_request_key(&ek, &state.ak, secret, &challenge.nonce);
    tpm.flush_ek(ek)?;
    let certified = certified?;
    drop(tpm);
    Ok(broker.post(
        "/v1/request-keys",
        &RequestKeyRegistration {
            host_id: state.host_id.clone(),
            nonce: challenge.nonce,
            key_public: certified.key_public,
            attest: certified.attest,
            signature: certified.signature,
        },
    )?)
}

/// A verified execution token for `workload` on a request signed by the
/// registered request key (optionally bound to the `cnf` COSE_Key).
pub fn obtain_token_signed(
    s: &Settings,
    workload: &str,
    workload_digest: &[u8; 32],
    cnf: Option<&[u8]>,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    obtain_token_signed_via(&commands::brokers(s)?, s, workload, workload_digest, cnf)
}

/// Like [`obtain_token_signed`], over an existing broker pool.
pub fn obtain_token_signed_via(
    pool: &BrokerPool,
    s: &Settings,
    workload: &str,
    workload_digest: &[u8; 32],
    cnf: Option<&[u8]>,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    let mut state = AttesterState::load(&s.state_dir)?;
    let secret = secret(s, &mut state)?;
    pool.run(|broker| signed_token_with(s, broker, &state, &secret, workload, workload_digest, cnf))
}

fn signed_token_with(
    s: &Settings,
    broker: &BrokerClient,
    state: &AttesterState,
    secret: &[u8],
    workload: &str,
    workload_digest: &[u8; 32],
    cnf: Option<&[u8]>,
) -> Result<(Vec<u8>, VerifiedToken), CommandError> {
    let keys = crate::pinning::trusted_key_set(broker, &s.state_dir, false)?;
    let challenge: ChallengeResponse = broker.post(
        "/v1/challenge",
        &ChallengeRequest {
            host_id: state.host_id.clone(),
        },
    )?;
    let binding = TokenRequestBinding {
        host_id: &state.host_id,
        workload,
        workload_digest,
        cnf_key: cnf,
    };
    let mut tpm = crate::tpm::Tpm::open(&s.tcti)?;
    let signed = tpm.sign_request(secret, &binding.quote_nonce(&challenge.nonce))?;
    drop(tpm);
    let resp: TokenResponse = broker.post(
        "/v1/tokens/signed",
        &SignedTokenRequest {
            host_id: state.host_id.clone(),
            workload: workload.to_owned(),
            workload_digest: workload_digest.to_vec(),
            cnf: cnf.map(<[u8]>::to_vec),
            nonce: challenge.nonce,
            key_name: signed.key_name,
            signature: signed.signature,
        },
    )?;
    let verified = commands::check_token(
        s,
        keys,
        &resp.token,
        workload,
        workload_digest,
        &state.host_id,
    )?;
    Ok((resp.token, verified))
}
