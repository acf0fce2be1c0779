"""Microseconds per construction, encode and decode of the hot IPC messages.

Run:  .venv/bin/python bench/ipc_codec.py [--rounds N] [--repeat R]

The messages every Main Mode and every listed tunnel send through the codec: DatagramIn and
DatagramOut (a 300-byte IKE datagram), SkeyidRequest and SkeyidReply, StateReport (a phase
1 with identities, as report_isakmp builds it), a TunnelRow, and a Response of 100 rows (the
CLI's share of a listing: per row, divide by 100). For each: construction (the dataclass
constructor with the schema's validation of every field, as a sender builds it), `encode`,
and `decode` on the message's own channel. Each figure is the best of `--repeat` timings of
`--rounds` calls (the least disturbed by other load on a shared machine).

Only the public codec (`encode`, `decode`, the message classes), so the same script measures
an older tree: run it with that tree's interpreter and checkout on `sys.path`.

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from ipaddress import ip_address

from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import Message, decode, encode
from ikepriv.isakmp.constants import IdType, IkeHash

LOCAL = m.Endpoint(ip_address("192.0.2.1"), 500)
REMOTE = m.Endpoint(ip_address("198.51.100.7"), 500)
DATAGRAM = bytes(range(256)) + bytes(44)  # 300 bytes: a Main Mode message with a KE
NONCE = bytes(range(32))


def state_report() -> m.StateReport:
    return m.StateReport(
        request_id=7, phase=m.Phase.PHASE1, number=12, tunnel_id=10_001,
        phase1_tunnel_id=None, role=m.Role.RESPONDER, state=m.TunnelState.ESTABLISHED,
        local=LOCAL, remote=REMOTE,
        local_id=m.Identity(IdType.IPV4_ADDR, LOCAL.addr.packed),
        remote_id=m.Identity(IdType.IPV4_ADDR, REMOTE.addr.packed),
        algorithms="AES_CBC-128 SHA2_256 MODP_2048 PRE_SHARED_KEY 28800s",
        expires_at=1_800_000_000, spi_in=0, spi_out=0,
    )  # fmt: skip


def tunnel_row() -> m.TunnelRow:
    r = state_report()
    return m.TunnelRow(
        number=r.number, tunnel_id=r.tunnel_id, phase=r.phase, name="peer-12", role=r.role,
        state=r.state, local_addr=r.local.addr, remote_addr=r.remote.addr,
        local_id=r.local_id, remote_id=r.remote_id, algorithms=r.algorithms,
        remaining_seconds=28_000, spi_in=0, spi_out=0, bytes=0, packets=0,
        phase1_number=None,
    )  # fmt: skip


BUILDERS: dict[str, Callable[[], Message]] = {
    "DatagramIn": lambda: m.DatagramIn(LOCAL, REMOTE, False, DATAGRAM),
    "DatagramOut": lambda: m.DatagramOut(LOCAL, REMOTE, False, DATAGRAM),
    "SkeyidRequest": lambda: m.SkeyidRequest(7, None, REMOTE.addr, IkeHash.SHA2_256, 0, NONCE),
    "SkeyidReply": lambda: m.SkeyidReply(7, m.ErrorCode.OK, bytes(32), NONCE),
    "StateReport": state_report,
    "Response(100 rows)": lambda: m.Response(m.ErrorCode.OK, (), (tunnel_row(),) * 100),
}


def best(run: Callable[[], object], rounds: int, repeat: int) -> float:
    """Best microseconds per call over `repeat` timings of `rounds` calls."""
    return min(timeit.repeat(run, number=rounds, repeat=repeat)) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"{'message':<20} {'bytes':>6} {'build µs':>9} {'encode µs':>10} {'decode µs':>10}")
    row = tunnel_row()
    rows = {"TunnelRow": (row, lambda: tunnel_row())}
    for name, build in BUILDERS.items():
        rows[name] = (build(), build)
    for name, (msg, build) in rows.items():
        if isinstance(msg, Message):
            wire = encode(msg)
            direction = type(msg).DIRECTION
            assert decode(wire, direction) == msg
            size = str(len(wire))
            enc = best(lambda msg=msg: encode(msg), args.rounds, args.repeat)  # type: ignore[misc]
            dec = best(lambda w=wire, d=direction: decode(w, d), args.rounds, args.repeat)  # type: ignore[misc]
            codec = f"{enc:>10.2f} {dec:>10.2f}"
        else:  # a struct, not a message: built only (its codec is inside Response's)
            size, codec = "-", f"{'-':>10} {'-':>10}"
        built = best(build, args.rounds, args.repeat)
        print(f"{name:<20} {size:>6} {built:>9.2f} {codec}")


if __name__ == "__main__":
    main()
