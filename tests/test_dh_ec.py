"""ECP (RFC 5903) and Curve25519 (RFC 7748) exchanges: known answers, agreement, rejects."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ikepriv.crypto import dh
from ikepriv.crypto.groups import GROUPS, EcpGroup
from ikepriv.isakmp.constants import GroupId


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def feed(*chunks: bytes) -> dh.RandomBytes:
    """A random source that hands out exactly these bytes, in order."""
    queue = list(chunks)

    def draw(n: int) -> bytes:
        data = queue.pop(0)
        assert len(data) == n
        return data

    return draw


def seeded(seed: int) -> dh.RandomBytes:
    return random.Random(seed).randbytes  # noqa: S311 - reproducible test input


# RFC 5903 section 8: (group, i, g^i x|y, r, g^r x|y, g^ir x)
RFC5903 = {
    GroupId.ECP_256: (
        "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433",
        "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180"
        "5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
        "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53",
        "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63"
        "56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
        "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE",
    ),
    GroupId.ECP_384: (
        "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655"
        "E35B5380 41E649EE 3FAEF896 783AB194",
        "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6"
        "DE3AC808 ACB4BDB4 C88732AE E95F41AA"
        "9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E"
        "EB9FCFF3 C2C947DA E69B4C63 4573A81C",
        "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942"
        "E0308312 916B8ED2 960E4BD5 5A7448FC",
        "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D"
        "0D1AC43A 0336DEF9 6FDA41D0 774A3571"
        "DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF"
        "F83FA401 42209DFF 5EAAD96D B9E6386C",
        "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4"
        "D6031355 69B9E9D0 9CF5D4A2 70F59746",
    ),
    GroupId.ECP_521: (
        "0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0"
        "95AA85A3 0FE1C295 2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D 4A52",
        "0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE"
        "E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C ED3E"
        "017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A"
        "D8A78801 5AC405D7 799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F 9582",
        "0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E"
        "9C677D60 0B343757 A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168 5EB9",
        "00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21"
        "9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9 460F"
        "015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87"
        "220B6536 C5C408A1 D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F C56A",
        "01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04"
        "D1427E73 CA4BAA24 0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3 DDEA",
    ),
}

ECP = [g for g in GROUPS.values() if isinstance(g, EcpGroup)]


@pytest.mark.parametrize("gid", list(RFC5903), ids=lambda g: g.name)
def test_rfc5903_known_answers(gid: GroupId) -> None:
    i, gi, r, gr, gir = (h(v) for v in RFC5903[gid])
    initiator = dh.generate(gid, feed(i))
    responder = dh.generate(gid, feed(r))
    assert initiator.public == gi
    assert responder.public == gr
    assert initiator.shared(gr) == gir
    assert responder.shared(gi) == gir


@pytest.mark.parametrize("grp", ECP, ids=lambda g: g.group_id.name)
def test_ecp_parties_agree(grp: EcpGroup) -> None:
    for seed in range(5):
        a = dh.generate(grp.group_id, seeded(seed))
        b = dh.generate(grp.group_id, seeded(seed + 100))
        assert len(a.public) == grp.length == 2 * grp.coordinate_length
        s = a.shared(b.public)
        assert s == b.shared(a.public)
        assert len(s) == grp.coordinate_length


@pytest.mark.parametrize("grp", ECP, ids=lambda g: g.group_id.name)
def test_ecp_private_scalar_is_rejection_sampled(grp: EcpGroup) -> None:
    """Values >= order (or zero) are drawn again, not reduced (no modulo bias)."""
    nbytes = (grp.order.bit_length() + 7) // 8
    too_big = grp.order.to_bytes(nbytes, "big")
    key = dh.generate(grp.group_id, feed(bytes(nbytes), too_big, (1).to_bytes(nbytes, "big")))
    generator = ec.derive_private_key(1, grp.curve).public_key().public_numbers()
    clen = grp.coordinate_length
    assert key.public == generator.x.to_bytes(clen, "big") + generator.y.to_bytes(clen, "big")


@pytest.mark.parametrize("grp", ECP, ids=lambda g: g.group_id.name)
def test_ecp_rejects(grp: EcpGroup) -> None:
    key = dh.generate(grp.group_id, seeded(1))
    peer = dh.generate(grp.group_id, seeded(2)).public
    clen = grp.coordinate_length
    x, y = int.from_bytes(peer[:clen], "big"), int.from_bytes(peer[clen:], "big")
    bad = {
        "off-curve": peer[:clen] + ((y + 1) % grp.field_prime).to_bytes(clen, "big"),
        "zero point": bytes(grp.length),
        "all ones": b"\xff" * grp.length,
        "short": peer[:-1],
        "long": peer + b"\x00",
        "x only": peer[:clen],
        "empty": b"",
    }
    if x + grp.field_prime < 1 << (8 * clen):  # P-521 has room above p
        bad["x+p"] = (x + grp.field_prime).to_bytes(clen, "big") + peer[clen:]
    for name, value in bad.items():
        with pytest.raises(dh.DHError):
            key.shared(value)
        with pytest.raises(dh.DHError):
            dh.validate_public(grp.group_id, value)
        assert name
    dh.validate_public(grp.group_id, peer)


def test_ecp_prefixed_point_is_refused_with_a_clear_reason() -> None:
    key = dh.generate(GroupId.ECP_256, seeded(3))
    peer = dh.generate(GroupId.ECP_256, seeded(4)).public
    with pytest.raises(dh.DHError, match="0x04"):
        key.shared(b"\x04" + peer)


def test_p521_coordinate_above_field_is_refused() -> None:
    grp = GROUPS[GroupId.ECP_521]
    assert isinstance(grp, EcpGroup)
    key = dh.generate(grp.group_id, seeded(5))
    peer = dh.generate(grp.group_id, seeded(6)).public
    clen = grp.coordinate_length
    x = int.from_bytes(peer[:clen], "big")
    with pytest.raises(dh.DHError, match="field"):
        key.shared((x + grp.field_prime).to_bytes(clen, "big") + peer[clen:])


# RFC 7748 section 6.1
ALICE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

# Points of small order on Curve25519 and their non-canonical encodings: every
# one makes the X25519 result all zero.
LOW_ORDER = {
    "0": "00" * 32,
    "1": "01" + "00" * 31,
    "order 8 (a)": "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "order 8 (b)": "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "p-1": "ec" + "ff" * 30 + "7f",
    "p": "ed" + "ff" * 30 + "7f",
    "p+1": "ee" + "ff" * 30 + "7f",
}


def test_rfc7748_known_answer() -> None:
    alice = dh.generate(GroupId.CURVE25519, feed(h(ALICE)))
    bob = dh.generate(GroupId.CURVE25519, feed(h(BOB)))
    assert alice.public == h(ALICE_PUB)
    assert bob.public == h(BOB_PUB)
    assert alice.shared(bob.public) == h(SHARED)
    assert bob.shared(alice.public) == h(SHARED)


def test_x25519_parties_agree() -> None:
    for seed in range(5):
        a = dh.generate(GroupId.CURVE25519, seeded(seed))
        b = dh.generate(GroupId.CURVE25519, seeded(seed + 50))
        assert a.shared(b.public) == b.shared(a.public)
        assert len(a.public) == 32


@pytest.mark.parametrize("name", list(LOW_ORDER))
def test_x25519_low_order_points_are_refused(name: str) -> None:
    key = dh.generate(GroupId.CURVE25519, seeded(7))
    with pytest.raises(dh.DHError, match="all zero"):
        key.shared(h(LOW_ORDER[name]))


def test_x25519_wrong_lengths_are_refused() -> None:
    key = dh.generate(GroupId.CURVE25519, seeded(8))
    peer = dh.generate(GroupId.CURVE25519, seeded(9)).public
    for value in (peer[:-1], peer + b"\x00", b""):
        with pytest.raises(dh.DHError):
            key.shared(value)
        with pytest.raises(dh.DHError):
            dh.validate_public(GroupId.CURVE25519, value)


@pytest.mark.parametrize("gid", [GroupId.ECP_256, GroupId.CURVE25519], ids=lambda g: g.name)
def test_wiped_ec_keys_refuse_to_compute(gid: GroupId) -> None:
    key = dh.generate(gid, seeded(10))
    peer = dh.generate(gid, seeded(11)).public
    key.wipe()
    with pytest.raises(dh.DHError):
        key.shared(peer)
