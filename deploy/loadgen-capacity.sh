#!/usr/bin/env bash
# Capacity figures of one writ-broker (release build, SQLite WAL with
# synchronous=FULL, audit log on, default [limits]) with writ-loadgen on the
# same machine: the in-process ceiling, then enrollment, fleet re-attestation
# and key-bound token rates, each with latency percentiles and the broker's
# CPU per decision. Not part of CI (docs/performance.md, "Capacity").
#
#   HOSTS=10000 SECS=60 INTERVAL=60 RATE=2000 bash deploy/loadgen-capacity.sh
#
# A step with failed exchanges prints them by code and the script goes on.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
HOSTS=${HOSTS:-10000}
SECS=${SECS:-60}
INTERVAL=${INTERVAL:-60}
RATE=${RATE:-2000}
CEILING_SECS=${CEILING_SECS:-10}
cargo build --release --locked --bins -p broker -p loadgen
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
. deploy/loadgen-broker.sh
loadgen_work_dir
step() { printf '\n== %s (load average %s)\n' "$1" "$(cut -d' ' -f1-3 /proc/loadavg)"; }

"$BIN/writ-loadgen" setup --state-dir "$T/loadgen" --hosts "$HOSTS"
start_loadgen_broker "$BIN" "$T"
L=("$BIN/writ-loadgen")
COMMON=(--broker "$BROKER_URL" --state-dir "$T/loadgen" --hosts "$HOSTS" --broker-pid "$BROKER_PID")

step "in-process ceiling, ${CEILING_SECS} s"
"${L[@]}" ceiling --state-dir "$T/loadgen" --duration-secs "$CEILING_SECS"
step "enroll $HOSTS hosts, 64 at a time"
"${L[@]}" enroll "${COMMON[@]}" --concurrency 64 --duration-secs 3600 || true
step "fleet: $HOSTS hosts every $INTERVAL s for $SECS s"
"${L[@]}" fleet "${COMMON[@]}" --interval-secs "$INTERVAL" --duration-secs "$SECS" \
  --ceiling-secs "$CEILING_SECS" || true
step "tokens: $RATE/s offered for $SECS s"
"${L[@]}" tokens "${COMMON[@]}" --rate "$RATE" --duration-secs "$SECS" \
  --ceiling-secs "$CEILING_SECS" || true
# Signed requests need an appraisal younger than hosts.signed_request_max_age_secs (120 s).
SIGNED_SECS=$(( SECS < 60 ? SECS : 60 ))
step "signed: $RATE/s offered for $SIGNED_SECS s"
"${L[@]}" signed "${COMMON[@]}" --rate "$RATE" --duration-secs "$SIGNED_SECS" \
  --ceiling-secs "$CEILING_SECS" || true
step "done"
ls -l "$T/writ.db" "$T"/writ.db-wal 2>/dev/null || true
