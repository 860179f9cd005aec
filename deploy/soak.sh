#!/usr/bin/env bash
# Endurance under steady load (issue #15 step 4; not part of .ci/run):
#
#   HOSTS=1000 INTERVAL=10 RATE=20 SOAK_SECS=1800 bash deploy/soak.sh
#
# One release writ-broker (SQLite, WAL, synchronous=FULL, audit log on,
# default limits; deploy/loadgen-broker.sh) and writ-loadgen `mixed`: HOSTS
# simulated hosts re-attesting every INTERVAL s (jittered) and RATE
# key-bound token requests/s, for SOAK_SECS. Every SAMPLE_SECS it records
# the broker's resident memory (VmRSS) and the database's size (writ.db
# and its WAL) to a CSV, and at the end prints the load generator's report,
# the RSS after the warm-up (WARMUP_SECS) against the RSS at the end, and
# the database's growth per successful exchange. Exits non-zero when the
# load generator saw an error or the RSS grew more than 10 % after the
# warm-up, and verifies the audit log (printing its size in leaves).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
HOSTS=${HOSTS:-1000}
INTERVAL=${INTERVAL:-10}
RATE=${RATE:-20}
SOAK_SECS=${SOAK_SECS:-1800}
WARMUP_SECS=${WARMUP_SECS:-300}
SAMPLE_SECS=${SAMPLE_SECS:-30}
cargo build --release --locked --bins -p broker -p loadgen
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
. deploy/loadgen-broker.sh
loadgen_work_dir
OUT=${SOAK_OUT:-$ROOT/target/soak}
mkdir -p "$OUT"

"$BIN/writ-loadgen" setup --state-dir "$T/loadgen" --hosts "$HOSTS" >/dev/null
start_loadgen_broker "$BIN" "$T"
COMMON=(--broker "$BROKER_URL" --state-dir "$T/loadgen" --hosts "$HOSTS" --broker-pid "$BROKER_PID")
echo "enrolling $HOSTS hosts"
"$BIN/writ-loadgen" enroll "${COMMON[@]}" --concurrency 32 --duration-secs 1200 >/dev/null

size() { stat -c %s "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
echo "seconds,rss_kib,db_bytes" > "$OUT/samples.csv"
(
  t0=$(date +%s)
  while kill -0 "$BROKER_PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
    echo "$(( $(date +%s) - t0 )),$rss,$(size "$T/writ.db" "$T/writ.db-wal")" >> "$OUT/samples.csv"
    sleep "$SAMPLE_SECS"
  done
) &
sampler=$!
echo "soak: $HOSTS hosts every $INTERVAL s and $RATE tokens/s for $SOAK_SECS s (samples in $OUT/samples.csv)"
status=0
"$BIN/writ-loadgen" mixed "${COMMON[@]}" --interval-secs "$INTERVAL" --rate "$RATE" \
  --duration-secs "$SOAK_SECS" --report-json "$OUT/report.json" > "$OUT/report.txt" 2>&1 || status=1
# One last sample after the load.
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$BROKER_PID/status")
echo "end,$rss,$(size "$T/writ.db" "$T/writ.db-wal")" >> "$OUT/samples.csv"
kill "$sampler" 2>/dev/null || true
cat "$OUT/report.txt"
# The log after the soak, read from the database while the broker runs.
if "$BIN/writ-broker" audit verify --db "$T/writ.db" --keys-dir "$T/keys" > "$OUT/verify.json"; then
  python3 -c 'import json,sys; print("audit log verified:", json.load(open(sys.argv[1]))["report"]["tree_size"], "leaves")' "$OUT/verify.json"
else
  cat "$OUT/verify.json" >&2
  echo "FAILED: audit verify after the soak" >&2
  status=1
fi
python3 - "$OUT/samples.csv" "$OUT/report.json" "$WARMUP_SECS" <<'PY' || status=1
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
report = json.load(open(sys.argv[2]))
warmup = int(sys.argv[3])
timed = [r for r in rows if r["seconds"] != "end"]
after = [r for r in timed if int(r["seconds"]) >= warmup] or timed
base = int(after[0]["rss_kib"])
end = int(rows[-1]["rss_kib"])
peak = max(int(r["rss_kib"]) for r in after)
growth = (end - base) / base * 100
ok = sum(o["ok"] for p in report["phases"] for o in p["operations"])
errors = sum(o["errors"] for p in report["phases"] for o in p["operations"])
db0, db1 = int(after[0]["db_bytes"]), int(rows[-1]["db_bytes"])
ok_after = ok * (1 - warmup / max(1, int(timed[-1]["seconds"])))
print(f"exchanges ok {ok}, errors {errors}")
print(f"broker RSS after the {warmup} s warm-up {base} KiB, at the end {end} KiB "
      f"({growth:+.1f} %), peak after warm-up {peak} KiB")
print(f"database {db0} -> {db1} bytes after the warm-up: "
      f"≈ {(db1 - db0) / max(1, ok_after):.0f} bytes per successful exchange")
sys.exit(0 if errors == 0 and growth < 10 else 1)
PY
exit $status
