"""What packing one XFRM request costs: pyroute2's encoder against xfrm_pack's packers.

The parent packs its requests with precompiled struct packers (ikepriv/parent_kernel/kernel/
xfrm_pack.py); before, it filled pyroute2's message classes field by field and let them
encode. This times both for the requests of a phase 2 (an SA with AES-CBC and
HMAC-SHA-256, a tunnel policy with its template, the deletes), with pyroute2's side as
tests/test_xfrm_pack.py builds it (the reference the packers are checked against byte for
byte), on the host: no kernel is involved.

    .venv/bin/python bench/xfrm_pack.py

A bench: it prints figures, never passes or fails.
"""

from __future__ import annotations

import ipaddress
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_xfrm_pack as ref

from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.kernel import xfrm_pack as xp
from ikepriv.parent_kernel.kernel.specs import (
    Encryption,
    Integrity,
    Lifetime,
    PolicySpec,
    SaSpec,
    SelectorSpec,
    Template,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import Direction, MsgType, XfrmMode

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
SEL = SelectorSpec(ipaddress.ip_network("198.51.100.1/32"), ipaddress.ip_network("203.0.113.1/32"))
SA = SaSpec(A, B, IpProtocol.ESP, 0x1234, XfrmMode.TUNNEL, 7,
            encryption=Encryption("cbc(aes)", bytes(16)),
            integrity=Integrity("hmac(sha256)", bytes(32), 128),
            lifetime=Lifetime(soft_seconds=3000, hard_seconds=3600), selector=SEL)  # fmt: skip
POLICY = PolicySpec(SEL, Direction.OUT, priority=2000,
                    templates=(Template(IpProtocol.ESP, XfrmMode.TUNNEL, 7, A, B),))  # fmt: skip
CASES: tuple[tuple[str, Callable[[], object], Callable[[], object]], ...] = (
    ("NEWSA (cbc(aes), hmac(sha256))", lambda: ref.ref_sa(SA, MsgType.NEWSA),
     lambda: xp.sa_message(SA, MsgType.NEWSA)),
    ("NEWPOLICY (one template)", lambda: ref.ref_policy(POLICY, MsgType.NEWPOLICY),
     lambda: xp.policy_message(POLICY, MsgType.NEWPOLICY)),
    ("ALLOCSPI", lambda: ref.ref_spi(B, A, IpProtocol.ESP, 0, XfrmMode.TUNNEL, 0x100,
                                     0xFFFFFFFF, 0),
     lambda: xp.spi_message(B, A, IpProtocol.ESP, 0, XfrmMode.TUNNEL, 0x100, 0xFFFFFFFF, 0)),
    ("DELSA", lambda: ref.ref_sa_id(B, 0x1234, 50),
     lambda: xp.sa_id_message(B, 0x1234, 50, MsgType.DELSA)),
    ("DELPOLICY", lambda: ref.ref_policy_id(SEL, Direction.OUT),
     lambda: xp.policy_id_message(SEL, Direction.OUT, MsgType.DELPOLICY)),
)  # fmt: skip


def per_call(fn: Callable[[], object], number: int) -> float:
    """Microseconds per call, the best of five runs."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    print(f"{'request':34} {'pyroute2 us':>12} {'xfrm_pack us':>13} {'ratio':>7}")
    for name, old, new in CASES:
        before, after = per_call(old, 2000), per_call(new, 20000)
        print(f"{name:34} {before:12.1f} {after:13.2f} {before / after:7.1f}")


if __name__ == "__main__":
    main()
