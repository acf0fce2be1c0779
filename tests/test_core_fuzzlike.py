"""The core fuzz harness (fuzz/fuzz_core.py) as a test: its seeds, mutations of them and
random inputs all run clean (no exception, only schema-valid messages, bounded tables), and
its set-up really drives the exchanges it claims to."""

from __future__ import annotations

import ipaddress
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzz_core as fc  # noqa: E402

from ikepriv.ipc.messages import DatagramIn, DatagramOut, Endpoint  # noqa: E402
from ikepriv.isakmp import IdPayload, build_message, decode_message, encode_message  # noqa: E402

SEEDS = sorted((FUZZ / "corpus" / "core").iterdir())


def test_the_seed_corpus_covers_every_stage() -> None:
    names = {path.name for path in SEEDS}
    for stage in fc.STAGES:
        assert any(n.startswith(stage.name + "-") for n in names), stage.name


@pytest.mark.parametrize("path", SEEDS[::4], ids=lambda p: p.name)
def test_seed_runs_clean(path: Path) -> None:
    fc.run(path.read_bytes())


@pytest.mark.parametrize("stage", range(len(fc.STAGES)), ids=[s.name for s in fc.STAGES])
def test_the_real_continuation_completes_the_exchange(stage: int) -> None:
    """Fed the datagrams each core was about to get, the pair finishes MM/AM + QM."""
    pair = fc.build(fc.STAGES[stage])
    for side in fc.SIDES:
        held = [d.data for target, d in pair.held if target == side]
        if not held:
            continue
        flags = fc.TO_INITIATOR if side == "initiator" else 0

        def finished(done: fc.Pair) -> None:
            for core in done.cores.values():
                assert any(sa.established for sa in core.sas.by_tunnel.values())
                assert core.sas.children

        fc.run(fc.join_input(stage, flags, held), finished)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.5 and len(buf) > 2:
            i = rng.randrange(2, len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif choice < 0.7 and len(buf) > 8:
            del buf[rng.randrange(len(buf) // 2, len(buf)) :]
        elif choice < 0.85:
            i = rng.randrange(2, len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        else:
            i = rng.randrange(2, len(buf)) if len(buf) > 2 else 2
            buf[i : i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff"])
    return bytes(buf)


@pytest.mark.parametrize("seed", range(8))
def test_mutated_seeds_run_clean(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - replayable on purpose
    for path in rng.sample(SEEDS, 12):
        fc.run(_mutate(path.read_bytes(), rng))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stage=st.integers(0, len(fc.STAGES) - 1),
    flags=st.integers(0, 255),
    datagrams=st.lists(st.binary(min_size=1, max_size=300), max_size=4),
)
def test_random_datagrams_run_clean(stage: int, flags: int, datagrams: list[bytes]) -> None:
    fc.run(fc.join_input(stage, flags, datagrams))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_real_headers_with_random_bodies_run_clean(data: st.DataObject) -> None:
    """The cookies and exchange of a real next message, anything after the header."""
    path = data.draw(st.sampled_from(SEEDS))
    parsed = fc.split_input(path.read_bytes())
    assert parsed is not None
    datagrams = [d[:28] + data.draw(st.binary(max_size=200)) for d in parsed.datagrams]
    stage = fc.STAGES.index(parsed.stage)
    fc.run(fc.join_input(stage, parsed.flags, datagrams))


def _am1(pair: fc.Pair) -> DatagramIn:
    (am1,) = [d for target, d in pair.held if target == "responder"]
    return am1


def test_a_flood_of_aggressive_mode_openings_is_bounded_per_peer() -> None:
    """Aggressive Mode costs the responder a DH per AM1: one address gets only so many
    (its work budget), and the rest is dropped before any DH."""
    pair = fc.build(next(s for s in fc.STAGES if s.name == "am-start"))
    am1 = _am1(pair)
    core = pair.cores["responder"]
    rng = random.Random(5)  # noqa: S311 - replayable on purpose
    for i in range(60):
        data = rng.randbytes(8) + am1.data[8:]
        message = DatagramIn(am1.local, Endpoint(am1.remote.addr, 1024 + i), False, data)
        pair.route("responder", core.handle(message, pair.now), None)
        pair.pump()
    per_peer = int(core.settings.am_budget_source[0])
    assert len(core.sas.by_tunnel) == per_peer
    assert core.counters.dropped_work_budget == 60 - per_peer
    fc.check_bounds(core)


def test_unknown_identities_get_at_most_one_notify_per_period() -> None:
    pair = fc.build(next(s for s in fc.STAGES if s.name == "am-start"))
    am1 = _am1(pair)
    message = decode_message(am1.data)
    payloads = [
        IdPayload.address(ipaddress.ip_address("203.0.113.9")) if isinstance(p, IdPayload) else p
        for p in message.payloads
    ]
    core = pair.cores["responder"]
    rng = random.Random(6)  # noqa: S311 - replayable on purpose
    sent = []
    for _ in range(20):
        data = encode_message(
            build_message(rng.randbytes(8), bytes(8), message.header.exchange_type, 0, payloads)
        )
        out = core.handle(DatagramIn(am1.local, am1.remote, False, data), pair.now)
        sent += [m for m in out if isinstance(m, DatagramOut)]
    assert len(sent) == 1 and core.counters.notifies_suppressed == 19
    assert not core.sas.by_tunnel and core.counters.dropped_policy == 20
