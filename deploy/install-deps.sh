#!/usr/bin/env bash
# Installs the system packages Writ needs on Debian 12 (run as root, or with sudo available).
# postgresql-15: the tests start throw-away PostgreSQL servers from its
# programs (pg-harness); a broker itself needs it only for a postgres:// store.
# chromium, chromium-driver and fonts-dejavu-core: the dashboard test
# (attester/tests/ui_chromium.rs) drives a headless Chromium over WebDriver.
# python3-cbor2: an independent decoder of the status lists in verifier-lib's tests.
# help2man: the man pages of the Debian packages (deploy/package-test.sh).
# python3-venv: attester/tests/fastpath.rs runs the workload socket's Python example with
# python-cwt in a virtualenv; curl: the token/proof commands' test.
set -euo pipefail
PKGS=(swtpm swtpm-tools libtss2-dev libtss2-tcti-swtpm0 tpm2-tools pkg-config openssl sqlite3 postgresql-15 ca-certificates chromium chromium-driver fonts-dejavu-core python3 python3-cbor2 help2man python3-venv curl)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y "${missing[@]}"
fi
