#!/usr/bin/env bash
# CI smoke of the load generator (issue #15 step 6): the real writ-broker
# (debug build, SQLite, audit log on, default limits) on a loopback port,
# and writ-loadgen for about 10 seconds of mixed load against it: 50
# simulated hosts enroll, re-attest every 2 s and ask 20 key-bound
# tokens/s. writ-loadgen exits non-zero unless every exchange succeeded and
# every token verified against the broker's keys. Correctness only: the
# figures of a debug build on a busy CI machine mean nothing (see
# docs/performance.md for measurements).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
cargo build --locked --bins -p broker -p loadgen
T=$(mktemp -d)
BROKER_PID=
cleanup() {
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

"$BIN/writ-loadgen" setup --state-dir "$T/loadgen" --hosts 50
PORT=
for p in $(shuf -i 20000-60000 -n 200); do
  if ! (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "no free loopback port" >&2; exit 1; }
cat > "$T/broker.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[storage]
url = "sqlite://$T/writ.db"
[keys]
dir = "$T/keys"
[policy]
file = "$T/loadgen/policy.toml"
[trust]
bundled_manufacturers = false
ek_roots = ["$T/loadgen/ek-ca.pem"]
TOML
WRIT_LOG=warn "$BIN/writ-broker" serve --config "$T/broker.toml" 2> "$T/broker.log" &
BROKER_PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
if ! "$BIN/writ-loadgen" mixed --broker "http://127.0.0.1:$PORT" --state-dir "$T/loadgen" \
  --hosts 50 --duration-secs 10 --interval-secs 2 --rate 20 --broker-pid "$BROKER_PID"; then
  echo "loadgen smoke FAILED; broker log:" >&2
  tail -n 50 "$T/broker.log" >&2
  exit 1
fi
echo "loadgen smoke: every exchange succeeded, every token verified"
