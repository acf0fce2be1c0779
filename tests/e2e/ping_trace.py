"""Where a lost ping went missing: captures on both gateways during a lanA -> lanB ping,
read back as one report (guest side; plain dicts, so they travel back as JSON).

Three captures: gwA's LAN side (eA: requests in, replies out, clear text), gwB's LAN side
(eB: requests out, replies in, clear text) and the link between the gateways (vA: ESP with
its SPI and sequence number). For every sequence number without a reply the report says on
which of the four legs it was last seen (request at eA, request at eB, reply at eB, reply at
eA), and next to it the ESP timeline: per direction and SPI the first and last packet (times
relative to a reference, the kill of the child in the restart scenario). With the increase
of the kernel's XFRM error counters (/proc/net/xfrm_stat) of both gateways over the same
window, that tells which gateway dropped the packet and on which SA.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import netns as nsmod

from e2e.common import Capture

ETH_IPV4 = 0x0800
IPPROTO_ICMP, IPPROTO_ESP = 1, 50
ICMP_ECHO_REPLY, ICMP_ECHO = 0, 8

Frame = tuple[float, bytes]


def read_pcap(path: Path) -> list[Frame]:
    """(time, frame) of a classic pcap file as Capture writes it."""
    data = path.read_bytes()
    out, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack_from("<IIII", data, off)
        off += 16
        out.append((sec + usec / 1e6, data[off : off + incl]))
        off += incl
    return out


def _ipv4(frame: bytes) -> tuple[str, str, int, bytes] | None:
    """(src, dst, protocol, payload) of an Ethernet IPv4 frame."""
    if len(frame) < 34 or struct.unpack_from("!H", frame, 12)[0] != ETH_IPV4:
        return None
    ihl = (frame[14] & 0x0F) * 4
    src, dst = ".".join(map(str, frame[26:30])), ".".join(map(str, frame[30:34]))
    return src, dst, frame[23], frame[14 + ihl :]


def echoes(frames: list[Frame]) -> dict[tuple[int, int], float]:
    """(ICMP type, sequence) -> first time seen, echo requests and replies only."""
    out: dict[tuple[int, int], float] = {}
    for t, f in frames:
        ip = _ipv4(f)
        if ip is None or ip[2] != IPPROTO_ICMP or len(ip[3]) < 8:
            continue
        kind, seq = ip[3][0], struct.unpack_from("!H", ip[3], 6)[0]
        if kind in (ICMP_ECHO, ICMP_ECHO_REPLY):
            out.setdefault((kind, seq), t)
    return out


def esp_timeline(frames: list[Frame], ref: float) -> list[dict[str, Any]]:
    """Per (source, SPI): packets, first and last time (s after `ref`), first and last ESP
    sequence number, in order of first appearance."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for t, f in frames:
        ip = _ipv4(f)
        if ip is None or ip[2] != IPPROTO_ESP or len(ip[3]) < 8:
            continue
        spi, seq = struct.unpack_from("!II", ip[3], 0)
        r = rows.setdefault(
            (ip[0], spi),
            {
                "src": ip[0],
                "spi": f"{spi:08x}",
                "packets": 0,
                "first": round(t - ref, 3),
                "first_seq": seq,
            },
        )
        r["packets"] += 1
        r["last"], r["last_seq"] = round(t - ref, 3), seq
    return list(rows.values())


_TS = re.compile(r"^\[(\S+)\] (.*)$")
_FIELDS = re.compile(r"\b(spi 0x[0-9a-f]+|dir \w+|reqid \d+|action \w+|priority \d+)")


def xfrm_events(text: str, ref: float) -> list[str]:
    """`ip -ts xfrm monitor` output as one line per event: seconds after `ref`, what (SA or
    policy added, Updated, Deleted, Expired...), addresses and the fields that tell SAs and
    policies apart (spi, dir, reqid, action, priority)."""
    out: list[str] = []
    head: tuple[float, str] | None = None
    body: list[str] = []

    def flush() -> None:
        if head is not None:
            fields = " ".join(dict.fromkeys(_FIELDS.findall(" ".join(body))))
            out.append(f"{head[0] - ref:+.3f} {head[1].strip()} {fields}".rstrip())

    for line in text.splitlines():
        m = _TS.match(line)
        if m is None:
            body.append(line)
            continue
        flush()
        head, body = (datetime.fromisoformat(m[1]).timestamp(), m[2]), [m[2]]
    flush()
    return out


def lost_entering(report: dict[str, Any], gw_a: bool) -> list[int]:
    """The lost sequence numbers (of a PingTrace report) last seen on their way into one
    gateway over ESP: with `gw_a`, replies that left gwB's LAN side and never reached gwA's;
    otherwise requests that passed gwA's LAN side and never left gwB's."""
    seen, gone = (
        ("reply at gwB (eB)", "reply at gwA (eA)")
        if gw_a
        else ("request at gwA (eA)", "request at gwB (eB)")
    )
    return [
        int(seq)
        for seq, legs in report["lost_seq_seen"].items()
        if legs[seen] is not None and legs[gone] is None
    ]


class PingTrace:
    """The three captures and the counters, from start() to stop()."""

    LEGS = ("request at gwA (eA)", "request at gwB (eB)", "reply at gwB (eB)", "reply at gwA (eA)")

    def __init__(self, topo: nsmod.Topology, directory: Path | None = None) -> None:
        """`directory`: where the captures stay (eA.pcap, eB.pcap, vA.pcap); a temporary one
        if not given."""
        self.topo = topo
        self.dir = directory or Path(tempfile.mkdtemp(prefix="ping-trace."))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.caps: dict[str, Capture] = {}
        self.stat_before: dict[str, dict[str, int]] = {}
        self.monitors: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.stat_before = {
            gw: nsmod.xfrm_stat_errors(gw) for gw in (self.topo.gw_a, self.topo.gw_b)
        }
        for name, (ns, ifname) in {
            "eA": (self.topo.gw_a, "eA"),
            "eB": (self.topo.gw_b, "eB"),
            "vA": (self.topo.gw_a, "vA"),
        }.items():
            self.caps[name] = Capture(ns, ifname, self.dir / f"{name}.pcap")
        for gw in (self.topo.gw_a, self.topo.gw_b):
            with open(self.dir / f"xfrm-{gw}.txt", "wb") as f:
                argv = ["ip", "-ts", "-n", gw, "xfrm", "monitor"]
                # our own program, stopped by PID in stop()
                self.monitors[gw] = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)  # noqa: S603

    def stop(self, missing: list[int], ref: float) -> dict[str, Any]:
        """The report: counter increases, the ESP timeline, and per lost sequence number
        the legs it was seen on (times after `ref`)."""
        for c in self.caps.values():
            c.stop()
        for proc in self.monitors.values():
            proc.terminate()
            proc.wait(timeout=5)
        stat = {
            gw: nsmod.counter_increase(before, nsmod.xfrm_stat_errors(gw))
            for gw, before in self.stat_before.items()
        }
        a = echoes(read_pcap(self.dir / "eA.pcap"))
        b = echoes(read_pcap(self.dir / "eB.pcap"))
        lost = {}
        for seq in missing:
            legs = ((a, ICMP_ECHO), (b, ICMP_ECHO), (b, ICMP_ECHO_REPLY), (a, ICMP_ECHO_REPLY))
            lost[str(seq)] = {
                leg: round(seen[(kind, seq)] - ref, 3) if (kind, seq) in seen else None
                for leg, (seen, kind) in zip(self.LEGS, legs, strict=True)
            }
        return {
            "xfrm_stat_increase": stat,
            "esp_on_the_link": esp_timeline(read_pcap(self.dir / "vA.pcap"), ref),
            "lost_seq_seen": lost,
            "xfrm_events": {
                gw: xfrm_events((self.dir / f"xfrm-{gw}.txt").read_text(errors="replace"), ref)
                for gw in self.monitors
            },
            "captures": str(self.dir),
        }
