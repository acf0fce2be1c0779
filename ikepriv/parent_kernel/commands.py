"""The control commands: `ike cmd=activate|list|remove` and `ikedb`'s DbChanged.

`list` is answered from three sources: the database (with `db`), the child's StateReports
(what is negotiated), and the parent's own records plus kernel counters (`verbose`). If
the child is down, phase 2 tunnels are still listed from the parent's records: the kernel
SAs are there and carry traffic.

`list verbose` and `list stats` (StatsRequest) also carry the event counters: the child's
(its Stats, which came with its answer) followed by the parent's own (UDP drops, refused
requests, child restarts), and the child's per-definition tally of rekeys and DPD failures
(vetted with its Stats), in one last Response of their own.

`remove` asks the child to delete the tunnel (it sends Delete to the peer and asks for
its SAs to go), then removes whatever the parent still has recorded for that tunnel, so a
tunnel is gone even when the child is not running. A phase 2's policies go with its last
SA; removing a phase 1 removes its phase 2 tunnels.

A listing streams: the negotiator's tunnels come page by page (requests.ChildRequests.walk)
and leave as Responses as soon as one is full (ipc.control.ResponseWriter, which encodes
each row once), so the parent holds two pages per child and one Response per listing,
whatever the number of tunnels. What it keeps
across pages is sized by its own records (which of its installed SAs a report accounted
for) or by small integers (the phase 1 tunnel ids of a `1+` listing, at most
requests.MAX_LISTED).

With several negotiator children (children.py) a listing merges theirs in tunnel-number
order and sums their counters; a child that does not answer is named, and the phase 2
tunnels it owns in the parent's records are shown from them (established), while the
others' are listed as usual. Activations go to the child of the peer's address, removals
of a tunnel to the child that numbered it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Final, NamedTuple

import trio

from ikepriv.config.model import Phase1Definition, Phase2Definition
from ikepriv.config.store import TunnelDB, TunnelDBError
from ikepriv.ipc import messages as m
from ikepriv.ipc.control import ResponseWriter, split_encoded
from ikepriv.ipc.messages import ErrorCode, Phase
from ikepriv.ipc.schema import Message, encode
from ikepriv.parent_kernel.children import Negotiators
from ikepriv.parent_kernel.installed import Installed, SaEntry
from ikepriv.parent_kernel.kernel.specs import XfrmError
from ikepriv.parent_kernel.requests import MAX_LISTED, ChildListing
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.vetting import Activation

log = logging.getLogger("ikepriv.parent")

REMOVE_GRACE: Final = 0.5  # the child's own Phase2Remove requests come first


def _in_numlist(number: int, numlist: tuple[m.NumRange, ...]) -> bool:
    return not numlist or any(r.first <= number <= r.last for r in numlist)


def _name(text: str, number: int) -> str:
    return text if text and len(text) <= m.MAX_TEXT else f"tunnel-{number}"


_PROTOCOL_NAMES: Final = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}


def format_selector(net: object, protocol: int = 0, port: int = 0) -> str:
    """One side of a selector as the listing shows it: 198.51.100.0/28, with protocol and
    port when they narrow it (198.51.100.0/28[tcp/80], strongSwan's notation)."""
    if not protocol:
        return str(net)
    name = _PROTOCOL_NAMES.get(protocol, str(protocol))
    return f"{net}[{name}/{port}]" if port else f"{net}[{name}]"


def _definition_selectors(p2: Phase2Definition) -> tuple[str, str]:
    """Every subnet of each side of a definition, comma-separated (cut to the text bound)."""
    local = ",".join(format_selector(n, p2.protocol, p2.local_port) for n in p2.local_subnets)
    remote = ",".join(format_selector(n, p2.protocol, p2.remote_port) for n in p2.remote_subnets)
    return local[: m.MAX_TEXT], remote[: m.MAX_TEXT]


class Commands:
    def __init__(
        self,
        state: ParentState,
        children: Negotiators,
        db_path: str,
        reload: Callable[[], Awaitable[str]],
    ) -> None:
        self.state = state
        self.children = children
        self._db_path = db_path
        self._reload = reload

    async def handle(self, request: Message) -> AsyncGenerator[bytes, None]:
        """The Responses to one control request, encoded, each as soon as it is ready (a
        listing is not collected first: see the module docstring)."""
        match request:
            case m.ListRequest():
                async for response in self.list_tunnels(request):
                    yield response
                return
            case m.ActivateRequest():
                responses = await self.activate(request)
            case m.RemoveRequest():
                responses = await self.remove(request)
            case m.DbChanged():
                responses = await self.db_changed(request)
            case m.StatsRequest():
                responses = await self.stats(request)
            case _:
                responses = split_encoded(ErrorCode.INVALID_REQUEST,
                                           [f"{type(request).__name__}?"])  # fmt: skip
        for response in responses:
            yield response

    # -- activate --------------------------------------------------------------------------

    def _selected_phase1(self, req: m.ActivateRequest) -> list[tuple[int, Phase1Definition]]:
        out = []
        for number, p1 in sorted(self.state.view.phase1.items()):
            if req.numlist and not _in_numlist(number, req.numlist):
                continue
            if req.namelist and p1.name not in req.namelist:
                continue
            if req.autostart and not p1.autostart:
                continue
            if req.remid is not None and str(p1.remote_id) != req.remid:
                continue
            out.append((number, p1))
        return out

    def _selected_phase2(self, req: m.ActivateRequest) -> list[tuple[int, Phase2Definition]]:
        view = self.state.view
        out = []
        for number, p2 in sorted(view.phase2.items()):
            p1 = view.phase1_of(number)
            if p1 is None:
                continue
            if req.numlist and not _in_numlist(number, req.numlist):
                continue
            if req.namelist and p2.name not in req.namelist and p1.name not in req.namelist:
                continue
            if req.autostart and not p2.autostart:
                continue
            if req.remid is not None and str(p1.remote_id) != req.remid:
                continue
            out.append((number, p2))
        return out

    def _activate_one(
        self, phase: Phase, number: int, name: str, p1_number: int, req: m.ActivateRequest
    ) -> str | None:
        """Record and start one activation; the error text, or None."""
        p1 = self.state.view.phase1[p1_number]
        remote = req.dst or p1.remote_addr
        if remote is None:
            return f"phase {int(phase)} {number} ({name}): responder only (remote %any)"
        local = req.src or p1.local_addr
        if local.version != remote.version:
            return f"phase {int(phase)} {number} ({name}): address families differ"
        self.state.activations[p1_number] = Activation(p1_number, req.src, req.dst)
        command = m.InitiateCommand(phase, number, req.src, req.dst)
        self.state.intents[(phase, number)] = command
        self.children.send_to_peer(remote, command)
        log.info("phase %d tunnel %d (%s) activated", int(phase), number, name)
        return None

    async def activate(self, req: m.ActivateRequest) -> list[bytes]:
        items: list[tuple[Phase, int, str, int]] = []
        if req.phase is Phase.PHASE1:
            items = [(Phase.PHASE1, n, d.name, n) for n, d in self._selected_phase1(req)]
        else:
            view = self.state.view
            items = [(Phase.PHASE2, n, d.name, view.phase2_parent[n])
                     for n, d in self._selected_phase2(req)]  # fmt: skip
        if not items:
            return split_encoded(ErrorCode.NO_SUCH_TUNNEL, ["no matching definition"])
        lines, failed = [], 0
        for phase, number, name, p1_number in items:
            error = self._activate_one(phase, number, name, p1_number, req)
            if error is None:
                lines.append(f"phase {int(phase)} tunnel {number} ({name}) activation started")
            else:
                lines.append(error)
                failed += 1
        status = ErrorCode.OK if not failed else (
            ErrorCode.PARTIAL if failed < len(items) else ErrorCode.NOT_PERMITTED
        )  # fmt: skip
        return split_encoded(status, lines)

    # -- list ------------------------------------------------------------------------------

    def _db_rows(self, req: m.ListRequest) -> list[m.TunnelRow]:
        view = self.state.view
        rows: list[m.TunnelRow] = []
        want1 = req.phase in (Phase.ALL, Phase.PHASE1, Phase.PHASE1_PLUS)
        want2 = req.phase in (Phase.ALL, Phase.PHASE2, Phase.PHASE1_PLUS)
        ipc1 = {d.number: d for d in view.ipc_phase1}
        for number, p1 in sorted(view.phase1.items()):
            if want1 and _in_numlist(number, req.numlist):
                d = ipc1[number]
                rows.append(m.TunnelRow(
                    number, None, Phase.PHASE1, d.name, None, m.TunnelState.DEFINED,
                    p1.local_addr, p1.remote_addr, d.local_id, d.remote_id,
                    ",".join(p.keyword for p in p1.proposals)[: m.MAX_TEXT], p1.lifetime,
                    0, 0, 0, 0, None,
                ))  # fmt: skip
            if want2:
                for n2 in view.phase2_under(number):
                    if not _in_numlist(n2, req.numlist) and req.phase is not Phase.PHASE1_PLUS:
                        continue
                    p2 = view.phase2[n2]
                    algs = [p.keyword for p in p2.esp_proposals + p2.ah_proposals]
                    rows.append(m.TunnelRow(
                        n2, None, Phase.PHASE2, p2.name, None, m.TunnelState.DEFINED,
                        None, None, None, None, ",".join(algs)[: m.MAX_TEXT], p2.lifetime,
                        0, 0, 0, 0, number, *_definition_selectors(p2),
                    ))  # fmt: skip
        return rows

    def _report_row(self, r: m.StateReport, now: float) -> m.TunnelRow:
        view = self.state.view
        d1 = view.phase1.get(r.number) if r.phase is Phase.PHASE1 else None
        d2 = view.phase2.get(r.number) if r.phase is Phase.PHASE2 else None
        name = d1.name if d1 else d2.name if d2 else ""
        return m.TunnelRow(
            number=r.number, tunnel_id=r.tunnel_id, phase=r.phase, name=_name(name, r.number),
            role=r.role, state=r.state, local_addr=r.local.addr, remote_addr=r.remote.addr,
            local_id=r.local_id, remote_id=r.remote_id, algorithms=r.algorithms,
            remaining_seconds=max(0, min(0xFFFFFFFF, int(r.expires_at - now))) if r.expires_at
            else 0,
            spi_in=r.spi_in, spi_out=r.spi_out, bytes=0, packets=0,
            phase1_number=r.phase1_tunnel_id,
            peer_cert_subject=r.peer_cert_subject, peer_cert_issuer=r.peer_cert_issuer,
            **(self._selectors(r.number, r.spi_out) if r.phase is Phase.PHASE2 else {}),
        )  # fmt: skip

    def _selectors(self, n2: int, spi_out: int) -> dict[str, str]:
        """local_selector/remote_selector of a phase 2 from the parent's own records: the
        outbound policy of the reqid of the outbound SA `spi_out` (never the child's word);
        none when the parent installed no such SA."""
        installed = self.state.installed
        sa = next((e for e in installed.sas_of_phase2(n2)
                   if e.spi == spi_out and not e.larval
                   and e.direction is m.SaDirection.OUT), None)  # fmt: skip
        if sa is None or not spi_out:
            return {}
        for pol in installed.policies_of_phase2(n2):
            sel, direction = pol.key
            if pol.reqid == sa.reqid and direction is m.PolicyDirection.OUT:
                return {
                    "local_selector": format_selector(sel.src.network, sel.src.protocol,
                                                      sel.src.port),
                    "remote_selector": format_selector(sel.dst.network, sel.dst.protocol,
                                                       sel.dst.port),
                }  # fmt: skip
        return {}

    def _record_rows(self, now: float, seen: _Accounted, silent: set[int]) -> Iterable[m.TunnelRow]:
        """Phase 2 tunnels from the parent's own records that no report of a child
        accounted for: SAs of a tunnel whose SPIs no phase 2 report names and policies of a
        phase 2 that has no SA and no report. Those of a child that answered the whole
        listing are unmanaged; those of a child in `silent` (it did not answer, all of it)
        are listed established from the records (the kernel SAs carry traffic), and its
        bare policies are not listed."""
        rows = []
        for key, sas in sorted(seen.groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if key in seen.accounted:
                continue
            n2, tid = key
            first = sas[0]
            state = m.TunnelState.ESTABLISHED if first.owner in silent else m.TunnelState.UNMANAGED
            spi_in = next((e.spi for e in sas if e.direction is m.SaDirection.IN), 0)
            spi_out = next((e.spi for e in sas if e.direction is m.SaDirection.OUT), 0)
            out = next((e for e in sas if e.direction is m.SaDirection.OUT), first)
            p2 = self.state.view.phase2.get(n2)
            rows.append(m.TunnelRow(
                n2, tid, Phase.PHASE2, _name(p2.name if p2 else "", n2), None, state,
                out.src, out.dst, None, None, first.algorithms,
                max(0, min(0xFFFFFFFF, int(first.expires_at - now))), spi_in, spi_out, 0, 0,
                first.phase1_number, **self._selectors(n2, spi_out),
            ))  # fmt: skip
        with_sa = {n2 for n2, _ in seen.groups}
        for n2, owner in sorted(seen.policy_numbers):
            if n2 in with_sa or n2 in seen.reported or owner in silent:
                continue
            p2 = self.state.view.phase2.get(n2)
            rows.append(m.TunnelRow(
                n2, None, Phase.PHASE2, _name(p2.name if p2 else "", n2), None,
                m.TunnelState.UNMANAGED, None, None, None, None, "policies only", 0, 0, 0,
                0, 0, self.state.view.phase2_parent.get(n2),
            ))  # fmt: skip
        return rows

    async def _kernel_counts(self) -> dict[int, tuple[int, int]]:
        """Bytes and packets per SPI, from one dump of the kernel's SAs (none if it fails).
        Only the counters are read of each SA: decoding whole SAs (keys, algorithms) cost
        about 7 kB of the parent's heap per SA, kept after a listing of thousands."""
        st = self.state
        try:
            sas = await st.kernel_call(st.kernel.sa_counters)
        except XfrmError as exc:
            log.warning("list: no kernel counters: %s", exc)
            return {}
        counts: dict[int, tuple[int, int]] = {}
        for sa in sas:
            b, p = counts.get(sa.spi, (0, 0))
            counts[sa.spi] = (b + sa.bytes, p + sa.packets)
        return counts

    async def list_tunnels(self, req: m.ListRequest) -> AsyncGenerator[bytes, None]:
        """`ike cmd=list`: the negotiator's tunnels page by page (phase 1 first, then phase
        2), then what the parent's records hold that no report accounted for; streamed."""
        if req.db:
            for response in split_encoded(ErrorCode.OK, (), self._db_rows(req)):
                yield response
            return
        now = time.time()
        out = ResponseWriter()
        counts = await self._kernel_counts() if req.verbose else None
        seen = _Accounted(self.state.installed)
        plus = _Plus() if req.phase is Phase.PHASE1_PLUS else None
        listing: ChildListing | None = None  # the first page: it carries the counters
        silent: set[int] = set()  # children that did not answer
        listed, lines = 0, []
        for phase in _child_phases(req.phase):
            walk = self.children.walk(phase, silent, counters=req.verbose and listing is None)
            async for page in walk:
                listing = listing or page
                listed += len(page.reports)
                for report in page.reports:
                    seen.see(report)
                    row = self._report_row(report, now)
                    if _wanted(row, req) and (plus is None or plus.keeps(row)):
                        if (full := out.row(_counted(row, counts))) is not None:
                            yield full
        if listed >= MAX_LISTED:
            silent.update(s.index for s in self.children.shards)
            lines.append(f"listing stopped after {listed} tunnels")
        if silent:
            lines.append(f"{self.children.silent_text(silent)} not answering: phase 2 tunnels "
                         "it did not list are shown from the kernel records")  # fmt: skip
        if Phase.PHASE2 in _child_phases(req.phase):
            unmanaged = 0
            for row in self._record_rows(now, seen, silent):
                unmanaged += row.state is m.TunnelState.UNMANAGED
                if _wanted(row, req) and (plus is None or plus.keeps(row)):
                    if (full := out.row(_counted(row, counts))) is not None:
                        yield full
            if unmanaged:
                lines.append(f"{unmanaged} phase 2 tunnel(s) in the kernel that no "
                             "negotiation accounts for (state unmanaged): `ike cmd=remove` "
                             "removes them")  # fmt: skip
        for line in lines:
            if (full := out.line(line)) is not None:
                yield full
        yield out.finish(ErrorCode.OK, more=req.verbose)
        if req.verbose:
            yield _event_counters(ErrorCode.OK, self._event_counters(listing),
                                  listing.definitions if listing else ())  # fmt: skip

    # -- stats -----------------------------------------------------------------------------

    def _event_counters(self, listing: ChildListing | None) -> tuple[m.CounterValue, ...]:
        """The child's counters (none when it did not answer), then the parent's."""
        self.state.counters.child_restarts = self.children.restarts()
        child = listing.counters if listing is not None else ()
        return child + self.state.counters.values()

    async def stats(self, _req: m.StatsRequest) -> list[bytes]:
        silent: set[int] = set()
        listing = await self.children.counters(silent)  # counters only: no tunnel is listed
        lines = []
        if listing is None:
            lines.append("negotiator not answering: the parent's counters only")
        elif silent:
            lines.append(f"{self.children.silent_text(silent)} not answering: its counters "
                         "are missing")  # fmt: skip
        elif not listing.counters:
            lines.append("the negotiator sent no counters: the parent's counters only")
        out = ResponseWriter()
        head = [full for line in lines if (full := out.line(line)) is not None]
        return [*head, out.finish(ErrorCode.OK, more=True),
                _event_counters(ErrorCode.OK, self._event_counters(listing),
                                listing.definitions if listing else ())]  # fmt: skip

    # -- remove ----------------------------------------------------------------------------

    async def _remove_db(self, req: m.RemoveRequest) -> list[bytes]:
        view = self.state.view
        lines: list[str] = []
        try:
            with TunnelDB(self._db_path, create=False) as db:
                if req.phase in (Phase.ALL, Phase.PHASE2):
                    for number, p2 in sorted(view.phase2.items()):
                        if _in_numlist(number, req.numlist) and (
                            req.numlist or req.phase is Phase.PHASE2
                        ):
                            db.delete_phase2(p2.name)
                            lines.append(f"phase 2 definition {number} ({p2.name}) deleted")
                if req.phase in (Phase.ALL, Phase.PHASE1):
                    for number, p1 in sorted(view.phase1.items()):
                        if _in_numlist(number, req.numlist):
                            db.delete_phase1(p1.name)
                            lines.append(f"phase 1 definition {number} ({p1.name}) deleted")
        except TunnelDBError as exc:
            return split_encoded(ErrorCode.DB_ERROR, [*lines, str(exc)])
        lines.append(await self._reload())
        return split_encoded(ErrorCode.OK if len(lines) > 1 else ErrorCode.NO_SUCH_TUNNEL,
                              lines)  # fmt: skip

    async def remove(self, req: m.RemoveRequest) -> list[bytes]:
        """What goes is chosen from the parent's records, as definition numbers: a tunnel
        number selects the phase 2 definitions of the recorded SAs (and reports) with that
        number, and then every recorded SA and policy of those definitions goes, whatever
        the child says. The child's tunnel ids only serve to send the peer Deletes first. A
        bare `remove` removes every recorded object and clears the activations."""
        if req.db:
            return await self._remove_db(req)
        st = self.state
        view = st.view
        reports = await self._briefs()
        everything = req.phase is Phase.ALL and not req.numlist
        sas = [e for e in st.installed.sas.values() if not e.larval]
        p1defs: set[int] = set()
        p2defs: set[int] = set()
        if everything:
            p1defs = {r.number for r in reports if r.phase is Phase.PHASE1}
            p2defs = {e.phase2_number for e in st.installed.sas.values()}
            p2defs |= {e.phase2_number for e in st.installed.policies.values()}
        else:
            if req.phase in (Phase.ALL, Phase.PHASE1):
                p1defs = {r.number for r in reports if r.phase is Phase.PHASE1
                          and _in_numlist(r.tunnel_id, req.numlist)}  # fmt: skip
            if req.phase in (Phase.ALL, Phase.PHASE2):
                p2defs = {e.phase2_number for e in sas if e.tunnel_id is not None
                          and _in_numlist(e.tunnel_id, req.numlist)}  # fmt: skip
                p2defs |= {r.number for r in reports if r.phase is Phase.PHASE2
                           and _in_numlist(r.tunnel_id, req.numlist)}  # fmt: skip
            p2defs |= {e.phase2_number for e in sas if e.phase1_number in p1defs}
            p2defs |= {n2 for n2 in {p.phase2_number for p in st.installed.policies.values()}
                       if view.phase2_parent.get(n2) in p1defs}  # fmt: skip
        lines: list[str] = []
        sent_p1: set[int] = set()
        for r in reports:  # Deletes to the peers, through the child
            if r.phase is Phase.PHASE1 and r.number in p1defs:
                self.children.remove(Phase.PHASE1, r.tunnel_id)
                lines.append(f"phase 1 tunnel {r.tunnel_id} removed")
                sent_p1.add(r.tunnel_id)
        sent_p2: set[int] = set()
        for r in reports:
            if r.phase is Phase.PHASE2 and r.number in p2defs:
                if r.phase1_tunnel_id not in sent_p1 and r.tunnel_id not in sent_p2:
                    self.children.remove(Phase.PHASE2, r.tunnel_id)
                lines.append(f"phase 2 tunnel {r.tunnel_id} removed")
                sent_p2.add(r.tunnel_id)
        unmanaged = sorted({(e.tunnel_id, e.phase2_number) for e in sas
                            if e.phase2_number in p2defs and e.tunnel_id not in sent_p2},
                           key=lambda t: (t[0] or 0, t[1]))  # fmt: skip
        for tid, n2 in unmanaged:
            lines.append(f"phase 2 tunnel {tid} (definition {n2}, not managed by the "
                         "negotiator) removed")  # fmt: skip
        bare_policies = {p.phase2_number for p in st.installed.policies.values()
                         if p.phase2_number in p2defs} - {n2 for _, n2 in unmanaged}  # fmt: skip
        bare_policies -= {r.number for r in reports if r.phase is Phase.PHASE2}
        for n2 in sorted(bare_policies):
            lines.append(f"policies of phase 2 definition {n2} (no SA) removed")
        larval = sum(1 for e in st.installed.sas.values()
                     if e.larval and (everything or e.phase2_number in p2defs))  # fmt: skip
        if larval:
            lines.append(f"{larval} SPI(s) of unfinished negotiations removed")
        for n1 in p1defs:
            st.intents.pop((Phase.PHASE1, n1), None)
            st.activations.pop(n1, None)
        for n2 in p2defs:
            st.intents.pop((Phase.PHASE2, n2), None)
        if sent_p1 or sent_p2:
            await trio.sleep(REMOVE_GRACE)
        installer = self.children.installer
        if everything:
            st.intents.clear()
            had_activations = bool(st.activations)
            st.activations.clear()
            failed = await installer.remove_everything()
            if not lines:  # a bare remove always succeeds: nothing of ikepriv is left
                lines.append("activations cleared" if had_activations else "nothing was active")
        else:
            failed = await installer.remove_phase2s(p2defs)
        if failed:
            lines.append(f"the kernel refused {failed} delete(s)")
            return split_encoded(ErrorCode.KERNEL_ERROR, lines)
        if not lines:
            return split_encoded(ErrorCode.NO_SUCH_TUNNEL, ["no matching active tunnel"])
        return split_encoded(ErrorCode.OK, lines)

    async def _briefs(self) -> list[_Brief]:
        """What `remove` needs of each of the negotiators' tunnels (all of them, page by
        page; what a child listed before it stopped answering, if it did)."""
        out: list[_Brief] = []
        async for page in self.children.walk(Phase.ALL, set()):
            out += [_Brief(r.phase, r.number, r.tunnel_id, r.phase1_tunnel_id)
                    for r in page.reports]  # fmt: skip
        return out

    async def db_changed(self, _req: m.DbChanged) -> list[bytes]:
        return split_encoded(ErrorCode.OK, [await self._reload()])


def _event_counters(
    status: ErrorCode,
    counters: tuple[m.CounterValue, ...],
    definitions: tuple[m.DefinitionCounts, ...] = (),
) -> bytes:
    """The last Response of an answer with counters: the counters and the child's
    per-definition tally (it always fits: both are bounded below a control datagram, see
    m.MAX_DEFINITION_COUNTS)."""
    return encode(m.Response(status, (), (), more=False, counters=counters,
                             definitions=definitions))  # fmt: skip


class _Brief(NamedTuple):
    """One tunnel of the negotiator, as much as `remove` needs of it."""

    phase: Phase
    number: int
    tunnel_id: int
    phase1_tunnel_id: int | None


class _Accounted:
    """Which of the parent's recorded phase 2 SAs the child's reports account for, learnt
    report by report. Sized by the parent's own records, never by the reports: a child
    cannot make it grow."""

    __slots__ = ("_by_spi", "_policy_phase2s", "accounted", "groups", "policy_numbers",
                 "reported")  # fmt: skip

    def __init__(self, installed: Installed) -> None:
        self.groups: dict[tuple[int, int], list[SaEntry]] = {}
        for e in installed.sas.values():
            if not e.larval and e.tunnel_id is not None:
                self.groups.setdefault((e.phase2_number, e.tunnel_id), []).append(e)
        self._by_spi = {(n2, e.spi): (n2, tid)
                        for (n2, tid), sas in self.groups.items() for e in sas}  # fmt: skip
        # (phase 2, owner) of every recorded policy
        self.policy_numbers = {(e.phase2_number, e.owner) for e in installed.policies.values()}
        self._policy_phase2s = {n2 for n2, _ in self.policy_numbers}
        self.accounted: set[tuple[int, int]] = set()
        self.reported: set[int] = set()  # of the phase 2s with policies

    def see(self, r: m.StateReport) -> None:
        if r.phase is not Phase.PHASE2:
            return
        for spi in (r.spi_in, r.spi_out):
            key = self._by_spi.get((r.number, spi))
            if key is not None:
                self.accounted.add(key)
        if r.number in self._policy_phase2s:
            self.reported.add(r.number)


class _Plus:
    """`phase=1+`: phase 1 rows, and the phase 2 rows of those (the CLI draws the tree).
    The negotiator lists phase 1 first, so a phase 2 row's phase 1 is known when it comes."""

    __slots__ = ("_phase1",)

    def __init__(self) -> None:
        self._phase1: set[int] = set()  # tunnel ids, at most MAX_LISTED

    def keeps(self, row: m.TunnelRow) -> bool:
        if row.phase is Phase.PHASE1:
            if row.tunnel_id is not None:
                self._phase1.add(row.tunnel_id)
            return True
        return row.phase1_number in self._phase1


def _child_phases(phase: Phase) -> tuple[Phase, ...]:
    """The phases to ask the negotiator for, in listing order."""
    if phase in (Phase.PHASE1, Phase.PHASE2):
        return (phase,)
    return (Phase.PHASE1, Phase.PHASE2)


def _counted(row: m.TunnelRow, counts: dict[int, tuple[int, int]] | None) -> m.TunnelRow:
    """A phase 2 row with the kernel's byte and packet counts of its SAs (`verbose`)."""
    if counts is None or row.phase is not Phase.PHASE2:
        return row
    b_in, p_in = counts.get(row.spi_in, (0, 0)) if row.spi_in else (0, 0)
    b_out, p_out = counts.get(row.spi_out, (0, 0)) if row.spi_out else (0, 0)
    top = (1 << 64) - 1
    return dataclasses.replace(row, bytes=min(b_in + b_out, top),
                               packets=min(p_in + p_out, top))  # fmt: skip


def _wanted(row: m.TunnelRow, req: m.ListRequest) -> bool:
    if req.role is not None and row.role is not req.role:
        return False
    if req.phase is Phase.PHASE1 and row.phase is not Phase.PHASE1:
        return False
    if req.phase is Phase.PHASE2 and row.phase is not Phase.PHASE2:
        return False
    number = row.tunnel_id if row.tunnel_id is not None else row.number
    if req.phase is Phase.PHASE1_PLUS and row.phase is Phase.PHASE2:
        return True  # kept with its phase 1 below
    return _in_numlist(number, req.numlist)
