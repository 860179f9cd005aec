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
cargo test --workspace --locked
bash deploy/fuzz-smoke.sh
echo "writ test suite finished in $(( $(date +%s) - start )) s"
