"""Seed corpora for fuzz_isakmp.py and fuzz_decrypt.py, from the strongSwan captures in
tests/data, and the fixed key contexts fuzz_decrypt.py starts from.

    .venv/bin/python fuzz/make_corpus.py      # rewrites fuzz/corpus/{isakmp,decrypt}/

isakmp seeds: every ISAKMP message of both captures as sent, plus each encrypted message
rebuilt in the clear (E flag off, the decrypted payload chain as body), so the fuzzer starts
from real Quick Mode SA, ID and HASH payloads too.

decrypt seeds: one selector byte, then an ISAKMP message. The selector picks the context
(which point of the Main Mode capture the SA is at) and whether the message is sent as is
(ciphertext) or is a plaintext the harness encrypts with the context's IV first; see
fuzz_decrypt.py.
"""

from __future__ import annotations

import copy
import hashlib
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from ikepriv.dump.capture import Datagram, Skip, classify, open_capture
from ikepriv.dump.keys import KeyMaterial
from ikepriv.dump.session import Dumper
from ikepriv.isakmp.constants import HEADER_LENGTH, HeaderFlag
from ikepriv.isakmp.message import decode_message, encode_payload_chain

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CORPUS = Path(__file__).resolve().parent / "corpus"
CAPTURES = ("mm_qm_psk", "am_qm_psk")
PSK = b"lab-ikev1-psk-0123456789"
# The Quick Mode (PFS, MODP-2048) DH shared secret of the Main Mode capture, from the charon
# log (the .keys file holds only the phase 1 secret).
MM_QM_GXY = bytes.fromhex(
    "f681df8916c2e504a12a86d4993d24e45def980b2cacdc083807caecd69f54a62db50259dd7d6bb9"
    "c09bcfe711948f394b04b14a6e2af018a83709f162ad9988b768aa3d37f881603b156fe66c2507e3"
    "9f5b24001d46ac6094631bd32b1617be7cfd48d8af33ad2f029a24852b222749e5698a80ad2b0d0d"
    "c12842d66fd56a0c2ca4b2764868e8d85058a3e8d8eac57b3b931cbd88a87a6cdcf96466da82a712"
    "e27443c95ab7e347a0c408cedbd917aa725efb0f2dff5ad5f9da19da0a2b8d616ba4e5e5f6ea41dd"
    "4902fd33a953072261d84035992aaa97fafa5b4328e51b0795aa8a7979b0f2c086d07bf8530ceff4"
    "09c897438d8f79375b001630a3ce32e3"
)
# Decrypt contexts: the Main Mode capture fed up to (and including) these frames, so the
# next message is expected to be MM5, QM1 (or an Informational), or QM2.
CONTEXT_FRAMES = (4, 6, 7)
PLAINTEXT_FLAG = 0x01


def datagrams(name: str) -> list[Datagram]:
    with (DATA / f"{name}.pcap").open("rb") as handle:
        linktype, frames = open_capture(handle)
        out = []
        for frame in frames:
            item = classify(frame.number, frame.time, frame.data, linktype)
            if not isinstance(item, Skip):
                out.append(item)
        return out


def key_material(name: str, *, with_qm: bool) -> KeyMaterial:
    values = {}
    for line in (DATA / f"{name}.keys").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and " " not in key:
            values[key] = value.strip()
    keys = KeyMaterial(psk=PSK)
    keys.dh_secrets = [(None, bytes.fromhex(values["shared_Diffie_Hellman_secret"]))]
    if with_qm and name == "mm_qm_psk":
        keys.qm_dh_secrets = [(None, MM_QM_GXY)]
    return keys


@dataclass
class Context:
    """A Dumper that has seen the capture up to `after_frame`, and the next datagram."""

    after_frame: int
    dumper: Dumper
    template: Datagram

    def fresh(self) -> Dumper:
        # the trust (certificates, CA store) is immutable and not copyable: shared
        return copy.deepcopy(self.dumper, {id(self.dumper.trust): self.dumper.trust})


def decrypt_contexts() -> list[Context]:
    msgs = datagrams("mm_qm_psk")
    out = []
    for last in CONTEXT_FRAMES:
        dumper = Dumper(key_material("mm_qm_psk", with_qm=True))
        for dg in msgs:
            if dg.frame <= last:
                record = dumper.feed(dg)
                assert not record.problems, record.problems
        out.append(Context(last, dumper, next(d for d in msgs if d.frame == last + 1)))
    return out


def signature_contexts() -> list[Context]:
    """Contexts from signature negotiations between two in-process cores
    (tests/harness/sig_capture.py), made at start-up: their certificates are the test PKI
    of this process, so they are never stale. Main Mode (RSA) fed up to MM4 (next: MM5,
    encrypted, with ID, CERT and SIG_I) and Aggressive Mode (P-256) up to AM1 (next: AM2
    in the clear, with CERT and SIG_R); both dumpers also validate chains (--ca root)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from harness.core_sim import LEFT, RIGHT
    from harness.sig_capture import record_phase1
    from test_core_signatures import AM, MM, WALL, End, _entity, make_sim
    from test_core_signatures import ROOT as CA

    from ikepriv.dump.signed import load_trust
    from ikepriv.ipc.messages import Fragmentation

    trust = load_trust([], [("root", CA.pem)])
    out = []
    for mode, kind, last in ((MM, "rsa2048", 4), (AM, "p256", 1)):
        left, right = End(_entity("left", kind, slot=10)), End(_entity("right", kind, slot=11))
        sim = make_sim(left, right, mode, fragmentation=Fragmentation.NO)
        capture = record_phase1(sim)
        keys = KeyMaterial()
        keys.dh_secrets = list(capture.dh_secrets.items())
        dumper = Dumper(keys, trust)
        msgs = [
            Datagram(n, WALL + n, *((LEFT, 500, RIGHT, 500) if sender == "initiator"
                     else (RIGHT, 500, LEFT, 500)), data, HEADER_LENGTH)
            for n, (sender, data) in enumerate(capture.messages, 1)
        ]  # fmt: skip
        for dg in msgs[:last]:
            record = dumper.feed(dg)
            assert not record.problems, record.problems
        out.append(Context(last, dumper, msgs[last]))
    return out


def signature_seeds(contexts: list[Context], first_index: int) -> dict[str, bytes]:
    """Seeds for the signature contexts (numbered from `first_index`): each next message,
    in plaintext form when it is encrypted, so mutations reach the SIG checks."""
    seeds = {}
    for index, ctx in enumerate(contexts, first_index):
        selector = index << 1
        nxt = ctx.template
        if decode_message(nxt.message).encrypted:
            plain = _decrypt_next(ctx, nxt)
            seeds[f"sig{index}-plain"] = bytes([selector | PLAINTEXT_FLAG]) + plain
        seeds[f"sig{index}-as-sent"] = bytes([selector]) + nxt.message
    return seeds


def cleartext_form(message: bytes, plaintext: bytes) -> bytes:
    """The message with the E flag off and `plaintext` as its body, header length fixed."""
    header = bytearray(message[:HEADER_LENGTH])
    header[19] &= ~HeaderFlag.ENCRYPTION & 0xFF
    struct.pack_into("!I", header, 24, HEADER_LENGTH + len(plaintext))
    return bytes(header) + plaintext


def _write(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()[:12]
    (directory / f"{name}-{digest}").write_bytes(data)


def main() -> int:
    for sub in ("isakmp", "decrypt"):
        for old in (CORPUS / sub).glob("*"):
            old.unlink()
    for name in CAPTURES:
        dumper = Dumper(key_material(name, with_qm=True))
        for dg in datagrams(name):
            record = dumper.feed(dg)
            _write(CORPUS / "isakmp", f"{name}-f{dg.frame}", dg.message)
            if record.decrypted:
                chain = cleartext_form(dg.message, encode_payload_chain(record.payloads))
                _write(CORPUS / "isakmp", f"{name}-f{dg.frame}-clear", chain)
    contexts = decrypt_contexts()
    msgs = {dg.frame: dg for dg in datagrams("mm_qm_psk")}
    for index, ctx in enumerate(contexts):
        nxt = msgs[ctx.after_frame + 1]
        selector = index << 1
        _write(CORPUS / "decrypt", f"ctx{index}-cipher", bytes([selector]) + nxt.message)
        plain = _decrypt_next(ctx, nxt)
        _write(CORPUS / "decrypt", f"ctx{index}-plain", bytes([selector | PLAINTEXT_FLAG]) + plain)
    print(
        f"wrote {len(list((CORPUS / 'isakmp').glob('*')))} isakmp and "
        f"{len(list((CORPUS / 'decrypt').glob('*')))} decrypt seeds"
    )
    return 0


def _decrypt_next(ctx: Context, dg: Datagram) -> bytes:
    """The message `dg` in plaintext form (header with E set, decrypted body with padding)."""
    message = decode_message(dg.message)
    crypto = ctx.fresh().sa_crypto(message.header.icookie)
    assert crypto is not None
    iv = crypto.ivs.iv_for(message.header.message_id)
    return dg.message[:HEADER_LENGTH] + crypto.cipher.decrypt(iv, message.ciphertext)


if __name__ == "__main__":
    sys.exit(main())
