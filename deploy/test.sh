#!/usr/bin/env bash
# README command 2: the whole test suite. .ci/run calls exactly this.
# Installs system packages, then: fmt check, clippy, all tests (swtpm-backed
# tests start their own swtpm instances), the Python workload example
# (python-cwt in a virtualenv), the load generator's 10-second smoke run,
# fuzz smoke runs, the Kubernetes manifests (deploy/k8s-validate.sh), the
# Debian packages installed and run (deploy/package-test.sh), and the
# dependency check (`cargo deny`, deploy/deny.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash deploy/install-deps.sh
# cargo-deny is built from source when missing (about 6.5 min on 2 cores):
# build it in the background while fmt, clippy and the tests run.
mkdir -p target
bash deploy/deny.sh install >target/cargo-deny-install.log 2>&1 &
deny_install=$!
trap 'kill "$deny_install" 2>/dev/null || true' EXIT
export TSS2_LOG=all+none
# Disk: CI runs on a machine whose disk is shared with whatever else is
# there (one run failed with ENOSPC in the release build). No incremental
# caches (a clean build gains nothing from them and they take gigabytes),
# the free space is printed between stages, and each stage's build output
# that no later stage uses is removed under CI.
export CARGO_INCREMENTAL=0
disk() { echo "disk before $1: $(df -h --output=avail . | tail -1 | tr -d ' ') free"; }
disk "fmt/clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p verifier-lib --all-targets --locked --features fuzzing -- -D warnings
disk "tests"
cargo test --workspace --locked
# verifier_lib::fuzzing is feature-gated; its tests run with the feature.
cargo test -p verifier-lib --locked --features fuzzing --lib --test token_fuzz_seeds --test snp_robustness --test ekcert_vectors
# ~10 s of writ-loadgen against the real broker binary: every exchange must
# succeed and every token verify (deploy/loadgen-smoke.sh).
bash deploy/loadgen-smoke.sh
disk "fuzz smoke"
bash deploy/fuzz-smoke.sh
# The fuzz build (sanitizer-instrumented, one binary per target) is not used
# again; under CI it goes before the release build of the packages.
if [ "${CI:-}" = "true" ]; then rm -rf fuzz/target; fi
disk "k8s validation and packages"
# Kubernetes manifests against the OpenAPI schemas, offline.
bash deploy/k8s-validate.sh
# The Debian packages: release build, cargo-deb, dpkg -i, the demo flow from
# the installed files, dpkg --purge (as root; skipped otherwise).
bash deploy/package-test.sh
if ! wait "$deny_install"; then
  cat target/cargo-deny-install.log >&2
  echo "installing cargo-deny failed" >&2
  exit 1
fi
trap - EXIT
# advisories (offline RustSec snapshot from ../shared), bans, licenses, sources
bash deploy/deny.sh
echo "writ test suite finished in $(( $(date +%s) - start )) s"
