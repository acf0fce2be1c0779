"""Every DH group works under the child's seccomp filter once the child has warmed up.

A negotiator child that met a peer proposing Curve25519 died with SIGSYS: the cryptography
library imports its OpenSSL backend module on the first X25519 key, and an import under the
filter (stat, open) is fatal. The child now runs `warmup.warm_up()` before the sandbox; this
runs the same sequence in a fresh interpreter (the child's modules imported, warm-up, the
real filter loaded) and then a full key agreement for each group.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from ikepriv.crypto.groups import GROUPS
from ikepriv.isakmp.constants import GroupId

WAIT = 120  # seconds: only to turn a hang into a failure

_SCRIPT = """
import secrets, sys
import ikepriv.child_negotiator.process.main  # what the child imports before its sandbox
from ikepriv.child_negotiator.process import seccomp_policy
from ikepriv.child_negotiator.process import warmup
from ikepriv.crypto import dh
warmup.warm_up()
seccomp_policy.load()
gid = int(sys.argv[1])
a = dh.generate(gid, secrets.token_bytes)
b = dh.generate(gid, secrets.token_bytes)
dh.validate_public(gid, b.public)
dh.validate_public(gid, a.public)
assert a.shared(b.public) == b.shared(a.public)
sys.stdout.write("agreed\\n")
"""


@pytest.mark.parametrize(
    "gid",
    [GroupId.MODP_1024, GroupId.MODP_2048, GroupId.ECP_256, GroupId.ECP_384, GroupId.CURVE25519],
    ids=lambda g: g.name,
)
def test_key_agreement_under_the_filter(gid: GroupId) -> None:
    assert gid in GROUPS
    r = subprocess.run(  # noqa: S603 -- our own programs
        [sys.executable, "-c", _SCRIPT, str(int(gid))],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert r.returncode != -signal.SIGSYS, f"{gid.name}: killed by the seccomp filter"
    assert (r.returncode, r.stdout) == (0, "agreed\n"), r.stderr[-2000:]


def test_warm_up_covers_every_library_group() -> None:
    from ikepriv.child_negotiator.process import warmup
    from ikepriv.crypto.groups import ModpGroup

    want = {int(g) for g, grp in GROUPS.items() if not isinstance(grp, ModpGroup)}
    assert set(warmup.warm_up()) == want
    assert int(GroupId.CURVE25519) in want
