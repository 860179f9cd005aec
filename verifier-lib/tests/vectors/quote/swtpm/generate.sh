#!/bin/sh
# Generates TPM 2.0 quote vectors with swtpm 0.7.1 (libtpms) and tpm2-tools 5.4.
# Usage: generate.sh OUTDIR PORT
set -eu
trap 'swtpm_ioctl --tcp 127.0.0.1:$((P+1)) -s 2>/dev/null || true' EXIT
OUT=$1; P=$2
T=$(mktemp -d)
export XDG_CONFIG_HOME=$T/xdg
mkdir -p $T/st $XDG_CONFIG_HOME
swtpm_setup --create-config-files root >/dev/null 2>&1 || true
swtpm_setup --tpm2 --tpmstate $T/st --pcr-banks sha1,sha256,sha384 --overwrite >/dev/null
swtpm socket --tpm2 --server type=tcp,port=$P,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((P+1)),bindaddr=127.0.0.1 \
  --tpmstate dir=$T/st --flags not-need-init,startup-clear --pid file=$T/swtpm.pid --daemon
sleep 0.2
export TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=$P
flush() { tpm2_flushcontext -t >/dev/null; tpm2_flushcontext -s >/dev/null; tpm2_flushcontext -l >/dev/null; }
# Some non-trivial PCR contents.
tpm2_pcrextend 16:sha1=$(printf a | sha1sum | cut -c1-40),sha256=$(printf a | sha256sum | cut -c1-64),sha384=$(printf a | sha384sum | cut -c1-96)
tpm2_pcrextend 4:sha256=$(printf b | sha256sum | cut -c1-64),sha1=$(printf b | sha1sum | cut -c1-40)
flush
tpm2_createek -c $T/ek.ctx -G rsa -u $T/ek.pub >/dev/null; flush
mk() { # name keyalg hash sigalg selection
  d=$OUT/$1; mkdir -p $d
  tpm2_createak -C $T/ek.ctx -c $T/ak.ctx -G $2 -g $3 -s $4 -u $d/ak.pub -n $d/ak.name -f tss >/dev/null; flush
  tpm2_readpublic -c $T/ak.ctx -f pem -o $d/ak.pem >/dev/null; flush
  nonce=$(head -c 32 /dev/urandom | xxd -p -c 64)
  tpm2_quote -c $T/ak.ctx -l $5 -q $nonce -m $d/quote.attest.bin -s $d/quote.sig.tpmt.bin -o $d/pcrs.serialized.bin -F serialized -g $3 --scheme $4 >/dev/null; flush
  if [ $4 = rsapss ]; then # tpm2_checkquote rejects every PSS quote: cross-check the signature with openssl
    tail -c +7 $d/quote.sig.tpmt.bin > $T/sig.raw
    openssl dgst -$3 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 -verify $d/ak.pem -signature $T/sig.raw $d/quote.attest.bin >/dev/null && echo "$1: openssl PSS verify OK" || echo "$1: openssl PSS verify FAILED"
  else
    tpm2_checkquote -u $d/ak.pem -m $d/quote.attest.bin -s $d/quote.sig.tpmt.bin -f $d/pcrs.serialized.bin -g $3 -q $nonce >/dev/null 2>&1 && echo "$1: tpm2_checkquote OK" || echo "$1: tpm2_checkquote FAILED"
  fi
  echo $nonce > $d/nonce.hex
  tpm2_pcrread $5 > $d/pcrread.yaml; flush
  echo "$5" > $d/selection.txt
}
mk ecc-p256-ecdsa-sha256 ecc256 sha256 ecdsa "sha1:0,4,16+sha256:0,4,16,23"
mk ecc-p384-ecdsa-sha384 ecc384 sha384 ecdsa "sha384:0,16+sha256:16"
mk rsa2048-rsapss-sha256 rsa2048 sha256 rsapss "sha256:0,1,2,3,4,5,6,7"
mk rsa3072-rsassa-sha384 rsa3072 sha384 rsassa "sha256:4,16+sha1:16"
swtpm_ioctl --tcp 127.0.0.1:$((P+1)) -s
rm -rf $T
