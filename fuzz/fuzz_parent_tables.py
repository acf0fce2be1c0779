"""Atheris harness for what the root parent reads of network datagrams and child output:
the admission classes (parent_kernel/admission.py) and the egress rules
(parent_kernel/egress.py). Both read only fixed-offset cookies, version and length, but
they keep tables that a forger at 10,000 pps and a hostile child fill at will.

Each input is a script of operations (datagrams in from a few sources and ports, child
output, the clock moving on) run against one Admission and one Egress. Invariants on every
step: nothing raises; every table stays within its bound; a datagram the egress lets out is
a NAT-T keepalive or looks like ISAKMP (`egress.looks_like_isakmp`); what admission hands
back is only what was put in, never more often.

    .venv/bin/python fuzz/fuzz_parent_tables.py -max_total_time=20 fuzz/corpus/parent_tables
"""

from __future__ import annotations

import ipaddress
import sys

import atheris

with atheris.instrument_imports():
    from ikepriv.parent_kernel import admission as adm
    from ikepriv.parent_kernel import egress as eg

LOCAL = ipaddress.IPv4Address("192.0.2.1")
SOURCES = tuple(ipaddress.IPv4Address(f"192.0.2.{n}") for n in range(2, 10)) + tuple(
    ipaddress.IPv4Address(f"203.0.113.{n}") for n in range(1, 9)
)
PORTS = (500, 4500, 1024, 53)
MAX_STEPS = 256


def _datagram(fdp: atheris.FuzzedDataProvider, recent: list[bytes]) -> bytes:
    """Fresh bytes, or a recent datagram with a changed tail (cookies kept): the tables are
    keyed by cookies, so reusing them is what reaches their interesting states."""
    if recent and fdp.ConsumeBool():
        base = recent[fdp.ConsumeIntInRange(0, len(recent) - 1)]
        tail = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        data = base[:16] + fdp.ConsumeBytes(8) + tail if fdp.ConsumeBool() else base
    else:
        data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 96))
    recent.append(data)
    del recent[:-16]
    return data


def TestOneInput(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    dropped: list[str] = []
    admission: adm.Admission[int] = adm.Admission(dropped.append)
    egress = eg.Egress()
    admission.set_peers(SOURCES[:2])
    now = 1000.0
    recent: list[bytes] = []
    put_ids: set[int] = set()
    got_ids: set[int] = set()
    next_id = 0
    for _ in range(MAX_STEPS):
        if fdp.remaining_bytes() == 0:
            break
        op = fdp.ConsumeIntInRange(0, 4)
        source = SOURCES[fdp.ConsumeIntInRange(0, len(SOURCES) - 1)]
        lport, rport = PORTS[fdp.ConsumeIntInRange(0, 1)], PORTS[fdp.ConsumeIntInRange(0, 3)]
        natt = lport == 4500
        if op == 0:  # a datagram arrives
            data = _datagram(fdp, recent)
            kind = admission.classify(data, source, now)
            admission.put(kind, source, next_id, now)
            put_ids.add(next_id)
            next_id += 1
            egress.received(LOCAL, lport, source, rport, natt, data, now)
        elif op == 1:  # the child sends one
            data = _datagram(fdp, recent)
            admission.outbound(data, now)
            target = fdp.ConsumeBool()
            why = egress.check_send(LOCAL, lport, source, rport, natt, data, target, now)
            if why is None and not (natt and data == eg.KEEPALIVE):
                problem = eg.looks_like_isakmp(data)
                if problem is not None:
                    raise AssertionError(f"let out a non-ISAKMP datagram: {problem}")
        elif op == 2:  # the pump hands datagrams to the child
            for _ in range(fdp.ConsumeIntInRange(0, 8)):
                item = admission.get(now)
                if item is None:
                    break
                if item in got_ids or item not in put_ids:
                    raise AssertionError(f"admission returned {item} twice or unasked")
                got_ids.add(item)
        elif op == 3:  # a Phase2Install names a NAT-T port
            egress.natt_port_ok(LOCAL, source, rport, now)
        else:  # time passes
            now += fdp.ConsumeIntInRange(0, 300) / 10.0
        _check_bounds(admission, egress)


def _check_bounds(admission: adm.Admission[int], egress: eg.Egress) -> None:
    queued = (
        adm.LIVE_QUEUE
        + adm.UNKNOWN_QUEUE
        + adm.FIRST_SOURCES * (adm.FIRST_PER_SOURCE + adm.PEER_PER_SOURCE)
    )
    if len(admission) > queued:
        raise AssertionError(f"admission holds {len(admission)} datagrams")
    for table, bound in (
        (admission._own, adm.OWN_INITIATIONS),
        (admission._pending, adm.PENDING_PAIRS),
        (admission._live, adm.LIVE_PAIRS),
        (admission._seen_first, adm.SEEN_FIRST),
        (egress._pending, eg.MAX_PENDING),
        (egress._proven, eg.MAX_PROVEN),
        (egress._fresh_dests, eg.MAX_FRESH_DESTS),
        (egress._proven_dests, eg.MAX_PROVEN_DESTS),
    ):
        if len(table) > bound:
            raise AssertionError(f"a table grew past its bound {bound}: {len(table)}")
    per_dest = egress._proven._of_dest
    if sum(map(len, per_dest.values())) != len(egress._proven):
        raise AssertionError("the proven exchanges and their per-destination index differ")
    if any(len(own) > eg.MAX_PROVEN_PER_DEST for own in per_dest.values()):
        raise AssertionError("a destination holds more proven exchanges than its share")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
