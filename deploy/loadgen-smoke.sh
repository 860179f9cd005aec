#!/usr/bin/env bash
# CI smoke of the load generator (issue #15 step 6): the real writ-broker
# (debug build, SQLite, audit log on, default limits) on a loopback port,
# and writ-loadgen for about 10 seconds of mixed load against it: 50
# simulated hosts enroll, re-attest every 5 s and ask 10 key-bound
# tokens/s. writ-loadgen exits non-zero unless every exchange succeeded and
# every token verified against the broker's keys. Correctness only: the
# figures of a debug build on a busy CI machine mean nothing (see
# docs/performance.md for measurements).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
cargo build --locked --bins -p broker -p loadgen
. deploy/loadgen-broker.sh
loadgen_work_dir

"$BIN/writ-loadgen" setup --state-dir "$T/loadgen" --hosts 50
start_loadgen_broker "$BIN" "$T"
if ! "$BIN/writ-loadgen" mixed --broker "$BROKER_URL" --state-dir "$T/loadgen" \
  --hosts 50 --duration-secs 10 --interval-secs 5 --rate 10 --broker-pid "$BROKER_PID"; then
  echo "loadgen smoke FAILED; broker log:" >&2
  tail -n 50 "$T/broker.log" >&2
  exit 1
fi
echo "loadgen smoke: every exchange succeeded, every token verified"
