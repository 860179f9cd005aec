#!/usr/bin/env bash
# The broker killed with SIGKILL during load, again and again (issue #15
# step 4; not part of .ci/run):
#
#   KILLS=10 HOSTS=200 RATE=100 bash deploy/crash-loop.sh
#
# One release writ-broker (SQLite, WAL, synchronous=FULL, audit log on,
# default limits; deploy/loadgen-broker.sh) and writ-loadgen's simulated
# hosts. HOSTS hosts are enrolled; then KILLS rounds: writ-loadgen `mixed`
# (every host re-attesting every 5 s, RATE key-bound token requests/s) runs
# for ROUND_SECS, the broker is killed with SIGKILL at a random moment
# 1.5-4.5 s into it and restarted at once with the same configuration and
# port. Every token the load generator received and verified is appended
# to one file. After the last round:
#   - a clean `mixed` round of 10 s (every exchange succeeds: the hosts
#     recover without an operator, and no enrollment was lost, or its
#     host's attestations would fail);
#   - `writ-broker audit verify` over the database passes, and every token
#     received has its mint leaf (`--expect-tokens`).
# Prints each round's exchanges and errors by code, and exits non-zero if a
# final check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KILLS=${KILLS:-10}
HOSTS=${HOSTS:-200}
RATE=${RATE:-100}
ROUND_SECS=${ROUND_SECS:-6}
cargo build --release --locked --bins -p broker -p loadgen
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
. deploy/loadgen-broker.sh
loadgen_work_dir

summary() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for p in r["phases"]:
    ok = sum(o["ok"] for o in p["operations"])
    errs = {}
    for o in p["operations"]:
        for code, n in o.get("errors_by_code", {}).items():
            errs[code] = errs.get(code, 0) + n
    print(f"    {p['name']}: {ok} ok, errors {errs or 'none'}, unfinished {p['unfinished']}")
PY
}

"$BIN/writ-loadgen" setup --state-dir "$T/loadgen" --hosts "$HOSTS" >/dev/null
start_loadgen_broker "$BIN" "$T"
COMMON=(--broker "$BROKER_URL" --state-dir "$T/loadgen" --hosts "$HOSTS")
"$BIN/writ-loadgen" enroll "${COMMON[@]}" --concurrency 32 --duration-secs 600 >/dev/null
TOKENS=$T/tokens-received.txt
: > "$TOKENS"
start=$(date +%s)
for round in $(seq "$KILLS"); do
  "$BIN/writ-loadgen" mixed "${COMMON[@]}" --interval-secs 5 --rate "$RATE" \
    --duration-secs "$ROUND_SECS" --tokens-out "$TOKENS" \
    --report-json "$T/round-$round.json" >/dev/null 2>&1 &
  loadgen=$!
  sleep "$(awk -v r="$RANDOM" 'BEGIN {printf "%.2f", 1.5 + 3 * r / 32767}')"
  kill -9 "$BROKER_PID"
  wait "$BROKER_PID" 2>/dev/null || true
  killed_at=$(date +%s.%N)
  serve_loadgen_broker "$BIN" "$T"
  back_at=$(date +%s.%N)
  wait "$loadgen" || true
  echo "round $round: killed, listening again after $(awk -v a="$killed_at" -v b="$back_at" 'BEGIN {printf "%.2f", b - a}') s"
  summary "$T/round-$round.json"
done
echo "$KILLS kills in $(( $(date +%s) - start )) s; $(wc -l < "$TOKENS") tokens received and verified"

status=0
echo "final round: 10 s, every exchange must succeed"
if "$BIN/writ-loadgen" mixed "${COMMON[@]}" --interval-secs 5 --rate "$RATE" \
  --duration-secs 10 --tokens-out "$TOKENS" --report-json "$T/final.json" >/dev/null 2>&1; then
  summary "$T/final.json"
else
  summary "$T/final.json" || true
  echo "FAILED: the final round had errors" >&2
  status=1
fi
kill "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null || true
BROKER_PID=
echo "audit verify --expect-tokens ($(wc -l < "$TOKENS") tokens)"
if "$BIN/writ-broker" audit verify --db "$T/writ.db" --keys-dir "$T/keys" \
  --expect-tokens "$TOKENS" > "$T/verify.json"; then
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("    log of", j["report"]["tree_size"], "leaves verified;", j["expected_tokens"]["found"], "of", j["expected_tokens"]["listed"], "tokens have their leaf")' "$T/verify.json"
else
  cat "$T/verify.json" >&2
  echo "FAILED: audit verify" >&2
  status=1
fi
exit $status
