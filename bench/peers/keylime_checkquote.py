"""Keylime's side of the side-by-side (bench/peers/keylime.sh): the rate of
one thread calling keylime.tpm.tpm_util.checkquote on one tpm2-tools quote.

usage: python keylime_checkquote.py DIR SECONDS
DIR holds akpub.pem, quote.out, quotesig.out, quotepcr.out and vector.json
(its nonce_hex). Prints one line: keylime checks_per_sec=R checks=N seconds=S
"""

import base64
import json
import logging
import pathlib
import sys
import time

logging.disable(logging.CRITICAL)  # keylime warns about its missing config files

from keylime.tpm import tpm_util  # noqa: E402


def main() -> None:
    directory, seconds = pathlib.Path(sys.argv[1]), float(sys.argv[2])
    ak = (directory / "akpub.pem").read_bytes()
    attest = (directory / "quote.out").read_bytes()
    sig = (directory / "quotesig.out").read_bytes()
    pcrs = (directory / "quotepcr.out").read_bytes()
    nonce_hex = json.loads((directory / "vector.json").read_text())["nonce_hex"]
    # checkquote compares the base64-decoded nonce with extraData.
    nonce = base64.b64encode(bytes.fromhex(nonce_hex)).decode()

    def check(signature: bytes) -> None:
        tpm_util.checkquote(ak, nonce, signature, attest, pcrs, "sha256")

    # A flipped signature bit must fail, or the rate means nothing.
    forged = bytearray(sig)
    forged[-1] ^= 1
    try:
        check(bytes(forged))
    except Exception:  # noqa: BLE001 - any refusal will do
        pass
    else:
        sys.exit("keylime accepted a forged signature: the rate would mean nothing")

    for _ in range(200):
        check(sig)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            check(sig)
        n += 100
    secs = time.perf_counter() - start
    print(f"keylime checks_per_sec={n / secs:.0f} checks={n} seconds={secs:.2f}")


if __name__ == "__main__":
    main()
