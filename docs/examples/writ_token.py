#!/usr/bin/env python3
"""Get a Writ execution token from the attester daemon's socket and verify it
with python-cwt (https://pypi.org/project/cwt/), without any Writ code.

The daemon knows the caller by uid and executable (for a Python program, the
interpreter), so its configuration lists this workload for them. Asked
without a `cnf` key, it binds the token to its prepared key for the workload
and hands back that key (PKCS#8 PEM), the broker key set it trusts
(COSE_KeySet) and the signed status list the token is valid in. This script
verifies the token's signature, issuer, audience and lifetime under that key
set and prints the main claims as JSON.

    python3 writ_token.py --socket /run/writ/attester.sock --workload W
"""

import argparse
import base64
import json
import socket
import sys

import cbor2
import cwt
from cwt import COSEKey

# Token claims (docs/token-profile.md).
ISS, SUB, AUD, EXP, IAT, CTI, CNF = 1, 2, 3, 4, 6, 7, 8
WORKLOAD_DIGEST = -65537
MAX_ANSWER = 1024 * 1024


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ask(path, request, timeout=60):
    """One request line, one answer line (docs/workload-socket.md)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) <= MAX_ANSWER:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    answer = json.loads(answer)
    if "error" in answer:
        err = answer["error"]
        sys.exit(f"daemon refused: {err['code']}: {err['message']}")
    return answer["token"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", default="/run/writ/attester.sock")
    p.add_argument("--workload", required=True)
    p.add_argument("--issuer", default="writ-broker")
    args = p.parse_args()

    t = ask(args.socket, {"op": "token", "workload": args.workload})
    keys = [COSEKey.new(k) for k in cbor2.loads(b64url_decode(t["keys"]))]
    # Signature (ES256, by the key its kid names), exp and nbf.
    claims = cwt.decode(b64url_decode(t["token"]), keys)
    if claims[ISS] != args.issuer:
        sys.exit(f"issuer {claims[ISS]!r}, expected {args.issuer!r}")
    if claims[AUD] != args.workload:
        sys.exit(f"audience {claims[AUD]!r}, expected {args.workload!r}")
    print(
        json.dumps(
            {
                "iss": claims[ISS],
                "sub": claims[SUB],
                "aud": claims[AUD],
                "exp": claims[EXP],
                "cti": claims[CTI].hex(),
                "workload_digest": claims[WORKLOAD_DIGEST].hex(),
                "key_bound": CNF in claims,
                "private_key_pem": "key_pem" in t,
            }
        )
    )


if __name__ == "__main__":
    main()
