"""Atheris harness for IKE fragment reassembly (isakmp/fragment.py and
child_negotiator/core/fragments.py): the classic place for a parser CVE.

Each input is a script of fragment datagrams delivered to one negotiator core that holds an
exchange of its own (it sent MM1 to RIGHT, so fragments under that initiator cookie from
RIGHT reach a known exchange) and answers first messages from anyone (a wildcard
definition): so every branch runs, known exchange, first message, unknown exchange,
refused. Fragment fields (ID, number, flags, length, data) come from the input unchecked,
so the decoder sees number 0, undefined flags, short and long payloads; the clock moves on
where the input says so (timeouts). Small reassembly limits make the bounds bite.

Invariants after every datagram: nothing escapes the core; every message it emits passes
the IPC schema; the reassembly tables are consistent (byte count equals what the buffers
hold) and within every bound of the Settings: buffers, fragments per message, bytes per
message, first-message buffers per source, total bytes.

Input layout: records of five bytes and a body: [kind, fragment id, number, flags, length],
then `length` bytes. kind: bits 0-1 pick the exchange (0: ours, 1: unknown pair, 2-3:
first messages), bit 2 sends the body as the whole datagram (raw bytes for the decoder),
bits 3-7 pick one of 8 sources. flags: bit 0 LAST, bit 1 advance the clock 4 s, bit 2 set
the E flag (racoon), bits 3-7 go into the fragment flags' upper bits.

    .venv/bin/python fuzz/fuzz_fragments.py --make-corpus    # (re)build the seeds
    .venv/bin/python fuzz/fuzz_fragments.py -max_total_time=60 fuzz/corpus/fragments
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import struct
import sys
from pathlib import Path

if __name__ == "__main__" and "--make-corpus" not in sys.argv:
    import atheris

    with atheris.instrument_imports(include=["ikepriv"]):
        import ikepriv.child_negotiator.core.fragments
        import ikepriv.isakmp.fragment  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.core_sim import LEFT, RIGHT, phase1_def  # found through the path set above

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc import schema
from ikepriv.ipc.messages import DatagramIn, Endpoint, Fragmentation, InitiateCommand, Phase

SETTINGS = dataclasses.replace(
    Settings(),
    fragment_max_count=6,
    fragment_max_message=1500,
    fragment_timeout=10.0,
    fragment_first_max=4,
    fragment_first_per_source=2,
    fragment_total_bytes=4000,
)
SOURCES = (RIGHT, *(ipaddress.IPv4Address(f"203.0.113.{n}") for n in range(1, 8)))
_RECORD = struct.Struct("!BBBBB")
CORPUS = Path(__file__).resolve().parent / "corpus" / "fragments"


def _core() -> tuple[Negotiator, bytes]:
    """A core that initiated Main Mode to RIGHT (its initiator cookie is returned) and
    answers anyone's first message; fragmentation on, both definitions."""
    ours = phase1_def(1, LEFT, RIGHT)
    anyone = phase1_def(2, LEFT, None, any_remote_id=True)
    config = ConfigSnapshot.of(
        [dataclasses.replace(d, fragmentation=Fragmentation.YES) for d in (ours, anyone)], []
    )
    rng = random.Random(1)  # noqa: S311 - deterministic on purpose
    core = Negotiator(config, 0.0, rng.randbytes, settings=SETTINGS)
    core.handle(InitiateCommand(Phase.PHASE1, 1, None, None), 0.0)
    icookie = next(iter(core.sas.initiating))
    return core, icookie


def _check(core: Negotiator, out: list[object]) -> None:
    for message in out:
        try:
            schema.encode(message)  # type: ignore[arg-type]
        except Exception as exc:
            raise AssertionError(f"emitted an invalid {type(message).__name__}: {exc}") from exc
    r = core.reassembly
    tables = (r._first, r._known)  # the invariants are about the internals
    held = 0
    for table in tables:
        for partial in table.values():
            assert partial.size == sum(len(d) for d in partial.parts.values())
            assert len(partial.parts) <= SETTINGS.fragment_max_count
            assert all(1 <= n <= SETTINGS.fragment_max_count for n in partial.parts)
            assert partial.size <= SETTINGS.fragment_max_message
            assert not partial.last or max(partial.parts) <= partial.last
            held += partial.size
    assert held == r.total_bytes <= SETTINGS.fragment_total_bytes
    assert len(r._first) <= SETTINGS.fragment_first_max
    per_source: dict[object, int] = {}
    for partial in r._first.values():
        per_source[partial.source] = per_source.get(partial.source, 0) + 1
    assert all(n <= SETTINGS.fragment_first_per_source for n in per_source.values())


def run(data: bytes) -> None:
    core, ours = _core()
    now = 0.0
    pos = 0
    unknown = bytes(range(1, 9)) + bytes(range(9, 17))
    while pos + _RECORD.size <= len(data):
        kind, fid, number, flags, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        body, pos = data[pos : pos + length], pos + length
        source = SOURCES[(kind >> 3) % len(SOURCES)]
        if flags & 0x02:
            now += 4.0
        if kind & 0x04:
            if not body:
                continue  # the parent forwards no empty datagram (DatagramIn refuses it)
            datagram = body
        else:
            which = kind & 0x03
            if which == 0:
                cookies = ours + bytes([fid | 1]) * 8
            elif which == 1:
                cookies = unknown
            else:
                cookies = bytes([fid | 1, which]) * 4 + bytes(8)
            frag_flags = (flags & 0x01) | (flags & 0xF8)
            payload = struct.pack("!BBHHBB", 0, 0, 8 + len(body), fid % 4, number, frag_flags)
            total = 28 + len(payload) + len(body)
            header = cookies + bytes([132, 0x10, 2, 0x01 if flags & 0x04 else 0]) + bytes(4)
            datagram = header + total.to_bytes(4, "big") + payload + body
        msg = DatagramIn(Endpoint(LEFT, 500), Endpoint(source, 500), False, datagram)
        out = core.handle(msg, now)
        out += core.handle_timers(now)
        _check(core, out)


def TestOneInput(data: bytes) -> None:
    run(data)


def _record(kind: int, fid: int, number: int, flags: int, body: bytes) -> bytes:
    return _RECORD.pack(kind, fid, number, flags, len(body)) + body


def make_corpus() -> None:
    """A few scripts that reach completion, duplicates, timeouts, floods and bad fields."""
    chunk = bytes(range(200))
    seeds = {
        "complete-known": b"".join(
            _record(0, 1, n, 1 if n == 3 else 0, chunk) for n in (2, 1, 3)
        ),
        "first-flood": b"".join(
            _record(2 | (s << 3), s, 1, 0, chunk) for s in range(1, 8) for _ in range(2)
        ),
        "duplicate-and-timeout": _record(3, 2, 1, 0, chunk) * 2 + _record(3, 2, 2, 3, chunk),
        "bad-fields": _record(0, 1, 0, 0, chunk) + _record(0, 1, 1, 0x80, chunk)
        + _record(1, 1, 1, 1, chunk) + _record(4, 0, 0, 0, chunk[:40]),
        "second-last": _record(2, 1, 2, 1, chunk) + _record(2, 1, 3, 1, chunk),
    }  # fmt: skip
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, seed in seeds.items():
        (CORPUS / name).write_bytes(seed)


def main() -> None:
    if "--make-corpus" in sys.argv:
        make_corpus()
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
