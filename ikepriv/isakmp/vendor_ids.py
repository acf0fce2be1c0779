"""Well-known Vendor ID payloads: the ones the negotiator sends and recognises, and the
names ikedump prints.

Most IKEv1 vendor IDs are an MD5 digest of a string, sometimes truncated and followed by
version or capability bytes; a VID matches an entry when it starts with the entry's bytes
(exact entries must match whole). The digests are literal here and checked against their
source strings by the tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")  # RFC 3706 section 7.1, version 1.0
NATT_RFC3947 = hashlib.md5(b"RFC 3947", usedforsecurity=False).digest()
# IKE fragmentation (Cisco/Microsoft): md5("FRAGMENTATION"), then 4 capability bytes, of
# which 0x80000000 means "fragments of Main and Aggressive Mode messages" (racoon's
# VENDORID_FRAG_IDENT; strongSwan sends exactly these 20 bytes). Windows sends the 16 bytes
# alone.
FRAGMENTATION = bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d3")
FRAGMENTATION_IKE = 0x80000000
FRAGMENTATION_VID = FRAGMENTATION + FRAGMENTATION_IKE.to_bytes(4, "big")


def announces_fragmentation(data: bytes) -> bool:
    """A peer's Vendor ID says it reassembles phase 1 fragments: the digest alone, or the
    digest with capability bytes that include FRAGMENTATION_IKE (as strongSwan reads it)."""
    if len(data) == len(FRAGMENTATION):
        return data == FRAGMENTATION
    return (
        len(data) == len(FRAGMENTATION_VID)
        and data.startswith(FRAGMENTATION)
        and bool(int.from_bytes(data[len(FRAGMENTATION) :], "big") & FRAGMENTATION_IKE)
    )


@dataclass(frozen=True, slots=True)
class KnownVendorId:
    prefix: bytes
    name: str
    exact: bool  # the whole VID must equal `prefix`


def _vid(hex_prefix: str, name: str, *, exact: bool = True) -> KnownVendorId:
    return KnownVendorId(bytes.fromhex(hex_prefix), name, exact)


KNOWN_VENDOR_IDS: tuple[KnownVendorId, ...] = (
    _vid("4a131c81070358455c5728f20e95452f", "RFC 3947 NAT-T"),  # md5("RFC 3947")
    _vid("4485152d18b6bbcd0be8a8469579ddcc", "draft-ietf-ipsec-nat-t-ike-00"),
    _vid("16f6ca16e4a4066d83821a0f0aeaa862", "draft-ietf-ipsec-nat-t-ike-01"),
    _vid("cd60464335df21f87cfdb2fc68b6a448", "draft-ietf-ipsec-nat-t-ike-02"),
    _vid("90cb80913ebb696e086381b5ec427b1f", "draft-ietf-ipsec-nat-t-ike-02\\n"),
    _vid("7d9419a65310ca6f2c179d9215529d56", "draft-ietf-ipsec-nat-t-ike-03"),
    # RFC 3706: 14 bytes, then major 1 and minor 0
    _vid("afcad71368a1f1c96b8696fc7757", "DPD (RFC 3706)", exact=False),
    _vid("882fe56d6fd20dbc2251613b2ebe5beb", "strongSwan"),  # md5("strongSwan")
    # md5("draft-ietf-ipsra-isakmp-xauth-06.txt"), first 8 bytes
    _vid("09002689dfd6b712", "XAUTH"),
    # md5("CISCO-UNITY"), first 14 bytes, then major/minor version
    _vid("12f5f28c457168a9702d9fe274cc", "Cisco Unity", exact=False),
    # md5("FRAGMENTATION"), optionally followed by 4 capability bytes
    _vid("4048b7d56ebce88525e7de7f00d6c2d3", "FRAGMENTATION", exact=False),
)


def vendor_id_name(data: bytes) -> str | None:
    """The well-known name of a Vendor ID payload's data, None when unknown."""
    for known in KNOWN_VENDOR_IDS:
        if data == known.prefix or (not known.exact and data.startswith(known.prefix)):
            return known.name
    return None
