# Sourced by deploy/loadgen-smoke.sh, loadgen-capacity.sh, crash-loop.sh and soak.sh: start
# the real writ-broker (SQLite in WAL mode with synchronous=FULL, audit log
# on, default [limits]) on a free loopback port, trusting writ-loadgen's
# test EK CA and enforcing its policy.
#
#   loadgen_work_dir                        sets T (a temp dir) and an EXIT trap
#                                           that stops the broker and removes T
#   start_loadgen_broker BIN_DIR WORK_DIR   (WORK_DIR/loadgen from `writ-loadgen setup`)
#   serve_loadgen_broker BIN_DIR WORK_DIR   the same broker again, same port
#                                           (after it was killed)
#
# start_loadgen_broker sets BROKER_PID and BROKER_URL; serve_loadgen_broker
# sets BROKER_PID.
BROKER_PID=
loadgen_work_dir() {
  T=$(mktemp -d)
  trap 'stop_loadgen_broker; rm -rf "$T"' EXIT
}
stop_loadgen_broker() {
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
start_loadgen_broker() {
  local bin=$1 work=$2 port= p
  for p in $(shuf -i 20000-60000 -n 200); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; then port=$p; break; fi
  done
  [ -n "$port" ] || { echo "no free loopback port" >&2; return 1; }
  cat > "$work/broker.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
url = "sqlite://$work/writ.db"
[keys]
dir = "$work/keys"
[policy]
file = "$work/loadgen/policy.toml"
[trust]
bundled_manufacturers = false
ek_roots = ["$work/loadgen/ek-ca.pem"]
TOML
  BROKER_URL="http://127.0.0.1:$port"
  : > "$work/broker.log"
  serve_loadgen_broker "$bin" "$work"
}
# (Re)start the broker of WORK_DIR/broker.toml on BROKER_URL's port, its
# log appended to WORK_DIR/broker.log; sets BROKER_PID.
serve_loadgen_broker() {
  local bin=$1 work=$2 port=${BROKER_URL##*:}
  WRIT_LOG=warn "$bin/writ-broker" serve --config "$work/broker.toml" 2>> "$work/broker.log" &
  BROKER_PID=$!
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "writ-broker did not listen on $BROKER_URL; its log:" >&2
  tail -n 20 "$work/broker.log" >&2
  return 1
}
