#!/usr/bin/env bash
# A fuzz campaign for one target: deploy/fuzz-campaign.sh TARGET SECONDS [RUNS]
#
# Runs cargo-fuzz (libFuzzer, on stable via RUSTC_BOOTSTRAP) on TARGET until
# SECONDS have passed or RUNS executions are done (default 10 000 000),
# whichever comes first, growing the kept corpus in fuzz/corpus/TARGET from
# the committed seeds. Prints one summary line:
#   TARGET execs=N seconds=S execs_per_sec=R corpus=C crashes=K
# and exits non-zero if libFuzzer found a crash, leak, timeout or OOM (the
# reproducer is in fuzz/artifacts/TARGET). Not part of .ci/run (CI keeps the
# 10-second smoke run, deploy/fuzz-smoke.sh); `all` runs every target in turn.
#
# The campaign builds without a sanitizer by default (FUZZ_SANITIZER=none):
# the code under test is safe Rust (`unsafe` is forbidden in the workspace),
# whose memory errors ASan would catch, and cargo-fuzz does not instrument
# the C inside aws-lc with ASan either; without it the same coverage-guided
# search runs 2-3 times faster, and panics, failed debug assertions, timeouts
# and memory blow-ups still stop it. FUZZ_SANITIZER=address restores ASan.
# Each sanitizer builds in its own fuzz/target/campaign-* directory, so a
# campaign and the smoke run do not rebuild each other's targets.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: $0 TARGET|all SECONDS [RUNS]" >&2
  exit 2
fi
target=$1
seconds=$2
runs=${3:-10000000}

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1

if [ "$target" = all ]; then
  status=0
  for t in $(cargo fuzz list --fuzz-dir fuzz); do
    "$0" "$t" "$seconds" "$runs" || status=1
  done
  exit $status
fi

logs=target/fuzz-campaign
mkdir -p "$logs" "fuzz/corpus/$target" "fuzz/artifacts/$target"
log="$logs/$target.log"
args=("fuzz/corpus/$target")
[ -d "fuzz/seeds/$target" ] && args+=("fuzz/seeds/$target")
before=$(find "fuzz/artifacts/$target" -type f | wc -l)
start=$(date +%s)
set +e
cargo fuzz run --fuzz-dir fuzz --sanitizer "${FUZZ_SANITIZER:-none}" \
  --target-dir "fuzz/target/campaign-${FUZZ_SANITIZER:-none}" "$target" "${args[@]}" -- \
  -max_total_time="$seconds" -runs="$runs" -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 >"$log" 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
after=$(find "fuzz/artifacts/$target" -type f | wc -l)
crashes=$(( after - before ))
rate=$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))
echo "$target execs=${execs:-0} seconds=$elapsed execs_per_sec=$rate corpus=$corpus crashes=$crashes"
if [ $rc -ne 0 ] || [ $crashes -ne 0 ]; then
  echo "$target: libFuzzer exited $rc; see $log and fuzz/artifacts/$target" >&2
  exit 1
fi
