#!/usr/bin/env bash
# 10-second smoke run of every fuzz target (cargo-fuzz on stable via RUSTC_BOOTSTRAP).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for t in $(cargo fuzz list --fuzz-dir fuzz); do
  seeds="fuzz/seeds/$t"
  mkdir -p "fuzz/corpus/$t"
  args=("fuzz/corpus/$t")
  [ -d "$seeds" ] && args+=("$seeds")
  echo "fuzz smoke: $t"
  cargo fuzz run --fuzz-dir fuzz "$t" "${args[@]}" -- -max_total_time=10 -rss_limit_mb=2048
done
