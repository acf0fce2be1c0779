"""What one more Main Mode and one `ike cmd=list` cost next to many held phase 1 SAs.

Run:  .venv/bin/python bench/scale.py [--held 0,1000,5000,10000] [--runs N]

For each number of held SAs, in one negotiation core (tests/harness/core_sim.py, as
bench/handshake.py) that has negotiated one ISAKMP SA and holds that many more
(tests/harness/held.py: copies with their own tunnel ids, cookies, peer addresses and
timer deadlines):

- **Main Mode**: the responder core's CPU (time.process_time of its handle calls) for a
  Main Mode (PSK, AES-128, SHA2-256, MODP-2048) with the same peer, which supersedes the
  previous one: the median of `--runs`. Flat means no establishment work per held SA.
- **list**: `ike cmd=list phase=1` of all of them (held + 1 rows) through the real parent
  code (parent_kernel.commands.Commands and requests.ChildRequests, paging and all), the
  core answering each ListCommand, every message encoded and decoded with the IPC codec as
  on the socketpair, every Response encoded for the control socket and the CLI's decode and
  merge of them. Wall time and CPU of the whole listing, in one process (no socket
  transit; two processes would overlap the child's and the parent's share).
- **vetting**: the parent's CPU per DatagramOut vetted (Vetter.datagram) with that many
  phase 1 definitions (one peer address each).

With `--daemon` (root: it creates two network namespaces with 192.0.2.1/.2, as the tests
do), the listing is also measured for real: a real ikeprivd whose negotiator is a stand-in
(tests/test_daemon_support.py StandIn) that answers each ListCommand with this core's own
pages, and the installed `ike cmd=list phase=1` run against its control socket; printed:
the wall time of `ike`, its CPU and the daemon's. The stand-in's relay process is one hop
more than a real child has.

Figures, not pass/fail: compare the rows with each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import ipaddress
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trio
from harness.core_sim import Simulation, esp_proposal, ike_proposal, mirrored
from harness.held import hold

from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.config import load_definitions
from ikepriv.ipc import messages as m
from ikepriv.ipc.control import merge
from ikepriv.ipc.schema import Direction, Message, decode, encode
from ikepriv.isakmp.constants import GroupId, IkeEncryption, IkeHash
from ikepriv.parent_kernel import vetting
from ikepriv.parent_kernel.admission import Admission
from ikepriv.parent_kernel.children import Negotiators, Shard
from ikepriv.parent_kernel.commands import Commands
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.installed import Installed
from ikepriv.parent_kernel.installer import Installer
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.requests import ChildRequests
from ikepriv.parent_kernel.shards import Sharding
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.supervisor import ProtocolViolation, Supervisor
from ikepriv.parent_kernel.vetting import Activation, Vetter


def simulation(seed: int) -> Simulation:
    init, resp = mirrored(
        [ike_proposal(IkeEncryption.AES_CBC, 128, IkeHash.SHA2_256, GroupId.MODP_2048)],
        [esp_proposal()],
    )
    sim = Simulation(init, resp, seed=seed, measure="responder")
    sim.initiate(phase=1, number=1)
    sim.run(duration=30.0)
    return sim


def main_mode_cost(sim: Simulation, runs: int) -> float:
    """Median responder CPU seconds of one more Main Mode with the same peer."""
    side = sim.responder
    times = []
    for _ in range(runs):
        before = side.cpu_seconds
        sim.initiate(phase=1, number=1)
        sim.run(duration=30.0)
        times.append(side.cpu_seconds - before)
    return statistics.median(times)


def list_cost(core: Negotiator, now: float) -> tuple[float, float, int]:
    """Wall and CPU seconds of `ike cmd=list phase=1` of everything `core` holds, through
    the parent's code (see the module docstring), and the rows the CLI got."""
    state = ParentState(kernel=cast(XfrmKernel, None), view=DbView())
    to_child: trio.MemorySendChannel[Message]
    to_child, from_parent = trio.open_memory_channel[Message](16)

    def send(msg: Message) -> bool:
        to_child.send_nowait(decode(encode(msg), Direction.PARENT_TO_CHILD))
        return True

    requests = ChildRequests(state, send, [])

    async def reload() -> str:
        return ""

    # one child, as a daemon with --children 1 has it (the supervisor is never asked: the
    # listing goes through the requests' channel, `send` above)
    shard = Shard(0, cast(Supervisor, None), requests, Admission(lambda _: None))
    children = Negotiators(Sharding(1), [shard], Installer(state))
    commands = Commands(state, children, "/nonexistent", reload)
    request = m.ListRequest(m.Phase.PHASE1, (), False, None, False, False)
    rows = 0
    violation = ""

    async def child() -> None:
        nonlocal violation
        async for command in from_parent:
            for out in core.handle(command, now):
                try:
                    await requests.handle(decode(encode(out), Direction.CHILD_TO_PARENT))
                except ProtocolViolation as exc:  # the supervisor would kill the child
                    violation = str(exc)
                    requests.child_down()
                    return

    async def listing() -> None:
        nonlocal rows
        asked = decode(encode(request), Direction.CLI_TO_DAEMON)
        answer = commands.handle(asked)
        if inspect.isawaitable(answer):  # a tree from before the listing was streamed
            wire = [encode(response) for response in await answer]
        else:
            # encoded Responses (or, on a tree from before they were, Response messages)
            wire = [part if isinstance(part, bytes) else encode(part) async for part in answer]
        answers = [decode(data, Direction.DAEMON_TO_CLI) for data in wire]
        _, _, got = merge([a for a in answers if isinstance(a, m.Response)])
        rows = len(got)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            await listing()
            nursery.cancel_scope.cancel()

    wall, cpu = time.perf_counter(), time.process_time()
    trio.run(run)
    if violation:
        print(f"  list: protocol violation ({violation}): the child would be killed")
    return time.perf_counter() - wall, time.process_time() - cpu, rows


DEFINITION = """
[[phase1]]
name = "p"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "bench"
proposals = ["aes128-sha256-modp2048"]
"""


def vetting_cost(definitions: int, rounds: int = 2000) -> float:
    """The parent's CPU seconds per DatagramOut vetted, with this many definitions."""
    template = load_definitions(DEFINITION).phase1[0]
    base = ipaddress.IPv6Address("2001:db8:0:b::")
    local = ipaddress.IPv6Address("2001:db8:0:a::1")
    phase1 = [dataclasses.replace(template, number=i + 1, name=f"p{i + 1}", local_addr=local,
                                  remote_addr=base + i + 1)
              for i in range(max(1, definitions))]  # fmt: skip
    view = DbView.build(1, phase1, [])
    view = dataclasses.replace(view, phase1=MappingProxyType(dict(view.phase1)))
    peers = PeerTable()
    peer = base + 1
    peers.record(local, peer, 500, False, 0.0)
    vetter = Vetter(view, Installed(), peers, state_activations())
    msg = m.DatagramOut(m.Endpoint(local, 500), m.Endpoint(peer, 500), False, bytes(28))
    ports = frozenset({500, 4500})
    assert vetter.datagram(msg, ports) is None
    start = time.process_time()
    for _ in range(rounds):
        vetter.datagram(msg, ports)
    return (time.process_time() - start) / rounds


def state_activations() -> Mapping[int, Activation]:
    """The daemon's kind of activation table (ParentState's), so the figure is the daemon's
    (and a plain dict before there was one, so the bench runs on older trees too)."""
    table: Mapping[int, Activation] = getattr(vetting, "ActivationTable", dict)()
    return table


def daemon_list_cost(core: Negotiator, now: float) -> tuple[float, float, float, int]:
    """Wall seconds of `ike cmd=list phase=1` against a real daemon whose stand-in child
    answers from `core`, the CPU seconds of `ike` and of the daemon, and the rows printed."""
    import os
    import resource
    import subprocess
    import tempfile
    import threading

    from test_daemon_support import Daemon, StandIn, Topology

    from ikepriv.ipc.control import CONTROL_PATH_ENV

    def cpu_of(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    with tempfile.TemporaryDirectory() as tmp, Topology.create() as topo:
        child = StandIn(Path(tmp))
        daemon = Daemon.start(topo.a, Path(tmp), child_cmd=child.child_cmd)
        try:
            child.accept()
            done = threading.Event()

            def serve() -> None:
                while not done.is_set():
                    try:
                        msg = child.recv()
                    except TimeoutError:
                        continue
                    if msg is None:
                        return
                    if isinstance(msg, m.ListCommand):
                        for out in core.handle(msg, now):
                            child.send(out)

            server = threading.Thread(target=serve, daemon=True)
            server.start()
            ike = str(Path(sys.executable).parent / "ike")
            env = {**os.environ, CONTROL_PATH_ENV: daemon.control_path}
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            daemon_before = cpu_of(daemon.proc.pid)
            start = time.perf_counter()
            result = subprocess.run(  # noqa: S603 -- our own installed script
                [ike, "cmd=list", "phase=1", "json"], capture_output=True, text=True,
                env=env, check=True, timeout=120,
            )  # fmt: skip
            wall = time.perf_counter() - start
            daemon_cpu = cpu_of(daemon.proc.pid) - daemon_before
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            ike_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            done.set()
            rows = result.stdout.count('"tunnel_id"')
        finally:
            daemon.stop()
            child.close()
    return wall, ike_cpu, daemon_cpu, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held", default="0,1000,5000,10000")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--daemon", action="store_true", help="also list through ikeprivd")
    args = parser.parse_args()
    print(f"{'held SAs':>9} {'MM core CPU':>12} {'list wall':>10} {'list CPU':>9} "
          f"{'rows':>6} {'vet/datagram':>13}")  # fmt: skip
    for count in (int(word) for word in args.held.split(",")):
        sim = simulation(seed=count + 1)
        core = sim.responder.core
        (first,) = sim.established_isakmp("responder")
        hold(core, count, first)
        main_mode_cost(sim, 2)  # warm-up: imports, MODP tables
        mm = main_mode_cost(sim, args.runs)
        wall, cpu, rows = list_cost(core, sim.now)
        vet = vetting_cost(count)
        print(f"{count:>9} {mm * 1000:>9.2f} ms {wall:>8.3f} s {cpu:>7.3f} s {rows:>6} "
              f"{vet * 1e6:>10.1f} us")  # fmt: skip
        if args.daemon:
            wall, ike_cpu, daemon_cpu, rows = daemon_list_cost(core, sim.now)
            print(f"{'':>9} ikeprivd: `ike cmd=list phase=1` {wall:.3f} s wall, ike CPU "
                  f"{ike_cpu:.3f} s, daemon CPU {daemon_cpu:.3f} s, {rows} rows")  # fmt: skip


if __name__ == "__main__":
    main()
