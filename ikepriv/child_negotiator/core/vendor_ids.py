"""Vendor ID payloads we send and recognise."""

from __future__ import annotations

import hashlib

DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")  # RFC 3706 section 7.1
NATT_RFC3947 = hashlib.md5(b"RFC 3947", usedforsecurity=False).digest()

SENT: tuple[bytes, ...] = (DPD, NATT_RFC3947)
