"""MODP Diffie-Hellman (C extension) against Python's pow(), plus peer-value rejects."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from ikepriv.ext._dh import lib

from ikepriv.crypto import dh
from ikepriv.crypto.crypto_errors import UnsupportedAlgorithm
from ikepriv.crypto.groups import GROUPS, ModpGroup
from ikepriv.isakmp.constants import GroupId

MODP = [g for g in GROUPS.values() if isinstance(g, ModpGroup)]
# Cross-check rounds per group: more for the small groups, where pow() is cheap.
ROUNDS = {1: 12, 2: 12, 5: 10, 14: 10, 15: 6, 16: 4, 17: 3, 18: 2}


class Recorder:
    """A seeded random source that remembers what it handed out."""

    def __init__(self, seed: int, script: list[bytes] | None = None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test input
        self._script = list(script or [])
        self.drawn: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        data = self._script.pop(0) if self._script else self._rng.randbytes(n)
        self.drawn.append(data)
        return data


def exponent(grp: ModpGroup, raw: bytes) -> int:
    return int.from_bytes(raw, "big") & ((1 << grp.exponent_bits) - 1)


@pytest.fixture(params=dh.modp_impls())
def impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every MODP path this CPU can run (gmp, openssl, and ifma where AVX-512 IFMA exists)."""
    dh.set_modp_impl(request.param)
    yield request.param
    dh.set_modp_impl("auto")


def expected_path(grp: ModpGroup, impl: str) -> str:
    """IFMA is set up from 1536 bits; smaller groups fall back to libcrypto."""
    return "openssl" if impl == "ifma" and grp.prime.bit_length() < 1536 else impl


@pytest.mark.parametrize("grp", MODP, ids=lambda g: g.group_id.name)
def test_keygen_and_shared_match_pow(grp: ModpGroup, impl: str) -> None:
    assert dh.modp_impl(grp.group_id) == expected_path(grp, impl)
    seed = grp.group_id * 7919 + dh.modp_impls().index(impl)
    rng = random.Random(seed)  # noqa: S311 - reproducible test input
    for _ in range(ROUNDS[grp.group_id]):
        src = Recorder(rng.getrandbits(64))
        key = dh.generate(grp.group_id, src)
        x = exponent(grp, src.drawn[-1])
        assert len(key.public) == grp.length
        assert int.from_bytes(key.public, "big") == pow(2, x, grp.prime)
        y = rng.randrange(2, grp.prime - 1)
        secret = key.shared(y.to_bytes(grp.length, "big"))
        assert len(secret) == grp.length
        assert int.from_bytes(secret, "big") == pow(y, x, grp.prime)


@pytest.mark.parametrize("grp", MODP, ids=lambda g: g.group_id.name)
def test_extreme_exponents_and_peers(grp: ModpGroup, impl: str) -> None:
    nbytes = (grp.exponent_bits + 7) // 8
    top = b"\xff" * nbytes  # x = 2^bits - 1: every comb column full
    two = (2).to_bytes(nbytes, "big")
    three = (3).to_bytes(nbytes, "big")  # all top limbs zero (libcrypto trims them)
    low_limb_zero_top = bytes(8) + b"\xa5" * (nbytes - 8)
    for raw in (top, two, three, low_limb_zero_top):
        key = dh.generate(grp.group_id, Recorder(0, [raw]))
        x = exponent(grp, raw)
        assert int.from_bytes(key.public, "big") == pow(2, x, grp.prime)
        for y in (2, grp.prime - 2, (1 << (8 * grp.length - 8)) + 1):
            got = key.shared(y.to_bytes(grp.length, "big"))
            assert int.from_bytes(got, "big") == pow(y, x, grp.prime)


def test_parties_agree_and_secret_keeps_leading_zeros(impl: str) -> None:
    grp = GROUPS[GroupId.MODP_768]
    assert isinstance(grp, ModpGroup)
    rng = random.Random(5)  # noqa: S311 - reproducible test input
    saw_leading_zero = False
    for _ in range(3000):  # 1 in 256 secrets starts with a zero byte
        a = dh.generate(grp.group_id, Recorder(rng.getrandbits(64)))
        b = dh.generate(grp.group_id, Recorder(rng.getrandbits(64)))
        s = a.shared(b.public)
        assert s == b.shared(a.public)
        assert len(s) == grp.length
        saw_leading_zero |= s[0] == 0
        if saw_leading_zero:
            break
    assert saw_leading_zero


def test_exponent_below_two_is_drawn_again() -> None:
    grp = GROUPS[GroupId.MODP_1024]
    assert isinstance(grp, ModpGroup)
    n = (grp.exponent_bits + 7) // 8
    src = Recorder(1, [bytes(n), (1).to_bytes(n, "big"), (3).to_bytes(n, "big")])
    key = dh.generate(grp.group_id, src)
    assert len(src.drawn) == 3
    assert int.from_bytes(key.public, "big") == 8


def test_random_source_that_never_helps_is_an_error() -> None:
    with pytest.raises(dh.DHError):
        dh.generate(GroupId.MODP_1024, lambda n: bytes(n))
    with pytest.raises(dh.DHError):
        dh.generate(GroupId.MODP_1024, lambda n: bytes(n - 1))


def _bad_values(grp: ModpGroup) -> dict[str, bytes]:
    n, p = grp.length, grp.prime
    return {
        "zero": bytes(n),
        "one": (1).to_bytes(n, "big"),
        "p-1": (p - 1).to_bytes(n, "big"),
        "p": p.to_bytes(n, "big"),
        "p+1": (p + 1).to_bytes(n, "big"),
        "all-ones": b"\xff" * n,
        "short": (2).to_bytes(n - 1, "big"),
        "long-leading-zero": (2).to_bytes(n + 1, "big"),
        "empty": b"",
    }


@pytest.mark.parametrize("grp", MODP, ids=lambda g: g.group_id.name)
def test_peer_values_out_of_range_are_rejected(grp: ModpGroup) -> None:
    key = dh.generate(grp.group_id, Recorder(3))
    for name, value in _bad_values(grp).items():
        with pytest.raises(dh.DHError):
            key.shared(value)
        with pytest.raises(dh.DHError):
            dh.validate_public(grp.group_id, value)
        assert name  # names the case in the traceback


@pytest.mark.parametrize("grp", MODP[:2], ids=lambda g: g.group_id.name)
def test_c_layer_rejects_what_python_would(grp: ModpGroup, impl: str) -> None:
    """The C entry point checks ranges and lengths on its own, too."""
    ffi = __import__("ikepriv.ext._dh", fromlist=["ffi"]).ffi
    ctx = dh._modp_context(grp)
    xlen = lib.ikepriv_modp_exp_len(ctx)
    x = ffi.new("uint8_t[]", b"\x05" * xlen)
    out = ffi.new("uint8_t[]", grp.length)
    for name, value in _bad_values(grp).items():
        rc = lib.ikepriv_modp_shared(ctx, x, xlen, value, len(value), out, grp.length)
        want = lib.IKEPRIV_DH_EINVAL if len(value) != grp.length else lib.IKEPRIV_DH_EPEER
        assert rc == want, name
    good = (2).to_bytes(grp.length, "big")
    assert lib.ikepriv_modp_shared(ctx, x, xlen - 1, good, grp.length, out, grp.length) < 0
    assert lib.ikepriv_modp_shared(ctx, x, xlen, good, grp.length, out, grp.length - 1) < 0
    pub = ffi.new("uint8_t[]", grp.length + 1)
    assert lib.ikepriv_modp_keygen(ctx, x, xlen, pub, grp.length + 1) == lib.IKEPRIV_DH_EINVAL
    assert lib.ikepriv_modp_shared(ctx, x, xlen, good, grp.length, out, grp.length) == 0


def test_c_layer_refuses_bad_groups() -> None:
    ffi = __import__("ikepriv.ext._dh", fromlist=["ffi"]).ffi
    out = ffi.new("ikepriv_modp **")
    even = (2**1024 - 2).to_bytes(128, "big")
    odd = (2**1024 - 1).to_bytes(128, "big")
    assert lib.ikepriv_modp_new(even, 128, 256, out) == lib.IKEPRIV_DH_EINVAL
    assert lib.ikepriv_modp_new(b"\x00" + odd[1:], 128, 256, out) == lib.IKEPRIV_DH_EINVAL
    assert lib.ikepriv_modp_new(odd, 128, 1024, out) == lib.IKEPRIV_DH_EINVAL
    assert lib.ikepriv_modp_new(odd[:16], 16, 64, out) == lib.IKEPRIV_DH_EINVAL
    assert out[0] == ffi.NULL


def test_wiped_key_refuses_to_compute() -> None:
    key = dh.generate(GroupId.MODP_2048, Recorder(9))
    peer = dh.generate(GroupId.MODP_2048, Recorder(10))
    key.wipe()
    with pytest.raises(dh.DHError):
        key.shared(peer.public)
    key.wipe()  # idempotent


def test_unsupported_groups() -> None:
    for gid in (GroupId.EC2N_155, GroupId.EC2N_185, 999):
        with pytest.raises(UnsupportedAlgorithm):
            dh.generate(gid, Recorder(1))
        with pytest.raises(UnsupportedAlgorithm):
            dh.public_length(gid)


def test_threads_share_a_group_context(impl: str) -> None:
    """cffi drops the GIL in C; concurrent exchanges must not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor

    grp = GROUPS[GroupId.MODP_1536]
    assert isinstance(grp, ModpGroup)

    def one(seed: int) -> bool:
        src = Recorder(seed)
        key = dh.generate(grp.group_id, src)
        x = exponent(grp, src.drawn[-1])
        y = pow(3, seed + 5, grp.prime)
        return int.from_bytes(key.shared(y.to_bytes(grp.length, "big")), "big") == pow(
            y, x, grp.prime
        )

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(one, range(40)))


def test_prepare_builds_contexts_for_modp_groups_only() -> None:
    dh.prepare([GroupId.MODP_1536, GroupId.ECP_256, GroupId.CURVE25519])
    assert GroupId.MODP_1536 in dh._contexts
    with pytest.raises(UnsupportedAlgorithm):
        dh.prepare([GroupId.EC2N_155])
