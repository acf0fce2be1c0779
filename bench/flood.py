"""Phase 1 establishment under a flood of forged first messages (issue 8, point 2).

    sudo .venv/bin/python bench/flood.py [--pps 10000] [--runs 3] [--mode main|aggressive|both]

Two real ikeprivd in namespaces (tests/harness/netns.py topology: gwA 192.0.2.1, gwB
192.0.2.2, no default route). A forger in gwB's namespace sends prebuilt raw IPv4/UDP
datagrams to gwA:500 in a tight, paced loop: MM1 and AM1 with fresh initiator cookies,
half from the peer's own address (192.0.2.2:500), half from random sources in
192.0.2.0/24 and 203.0.113.0/24. Measured: `ike cmd=activate phase=1` until established,
without and with the flood, gwA initiating and gwB initiating; the achieved pps; gwA's
parent and child CPU seconds, its log lines and its drop counters during the flood. Prints
one JSON line per mode, then a table: no flood / flood side by side, both directions, the
goal bound (2 x the slowest no-flood time + one retransmission interval) and whether every
flooded run met it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"
STOP: list[int] = []  # set by SIGTERM in the forger: stop and report
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _templates() -> tuple[bytes, bytes]:
    """An MM1 and an AM1 as 192.0.2.2 would send them for the harness's definitions."""
    from harness.core_sim import ike_proposal, mirrored

    from ikepriv.child_negotiator.core.engine import Negotiator
    from ikepriv.ipc.messages import (
        PARENT_NONCE_BYTES,
        ErrorCode,
        InitiateCommand,
        NonceReply,
        NonceRequest,
        Phase,
    )
    from ikepriv.isakmp.constants import ExchangeType, GroupId

    out = []
    for mode in (ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE):
        _, config = mirrored([ike_proposal(group=GroupId.MODP_2048)], phase1_mode=mode)
        rng = random.Random(1)  # noqa: S311
        core = Negotiator(config, 0.0, rng.randbytes)
        for msg in core.handle(InitiateCommand(Phase.PHASE1, 1, None, None), 0.0):
            if isinstance(msg, NonceRequest):  # our nonce comes from the parent
                nonce = rng.randbytes(PARENT_NONCE_BYTES)
                core.handle(NonceReply(msg.request_id, ErrorCode.OK, 1, nonce), 0.0)
        out.append(core.sas.by_tunnel[1].flight.datagrams[0].data)
    return out[0], out[1]


def _packet(src: str, sport: int, dst: str, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, 500, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    return ip + udp


def forge(
    dst: str, peer: str, pps: int, seconds: float, templates: list[bytes]
) -> dict[str, float]:
    """Runs inside the forger's namespace: paced raw sends, prebuilt datagrams."""
    rng = random.Random(7)  # noqa: S311
    packets = []
    for i in range(4096):
        body = rng.randbytes(8) + templates[i % len(templates)][8:]
        if i % 2 == 0:
            src, sport = peer, 500
        else:
            net = rng.choice(("192.0.2.", "203.0.113."))
            src, sport = (
                net + str(rng.randrange(20, 250)),
                rng.choice((500, rng.randrange(1024, 65535))),
            )
        packets.append((_packet(src, sport, dst, body), (dst, 0)))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    sent = errors = 0
    start = time.monotonic()
    end = start + seconds
    n = len(packets)
    while True:
        now = time.monotonic()
        if now >= end or STOP:
            break
        due = int((now - start) * pps)
        while sent < due:
            pkt, addr = packets[sent % n]
            try:
                s.sendto(pkt, addr)
            except OSError:
                errors += 1
            sent += 1
        time.sleep(0.0005)
    elapsed = time.monotonic() - start
    return {"sent": sent, "errors": errors, "seconds": elapsed, "pps": sent / elapsed}


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines(path: Path) -> int:
    try:
        return len(path.read_bytes().splitlines())
    except OSError:
        return 0


RETRANSMIT = 2.0  # Settings.retransmit_base
KEPT = (
    "datagrams_in",
    "udp_forwarded",
    "udp_dropped_first_overflow",
    "udp_dropped_unknown_cookies",
    "udp_dropped_live_overflow",
    "dropped_policy",
    "dropped_work_budget",
    "half_open_evicted",
    "notifies_sent",
    "phase1_established",
)


def _counters(text: str) -> dict[str, int]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if k in KEPT} if isinstance(data, dict) else {}


def table(results: list[dict[str, object]]) -> str:
    """No flood / flood side by side, per mode and direction, with the goal bound."""
    rows = ["mode        initiator      no flood (s)      flood (s)                bound (s)  met"]
    for r in results:
        base, flood = r["no_flood_s"], r.get("flood_s", {})
        assert isinstance(base, dict) and isinstance(flood, dict)
        for side, who in (("a", "gwA (flooded)"), ("b", "gwB -> gwA")):
            bound = 2 * max(base[side]) + RETRANSMIT
            got = flood.get(side, [])
            met = bool(got) and all(t < bound for t in got)
            rows.append(f"{r['mode']:<11} {who:<14} "
                        f"{' '.join(f'{t:.2f}' for t in base[side]):<17} "
                        f"{' '.join(f'{t:.2f}' for t in got):<24} {bound:<10.2f} "
                        f"{'yes' if met else 'NO'}")  # fmt: skip
    for r in results:
        rows.append(f"{r['mode']}: forger {r.get('forger')}, gwA CPU share "
                    f"{r.get('gwA_cpu_share')}, log lines/s {r.get('gwA_log_lines_per_s')}, "
                    f"counters {r.get('gwA_stats')}")  # fmt: skip
    return "\n".join(rows)


def measure(pps: int, runs: int, mode: str, state_root: Path) -> dict[str, object]:
    from harness import netns as nsmod
    from harness.interop import Scenario, peer_spec
    from harness.peers import make_peer

    topo = nsmod.Topology(prefix=f"fl{os.getpid() % 100000}")
    topo.build()
    result: dict[str, object] = {"mode": mode, "target_pps": pps}
    try:
        sc = Scenario("flood", "ikepriv", "ikepriv", mode)
        a = make_peer("ikepriv", peer_spec(topo, sc, "initiator"), state_root)  # gwA: flooded
        b = make_peer("ikepriv", peer_spec(topo, sc, "responder"), state_root)
        with a, b:
            a.start()
            b.start()

            def once(side: object) -> float:
                t = time.monotonic()
                ok = side.initiate_phase1(timeout=60)  # type: ignore[attr-defined]
                took = time.monotonic() - t
                for peer in (a, b):
                    peer.ike("cmd=remove", "phase=1")  # type: ignore[attr-defined]
                time.sleep(0.3)
                return took if ok else float("inf")

            base = {"a": [once(a) for _ in range(runs)], "b": [once(b) for _ in range(runs)]}
            result["no_flood_s"] = base
            mm1, am1 = _templates()
            seconds = 20.0 * runs + 20.0
            forger = subprocess.Popen(  # noqa: S603 -- our own script, fixed arguments
                [IP, "netns", "exec", topo.gw_b, sys.executable, __file__, "forge",
                 nsmod.GW_A_OUTER, nsmod.GW_B_OUTER, str(pps), str(seconds), mm1.hex(), am1.hex()],
                stdout=subprocess.PIPE, text=True)  # fmt: skip
            try:
                time.sleep(3.0)  # let the flood reach its steady state
                pids = [a.pid, *a.child_pids()]  # type: ignore[attr-defined]
                cpu0 = [_cpu(p) for p in pids if p]
                lines0, t0 = _lines(a.daemon_log), time.monotonic()  # type: ignore[attr-defined]
                flood = {"a": [], "b": []}
                for _ in range(runs):
                    flood["a"].append(once(a))
                    flood["b"].append(once(b))
                dt = time.monotonic() - t0
                cpu1 = [_cpu(p) for p in pids if p]
                result["flood_s"] = flood
                child_cpu = (sum(cpu1[1:]) - sum(cpu0[1:])) / dt
                result["gwA_cpu_share"] = {"parent": (cpu1[0] - cpu0[0]) / dt, "child": child_cpu}
                log_path = a.daemon_log  # type: ignore[attr-defined]
                result["gwA_log_lines_per_s"] = (_lines(log_path) - lines0) / dt
                stats = a.ike("cmd=list", "stats", "json")  # type: ignore[attr-defined]
                result["gwA_stats"] = _counters(stats.stdout)
            finally:
                forger.terminate()
                out, _ = forger.communicate(timeout=30)
            result["forger"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    finally:
        topo.destroy()
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "forge":
        dst, peer, pps, seconds, mm1, am1 = sys.argv[2:8]
        import signal

        signal.signal(signal.SIGTERM, lambda *_: STOP.append(1))
        res = forge(dst, peer, int(pps), float(seconds), [bytes.fromhex(mm1), bytes.fromhex(am1)])
        print(json.dumps(res), flush=True)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--pps", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mode", choices=("main", "aggressive", "both"), default="both")
    args = ap.parse_args()
    modes = ("main", "aggressive") if args.mode == "both" else (args.mode,)
    results = []
    for mode in modes:
        with tempfile.TemporaryDirectory() as d:
            results.append(measure(args.pps, args.runs, mode, Path(d)))
        print(json.dumps(results[-1]), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
