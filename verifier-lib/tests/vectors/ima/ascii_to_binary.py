#!/usr/bin/env python3
"""Convert an IMA ASCII measurement list to the kernel's binary layout
(binary_runtime_measurements, little-endian), independently of Writ's own
encoder. Supports the ima-ng, ima-sig and ima-buf templates.

Every entry's template data is rebuilt from the ASCII fields and must hash
(SHA-1) to the template hash the kernel listed; violations (all-zero
template hash) are copied as listed. Usage: ascii_to_binary.py ASCII BINARY
"""
import hashlib
import struct
import sys


def field(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def entry(line: str, number: int) -> bytes:
    pcr, thash, tname, rest = line.split(" ", 3)
    thash = bytes.fromhex(thash)
    digest_field, rest = rest.split(" ", 1)
    alg, digest = digest_field.split(":", 1)
    d_ng = field(alg.encode() + b":\0" + bytes.fromhex(digest))
    if tname == "ima-ng":
        data = d_ng + field(rest.encode() + b"\0")
    elif tname in ("ima-sig", "ima-buf"):
        path, extra = rest.rsplit(" ", 1)
        data = d_ng + field(path.encode() + b"\0") + field(bytes.fromhex(extra))
    else:
        sys.exit(f"line {number}: template {tname} not supported")
    if thash != bytes(20) and hashlib.sha1(data).digest() != thash:
        sys.exit(f"line {number}: rebuilt template data does not hash to the listed template hash")
    return struct.pack("<I", int(pcr)) + thash + field(tname.encode()) + field(data)


def main() -> None:
    src, dst = sys.argv[1:3]
    out = bytearray()
    with open(src, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line:
                out += entry(line, number)
    with open(dst, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
