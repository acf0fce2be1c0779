"""Key derivation, IV chaining, decryption and every authentication hash, checked against
real strongSwan 5.9.8 traffic (tests/data/{mm,am}_qm_psk.pcap with the .keys files that the
capture script wrote from charon's key log).

From only the PSK, the cleartext messages and the DH shared secrets, our code must reproduce
charon's SKEYIDs, Ka, initial IV and ESP keys, decrypt every encrypted message, and verify the
HASH_I/HASH_R and Quick Mode HASH(1..3) values strongSwan put on the wire.

The ISAKMP codec is not used: a minimal local walk over the generic payload headers is enough
to find payload bodies, and keeps these tests about crypto only. Both captures use
AES-CBC-128 / SHA2-256 / MODP-2048, ESP AES-CBC-128 + HMAC-SHA2-256, PFS group 14.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

import dpkt
import pytest
from capture_data import DATA, QM_GXY, read_keys

from ikepriv.crypto import oakley
from ikepriv.crypto.ciphers import IkeCipher
from ikepriv.crypto.keymat import derive_sa_keys, esp_layout
from ikepriv.crypto.prf import digests_equal, nat_d_hash
from ikepriv.isakmp.constants import AuthAlgorithm, EspTransformId, IkeEncryption, IkeHash

HASH = IkeHash.SHA2_256
BLOCK = 16

# payload type numbers (literals on purpose: the test must not share tables with the code)
SA, KE, ID, HASH_PL, NONCE, NAT_D = 1, 4, 5, 8, 10, 20
QUICK_MODE = 32
ENCRYPTED = 0x01

# Values charon logged for the Main Mode capture (initiator log), for a second opinion
# beyond "the peer's hash verifies".
MM_LOGGED = {
    "hash_i": "614117fd90595bccbed0925e10c487c6cd3ff1fcf1198098e155dd71f52b275d",
    "hash_r": "0e24a521e12a67fce0902d922da0ba28d2435fdf827421c5349affe5cf90b104",
    "qm_hash1": "4baef1c292ea654786563149f1102ac8a8a7a8f34ffe846e707dda3643e8eafb",
    "qm_hash2": "73c38ac1576867bb3da451df7567d408b17f193dbba0050c52d23114ce7744fd",
    "qm_hash3": "8acf1bff2cc4c6cf7e124ba7ded432727438456c7c80ceeb264cba1e980b423e",
    # next-IV values: after MM5, first QM IV (derived), after QM1, after QM2
    "iv_after_mm5": "4258f0f660702807d2b383d8bdbf810f",
    "iv_after_mm6": "739047dc7273b79c48ac67a311ef461f",
    "qm_iv1": "ef700ba5e616cb8cb12201302931809c",
    "qm_iv2": "c9de1e962b5090b4eca4654906295ed1",
    "qm_iv3": "de4dfec2c4ca12eea0ad06859deaa5f9",
}


@dataclass
class Datagram:
    src: ipaddress.IPv4Address
    sport: int
    dst: ipaddress.IPv4Address
    dport: int
    data: bytes  # ISAKMP message (non-ESP marker removed)

    @property
    def cky_i(self) -> bytes:
        return self.data[0:8]

    @property
    def cky_r(self) -> bytes:
        return self.data[8:16]

    @property
    def next_payload(self) -> int:
        return self.data[16]

    @property
    def exchange(self) -> int:
        return self.data[18]

    @property
    def flags(self) -> int:
        return self.data[19]

    @property
    def message_id(self) -> int:
        return int(struct.unpack_from("!I", self.data, 20)[0])

    @property
    def body(self) -> bytes:
        length = struct.unpack_from("!I", self.data, 24)[0]
        assert length == len(self.data)
        return self.data[28:]


@dataclass
class Payload:
    type: int
    body: bytes  # without generic header
    raw: bytes  # with generic header


@dataclass
class Chain:
    payloads: list[Payload]
    end: int  # offset just past the last payload; the rest is padding
    padding: bytes = field(default=b"")

    def first(self, ptype: int) -> Payload:
        return next(p for p in self.payloads if p.type == ptype)

    def all(self, ptype: int) -> list[Payload]:
        return [p for p in self.payloads if p.type == ptype]


def walk(first: int, data: bytes) -> Chain:
    """Follow the generic payload headers; every length must stay inside ``data``."""
    out: list[Payload] = []
    off, ptype = 0, first
    while ptype != 0:
        assert off + 4 <= len(data), "payload header runs past the data"
        nxt, reserved, length = struct.unpack_from("!BBH", data, off)
        assert reserved == 0
        assert 4 <= length <= len(data) - off, "payload length runs past the data"
        out.append(Payload(ptype, data[off + 4 : off + length], data[off : off + length]))
        off += length
        ptype = nxt
    return Chain(out, off, data[off:])


def read_capture(name: str) -> list[Datagram]:
    out = []
    with (DATA / f"{name}.pcap").open("rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            udp = ip.data
            data = bytes(udp.data)
            if 4500 in (udp.sport, udp.dport):
                if data[:4] != b"\x00\x00\x00\x00":
                    continue  # ESP in UDP
                data = data[4:]
            out.append(
                Datagram(
                    ipaddress.IPv4Address(ip.src),
                    udp.sport,
                    ipaddress.IPv4Address(ip.dst),
                    udp.dport,
                    data,
                )
            )
    return out


@dataclass
class Session:
    """Everything a negotiator would have learnt from the cleartext phase 1 messages."""

    name: str
    aggressive: bool
    msgs: list[Datagram]
    keys: dict[str, str]
    cky_i: bytes
    cky_r: bytes
    sai_b: bytes
    g_xi: bytes
    g_xr: bytes
    ni_b: bytes
    nr_b: bytes

    @property
    def phase1(self) -> oakley.Phase1Keys:
        psk = self.keys["psk"].encode()
        skeyid = oakley.skeyid_psk(HASH, psk, self.ni_b, self.nr_b)
        gxy = bytes.fromhex(self.keys["shared_Diffie_Hellman_secret"])
        return oakley.derive_phase1_keys(HASH, skeyid, gxy, self.cky_i, self.cky_r, 16)


def load(name: str) -> Session:
    msgs = read_capture(name)
    aggressive = msgs[0].exchange == 4
    if aggressive:
        first, second = (
            walk(msgs[0].next_payload, msgs[0].body),
            walk(msgs[1].next_payload, msgs[1].body),
        )
        sai, ke_i, n_i = first.first(SA), first.first(KE), first.first(NONCE)
        ke_r, n_r = second.first(KE), second.first(NONCE)
    else:
        mm1, mm3, mm4 = (walk(m.next_payload, m.body) for m in (msgs[0], msgs[2], msgs[3]))
        sai, ke_i, n_i, ke_r, n_r = (
            mm1.first(SA), mm3.first(KE), mm3.first(NONCE), mm4.first(KE), mm4.first(NONCE),
        )  # fmt: skip
    return Session(
        name, aggressive, msgs, read_keys(name), msgs[1].cky_i, msgs[1].cky_r,
        sai.body, ke_i.body, ke_r.body, n_i.body, n_r.body,
    )  # fmt: skip


CAPTURES = ["mm_qm_psk", "am_qm_psk"]


@pytest.fixture(params=CAPTURES)
def session(request: pytest.FixtureRequest) -> Session:
    return load(request.param)


def test_phase1_keys_and_initial_iv(session: Session) -> None:
    keys = session.phase1
    assert len(session.g_xi) == len(session.g_xr) == 256
    assert len(session.ni_b) == len(session.nr_b) == 32
    skeyid = oakley.skeyid_psk(HASH, session.keys["psk"].encode(), session.ni_b, session.nr_b)
    assert skeyid.hex() == session.keys["SKEYID"]
    assert keys.skeyid_d.hex() == session.keys["SKEYID_d"]
    assert keys.skeyid_a.hex() == session.keys["SKEYID_a"]
    assert keys.skeyid_e.hex() == session.keys["SKEYID_e"]
    assert keys.enc_key.hex() == session.keys["encryption_key_Ka"]
    iv = oakley.phase1_iv(HASH, session.g_xi, session.g_xr, BLOCK)
    assert iv.hex() == session.keys["initial_IV"]


def decrypt_all(session: Session) -> list[tuple[Datagram, Chain]]:
    """Decrypt every encrypted message in order, advancing the IV chain only after the
    plaintext parsed; returns (message, payload chain) for each."""
    keys = session.phase1
    cipher = IkeCipher(IkeEncryption.AES_CBC, keys.enc_key)
    chain = oakley.IvChain.from_public_values(HASH, BLOCK, session.g_xi, session.g_xr)
    out = []
    for msg in session.msgs:
        if not msg.flags & ENCRYPTED:
            continue
        iv = chain.iv_for(msg.message_id)
        plain = cipher.decrypt(iv, msg.body)
        payloads = walk(msg.next_payload, plain)
        # a sane chain: it ends inside the plaintext, leaving at most one block of zero padding
        assert payloads.payloads
        assert len(payloads.padding) <= BLOCK
        assert payloads.padding == bytes(len(payloads.padding))
        chain.advance(msg.message_id, msg.body)
        out.append((msg, payloads))
    return out


def test_phase1_encrypted_messages_authenticate(session: Session) -> None:
    keys = session.phase1
    decrypted = decrypt_all(session)
    phase1 = [(m, c) for m, c in decrypted if m.message_id == 0]
    if session.aggressive:
        # AM2 carries HASH_R in the clear; AM3 (encrypted) carries HASH_I
        am2 = walk(session.msgs[1].next_payload, session.msgs[1].body)
        am1 = walk(session.msgs[0].next_payload, session.msgs[0].body)
        idii_b, idir_b = am1.first(ID).body, am2.first(ID).body
        received_hash_r = am2.first(HASH_PL).body
        assert len(phase1) == 1
        received_hash_i = phase1[0][1].first(HASH_PL).body
        assert [p.type for p in phase1[0][1].payloads] == [HASH_PL, NAT_D, NAT_D]
    else:
        assert len(phase1) == 2
        (_, mm5), (_, mm6) = phase1
        assert [p.type for p in mm5.payloads][:2] == [ID, HASH_PL]
        assert [p.type for p in mm6.payloads] == [ID, HASH_PL]
        idii_b, received_hash_i = mm5.first(ID).body, mm5.first(HASH_PL).body
        idir_b, received_hash_r = mm6.first(ID).body, mm6.first(HASH_PL).body
    # ID_IPV4_ADDR, protocol 0, port 0, the gateway addresses
    assert idii_b == bytes([1, 0, 0, 0]) + ipaddress.IPv4Address("192.0.2.1").packed
    assert idir_b == bytes([1, 0, 0, 0]) + ipaddress.IPv4Address("192.0.2.2").packed

    args = (HASH, keys.skeyid, session.g_xi, session.g_xr, session.cky_i, session.cky_r)
    hash_i = oakley.hash_i(*args, session.sai_b, idii_b)
    hash_r = oakley.hash_r(*args, session.sai_b, idir_b)
    assert digests_equal(hash_i, received_hash_i)
    assert digests_equal(hash_r, received_hash_r)
    assert hash_i != hash_r
    if session.name == "mm_qm_psk":
        assert hash_i.hex() == MM_LOGGED["hash_i"]
        assert hash_r.hex() == MM_LOGGED["hash_r"]
    # a wrong ID must not verify (the hash covers IDii_b)
    other_id = bytes([1, 0, 0, 0]) + ipaddress.IPv4Address("192.0.2.3").packed
    assert not digests_equal(oakley.hash_i(*args, session.sai_b, other_id), received_hash_i)


def quick_mode(session: Session) -> list[Chain]:
    qm = [c for m, c in decrypt_all(session) if m.exchange == QUICK_MODE]
    assert len(qm) == 3
    return qm


def test_quick_mode_hashes(session: Session) -> None:
    keys = session.phase1
    qm1, qm2, qm3 = quick_mode(session)
    mid = next(m.message_id for m in session.msgs if m.exchange == QUICK_MODE)
    assert mid != 0
    for chain in (qm1, qm2):
        assert [p.type for p in chain.payloads] == [HASH_PL, SA, NONCE, KE, ID, ID]
    assert [p.type for p in qm3.payloads] == [HASH_PL]

    def after_hash(chain: Chain) -> bytes:
        return b"".join(p.raw for p in chain.payloads[1:])

    ni_b, nr_b = qm1.first(NONCE).body, qm2.first(NONCE).body
    h1 = oakley.quick_mode_hash1(HASH, keys.skeyid_a, mid, after_hash(qm1))
    h2 = oakley.quick_mode_hash2(HASH, keys.skeyid_a, mid, ni_b, after_hash(qm2))
    h3 = oakley.quick_mode_hash3(HASH, keys.skeyid_a, mid, ni_b, nr_b)
    assert digests_equal(h1, qm1.first(HASH_PL).body)
    assert digests_equal(h2, qm2.first(HASH_PL).body)
    assert digests_equal(h3, qm3.first(HASH_PL).body)
    if session.name == "mm_qm_psk":
        assert h1.hex() == MM_LOGGED["qm_hash1"]
        assert h2.hex() == MM_LOGGED["qm_hash2"]
        assert h3.hex() == MM_LOGGED["qm_hash3"]
    # the message ID is bound into the hash
    assert not digests_equal(oakley.quick_mode_hash3(HASH, keys.skeyid_a, mid ^ 1, ni_b, nr_b), h3)


def test_iv_chain_matches_charon_log() -> None:
    """Main Mode: the IVs charon logged, in order, come out of IvChain."""
    session = load("mm_qm_psk")
    chain = oakley.IvChain.from_public_values(HASH, BLOCK, session.g_xi, session.g_xr)
    mm5, mm6, qm1, qm2, qm3 = (m for m in session.msgs if m.flags & ENCRYPTED)
    chain.advance(0, mm5.body)
    assert chain.iv_for(0).hex() == MM_LOGGED["iv_after_mm5"]
    chain.advance(0, mm6.body)
    assert chain.phase1_last_block.hex() == MM_LOGGED["iv_after_mm6"]
    # the first QM IV is hash(last phase 1 block | M-ID): the end of MM6, not of MM5
    mid = qm1.message_id
    assert chain.iv_for(mid).hex() == MM_LOGGED["qm_iv1"]
    assert (
        oakley.phase2_iv(HASH, bytes.fromhex(MM_LOGGED["iv_after_mm6"]), mid, BLOCK).hex()
        == MM_LOGGED["qm_iv1"]
    )
    chain.advance(mid, qm1.body)
    assert chain.iv_for(mid).hex() == MM_LOGGED["qm_iv2"]
    chain.advance(mid, qm2.body)
    assert chain.iv_for(mid).hex() == MM_LOGGED["qm_iv3"]
    chain.advance(mid, qm3.body)
    # phase 1 chain untouched by the Quick Mode traffic
    assert chain.iv_for(0).hex() == MM_LOGGED["iv_after_mm6"]


def proposal_spi(sa_body: bytes) -> bytes:
    """SPI of the first proposal in an IPsec DOI SA payload body."""
    doi, situation = struct.unpack_from("!II", sa_body, 0)
    assert (doi, situation) == (1, 1)
    proposal = walk(2, sa_body[8:]).payloads[0]
    _number, protocol, spi_size, _ntrans = struct.unpack_from("!BBBB", proposal.body, 0)
    assert protocol == 3 and spi_size == 4  # ESP
    return proposal.body[4:8]


def test_esp_keys_with_pfs(session: Session) -> None:
    keys = session.phase1
    qm1, qm2, _ = quick_mode(session)
    ni_b, nr_b = qm1.first(NONCE).body, qm2.first(NONCE).body
    spi_i, spi_r = proposal_spi(qm1.first(SA).body), proposal_spi(qm2.first(SA).body)
    g_qm_xy = bytes.fromhex(QM_GXY[session.name])
    layout = esp_layout(EspTransformId.AES_CBC, 128, AuthAlgorithm.HMAC_SHA2_256)
    assert (layout.enc_key_bytes, layout.integ_key_bytes) == (16, 32)
    assert layout.cipher is not None and layout.cipher.xfrm_name == "cbc(aes)"
    assert layout.integrity is not None and layout.integrity.xfrm_name == "hmac(sha256)"
    assert layout.integrity.truncation_bits == 128

    # initiator -> responder traffic: the SA the responder receives on, with the responder's SPI
    outbound = derive_sa_keys(HASH, keys.skeyid_d, layout, spi_r, ni_b, nr_b, g_qm_xy)
    inbound = derive_sa_keys(HASH, keys.skeyid_d, layout, spi_i, ni_b, nr_b, g_qm_xy)
    assert outbound.enc_key.hex() == session.keys["encryption_initiator_key"]
    assert outbound.integ_key.hex() == session.keys["integrity_initiator_key"]
    assert inbound.enc_key.hex() == session.keys["encryption_responder_key"]
    assert inbound.integ_key.hex() == session.keys["integrity_responder_key"]

    # without the QM DH secret (the no-PFS formula) the keys differ: PFS really is mixed in
    no_pfs = derive_sa_keys(HASH, keys.skeyid_d, layout, spi_r, ni_b, nr_b)
    assert no_pfs.enc_key != outbound.enc_key
    outbound.wipe()
    assert outbound.enc_key == bytearray(16) and outbound.integ_key == bytearray(32)


def test_nat_d_hashes() -> None:
    """The NAT-D each side computed for the address and port it sent to verifies (RFC 3947:
    the first NAT-D is the destination's). charon was run with forced encapsulation, so its
    source NAT-D is deliberately bogus and is not checked."""
    for name in CAPTURES:
        session = load(name)
        if session.aggressive:
            am3_msg, am3 = next((m, c) for m, c in decrypt_all(session) if m.message_id == 0)
            cases = [
                (session.msgs[1], walk(session.msgs[1].next_payload, session.msgs[1].body)),
                (am3_msg, am3),
            ]
        else:
            cases = [(m, walk(m.next_payload, m.body)) for m in session.msgs[2:4]]
        for msg, chain in cases:
            natd = chain.all(NAT_D)
            assert len(natd) == 2
            expected = nat_d_hash(HASH, session.cky_i, session.cky_r, msg.dst, msg.dport)
            assert digests_equal(expected, natd[0].body), (name, msg.dst)
            packed = nat_d_hash(HASH, session.cky_i, session.cky_r, msg.dst.packed, msg.dport)
            assert packed == expected
            assert not digests_equal(
                nat_d_hash(HASH, session.cky_i, session.cky_r, msg.dst, msg.dport + 1), natd[0].body
            )
    # the value charon logged for 192.0.2.1:500 in the Main Mode capture
    session = load("mm_qm_psk")
    assert (
        nat_d_hash(HASH, session.cky_i, session.cky_r, ipaddress.IPv4Address("192.0.2.1"), 500)
        .hex() == "7c05d05776e386d5ab2b474d182fc6a9ac8e21df166b780a06e220bdca1487fd"
    )  # fmt: skip
