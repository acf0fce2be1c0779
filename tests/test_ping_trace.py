"""The restart tier's loss accounting (e2e.ping_trace, restart_cases.peer_early_switch), on
the host: a lost ping is excused only when the trace shows libreswan's early switch (the
packet died entering ikepriv's gateway, whose XfrmAcquireError counter rose once for it),
never any other loss; and the `ip -ts xfrm monitor` lines read back as the events they are.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from e2e.ping_trace import echoes, esp_timeline, read_pcap, xfrm_events
from e2e.restart_cases import peer_early_switch

LEGS = ("request at gwA (eA)", "request at gwB (eB)", "reply at gwB (eB)", "reply at gwA (eA)")


def report(legs: dict[int, tuple[float | None, ...]], drops: dict[str, int]) -> dict[str, Any]:
    return {
        "xfrm_stat_increase": {gw: {"XfrmAcquireError": n} for gw, n in drops.items()},
        "lost_seq_seen": {str(s): dict(zip(LEGS, v, strict=True)) for s, v in legs.items()},
    }


REPLY_DIED_AT_A = (1.0, 1.0, 1.0, None)  # the reply left gwB, never reached lanA's side
REQUEST_DIED_AT_B = (1.0, None, None, None)  # the request passed gwA, never left gwB


def test_the_early_switch_into_ikeprivs_gateway_is_excused() -> None:
    r = report({35: REPLY_DIED_AT_A}, {"gwA": 1})
    assert peer_early_switch("libreswan", "gwA", True, r, [35], 1) == [35]
    r = report({35: REQUEST_DIED_AT_B}, {"gwB": 1})  # ikepriv on gwB: requests come in
    assert peer_early_switch("libreswan", "gwB", False, r, [35], 1) == [35]


def test_every_other_loss_is_not() -> None:
    cases = [
        ("strongswan", "gwA", True, report({35: REPLY_DIED_AT_A}, {"gwA": 1}), [35], 1),
        ("libreswan", "gwA", True, report({35: REPLY_DIED_AT_A}, {}), [35], 1),  # no counter
        ("libreswan", "gwA", True, report({35: REPLY_DIED_AT_A}, {"gwB": 1}), [35], 1),
        ("libreswan", "gwA", True, report({35: REQUEST_DIED_AT_B}, {"gwA": 1}), [35], 1),
        # one explained, one not: neither is excused
        ("libreswan", "gwA", True,
         report({35: REPLY_DIED_AT_A, 36: (1.0, None, None, None)}, {"gwA": 2}), [35, 36], 2),
        # more than one per Quick Mode
        ("libreswan", "gwA", True,
         report({s: REPLY_DIED_AT_A for s in (3, 4, 5)}, {"gwA": 3}), [3, 4, 5], 3),
        # ping counted a loss the trace has no sequence number for
        ("libreswan", "gwA", True, report({35: REPLY_DIED_AT_A}, {"gwA": 1}), [35], 2),
    ]  # fmt: skip
    for args in cases:
        assert peer_early_switch(*args) == [], args


MONITOR = """\
[2026-12-06T02:12:00.307000] src 192.0.2.2 dst 192.0.2.1
\tproto esp spi 0xecb088ba reqid 16393 mode tunnel
\treplay-window 0 flag af-unspec
[2026-12-06T02:12:00.308000] Async event  (0x10)  replay update
\tsrc 192.0.2.1 dst 192.0.2.2  reqid 0 protocol esp  SPI 0x0ebe771e
[2026-12-06T02:12:00.484000] Updated src 203.0.113.0/24 dst 198.51.100.0/24
\tdir out priority 1757393 ptype main
\ttmpl src 192.0.2.2 dst 192.0.2.1
\t\tproto esp reqid 16393 mode tunnel
"""


def test_xfrm_monitor_lines_become_one_line_per_event() -> None:
    from datetime import datetime

    ref = datetime.fromisoformat("2026-12-06T02:12:00.300000").timestamp()
    assert xfrm_events(MONITOR, ref) == [
        "+0.007 src 192.0.2.2 dst 192.0.2.1 spi 0xecb088ba reqid 16393",
        "+0.008 Async event  (0x10)  replay update reqid 0",
        "+0.184 Updated src 203.0.113.0/24 dst 198.51.100.0/24 dir out priority 1757393 "
        "reqid 16393",
    ]


def _frame(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))  # fmt: skip
    return b"\0" * 12 + b"\x08\x00" + ip + payload


def test_captures_read_back_as_echoes_and_esp(tmp_path: Path) -> None:
    frames = [
        (10.0, _frame("198.51.100.10", "203.0.113.10", 1, bytes([8, 0, 0, 0, 0, 1, 0, 35]))),
        (10.5, _frame("192.0.2.2", "192.0.2.1", 50, struct.pack("!II", 0xECB088BA, 1))),
        (10.6, _frame("192.0.2.2", "192.0.2.1", 50, struct.pack("!II", 0xECB088BA, 2))),
    ]
    path = tmp_path / "x.pcap"
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for t, f in frames:
        data += struct.pack("<IIII", int(t), int(t % 1 * 1e6), len(f), len(f)) + f
    path.write_bytes(data)
    read = read_pcap(path)
    assert [f for _, f in read] == [f for _, f in frames]
    assert echoes(read) == {(8, 35): 10.0}
    assert esp_timeline(read, 10.0) == [
        {"src": "192.0.2.2", "spi": "ecb088ba", "packets": 2, "first": 0.5, "first_seq": 1,
         "last": 0.6, "last_seq": 2}
    ]  # fmt: skip
