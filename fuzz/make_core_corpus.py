"""Seed corpus for fuzz_core.py, from real exchanges between the harness' own cores.

For every stage of fuzz_core.STAGES: the next datagram each core would have received (the
exchange's real continuation) and the last one it did receive (a duplicate), each with and
without timers, the continuation also from port 4500 and from an unknown port; for the
established stages also what the cores send once timers run (DPD, rekeys, deletes) as
input for the other core. Every seed is checked to run clean before it is written.

    .venv/bin/python fuzz/make_core_corpus.py      # rewrites fuzz/corpus/core/
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_core as fc

from ikepriv.ipc.messages import DatagramOut

CORPUS = Path(__file__).resolve().parent / "corpus" / "core"


def _flags_for(side: str) -> int:
    return fc.TO_INITIATOR if side == "initiator" else 0


def seeds() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for index, stage in enumerate(fc.STAGES):
        pair = fc.build(stage)
        per_side: dict[str, list[tuple[str, list[bytes]]]] = {side: [] for side in fc.SIDES}
        for side in fc.SIDES:
            held = [d.data for target, d in pair.held if target == side]
            if held:
                per_side[side].append(("next", held))
            last = [d.data for target, d in pair.log if target == side][-1:]
            if last:
                per_side[side].append(("dup", last))
        if stage.delivered is None:
            pair.timers(pair.now + 40000.0)
            for side, message in pair.emitted:
                if isinstance(message, DatagramOut) and message.data != fc.NATT_KEEPALIVE:
                    per_side[pair.peer(side)].append(("later", [message.data]))
        for side, items in per_side.items():
            for label, datagrams in items[:6]:
                variants = (0, fc.RUN_TIMERS)
                if label == "next":  # the real continuation also from elsewhere
                    variants += (fc.FROM_NATT, fc.OTHER_PORT | 0x30)
                for extra in variants:
                    flags = _flags_for(side) | extra
                    name = f"{stage.name}-{side}-{label}-{flags:02x}"
                    out.append((name, fc.join_input(index, flags, datagrams)))
    return out


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for old in CORPUS.iterdir():
        old.unlink()
    written = set()
    for name, data in seeds():
        digest = hashlib.sha256(data).hexdigest()[:12]
        if digest in written:
            continue
        fc.run(data)  # must be clean
        written.add(digest)
        (CORPUS / f"{name}-{digest}").write_bytes(data)
    print(f"{len(written)} seeds in {CORPUS}")


if __name__ == "__main__":
    main()
