"""CPU time of the negotiation core per handshake, responder side.

Run:  .venv/bin/python bench/handshake.py [--runs N] [--seed S]

Each run is a full Main Mode (PSK, AES-128, SHA2-256, MODP-2048) plus one Quick Mode (ESP
AES-128/HMAC-SHA2-256, no PFS) between two in-process cores (tests/harness/core_sim.py).
Only the responder's handle()/handle_timers() calls are timed, with time.process_time, so
the figure is the core's own CPU cost: decoding, DH, key derivation, hashing, encryption
and building its requests. The stand-in parent's SKEYID prf (which the real parent
computes) and the simulated network are outside the timed region. A Main Mode only line
is printed too, to compare with the reference: strongSwan's 3.2 ms for its phase 1 alone,
measured on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.core_sim import Simulation, esp_proposal, ike_proposal, mirrored

from ikepriv.isakmp.constants import GroupId, IkeEncryption, IkeHash

STRONGSWAN_PHASE1_MS = 3.2


def one(seed: int, phase: int) -> tuple[float, int]:
    init, resp = mirrored(
        [ike_proposal(IkeEncryption.AES_CBC, 128, IkeHash.SHA2_256, GroupId.MODP_2048)],
        [esp_proposal()],
    )
    sim = Simulation(init, resp, seed=seed, measure="responder")
    sim.initiate(phase=phase, number=1)
    sim.run(duration=5.0)
    if phase == 2:
        sim.assert_keys_match(expected_pairs=2)
    else:
        assert len(sim.established_isakmp("responder")) == 1
    return sim.responder.cpu_seconds, sim.responder.handle_calls


def measure(runs: int, seed: int, phase: int) -> list[float]:
    one(seed - 1, phase)  # warm-up: imports, MODP tables
    return [one(seed + i, phase)[0] for i in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for phase, label in ((2, "Main Mode + Quick Mode"), (1, "Main Mode only")):
        times = measure(args.runs, args.seed, phase)
        mean = statistics.fmean(times) * 1000
        median = statistics.median(times) * 1000
        print(
            f"{label:24s} responder CPU: mean {mean:.2f} ms, median {median:.2f} ms "
            f"per handshake ({args.runs} runs, MODP-2048)"
        )
    print(f"{'reference':24s} strongSwan phase 1 alone: {STRONGSWAN_PHASE1_MS} ms on this machine")


if __name__ == "__main__":
    main()
