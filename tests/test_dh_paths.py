"""MODP path selection: CPUID default, forcing by API and by IKEPRIV_DH_IMPL, paths agree."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ikepriv.crypto import dh
from ikepriv.crypto.crypto_errors import UnsupportedAlgorithm
from ikepriv.crypto.groups import GROUPS, ModpGroup
from ikepriv.isakmp.constants import GroupId

MODP = [g for g in GROUPS.values() if isinstance(g, ModpGroup)]


@pytest.fixture(autouse=True)
def back_to_auto() -> Iterator[None]:
    yield
    dh.set_modp_impl("auto")


def run_with_env(value: str, code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **{dh.MODP_IMPL_ENV: value})
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_portable_paths_always_available() -> None:
    assert {"gmp", "openssl"} <= set(dh.modp_impls())
    assert "auto" not in dh.modp_impls()


@pytest.mark.parametrize("grp", MODP, ids=lambda g: g.group_id.name)
def test_auto_prefers_ifma_then_libcrypto(grp: ModpGroup) -> None:
    dh.set_modp_impl("auto")
    big = grp.prime.bit_length() >= 1536
    want = "ifma" if big and "ifma" in dh.modp_impls() else "openssl"
    assert dh.modp_impl(grp.group_id) == want


@pytest.mark.parametrize("name", ["gmp", "openssl", "ifma"])
def test_environment_variable_forces_a_path(name: str) -> None:
    if name not in dh.modp_impls():
        pytest.skip(f"this CPU cannot run the {name} path")
    code = (
        "from ikepriv.crypto import dh; import os\n"
        "k = dh.generate(14, os.urandom); p = dh.generate(14, os.urandom)\n"
        "assert k.shared(p.public) == p.shared(k.public)\n"
        "print(dh.modp_impl(14), dh.modp_impl(2))"
    )
    done = run_with_env(name, code)
    assert done.returncode == 0, done.stderr
    small = "openssl" if name == "ifma" else name
    assert done.stdout.split() == [name, small]


def test_environment_variable_with_unknown_path_fails_loudly() -> None:
    done = run_with_env("fastest", "import ikepriv.crypto.dh")
    assert done.returncode != 0
    assert "unknown MODP path 'fastest'" in done.stderr


def test_forcing_errors() -> None:
    with pytest.raises(dh.DHError):
        dh.set_modp_impl("openssl3")
    if "ifma" not in dh.modp_impls():
        with pytest.raises(dh.DHError, match="IFMA"):
            dh.set_modp_impl("ifma")
    with pytest.raises(UnsupportedAlgorithm):
        dh.modp_impl(GroupId.ECP_256)


@pytest.mark.parametrize(
    "gid", [GroupId.MODP_1024, GroupId.MODP_2048, GroupId.MODP_4096], ids=lambda g: g.name
)
def test_every_path_gives_the_same_keys_and_secrets(gid: GroupId) -> None:
    """Same random bytes in, same public value and g^xy out, whichever path runs."""
    grp = GROUPS[gid]
    assert isinstance(grp, ModpGroup)
    rng = random.Random(int(gid))  # noqa: S311 - reproducible test input
    seeds = [rng.getrandbits(32) for _ in range(3)]
    peers = [rng.randrange(2, grp.prime - 1).to_bytes(grp.length, "big") for _ in seeds]
    results: dict[str, list[tuple[bytes, bytes]]] = {}
    for name in dh.modp_impls():
        dh.set_modp_impl(name)
        keys = [dh.generate(gid, random.Random(s).randbytes) for s in seeds]  # noqa: S311
        results[name] = [(k.public, k.shared(y)) for k, y in zip(keys, peers, strict=True)]
    first = next(iter(results.values()))
    assert all(r == first for r in results.values()), sorted(results)
