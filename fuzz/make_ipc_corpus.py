"""Write the seed corpus of fuzz/fuzz_ipc.py: valid encodings of every IPC message type.

The values come from the same schema-derived hypothesis strategies as the round-trip tests
(tests/test_ipc_strategies.py), drawn deterministically, so the corpus follows the catalogue
when a message is added: rerun this script and commit fuzz/corpus/ipc/.

    .venv/bin/python fuzz/make_ipc_corpus.py [OUTPUT_DIR]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from hypothesis import Phase, given, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_ipc_strategies import MESSAGE_TYPES, struct_strategy  # noqa: E402

from ikepriv.ipc import Message, encode  # noqa: E402

PER_TYPE_AND_FAMILY = 3


def samples(cls: type[Message], family: int) -> list[bytes]:
    """A few distinct encodings: hypothesis's first draws, from small to larger."""
    found: list[bytes] = []

    @settings(derandomize=True, database=None, max_examples=30, phases=[Phase.generate])
    @given(struct_strategy(cls, family))
    def collect(msg: Message) -> None:
        wire = encode(msg)
        if wire not in found:
            found.append(wire)

    collect()
    if len(found) <= PER_TYPE_AND_FAMILY:
        return found
    found.sort(key=len)
    step = (len(found) - 1) / (PER_TYPE_AND_FAMILY - 1)
    return [found[round(i * step)] for i in range(PER_TYPE_AND_FAMILY)]


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus" / "ipc"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.bin"):
        old.unlink()
    seen: set[bytes] = set()
    for cls in MESSAGE_TYPES:
        for family in (4, 6):
            for wire in samples(cls, family):
                if wire in seen:  # messages without addresses look alike in both families
                    continue
                seen.add(wire)
                digest = hashlib.sha256(wire).hexdigest()[:12]
                (out / f"{cls.TYPE:04x}-{cls.__name__}-v{family}-{digest}.bin").write_bytes(wire)
    print(f"{len(seen)} seeds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
