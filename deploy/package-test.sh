#!/usr/bin/env bash
# The Debian packages, as an administrator uses them (deploy/test.sh runs
# this; it needs root for dpkg and skips otherwise):
#
#   1. builds writ-broker and writ-attester in release mode once, their man
#      pages (help2man), and both .debs with cargo-deb (--no-build)
#   2. installs them with dpkg -i and checks the user, conffiles and units
#      (enabled, not started); systemd-analyze verify and security
#   3. runs the demo flow from the installed files and the /etc/writ layout,
#      each program started with its unit's own command line, user and
#      environment (read from the installed unit files and drop-ins), on
#      swtpm: enrollment that waits for a broker started late, idempotent
#      re-enrollment, exit 75 with no broker, a refused enrollment (exit 1),
#      attestation, the daemon's socket, a gated workload through
#      writ-exec@hello, and its refusal after PCR 16 changes
#   4. purges both packages and checks that nothing is left but the state
#      deployment.md says purge keeps (/var/lib/writ, /var/lib/writ-attester)
#
# There is no running systemd here (no PID 1 to start units): the units'
# commands run as the units would run them, and the boot-time ordering is
# checked by systemd-analyze verify only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "package test: SKIPPED (dpkg -i and the writ user need root)"
  exit 0
fi

say() { printf '\n== package test: %s\n' "$*"; }
fail() { echo "package test FAILED: $*" >&2; exit 1; }
start=$(date +%s)

TGT=${CARGO_TARGET_DIR:-$ROOT/target}
OUT="$TGT/package-test"
MARK=.writ-package-test

# Refuse to touch a real installation: state or packages not left by an
# earlier run of this test.
for d in /var/lib/writ /var/lib/writ-attester; do
  if [ -d "$d" ] && [ ! -e "$d/$MARK" ]; then
    fail "$d exists and was not made by this test; not touching it"
  fi
done
for p in writ-broker writ-attester; do
  if dpkg -s "$p" >/dev/null 2>&1 && [ ! -e /var/lib/writ/$MARK ] && [ ! -e /var/lib/writ-attester/$MARK ]; then
    fail "package $p is installed and was not installed by this test"
  fi
done
dpkg --purge writ-broker writ-attester >/dev/null 2>&1 || true
rm -rf /var/lib/writ /var/lib/writ-attester /run/writ /run/writ-exec-hello

say "building release binaries, man pages and packages"
t0=$(date +%s)
if ! command -v cargo-deb >/dev/null; then
  cargo install --locked cargo-deb
fi
t1=$(date +%s)
cargo build --release --locked -p broker -p attester
t2=$(date +%s)
mkdir -p "$TGT/release/man"
help2man --no-info --version-string="$(awk -F'"' '/^version =/ {print $2; exit}' Cargo.toml)" \
  --name "Writ attestation broker" "$TGT/release/writ-broker" | gzip -9n > "$TGT/release/man/writ-broker.1.gz"
help2man --no-info --version-string="$(awk -F'"' '/^version =/ {print $2; exit}' Cargo.toml)" \
  --name "Writ host attester and workload gate" "$TGT/release/writ-attester" | gzip -9n > "$TGT/release/man/writ-attester.1.gz"
help2man --no-info --version-string="$(awk -F'"' '/^version =/ {print $2; exit}' Cargo.toml)" \
  --name "start a program with a token from the Writ attester daemon" "$TGT/release/writ-run" | gzip -9n > "$TGT/release/man/writ-run.1.gz"
rm -rf "$OUT"
mkdir -p "$OUT/debs"
cargo deb --no-build --locked -p broker -o "$OUT/debs/"
cargo deb --no-build --locked -p attester -o "$OUT/debs/"
t3=$(date +%s)
echo "cargo-deb install $((t1 - t0)) s, release build $((t2 - t1)) s, packaging $((t3 - t2)) s"
BROKER_DEB=$(ls "$OUT"/debs/writ-broker_*.deb)
ATTESTER_DEB=$(ls "$OUT"/debs/writ-attester_*.deb)
dpkg-deb --info "$BROKER_DEB" | sed -n '/Package:/,/Description:/p'

say "installing with dpkg -i"
dpkg -i "$BROKER_DEB" "$ATTESTER_DEB"
touch /var/lib/writ/$MARK /var/lib/writ-attester/$MARK
getent passwd writ >/dev/null || fail "no system user writ"
for f in /etc/writ/broker.toml /etc/writ/attester.toml; do
  dpkg-query -W -f='${Conffiles}\n' writ-broker writ-attester | grep -q " $f " || fail "$f is not a conffile"
done
[ "$(stat -c '%U:%G %a' /etc/writ/broker.toml)" = "root:writ 640" ] || fail "broker.toml is $(stat -c '%U:%G %a' /etc/writ/broker.toml)"
[ "$(stat -c '%U %a' /var/lib/writ)" = "writ 700" ] || fail "/var/lib/writ is $(stat -c '%U %a' /var/lib/writ)"
for u in writ-broker.service writ-attester-enroll.service writ-attester.service; do
  [ -L "/etc/systemd/system/multi-user.target.wants/$u" ] || fail "$u is not enabled"
done
for b in writ-broker writ-attester writ-run; do
  zcat "/usr/share/man/man1/$b.1.gz" | grep -q "^\.TH \"\?${b^^}" || fail "man page of $b"
done
for b in writ-broker writ-attester; do
  [ -f "/usr/share/doc/$b/LICENSE-APACHE" ] && [ -f "/usr/share/doc/$b/LICENSE-MIT" ] || fail "licence files of $b"
done

# --- running a unit's command as systemd would -------------------------
# unit_value UNIT KEY: every KEY= value of the installed unit (template for
# instances) and its drop-ins in /etc/systemd/system, in order.
unit_value() {
  local unit=$1 key=$2 template=${1/@*./@.}
  local files=("/lib/systemd/system/$template") f
  for f in "/etc/systemd/system/$template.d"/*.conf "/etc/systemd/system/$unit.d"/*.conf; do
    [ -f "$f" ] && files+=("$f")
  done
  { grep -h "^$key=" "${files[@]}" || true; } | sed "s/^$key=//"
}

# unit_run UNIT [VAR=VALUE...]: the unit's ExecStart with its Environment=,
# EnvironmentFile=, User=, UMask= and specifiers (%i, %t) in a clean environment;
# VAR=VALUE pairs override, as a drop-in would. A subshell that becomes
# the unit's program (exec), so its pid is the program's.
unit_run() (
  local unit=$1; shift
  local instance="" user cmd word var
  [[ $unit == *@*.service ]] && { instance=${unit#*@}; instance=${instance%.service}; }
  local -a env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
  while IFS= read -r line; do
    line=${line#\"}; line=${line%\"}
    line=${line//%i/$instance}
    env+=("${line//%t//run}")
  done < <(unit_value "$unit" Environment)
  while IFS= read -r file; do
    file=${file#-}
    while IFS= read -r line; do
      [[ -z $line || $line == \#* ]] && continue
      env+=("$line")
    done < "$file"
  done < <(unit_value "$unit" EnvironmentFile)
  env+=("$@")
  user=$(unit_value "$unit" User | tail -1)
  cmd=$(unit_value "$unit" ExecStart | tail -1)
  cmd=${cmd//%i/$instance}
  cmd=${cmd//%t//run}
  for d in $(unit_value "$unit" RuntimeDirectory); do
    d=${d//%i/$instance}
    install -d -m "$(unit_value "$unit" RuntimeDirectoryMode | tail -1)" "/run/$d"
  done
  local mask
  mask=$(unit_value "$unit" UMask | tail -1)
  [ -n "$mask" ] && umask "$mask"
  local -a argv=()
  for word in $cmd; do
    if [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
      var=${BASH_REMATCH[1]}
      for e in "${env[@]}"; do [[ $e == "$var="* ]] && value=${e#*=}; done
      # shellcheck disable=SC2206
      argv+=(${value:-})
    else
      argv+=("$word")
    fi
  done
  if [ -n "$user" ]; then
    cd "$(unit_value "$unit" WorkingDirectory | tail -1)"
    exec env -i "${env[@]}" setpriv --reuid="$user" --regid="$user" --init-groups -- "${argv[@]}"
  fi
  exec env -i "${env[@]}" "${argv[@]}"
)

say "systemd-analyze verify (installed units, writ-exec@hello with its drop-in)"
cat > "$OUT/hello.sh" <<'SH'
#!/bin/sh
echo "hello from a gated workload (${#WRIT_TOKEN} base64url chars of token)"
SH
install -m 0755 "$OUT/hello.sh" /usr/local/bin/writ-hello
mkdir -p /etc/systemd/system/writ-exec@hello.service.d
# The one line an administrator adds (systemctl edit writ-exec@hello).
printf '[Service]\nEnvironment="WRIT_EXEC=/usr/local/bin/writ-hello"\n' \
  > /etc/systemd/system/writ-exec@hello.service.d/exec.conf
systemd-analyze verify writ-broker.service writ-attester-enroll.service \
  writ-attester.service writ-exec@hello.service

say "systemd-analyze security --offline=true"
for u in writ-broker.service writ-attester-enroll.service writ-attester.service writ-exec@hello.service; do
  level=$(systemd-analyze security --offline=true "$u" 2>/dev/null | awk '/Overall exposure level/ {print $7}')
  echo "$u: exposure $level"
  [ -n "$level" ] || fail "no exposure level for $u"
  if [ "$u" = writ-broker.service ] && awk -v l="$level" 'BEGIN {exit !(l > 2.0)}'; then
    fail "writ-broker.service exposure $level > 2.0"
  fi
done

say "a software TPM (swtpm) for the demo flow"
PIDS=()
# A unit started in the background runs in a subshell of its own: $! names
# that subshell, not the program it exec'd. Stop the installed programs by
# their path too, so none outlives the test (a daemon left serving
# /run/writ/attester.sock would answer every later `writ-attester run` on
# the machine).
stop_installed() { # stop_installed PATTERN: signal, then wait for them to go
  pkill -f "$1" 2>/dev/null || true
  for _ in $(seq 50); do pgrep -f "$1" >/dev/null || return 0; sleep 0.1; done
  pkill -9 -f "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_installed '^/usr/bin/writ-(broker|attester) '
  wait 2>/dev/null || true
  rm -rf /run/writ /run/writ-exec-hello
}
trap cleanup EXIT
free_port() { # a free loopback port P whose P+1 is free too (swtpm TCTI convention)
  for p in $(shuf -i 20000-60000 -n 200); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$((p+1))) 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}
start_swtpm() { # start_swtpm DIR: a manufactured TPM with its own local CA; prints its port
  local dir=$1 port
  mkdir -p "$dir/xdg" "$dir/state"
  XDG_CONFIG_HOME="$dir/xdg" swtpm_setup --create-config-files root >/dev/null
  XDG_CONFIG_HOME="$dir/xdg" swtpm_setup --tpm2 --tpmstate "$dir/state" --create-ek-cert --create-platform-cert --overwrite >/dev/null
  port=$(free_port)
  swtpm socket --tpm2 --tpmstate dir="$dir/state" \
    --server type=tcp,port="$port",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((port+1)),bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear --daemon --pid file="$dir/swtpm.pid"
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  echo "$port"
}
TPM_PORT=$(start_swtpm "$OUT/tpm")
PIDS+=("$(cat "$OUT/tpm/swtpm.pid")")
TCTI="swtpm:host=127.0.0.1,port=$TPM_PORT"
export TSS2_LOG=all+none

say "configuring as deployment.md says: EK roots, policy, attester.env, an operator token"
# This TPM's manufacturer is swtpm's local CA.
cp "$OUT/tpm/xdg/var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem" "$OUT/tpm/xdg/var/lib/swtpm-localca/issuercert.pem" /etc/writ/ek-roots/
BROKER_PORT=$(free_port)
WRIT_TCTI=$TCTI /usr/bin/writ-attester reference --id site-1 --pcrs 0-7,16 \
  --workload hello=/usr/local/bin/writ-hello > /etc/writ/policy.toml
chmod 0644 /etc/writ/policy.toml
sed -i "s|^listen = .*|listen = \"127.0.0.1:$BROKER_PORT\"|" /etc/writ/broker.toml
/usr/bin/writ-broker operator-token --name ci 2> "$OUT/operator-token" >> /etc/writ/broker.toml
OPERATOR_TOKEN=$(tail -1 "$OUT/operator-token")
cat > /etc/writ/attester.env <<ENV
WRIT_BROKER=http://127.0.0.1:$BROKER_PORT
WRIT_TCTI=$TCTI
ENV

say "writ-attester-enroll: waits for a broker that starts late"
unit_run writ-attester-enroll.service > "$OUT/enroll.out" 2> "$OUT/enroll.err" &
ENROLL=$!
sleep 3
unit_run writ-broker.service 2> "$OUT/broker.log" &
PIDS+=($!)
wait "$ENROLL" || { cat "$OUT/enroll.err" "$OUT/broker.log" >&2; fail "enrollment did not succeed once the broker started"; }
grep -q '"status": "enrolled"' "$OUT/enroll.out" || fail "enroll printed $(cat "$OUT/enroll.out")"
grep -q "trying the next broker" "$OUT/enroll.err" || fail "enroll did not retry: $(cat "$OUT/enroll.err")"
HOST_ID=$(sed -n 's/.*"host_id": "\(.*\)".*/\1/p' "$OUT/enroll.out")
[ "$(stat -c '%U %a' /var/lib/writ/keys/token-key.pem)" = "writ 600" ] || fail "token key is $(stat -c '%U %a' /var/lib/writ/keys/token-key.pem)"
[ "$(stat -c '%U %a' /var/lib/writ/writ.db)" = "writ 600" ] || fail "writ.db is $(stat -c '%U %a' /var/lib/writ/writ.db) (UMask=0077)"
echo "enrolled as $HOST_ID after $(grep -c 'trying the next broker' "$OUT/enroll.err") failed attempt(s)"

say "writ-attester-enroll again: already enrolled, nothing sent"
before=$(sha256sum /var/lib/writ-attester/attester.json)
unit_run writ-attester-enroll.service > "$OUT/enroll2.out"
grep -q '"status": "already_enrolled"' "$OUT/enroll2.out" || fail "second enroll printed $(cat "$OUT/enroll2.out")"
[ "$before" = "$(sha256sum /var/lib/writ-attester/attester.json)" ] || fail "second enroll changed the state"

say "writ-attester-enroll with no broker answering: exit 75 (the unit restarts on it)"
rc=0
unit_run writ-attester-enroll.service WRIT_BROKER=http://127.0.0.1:$(free_port) \
  WRIT_STATE_DIR="$OUT/unreachable-state" WRIT_RETRY_BUDGET_MS=500 2> "$OUT/enroll75.err" >/dev/null || rc=$?
[ "$rc" = 75 ] || fail "expected exit 75, got $rc: $(cat "$OUT/enroll75.err")"

say "writ-attester-enroll refused (a TPM from an unknown manufacturer): exit 1 with the reason"
OTHER_PORT=$(start_swtpm "$OUT/other-tpm")
PIDS+=("$(cat "$OUT/other-tpm/swtpm.pid")")
rc=0
unit_run writ-attester-enroll.service WRIT_TCTI="swtpm:host=127.0.0.1,port=$OTHER_PORT" \
  WRIT_STATE_DIR="$OUT/refused-state" 2> "$OUT/refused.err" >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "expected exit 1, got $rc: $(cat "$OUT/refused.err")"
grep -q "enroll failed: ek_cert_untrusted" "$OUT/refused.err" || fail "no reason: $(cat "$OUT/refused.err")"
cat "$OUT/refused.err"

say "attest with the installed attester and /etc/writ/attester.env"
set -a; . /etc/writ/attester.env; set +a
/usr/bin/writ-attester attest | tee "$OUT/attest.out"
grep -q '"verdict": "affirming"' "$OUT/attest.out" || fail "attestation not affirming"

say "writ-exec@hello: the gated workload runs"
unit_run writ-exec@hello.service > "$OUT/hello.out" 2> "$OUT/hello.err" || { cat "$OUT/hello.err" >&2; fail "writ-exec@hello did not run"; }
cat "$OUT/hello.out"
grep -q "hello from a gated workload" "$OUT/hello.out" || fail "workload output: $(cat "$OUT/hello.out")"

say "writ-attester.service: the daemon serves its socket and re-attests"
last_attested() {
  WRIT_OPERATOR_TOKEN=$OPERATOR_TOKEN /usr/bin/writ-broker hosts show "$HOST_ID" --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_attested_at"])'
}
before=$(last_attested)
# writ-run is a launcher of this daemon (the line governance.md gives).
printf '\n[[launchers]]\nuid = 0\nexe_sha256 = "%s"\n' \
  "$(sha256sum /usr/bin/writ-run | cut -d' ' -f1)" >> /etc/writ/attester.toml
sleep 1.1 # attestation times are in seconds
unit_run writ-attester.service 2> "$OUT/daemon.err" &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 100); do [ -S /run/writ/attester.sock ] && break; sleep 0.1; done
[ -S /run/writ/attester.sock ] || fail "no daemon socket: $(cat "$OUT/daemon.err")"
now=$before
for _ in $(seq 150); do
  now=$(last_attested)
  [ "$now" -gt "$before" ] && break
  sleep 0.2
done
[ "$now" -gt "$before" ] || fail "the daemon did not attest: $(cat "$OUT/daemon.err")"
echo "the daemon attested at $now (the previous attestation: $before)"
say "writ-run: the workload starts with the daemon's token"
/usr/bin/writ-run --workload hello --runtime-dir "$OUT/writ-run" -- /usr/local/bin/writ-hello \
  > "$OUT/fast.out" 2> "$OUT/fast.err" || { cat "$OUT/fast.err" >&2; fail "writ-run did not start the workload"; }
cat "$OUT/fast.err"
grep -q "hello from a gated workload" "$OUT/fast.out" || fail "writ-run workload output: $(cat "$OUT/fast.out")"
grep -q "via daemon" "$OUT/fast.err" || fail "writ-run did not use the daemon"
kill "$DAEMON" 2>/dev/null || true
stop_installed '^/usr/bin/writ-attester daemon'
wait "$DAEMON" 2>/dev/null || true
[ ! -S /run/writ/attester.sock ] || rm -f /run/writ/attester.sock
# swtpm has no resource manager: flush what the killed daemon had loaded.
tpm2_flushcontext -T "$TCTI" -t
tpm2_flushcontext -T "$TCTI" -s

say "changing the host's measurements (PCR 16): writ-exec@hello is refused"
tpm2_pcrextend -T "$TCTI" 16:sha256=5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a
rc=0
unit_run writ-exec@hello.service > "$OUT/hello2.out" 2> "$OUT/hello2.err" || rc=$?
cat "$OUT/hello2.err"
[ "$rc" = 3 ] || fail "expected exit 3 (refused), got $rc"
grep -q "PCR 16" "$OUT/hello2.err" || fail "refusal without its reason"
[ ! -s "$OUT/hello2.out" ] || fail "the workload ran: $(cat "$OUT/hello2.out")"

cleanup
trap - EXIT
PIDS=()

say "dpkg --purge: nothing left but the state deployment.md says is kept"
dpkg -L writ-broker writ-attester | sort -u > "$OUT/package-files"
dpkg --purge writ-broker writ-attester
rm -rf /etc/systemd/system/writ-exec@hello.service.d /usr/local/bin/writ-hello
left=$( (while IFS= read -r f; do
           [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"
         done < "$OUT/package-files"
         find /etc/writ /etc/systemd/system /lib/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
           -name '*writ*' 2>/dev/null || true) | sort -u)
[ -z "$left" ] || fail "left after purge: $left"
[ -d /var/lib/writ ] && [ -d /var/lib/writ-attester ] || fail "purge removed the state it keeps"
rm -rf /var/lib/writ /var/lib/writ-attester
if pgrep -f '^/usr/bin/writ-(broker|attester) ' >/dev/null; then
  fail "installed programs still running: $(pgrep -af '^/usr/bin/writ-(broker|attester) ')"
fi
echo "package test passed in $(( $(date +%s) - start )) s"
