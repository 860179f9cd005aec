#!/bin/sh
# Generates an RSASSA-SHA1 TPM 2.0 quote (the scheme some firmware and
# Windows hosts still use) with swtpm 0.7.1 (libtpms) and tpm2-tools 5.4,
# and checks it with tpm2_checkquote (an independent verifier).
# Usage: generate.sh OUTDIR PORT
set -eu
trap 'swtpm_ioctl --tcp 127.0.0.1:$((P+1)) -s 2>/dev/null || true' EXIT
OUT=$1; P=$2
T=$(mktemp -d)
export XDG_CONFIG_HOME=$T/xdg
mkdir -p $T/st $XDG_CONFIG_HOME
swtpm_setup --create-config-files root >/dev/null 2>&1 || true
swtpm_setup --tpm2 --tpmstate $T/st --pcr-banks sha1,sha256 --overwrite >/dev/null
swtpm socket --tpm2 --server type=tcp,port=$P,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((P+1)),bindaddr=127.0.0.1 \
  --tpmstate dir=$T/st --flags not-need-init,startup-clear --pid file=$T/swtpm.pid --daemon
sleep 0.2
export TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=$P
flush() { tpm2_flushcontext -t >/dev/null; tpm2_flushcontext -s >/dev/null; tpm2_flushcontext -l >/dev/null; }
tpm2_pcrextend 16:sha1=$(printf a | sha1sum | cut -c1-40),sha256=$(printf a | sha256sum | cut -c1-64)
tpm2_pcrextend 4:sha256=$(printf b | sha256sum | cut -c1-64),sha1=$(printf b | sha1sum | cut -c1-40)
flush
tpm2_createek -c $T/ek.ctx -G rsa -u $T/ek.pub >/dev/null; flush
d=$OUT/rsa2048-rsassa-sha1; mkdir -p $d
sel="sha256:0,4,16+sha1:16"
tpm2_createak -C $T/ek.ctx -c $T/ak.ctx -G rsa2048 -g sha1 -s rsassa -u $d/ak.pub -n $d/ak.name -f tss >/dev/null; flush
tpm2_readpublic -c $T/ak.ctx -f pem -o $d/ak.pem >/dev/null; flush
nonce=$(head -c 32 /dev/urandom | xxd -p -c 64)
# -o without -F: the default (serialized) PCR file, as Keylime uses it.
tpm2_quote -c $T/ak.ctx -l $sel -q $nonce -m $d/quote.attest.bin -s $d/quote.sig.tpmt.bin -o $d/quotepcr.out -g sha1 --scheme rsassa >/dev/null; flush
tpm2_checkquote -u $d/ak.pem -m $d/quote.attest.bin -s $d/quote.sig.tpmt.bin -f $d/quotepcr.out -g sha1 -q $nonce >/dev/null 2>&1 \
  && echo "tpm2_checkquote OK" || { echo "tpm2_checkquote FAILED"; exit 1; }
tpm2_pcrread $sel > $d/pcrread.yaml; flush
# vector.json: roles, nonce, selection and the PCR values tpm2_pcrread printed.
python3 - "$d" "$nonce" "$sel" <<'PY'
import json, re, sys
d, nonce, sel = sys.argv[1:]
banks, bank = {}, None
for line in open(f"{d}/pcrread.yaml"):
    m = re.match(r"^\s*(sha\d+):\s*$", line)
    if m:
        bank = m.group(1); banks[bank] = {}; continue
    m = re.match(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$", line)
    if m and bank:
        banks[bank][m.group(1)] = m.group(2).lower()
json.dump({
    "attest": "quote.attest.bin",
    "signature": "quote.sig.tpmt.bin (TPMT_SIGNATURE, RSASSA-SHA1)",
    "ak_public": "ak.pub (TPM2B_PUBLIC) / ak.pem",
    "pcr_file": "quotepcr.out (tpm2_quote -o, serialized)",
    "nonce_hex": nonce,
    "selection": sel,
    "pcr_values_by_bank": banks,
    "expected": {"signature_valid": True, "signature_hash": "sha1", "checked_by": "tpm2_checkquote 5.4"},
    "tpm": "software TPM (swtpm), not hardware",
}, open(f"{d}/vector.json", "w"), indent=2)
PY
swtpm_ioctl --tcp 127.0.0.1:$((P+1)) -s
rm -rf $T
