#!/usr/bin/env bash
# Writ's quote check side by side with Keylime's, on the same quote, in the
# same run (issue #15 step 5; not part of .ci/run):
#
#   bash bench/peers/keylime.sh [SECONDS_PER_SIDE] [ROUNDS]
#
# Installs Keylime 7.14.3 from PyPI into a virtual environment under
# target/peers/ (once), builds verifier-lib's quote_check_rate example, then
# runs the two in turn, ROUNDS times (default 3), each for SECONDS_PER_SIDE
# (default 3), one thread each, on every quote directory of
# verifier-lib/tests/vectors/quote/keylime-swtpm/ (RSA-2048 RSASSA quotes
# recorded by Keylime's own test suite on swtpm). Both sides do the same
# work per call: parse the AK's PEM and the tpm2-tools PCR file, verify the
# signature, compare the nonce and the PCR digest; both first check that a
# quote with a flipped signature bit is refused. Prints each round's rates,
# the medians and Writ/Keylime.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-3}
rounds=${2:-3}
venv=target/peers/keylime-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import keylime' 2>/dev/null; then
  python3 -m venv "$venv"
  # The wheel does not pull cryptography and pyyaml, which checkquote needs.
  "$venv/bin/pip" install --quiet keylime==7.14.3 cryptography pyyaml
fi
keylime_version=$("$venv/bin/pip" show keylime | sed -n 's/^Version: //p')
cargo build --quiet --release -p verifier-lib --example quote_check_rate
writ=target/release/examples/quote_check_rate

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
rate() { sed -n 's/.*checks_per_sec=\([0-9]*\).*/\1/p'; }

echo "Keylime $keylime_version (Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), cryptography $("$venv/bin/pip" show cryptography | sed -n 's/^Version: //p')) vs Writ, one thread each, ${seconds} s per side, ${rounds} rounds"
for dir in verifier-lib/tests/vectors/quote/keylime-swtpm/*/; do
  k_rates=() w_rates=()
  for round in $(seq "$rounds"); do
    k=$("$venv/bin/python" bench/peers/keylime_checkquote.py "$dir" "$seconds" | rate)
    w=$("$writ" "$dir" "$seconds" | rate)
    echo "  $(basename "$dir") round $round: keylime $k/s, writ $w/s"
    k_rates+=("$k") w_rates+=("$w")
  done
  k_med=$(printf '%s\n' "${k_rates[@]}" | median)
  w_med=$(printf '%s\n' "${w_rates[@]}" | median)
  ratio=$(awk -v w="$w_med" -v k="$k_med" 'BEGIN {printf "%.2f", w / k}')
  echo "$(basename "$dir"): keylime median $k_med checks/s, writ median $w_med checks/s, writ/keylime $ratio"
done
