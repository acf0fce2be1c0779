"""The group table: primes as the RFCs define them, curve orders as OpenSSL knows them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ikepriv.crypto import dh
from ikepriv.crypto.groups import GROUPS, EcpGroup, ModpGroup
from ikepriv.isakmp.constants import GroupId

# RFC 2409 section 6.1/6.2 and RFC 3526: p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) pi) + k)
OFFSETS = {
    GroupId.MODP_768: (768, 149686),
    GroupId.MODP_1024: (1024, 129093),
    GroupId.MODP_1536: (1536, 741804),
    GroupId.MODP_2048: (2048, 124476),
    GroupId.MODP_3072: (3072, 1690314),
    GroupId.MODP_4096: (4096, 240904),
    GroupId.MODP_6144: (6144, 929484),
    GroupId.MODP_8192: (8192, 4743158),
}


def pi_times_two_to(bits: int) -> int:
    """floor(pi * 2^bits), by Machin's formula in integers (64 guard bits)."""
    one = 1 << (bits + 64)

    def arctan_inv(x: int) -> int:
        total, term, k, sign = 0, one // x, 1, 1
        while term:
            total += sign * (term // k)
            term //= x * x
            k += 2
            sign = -sign
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> 64


@pytest.mark.parametrize("gid", list(OFFSETS), ids=lambda g: g.name)
def test_modp_prime_matches_rfc_definition(gid: GroupId) -> None:
    n, k = OFFSETS[gid]
    want = 2**n - 2 ** (n - 64) - 1 + 2**64 * (pi_times_two_to(n - 130) + k)
    grp = GROUPS[gid]
    assert isinstance(grp, ModpGroup)
    assert grp.prime == want
    assert grp.generator == 2
    assert grp.length == n // 8 == dh.public_length(gid)


def test_modp_exponent_lengths() -> None:
    """At least twice the RFC 7919 strength estimate, whole words, never under 256."""
    minimum = {2048: 225, 3072: 275, 4096: 325, 6144: 375, 8192: 400}
    for grp in GROUPS.values():
        if isinstance(grp, ModpGroup):
            bits = grp.prime.bit_length()
            assert grp.exponent_bits >= max(256, minimum.get(bits, 0))
            assert grp.exponent_bits % 64 == 0


@pytest.mark.parametrize(
    "grp", [g for g in GROUPS.values() if isinstance(g, EcpGroup)], ids=lambda g: g.group_id.name
)
def test_curve_orders(grp: EcpGroup) -> None:
    g = ec.derive_private_key(1, grp.curve).public_key().public_numbers()
    minus_g = ec.derive_private_key(grp.order - 1, grp.curve).public_key().public_numbers()
    assert (minus_g.x, minus_g.y) == (g.x, grp.field_prime - g.y)
    with pytest.raises(ValueError):
        ec.derive_private_key(grp.order, grp.curve)
    assert grp.curve.key_size == grp.field_prime.bit_length()


def test_table_covers_the_groups_we_offer() -> None:
    assert set(GROUPS) == set(GroupId) - {GroupId.EC2N_155, GroupId.EC2N_185}
