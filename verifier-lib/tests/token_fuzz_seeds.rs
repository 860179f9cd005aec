//! The `token_decode` fuzz target's seeds and its never-panic property.
//! Seeds named `valid-*` must verify under the fuzz verifier at the fuzz time;
//! every other seed must be rejected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use verifier_lib::fuzzing::{token_decode, token_fuzz_verifier, TOKEN_FUZZ_NOW};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/token_decode");

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(SEEDS)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn seeds_verify_or_fail_as_named() {
    let verifier = token_fuzz_verifier().unwrap();
    let all = seeds();
    assert!(all.iter().any(|(n, _)| n.starts_with("valid-")));
    assert!(all.iter().any(|(n, _)| !n.starts_with("valid-")));
    for (name, bytes) in &all {
        token_decode(bytes);
        let result = verifier.verify(bytes, TOKEN_FUZZ_NOW);
        assert_eq!(
            result.is_ok(),
            name.starts_with("valid-"),
            "{name}: {result:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        token_decode(&data);
    }

    #[test]
    fn mutated_valid_tokens_never_verify(
        seed in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let valid: Vec<_> = seeds().into_iter().filter(|(n, _)| n.starts_with("valid-")).collect();
        let (_, original) = &valid[seed % valid.len()];
        let mut data = original.clone();
        for (at, byte) in edits {
            let i = at % data.len();
            data[i] = byte;
        }
        token_decode(&data);
        if data != *original {
            prop_assert!(token_fuzz_verifier().unwrap().verify(&data, TOKEN_FUZZ_NOW).is_err());
        }
    }
}
