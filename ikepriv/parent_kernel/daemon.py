"""ikeprivd: the privileged parent's trio main.

Start-up, in this order: syslog, database (read-only), XFRM sockets, UDP 500/4500,
control socket, then the children (`Options.children`, ikeprivd --children: several
sandboxed negotiators, each serving the peers of its shard, see shards.py and children.py;
one behaves exactly as the single child always did). Readiness (sd_notify READY=1) is
reported once every child has answered Ready once and been sent its configuration
(ConfigBegin..ConfigEnd; a child does not acknowledge it, but it reads its channel in order,
so anything sent later finds the configuration loaded): from then on a peer's first
datagram is answered, not dropped. If a child never comes up, READY=1 is never sent and
systemd's start timeout reports the failure. The autostart definitions are activated by
each child as soon as it is ready (those of its peers).

Datagrams that arrive while their child is not ready (before its first start, during a
restart) wait in its small queue (EARLY_QUEUE datagrams, at most EARLY_MAX_AGE seconds old)
and are handed to it right after its configuration; overflow and stale ones are counted as
dropped. The peer would otherwise wait for its retransmission (4 s for charon).

SIGHUP (and any change of the database's generation counter, polled)
reloads the definitions and sends every child a new snapshot. SIGTERM/SIGINT: the children
are asked to shut down (it sends its Deletes), then every SA and policy the parent installed is
removed, and the daemon exits.

After a child restart the kernel SAs stay and carry traffic, and the other children are
not touched (their ISAKMP SAs and exchanges go on). The new child gets the configuration,
the activations of its peers that have no SA yet, and for every phase 2 that has SAs in
the parent's records as its own (owner: the restarted child) a ResumeCommand (definition,
gateways, the out policy's selector and reqid): it negotiates that phase 2 afresh, reusing
the reqid, so the policies are not rewritten and the new SAs join the old ones in the
kernel (make before break: the kernel sends on the newest SA, and the old inbound SA still
takes what the peer sent before it switched). A half install the old child left (a Quick
Mode responder's inbound SA, its outbound half pending until QM3: installer.py) is first
committed by the parent as it was vetted, so only whole pairs are resumed and retired. The
tunnel is then the new child's: listed,
rekeyed, removable. The old SAs are listed as unmanaged until their lifetime ends, and
`remove` takes them with their definition. Why renegotiate rather than hand the new child
the old ISAKMP SA: the parent would have to keep phase 1 keys it never needs itself, and a
compromised child would get every tunnel's keys by crashing its predecessor;
renegotiation needs no secret in the parent beyond the PSK it already guards, and gives a
compromised child nothing it could not negotiate itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import trio

from ikepriv.config.store import TunnelDB, TunnelDBError
from ikepriv.ipc import messages as m
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.schema import Message
from ikepriv.isakmp.constants import SIGNATURE_METHODS, ExchangeType, ProtocolId
from ikepriv.parent_kernel import udp
from ikepriv.parent_kernel.admission import Admission, IPAddress
from ikepriv.parent_kernel.children import Negotiators, Shard
from ikepriv.parent_kernel.commands import Commands
from ikepriv.parent_kernel.control_socket import ControlServer
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.installed import SaEntry
from ikepriv.parent_kernel.installer import Installer
from ikepriv.parent_kernel.journal import SUFFIX as JOURNAL_SUFFIX
from ikepriv.parent_kernel.journal import Journal
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.kernel.events import XfrmEvents
from ikepriv.parent_kernel.kernel.specs import Acquire, EventsLost, Expire, XfrmError
from ikepriv.parent_kernel.keylog import ESP_SUFFIX, KeyLog
from ikepriv.parent_kernel.requests import ChildRequests
from ikepriv.parent_kernel.shards import Sharding
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.supervisor import Supervisor
from ikepriv.parent_kernel.vetting import Activation, selector_inside
from ikepriv.process_contract import (
    CHILD_MODULE,
    DEFAULT_CHROOT_DIR,
    DEFAULT_USERS,
    ensure_empty_root_dir,
)

log = logging.getLogger("ikepriv.parent")

DB_POLL: Final = 2.0
SHUTDOWN_GRACE: Final = 3.0
EARLY_QUEUE: Final = 64  # datagrams kept while no child is ready
EARLY_MAX_AGE: Final = 5.0  # seconds; older ones are stale for the peer anyway
CHILD_BACKLOG: Final = 32  # datagrams queued for the child; the rest wait in admission
RECEIVE_BATCH: Final = 256  # datagrams read per wake-up before others get a turn
PUMP_POLL: Final = 0.001  # seconds between looks at a full child queue
PEER_FLOODED_INTERVAL: Final = 1.0  # seconds between PeerFlooded for one peer


@dataclass(frozen=True)
class Options:
    db: str
    control: str
    chroot: str = DEFAULT_CHROOT_DIR
    users: tuple[str, ...] = DEFAULT_USERS
    keylog: str | None = None
    child_cmd: str | None = None  # tests: a command line, "{fd}" is the IPC descriptor
    ports: tuple[int, int] = (udp.IKE_PORT, udp.NATT_PORT)
    children: int = 1  # negotiator children (ikeprivd --children; its default is per CPU)


def sd_notify(text: str) -> None:
    """The systemd notification protocol: one datagram to $NOTIFY_SOCKET, if set."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
            sock.send(text.encode())
        except OSError as exc:
            log.warning("sd_notify: %s", exc)


class Daemon:
    def __init__(self, options: Options) -> None:
        self.options = options
        self._db = TunnelDB(options.db, create=False, readonly=True)
        self._kernel = XfrmKernel()
        self._events = XfrmEvents()
        keylog = None
        if options.keylog:
            keylog = KeyLog(options.keylog)
            log.warning("WARNING: --keylog writes IKE and ESP keys to %s and %s%s: anyone who "
                        "can read them can decrypt the traffic", options.keylog,
                        options.keylog, ESP_SUFFIX)  # fmt: skip
        journal = Journal(options.control + JOURNAL_SUFFIX)
        journal.sweep(self._kernel)  # a previous run's leftovers, before anything new
        self.sharding = Sharding(options.children)
        self.state = ParentState(self._kernel, DbView.load(self._db), keylog, journal,
                                 sharding=self.sharding)  # fmt: skip
        self._sockets, warnings = udp.open_sockets(options.ports)
        for text in warnings:
            log.warning("%s", text)
        self.installer = Installer(self.state)
        self.shards = [self._shard(k) for k in range(options.children)]
        self.children = Negotiators(self.sharding, self.shards, self.installer)
        self.commands = Commands(self.state, self.children, options.db, self.reload)
        self.control = ControlServer(options.control, self.commands.handle)
        self._set_peers()
        self._notified_ready = False
        if options.child_cmd is None:
            ensure_empty_root_dir(options.chroot)
        self._queue_autostart()
        if options.children > 1:
            log.info("%d negotiator children, peers sharded by address", options.children)

    def _shard(self, k: int) -> Shard:
        """Child k: its supervisor, request handler and admission queue (children.py)."""
        n = self.options.children
        holder: list[Shard] = []  # the shard, once built (its callbacks need it)

        def shard() -> Shard:
            return holder[0]

        supervisor = Supervisor(
            self._child_command,
            lambda msg: self._on_child_message(shard(), msg),
            lambda: self._on_child_ready(shard()),
            lambda: shard().requests.child_down(),
            k,
            n,
        )
        requests = ChildRequests(self.state, supervisor.send, self._sockets, self.installer, k)
        admission = Admission[udp.Received](
            self.state.counters.bump, lambda peer: self._peer_flooded(shard(), peer)
        )
        holder.append(Shard(k, supervisor, requests, admission))
        return holder[0]

    # -- child -----------------------------------------------------------------------------

    def _child_command(self, fd: int) -> Sequence[str]:
        if self.options.child_cmd is not None:
            return [part.replace("{fd}", str(fd)) for part in shlex.split(self.options.child_cmd)]
        users = [arg for user in self.options.users for arg in ("--user", user)]
        keylog = ["--keylog"] if self.options.keylog else []
        return [sys.executable, "-m", CHILD_MODULE, "--fd", str(fd),
                "--chroot", self.options.chroot, *users, *keylog]  # fmt: skip

    async def _on_child_message(self, shard: Shard, msg: Message) -> None:
        if isinstance(msg, m.DatagramOut):  # its cookies are live: their answers go first
            shard.admission.outbound(msg.data, time.monotonic())
        await shard.requests.handle(msg)

    def _intent_peer(self, command: m.InitiateCommand) -> IPAddress | None:
        """The peer an activation (or autostart) is for: its override or its definition's."""
        view = self.state.view
        number = command.number
        if command.phase is m.Phase.PHASE2:
            number = view.phase2_parent.get(number, 0)
        p1 = view.phase1.get(number)
        remote = command.remote_override or (p1.remote_addr if p1 is not None else None)
        return remote

    async def _on_child_ready(self, shard: Shard) -> None:
        await shard.supervisor.send_snapshot(self.state.view.config_messages())
        # a predecessor's half installs become whole before the records are resumed
        await shard.requests.installer.settle(shard.index)
        resumed = self._resume_tunnels(shard)
        for (phase, number), command in sorted(self.state.intents.items()):
            if phase is m.Phase.PHASE2 and number in resumed:
                continue  # resumed from the records instead (see the module docstring)
            peer = self._intent_peer(command)
            if peer is not None and self.sharding.serves(shard.index, peer):
                shard.send(command)
        self._flush_early(shard)
        shard.ever_ready = True
        if not self._notified_ready and all(s.ever_ready for s in self.shards):
            self._notified_ready = True
            sd_notify("READY=1")

    def _resume_tunnels(self, shard: Shard) -> set[int]:
        """Hand the new child every phase 2 that has SAs in the kernel by the parent's
        records as that child's own (ResumeCommand: definition, gateways, selector and
        reqid of its out policy): it negotiates them afresh with the same reqid, make
        before break. The phase 2s sent."""
        st = self.state
        sent: set[int] = set()
        owned = st.installed.sas_of_owner(shard.index)
        last_id = max((e.tunnel_id or 1 for e in owned), default=1)
        for sa in sorted(owned, key=lambda e: e.phase2_number):
            if sa.direction is not m.SaDirection.OUT or sa.phase2_number in sent:
                continue
            out = m.PolicyDirection.OUT
            pol = next((p for p in st.installed.policies_of_phase2(sa.phase2_number)
                        if p.reqid == sa.reqid and p.key[1] is out), None)  # fmt: skip
            if pol is None or sa.phase2_number not in st.view.phase2:
                continue
            st.activations.setdefault(sa.phase1_number,
                                      Activation(sa.phase1_number, sa.src, sa.dst))  # fmt: skip
            with contextlib.suppress(IpcError):
                cmd = m.ResumeCommand(sa.phase2_number, sa.reqid, pol.key[0], sa.src, sa.dst,
                                      last_id, self._recorded_pairs(sa))  # fmt: skip
                if shard.send(cmd):
                    sent.add(sa.phase2_number)
        if sent:
            log.info("%s: resuming phase 2 %s from the parent's records",
                     shard.supervisor.label, ",".join(map(str, sorted(sent))))  # fmt: skip
        return sent

    def _recorded_pairs(self, out: SaEntry) -> tuple[m.ResumedPair, ...]:
        """The complete SA pairs on record for the phase 2, gateways and reqid of `out`
        (each outbound SA with the inbound SA of its tunnel): the new child retires them once
        its own SAs are in, as after a rekey. From the parent's records only, so the child's
        Phase2Remove for them passes the same vetting as any other."""
        installed = self.state.installed.sas.values()
        pairs: list[m.ResumedPair] = []
        for sa in sorted(installed, key=lambda e: e.tunnel_id or 0):
            if (sa.larval or sa.direction is not m.SaDirection.OUT or not sa.tunnel_id
                    or sa.phase2_number != out.phase2_number or sa.reqid != out.reqid
                    or (sa.src, sa.dst) != (out.src, out.dst)
                    or sa.owner != out.owner):  # fmt: skip
                continue
            back = next((e for e in installed
                         if not e.larval and e.direction is m.SaDirection.IN
                         and e.tunnel_id == sa.tunnel_id and e.reqid == sa.reqid
                         and e.phase2_number == sa.phase2_number and e.proto == sa.proto
                         and (e.src, e.dst) == (sa.dst, sa.src)), None)  # fmt: skip
            if back is None or min(back.spi, sa.spi) < m.MIN_INBOUND_SPI:
                continue
            pairs.append(m.ResumedPair(sa.tunnel_id, sa.proto, back.spi, sa.spi))
        return tuple(pairs[-m.MAX_RESUMED_PAIRS :])

    def _flush_early(self, shard: Shard) -> None:
        """Hand the datagrams that waited for a child to it, now that it is ready."""
        counters = self.state.counters
        oldest = time.monotonic() - EARLY_MAX_AGE
        while shard.early:
            received, msg = shard.early.popleft()
            if received >= oldest and shard.send(msg):
                counters.udp_forwarded += 1
                shard.requests.forwarded += 1
            else:
                counters.udp_dropped_no_child += 1

    def _forward(self, shard: Shard, msg: m.DatagramIn) -> None:
        counters = self.state.counters
        if shard.send(msg):
            counters.udp_forwarded += 1
            shard.requests.forwarded += 1
            return
        if shard.supervisor.ready:  # a child that does not read its queue: no point waiting
            counters.udp_dropped_no_child += 1
            return
        now = time.monotonic()
        early = shard.early
        while early and early[0][0] < now - EARLY_MAX_AGE:
            early.popleft()
            counters.udp_dropped_no_child += 1
        if len(early) < EARLY_QUEUE:
            early.append((now, msg))
        else:
            counters.udp_dropped_no_child += 1

    def _queue_autostart(self) -> None:
        view = self.state.view
        for number, p2 in sorted(view.phase2.items()):
            p1_number = view.phase2_parent[number]
            p1 = view.phase1[p1_number]
            if p2.autostart and p1.remote_addr is not None:
                self.state.activations.setdefault(p1_number, Activation(p1_number))
                self.state.intents[(m.Phase.PHASE2, number)] = m.InitiateCommand(
                    m.Phase.PHASE2, number, None, None
                )
        for number, p1 in sorted(view.phase1.items()):
            if p1.autostart and p1.remote_addr is not None and not view.phase2_under(number):
                self.state.activations.setdefault(number, Activation(number))
                self.state.intents[(m.Phase.PHASE1, number)] = m.InitiateCommand(
                    m.Phase.PHASE1, number, None, None
                )

    # -- database --------------------------------------------------------------------------

    async def reload(self) -> str:
        try:
            view = DbView.load(self._db)
        except TunnelDBError as exc:
            log.error("cannot reload the definitions: %s", exc)
            return f"reload failed: {exc}"
        old = self.state.view
        self.state.set_view(view)
        await self._revoke(old, view)
        self._set_peers()
        messages = view.config_messages()
        async with trio.open_nursery() as nursery:  # every child, none waiting for another
            for shard in self.shards:
                nursery.start_soon(shard.supervisor.send_snapshot, messages)
        log.info("definitions reloaded (generation %d: %d phase 1, %d phase 2)",
                 view.generation, len(view.phase1), len(view.phase2))  # fmt: skip
        return f"definitions reloaded (generation {view.generation})"

    async def _revoke(self, old: DbView, new: DbView) -> None:
        """A phase 2 definition deleted or changed (or its phase 1): what was installed
        under the old one is removed now, not left until its lifetime ends."""
        st = self.state
        stale: set[int] = set()
        recorded = {e.phase2_number for e in st.installed.sas.values()}
        recorded |= {e.phase2_number for e in st.installed.policies.values()}
        for n2 in recorded:
            p1_old, p1_new = old.phase2_parent.get(n2), new.phase2_parent.get(n2)
            if (
                old.phase2.get(n2) != new.phase2.get(n2)
                or p1_old != p1_new
                or (p1_old is not None and old.phase1.get(p1_old) != new.phase1.get(p1_old))
            ):
                stale.add(n2)
        for n1 in set(st.activations):
            if n1 not in new.phase1:
                del st.activations[n1]
        for key in list(st.intents):
            phase, number = key
            gone = new.phase1 if phase is m.Phase.PHASE1 else new.phase2
            if number not in gone:
                del st.intents[key]
        if stale:
            failed = await self.installer.remove_phase2s(stale)
            log.info("definitions changed: SAs and policies of phase 2 %s revoked%s",
                     ",".join(map(str, sorted(stale))),
                     f" ({failed} refused by the kernel)" if failed else "")  # fmt: skip

    async def _poll_db(self) -> None:
        while True:
            await trio.sleep(DB_POLL)
            try:
                changed = self._db.changed_since(self.state.view.generation)
            except TunnelDBError as exc:
                log.error("database: %s", exc)
                continue
            if changed:
                await self.reload()

    # -- UDP -------------------------------------------------------------------------------

    def _set_peers(self) -> None:
        peers = [p1.remote_addr for p1 in self.state.view.phase1.values()
                 if p1.remote_addr is not None]  # fmt: skip
        for shard in self.shards:
            shard.admission.set_peers(p for p in peers
                                      if self.sharding.serves(shard.index, p))  # fmt: skip
            shard.flooded.clear()
        self.state.egress.am_signature_locals = frozenset(
            p1.local_addr
            for p1 in self.state.view.phase1.values()
            if p1.mode is ExchangeType.AGGRESSIVE and p1.auth in SIGNATURE_METHODS
        )

    def _peer_flooded(self, shard: Shard, peer: IPAddress) -> None:
        """A configured peer's first messages overflow admission: its own may be lost among
        forgeries, so its child initiates towards it (PeerFlooded), at most once per
        PEER_FLOODED_INTERVAL per peer however fast the forgeries come."""
        now = time.monotonic()
        last = shard.flooded.get(peer)
        if last is not None and now - last < PEER_FLOODED_INTERVAL:
            return
        shard.flooded[peer] = now
        if shard.supervisor.ready:
            shard.send(m.PeerFlooded(peer))

    async def _receive(self, sock: udp.IkeSocket) -> None:
        """Drain the socket in batches (until EAGAIN, at most RECEIVE_BATCH per turn) into
        the admission of the child serving each source address, which decides what reaches
        that child next (`_pump`)."""
        counters = self.state.counters
        shards = self.shards
        of_address = self.sharding.of_address
        assert sock.raw is not None
        while True:
            await trio.lowlevel.wait_readable(sock.raw)
            now = time.monotonic()
            touched: set[int] = set()
            drained = False
            for _ in range(RECEIVE_BATCH):
                try:
                    got = udp.receive_nowait(sock)
                except OSError as exc:
                    counters.udp_receive_errors += 1
                    log.warning("UDP %d: %s", sock.port, exc)
                    await trio.sleep(0.1)
                    break
                if got is None:
                    drained = True
                    break
                if isinstance(got, udp.Drop):
                    counters.bump(got.value)
                    continue
                k = of_address(got.remote)
                admission = shards[k].admission
                admission.put(admission.classify(got.data, got.remote, now), got.remote, got, now)
                touched.add(k)
            for k in touched:  # hand them over now; the pump waits for room if need be
                shard = shards[k]
                if self._feed(shard, now):
                    shard.arrived.set()
            if not drained:  # a full batch: others get a turn (waiting again is one anyway)
                await trio.lowlevel.checkpoint()

    async def _pump(self, shard: Shard) -> None:
        """Hand admitted datagrams to the shard's child when `_receive` could not hand them
        all over at once (the child's queue was full: it waits for room, polling)."""
        while True:
            if not shard.admission:
                shard.arrived = trio.Event()
                await shard.arrived.wait()
                continue
            if self._feed(shard, time.monotonic()) and shard.supervisor.ready:
                await trio.sleep(PUMP_POLL)
            else:
                await trio.lowlevel.checkpoint()

    def _feed(self, shard: Shard, now: float) -> bool:
        """Hand admitted datagrams to the shard's child, keeping its queue short
        (CHILD_BACKLOG), so an answer in a live exchange never waits behind a flood of
        first messages. True if some are left waiting for room."""
        counters = self.state.counters
        admission, supervisor = shard.admission, shard.supervisor
        room = CHILD_BACKLOG - supervisor.backlog() if supervisor.ready else 1
        if room <= 0:
            return bool(admission)
        record, received = self.state.peers.record, self.state.egress.received
        for _ in range(room):
            got = admission.get(now)
            if got is None:  # nothing left, or first messages waiting for their rate
                return bool(admission)
            try:
                msg = m.DatagramIn(m.Endpoint(got.local, got.local_port),
                                   m.Endpoint(got.remote, got.remote_port), got.natt,
                                   got.data)  # fmt: skip
            except IpcError:
                counters.udp_dropped_unsendable += 1
                continue  # not expressible for the child
            record(got.local, got.remote, got.remote_port, got.natt, now, shard.index)
            received(got.local, got.local_port, got.remote, got.remote_port, got.natt, got.data,
                     now)  # fmt: skip
            self._forward(shard, msg)
        return bool(admission)

    # -- kernel events ---------------------------------------------------------------------

    def _acquire_phase2(self, event: Acquire) -> tuple[int, m.TrafficSelector, int] | None:
        """The phase 2 an ACQUIRE is for, its selector, and the child to tell: the one
        that owns the policy's reqid, else the one serving the definition's peer."""
        sel = event.selector
        try:
            ts = m.TrafficSelector(m.SelectorSide(sel.src, sel.proto, sel.sport),
                                   m.SelectorSide(sel.dst, sel.proto, sel.dport))  # fmt: skip
        except IpcError:
            return None
        installed = self.state.installed
        for tmpl in event.templates:
            owner = installed.phase2_for_reqid(tmpl.reqid)
            if owner is not None:
                for entry in installed.policies.group("reqid", tmpl.reqid).values():
                    return owner, ts, entry.owner
                return owner, ts, self.sharding.of_number(tmpl.reqid)
        view = self.state.view
        for number, p2 in sorted(view.phase2.items()):
            if selector_inside(ts, p2, outbound=True):
                p1 = view.phase1_of(number)
                peer = p1.remote_addr if p1 is not None and p1.remote_addr else event.dst
                return number, ts, self.sharding.of_address(peer)
        return None

    def _kernel_event(self, event: object) -> None:
        if isinstance(event, EventsLost):
            log.warning("kernel events lost (netlink buffer overrun)")
        elif isinstance(event, Acquire):
            found = self._acquire_phase2(event)
            if found is None:
                return
            number, ts, child = found
            reqid = next((t.reqid for t in event.templates), 0)
            with contextlib.suppress(IpcError):
                self.shards[child].send(m.KernelAcquire(reqid, number, ts, event.src, event.dst))
        elif isinstance(event, Expire):
            proto = {50: ProtocolId.IPSEC_ESP, 51: ProtocolId.IPSEC_AH}.get(event.proto)
            if proto is None:
                return
            key = (event.dst, event.spi, proto)
            entry = self.state.installed.sas.get(key)
            if entry is None:
                return
            if event.hard:
                self.installer.expired(key)
            self.shards[entry.owner].send(m.KernelExpire(event.spi, proto, event.dst, event.hard))

    async def _kernel_events(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._events.fileno())
            try:
                events = self._events.recv_events(0)
            except XfrmError as exc:
                log.warning("kernel events: %s", exc)
                continue
            for event in events:
                try:
                    self._kernel_event(event)
                except Exception:
                    log.exception("internal error handling a kernel event")

    # -- life cycle ------------------------------------------------------------------------

    async def _signals(self, cancel: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    await self.reload()
                    continue
                log.info("%s: shutting down", signal.Signals(signum).name)
                await self.children.stop(SHUTDOWN_GRACE)
                cancel.cancel()
                return

    async def run(self) -> None:
        log.info("ikeprivd started (db %s, control %s, pid %d)", self.options.db,
                 self.options.control, os.getpid())  # fmt: skip
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._signals, scope)
                    for shard in self.shards:
                        nursery.start_soon(shard.supervisor.run)
                        nursery.start_soon(self._pump, shard)
                    nursery.start_soon(self.control.serve)
                    nursery.start_soon(self._kernel_events)
                    nursery.start_soon(self._poll_db)
                    for sock in self._sockets:
                        nursery.start_soon(self._receive, sock)
        finally:
            with trio.CancelScope(shield=True):
                sd_notify("STOPPING=1")
                await self.installer.remove_everything()
                self.close()
        log.info("ikeprivd stopped")

    def close(self) -> None:
        self.control.close()
        for sock in self._sockets:
            sock.sock.close()
        self._events.close()
        self._kernel.close()
        self._db.close()
        if self.state.keylog is not None:
            self.state.keylog.close()
