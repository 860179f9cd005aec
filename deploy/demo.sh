#!/usr/bin/env bash
# README command 1: Writ end to end on one machine, with a software TPM
# (swtpm) and the embedded SQLite store.
#
#   1. installs the system packages (swtpm, tpm2-tools, libtss2-dev, ...)
#   2. builds writ-broker and writ-attester
#   3. manufactures a software TPM and starts it
#   4. drafts a policy from this TPM's PCRs and a sample workload, starts the broker
#   5. enrolls the host (EK certificate + credential activation) and attests
#   6. runs the sample workload through `writ-attester run` (allowed)
#   7. extends PCR 16 and runs it again (refused, with the reason)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=${WRIT_DEMO_DIR:-$ROOT/.writ-demo}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing system packages"
bash deploy/install-deps.sh

say "Building writ-broker and writ-attester"
cargo build --locked --bins -p broker -p attester
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug

rm -rf "$DEMO"
mkdir -p "$DEMO"/{xdg,tpm,broker,attester}
free_port() { # a free loopback port P whose P+1 is free too (swtpm TCTI convention)
  for p in $(shuf -i 20000-60000 -n 200); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$((p+1))) 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

say "Manufacturing a software TPM (swtpm) with EK certificates from a local CA"
export XDG_CONFIG_HOME="$DEMO/xdg"
ROOTFLAG=(); [ "$(id -u)" -eq 0 ] && ROOTFLAG=(root)
swtpm_setup --create-config-files "${ROOTFLAG[@]}" >/dev/null
swtpm_setup --tpm2 --tpmstate "$DEMO/tpm" --create-ek-cert --create-platform-cert --overwrite >/dev/null
CA="$XDG_CONFIG_HOME/var/lib/swtpm-localca"
TPM_PORT=$(free_port)
swtpm socket --tpm2 --tpmstate dir="$DEMO/tpm" \
  --server type=tcp,port="$TPM_PORT",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((TPM_PORT+1)),bindaddr=127.0.0.1 \
  --flags not-need-init,startup-clear &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$TPM_PORT") 2>/dev/null && break; sleep 0.1; done
export WRIT_TCTI="swtpm:host=127.0.0.1,port=$TPM_PORT"
export TSS2_LOG=all+none

# The sample workload: a script that shows it received a token.
cat > "$DEMO/hello.sh" <<'SH'
#!/bin/sh
echo "hello from a workload that holds a Writ token (${#WRIT_TOKEN} base64url chars)"
SH
chmod +x "$DEMO/hello.sh"

say "Drafting the policy from this TPM's PCRs 0-7 and 16 (golden-host reference values)"
"$BIN/writ-attester" --state-dir "$DEMO/attester" reference --id demo-1 --pcrs 0-7,16 \
  --workload "hello=$DEMO/hello.sh" > "$DEMO/broker/policy.toml"
cat "$DEMO/broker/policy.toml"

BROKER_PORT=$(free_port)
cat > "$DEMO/broker/broker.toml" <<TOML
[server]
listen = "127.0.0.1:$BROKER_PORT"
[storage]
url = "sqlite://$DEMO/broker/writ.db"
[keys]
dir = "$DEMO/broker/keys"
[policy]
file = "$DEMO/broker/policy.toml"
[trust]
bundled_manufacturers = true
ek_roots = ["$CA/swtpm-localca-rootca-cert.pem", "$CA/issuercert.pem"]
TOML

say "Starting writ-broker on 127.0.0.1:$BROKER_PORT (SQLite: $DEMO/broker/writ.db)"
WRIT_LOG=warn "$BIN/writ-broker" serve --config "$DEMO/broker/broker.toml" 2> "$DEMO/broker/broker.log" &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$BROKER_PORT") 2>/dev/null && break; sleep 0.1; done
export WRIT_BROKER="http://127.0.0.1:$BROKER_PORT"
A=("$BIN/writ-attester" --state-dir "$DEMO/attester")

say "Enrolling the host (EK certificate chain + credential activation of a new AK)"
"${A[@]}" enroll

say "Attesting (fresh nonce, TPM quote, appraisal against the policy)"
"${A[@]}" attest

say "Running the workload through the gate: expected to RUN"
"${A[@]}" run --workload hello -- "$DEMO/hello.sh"

say "Changing the host's measurements: extending PCR 16"
tpm2_pcrextend -T "$WRIT_TCTI" 16:sha256=5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a

say "Running the same workload again: expected to be REFUSED"
if "${A[@]}" run --workload hello -- "$DEMO/hello.sh"; then
  echo "demo FAILED: the workload ran after the host's measurements changed" >&2
  exit 1
fi

say "The host as the broker sees it"
"${A[@]}" attest || true
echo
echo "Demo complete: the workload ran while the host matched its policy and was refused after PCR 16 changed."
echo "State is in $DEMO (broker log: $DEMO/broker/broker.log)."
