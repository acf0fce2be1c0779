"""Captures of real signature-authenticated negotiations, for ikedump: two in-process cores
(harness/core_sim.py) run a phase 1, every datagram is recorded in the order it was
delivered, and each side's phase 1 DH shared secret g^xy is kept as the SA's keys are
derived (the negotiator wipes it right after), so the tests can hand ikedump exactly what an
operator with a key log would have. Used by tests/test_ikedump_signatures.py and
fuzz/fuzz_decrypt.py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

from harness.core_sim import LEFT, RIGHT, Simulation
from ikepriv.child_negotiator.core.exchanges import phase1

RAW_IP = 101  # pcap link type: raw IPv4/IPv6


@dataclass
class Capture:
    """The ISAKMP messages of a run in delivery order (sender, bytes) and g^xy per
    initiator cookie."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    dh_secrets: dict[bytes, bytes] = field(default_factory=dict)

    def write_pcap(
        self,
        path: Path,
        when: float,
        change: Callable[[int, bytes], bytes] | None = None,
    ) -> Path:
        """A raw-IP pcap on UDP 500, one frame a second from `when`; `change(frame number,
        message)` may alter a message as it is written (a capture-side tamper)."""
        with path.open("wb") as handle:
            writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=RAW_IP)
            for number, (sender, data) in enumerate(self.messages, 1):
                message = change(number, data) if change is not None else data
                src, dst = (LEFT, RIGHT) if sender == "initiator" else (RIGHT, LEFT)
                writer.writepkt(_ipv4_udp(src.packed, dst.packed, message), ts=when + number)
        return path

    def secrets_lines(self) -> str:
        """ikedump --secrets lines: one 'dh-secret ICOOKIE=HEX' per ISAKMP SA."""
        return "".join(f"dh-secret {c.hex()}={s.hex()}\n" for c, s in self.dh_secrets.items())


def _ipv4_udp(src: bytes, dst: bytes, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 500, 500, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    return header + udp


@contextmanager
def _keeping_dh_secrets(capture: Capture) -> Iterator[None]:
    """Record g^xy where the negotiator derives the phase 1 keys from it (the real
    install_keys still runs; only a copy of its input is kept)."""
    real = phase1.install_keys

    def install_keys(core: Any, sa: Any, skeyid: bytes) -> None:
        capture.dh_secrets.setdefault(bytes(sa.icookie), bytes(sa.g_xy))
        real(core, sa, skeyid)

    phase1.install_keys = install_keys  # type: ignore[assignment]
    try:
        yield
    finally:
        phase1.install_keys = real  # type: ignore[assignment]


def record_phase1(sim: Simulation, duration: float = 120) -> Capture:
    """Run a phase 1 from the initiator's definition 1 and record it."""
    capture = Capture()

    def observe(receiver: str, data: bytes) -> None:
        sender = "responder" if receiver == "initiator" else "initiator"
        capture.messages.append((sender, data))

    sim.tamper = observe
    with _keeping_dh_secrets(capture):
        sim.initiate(phase=1, number=1)
        sim.run(duration=duration)
    sim.tamper = None
    return capture
