"""Credential directories for the interop peers, made from the test PKI (tests/pki.py).

One directory per gateway, in the shapes the three daemons read: ee.pem (our end entity),
cert.pem (end entity then intermediates: ikepriv's `cert`), key.pem (PKCS#8, 0600), ca.pem
(the root), im.pem (the intermediate, when there is one), crl.pem / crl.der (the root's or
the intermediate's CRL, when asked), own.p12 (certificate and key for libreswan's NSS
database) and `kind` ("RSA" or "EC": which signature method the key serves).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pki
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

ROOT_DN = "C=CH, O=ikepriv interop, CN=Interop Root CA"
IM_DN = "C=CH, O=ikepriv interop, CN=Interop Intermediate CA"


def gateway_dn(side: str) -> str:
    return f"C=CH, O=ikepriv interop, CN={side}.interop.example"


@dataclass(frozen=True)
class Pki:
    """Both gateways' directories and identities for one scenario."""

    dirs: dict[str, Path]  # "initiator" / "responder" -> directory
    ids: dict[str, str]  # the same -> the gateway's DN


def make(
    root: Path,
    key_kinds: dict[str, str],
    *,
    intermediate: bool = True,
    revoke: tuple[str, ...] = (),
) -> Pki:
    """A root CA (and an intermediate) issuing both gateways' certificates; `key_kinds`
    maps "initiator"/"responder" to pki.new_key kinds ("rsa2048", "rsa4096", "p256");
    `revoke` lists the sides whose certificate the issuing CA's CRL revokes (both sides
    then get that CRL)."""
    ca = pki.make_ca(ROOT_DN, "rsa2048", slot=10)
    issuer = pki.make_intermediate(ca, IM_DN, "rsa2048", slot=11) if intermediate else ca
    made = {
        side: pki.make_end_entity(
            issuer,
            gateway_dn(side),
            sans=[f"{side}.interop.example"],
            key_kind=kind,
            fresh_key=True,
        )
        for side, kind in key_kinds.items()
    }
    crl = pki.make_crl(issuer, [made[s] for s in revoke]) if revoke else None
    dirs: dict[str, Path] = {}
    for side, ee in made.items():
        d = root / side
        pki.write(d / "ee.pem", ee.pem)
        pki.write(d / "cert.pem", pki.chain_pem(ee, *([issuer] if intermediate else [])))
        pki.write(d / "key.pem", ee.key_pem(), 0o600)
        pki.write(d / "ca.pem", ca.pem)
        if intermediate:
            pki.write(d / "im.pem", issuer.pem)
        if crl is not None:
            pki.write(d / "crl.pem", pki.crl_pem(crl))
            pki.write(d / "crl.der", crl.public_bytes(serialization.Encoding.DER))
        p12 = pkcs12.serialize_key_and_certificates(
            b"own", ee.key, ee.cert, None, serialization.NoEncryption()
        )
        pki.write(d / "own.p12", p12, 0o600)
        pki.write(d / "kind", b"RSA" if isinstance(ee.key, rsa.RSAPrivateKey) else b"EC")
        dirs[side] = d
    return Pki(dirs, {side: gateway_dn(side) for side in made})
