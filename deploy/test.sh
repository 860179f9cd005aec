#!/usr/bin/env bash
# README command 2: the whole test suite. .ci/run calls exactly this.
# Installs system packages, then: fmt check, clippy, all tests (swtpm-backed
# tests start their own swtpm instances), fuzz smoke runs.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash deploy/install-deps.sh
export TSS2_LOG=all+none
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p verifier-lib --all-targets --locked --features fuzzing -- -D warnings
cargo test --workspace --locked
# verifier_lib::fuzzing is feature-gated; its tests run with the feature.
cargo test -p verifier-lib --locked --features fuzzing --lib --test token_fuzz_seeds --test snp_robustness --test ekcert_vectors
bash deploy/fuzz-smoke.sh
echo "writ test suite finished in $(( $(date +%s) - start )) s"
