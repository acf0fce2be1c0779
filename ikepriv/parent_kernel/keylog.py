"""Debug key log for Wireshark (off unless `ikeprivd --keylog FILE`).

FILE receives lines of Wireshark's IKEv1 decryption table (`icookie_hex,Ka_hex`, one per
ISAKMP SA, sent by the child as KeyLog); FILE.esp_sa receives ESP SAs in the esp_sa format
strongSwan's save-keys plugin writes (the parent knows these keys: it installs the SAs).
Anyone who reads these files can decrypt the traffic: the daemon warns loudly at start.

Bounded, since the child can send KeyLog lines at will: each file grows to at most
MAX_BYTES, and IKE lines are taken at most IKE_BURST at once, IKE_RATE per second; the rest
is dropped and counted (`dropped`).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import Final

from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import AuthAlgorithm, EspTransformId, ProtocolId
from ikepriv.parent_kernel.vetting import SaRequest

ESP_SUFFIX: Final = ".esp_sa"
MAX_BYTES: Final = 16 * 1024 * 1024
IKE_BURST: Final = 64.0
IKE_RATE: Final = 4.0  # lines per second; a new ISAKMP SA each is far more than real life

_ENCRYPTION: Final[dict[EspTransformId, str]] = {
    EspTransformId.AES_CBC: "AES-CBC [RFC3602]",
    EspTransformId.TRIPLE_DES: "TripleDES-CBC [RFC2451]",
    EspTransformId.AES_CTR: "AES-CTR [RFC3686]",
    EspTransformId.AES_GCM_8: "AES-GCM [RFC4106]",
    EspTransformId.AES_GCM_12: "AES-GCM [RFC4106]",
    EspTransformId.AES_GCM_16: "AES-GCM [RFC4106]",
}
_INTEGRITY: Final[dict[AuthAlgorithm, str]] = {
    AuthAlgorithm.HMAC_MD5: "HMAC-MD5-96 [RFC2403]",
    AuthAlgorithm.HMAC_SHA: "HMAC-SHA-1-96 [RFC2404]",
    AuthAlgorithm.HMAC_SHA2_256: "HMAC-SHA-256-128 [RFC4868]",
    AuthAlgorithm.HMAC_SHA2_384: "HMAC-SHA-384-192 [RFC4868]",
    AuthAlgorithm.HMAC_SHA2_512: "HMAC-SHA-512-256 [RFC4868]",
}


def _open(path: str) -> int:
    """Open for appending a file that only we can read.

    An existing file is used only if it is a regular file we own with no other name: a file
    another user created (and may still hold open, or chmod back), a hard link to someone
    else's file, a FIFO (which would block the daemon: O_NONBLOCK makes that ENXIO) or a
    symbolic link (O_NOFOLLOW) is refused.
    """
    flags = (os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
             | os.O_NOCTTY | os.O_NONBLOCK)  # fmt: skip
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{path}: not a regular file")
        if st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, f"{path}: owned by uid {st.st_uid}; remove it first")
        if st.st_nlink != 1:
            raise OSError(errno.EPERM, f"{path}: has {st.st_nlink} names (hard links)")
        os.fchmod(fd, 0o600)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ike_line(msg: m.KeyLog) -> str:
    return f"{msg.icookie.hex()},{msg.key.hex()}\n"


def esp_line(sa: SaRequest) -> str | None:
    """One esp_sa line for an ESP SA, None for what Wireshark cannot decrypt (AH)."""
    if sa.proto is not ProtocolId.IPSEC_ESP:
        return None
    family = "IPv6" if sa.dst.version == 6 else "IPv4"
    enc: str | None
    auth: str | None
    if sa.aead is not None:
        enc, enc_key = _ENCRYPTION.get(sa.aead.transform), sa.aead.key + sa.aead.salt
        auth, auth_key = f"ANY {sa.aead.icv_bits} bit authentication [no checking]", b""
    elif sa.encryption is not None and sa.integrity is not None:
        enc, enc_key = _ENCRYPTION.get(sa.encryption.transform), sa.encryption.key
        auth, auth_key = _INTEGRITY.get(sa.integrity.algorithm), sa.integrity.key
    else:
        return None
    if enc is None or auth is None:
        return None
    auth_text = f"0x{auth_key.hex()}" if auth_key else ""
    return (
        f'"{family}","{sa.src}","{sa.dst}","0x{sa.spi:08x}","{enc}","0x{enc_key.hex()}",'
        f'"{auth}","{auth_text}"\n'
    )


class KeyLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._ike = _open(path)
        try:
            self._esp = _open(path + ESP_SUFFIX)
        except BaseException:
            os.close(self._ike)
            raise

        self.dropped = 0
        self._tokens, self._stamp = IKE_BURST, time.monotonic()

    def close(self) -> None:
        os.close(self._ike)
        os.close(self._esp)

    def _write(self, fd: int, line: str) -> bool:
        data = line.encode("ascii")
        if os.fstat(fd).st_size + len(data) > MAX_BYTES:
            self.dropped += 1
            return False
        os.write(fd, data)
        return True

    def ike(self, msg: m.KeyLog) -> bool:
        """Write one IKE line; False if it was dropped (rate or size)."""
        now = time.monotonic()
        self._tokens = min(IKE_BURST, self._tokens + (now - self._stamp) * IKE_RATE)
        self._stamp = now
        if self._tokens < 1:
            self.dropped += 1
            return False
        self._tokens -= 1
        return self._write(self._ike, ike_line(msg))

    def esp(self, sa: SaRequest) -> bool:
        line = esp_line(sa)
        return line is not None and self._write(self._esp, line)
