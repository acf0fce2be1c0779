"""Seed corpus for fuzz_certificates.py: valid chains (whole, without the intermediate,
with the anchor, reordered) and credential files (PEM and DER), so the fuzzer starts from
inputs that reach path validation, revocation and ID matching.

    .venv/bin/python fuzz/make_cert_corpus.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_certificates import CHAIN, CRL, encode

OUT = Path(__file__).resolve().parent / "corpus" / "certificates"


def main() -> None:
    ee, inter, root = (c.public_bytes(serialization.Encoding.DER) for c in CHAIN)
    pem = [c.public_bytes(serialization.Encoding.PEM) for c in CHAIN]
    crl = CRL.public_bytes(serialization.Encoding.DER)
    fqdn, email = b"\x02gw.example.org", b"\x03a@example.org"
    seeds = {
        "chain": [(0, ee), (0, inter), (0, fqdn)],
        "chain-anchor": [(4, ee), (4, inter), (4, root), (4, email)],
        "leaf-only": [(2, ee)],
        "reordered": [(0, inter), (0, ee)],
        "other-encoding": [(3, ee), (0, inter)],
        "creds-pem": [(1, pem[0] + pem[1]), (3, pem[2]), (5, crl), (1, fqdn)],
        "creds-der": [(1, ee), (3, root), (5, crl)],
        "creds-bad": [(1, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, items in seeds.items():
        data = encode(items)
        (OUT / f"{name}-{hashlib.sha256(data).hexdigest()[:12]}").write_bytes(data)


if __name__ == "__main__":
    main()
