//! Fuzz entry points for `status` (signed status lists) and `pop` (proofs of
//! possession).

use crate::pop::{self, ReplayCache, ReplayLimits, RequestContext, Window};
use crate::status::{self, ListCheck, StatusList};
use crate::token::{KeySet, StatusRef, VerifiedToken};

use super::token::{token_fuzz_signing_key, TOKEN_FUZZ_ISSUER, TOKEN_FUZZ_NOW};

/// Decode and verify arbitrary bytes as a signed status list (and as a bare
/// payload, with a 1 MiB decompression cap); look an index up in whatever
/// decodes.
pub fn status_list(data: &[u8]) {
    let probe = |l: &StatusList, idx: u64| {
        let r = StatusRef {
            idx,
            uri: l.uri.clone(),
        };
        let _ = l.status_of(Some(&r));
    };
    if let Ok(l) = StatusList::from_cbor_bytes(data, 1 << 20) {
        probe(&l, 0);
        probe(&l, u64::MAX);
    }
    let Some(key) = token_fuzz_signing_key() else {
        return;
    };
    let Ok(keys) = KeySet::new(vec![key.verifying_key()]) else {
        return;
    };
    if let Ok(l) = status::verify(data, &keys, ListCheck::at(TOKEN_FUZZ_NOW, 30)) {
        probe(&l, data.len() as u64);
    }
}

/// Verify arbitrary bytes as a proof of possession for a token bound to the
/// fuzz key.
pub fn pop_proof(data: &[u8]) {
    let Some(key) = token_fuzz_signing_key() else {
        return;
    };
    let token = VerifiedToken {
        claims: crate::token::Claims {
            iss: TOKEN_FUZZ_ISSUER.into(),
            sub: "h".into(),
            aud: "w".into(),
            exp: TOKEN_FUZZ_NOW + 60,
            nbf: TOKEN_FUZZ_NOW,
            iat: TOKEN_FUZZ_NOW,
            cti: vec![0; 16],
            eat_nonce: None,
            eat_profile: crate::token::PROFILE.into(),
            appraisal: crate::token::Appraisal {
                status: crate::token::EarStatus::Affirming,
                trust_vector: Default::default(),
                policy_id: "p".into(),
                verifier_id: "v".into(),
                submods: Default::default(),
            },
            workload_digest: None,
            cnf: Some(key.verifying_key()),
            lineage: None,
            scope: Vec::new(),
            audit_index: None,
            offline_ok: false,
            status: None,
        },
        kid: key.kid(),
        digest: vec![0; 32],
    };
    let ctx = RequestContext {
        method: "POST",
        path: "/",
        body_digest: &[0; 32],
        challenge: None,
    };
    let mut seen = ReplayCache::new(ReplayLimits {
        max_entries: 4,
        max_entries_per_key: 4,
    });
    let _ = pop::verify(
        data,
        &token,
        &ctx,
        TOKEN_FUZZ_NOW,
        Window::default(),
        &mut seen,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entry_points_take_valid_truncated_and_garbage_input() {
        let key = token_fuzz_signing_key().unwrap();
        let mut statuses = status::StatusArray::new(status::Bits::One, 64);
        statuses.set(1, status::INVALID).unwrap();
        let list = StatusList {
            uri: "https://writ.example/v1/status/lists/1".into(),
            version: 1,
            issued_at: TOKEN_FUZZ_NOW,
            expires_at: TOKEN_FUZZ_NOW + 60,
            ttl: Some(10),
            statuses,
        }
        .sign(&key)
        .unwrap();
        let ctx = RequestContext {
            method: "POST",
            path: "/",
            body_digest: &[0; 32],
            challenge: None,
        };
        let proof = pop::create(&key, b"", &ctx, TOKEN_FUZZ_NOW, [1; 16]).unwrap();
        for input in [&list[..], &proof[..], b"", b"\xd2\x84", &[0xffu8; 64][..]] {
            status_list(input);
            pop_proof(input);
            for cut in 0..input.len().min(40) {
                status_list(&input[..cut]);
                pop_proof(&input[..cut]);
            }
        }
    }
}
