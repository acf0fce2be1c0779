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
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import trio

from ikepriv.config.model import Phase1Definition, Phase2Definition
from ikepriv.config.store import TunnelDB, TunnelDBError
from ikepriv.ipc import messages as m
from ikepriv.ipc.control import split_response
from ikepriv.ipc.messages import ErrorCode, Phase
from ikepriv.ipc.schema import Message
from ikepriv.parent_kernel.installed import SaEntry
from ikepriv.parent_kernel.kernel.specs import XfrmError
from ikepriv.parent_kernel.requests import ChildListing, ChildRequests
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
        child: ChildRequests,
        send_to_child: Callable[[Message], bool],
        db_path: str,
        reload: Callable[[], Awaitable[str]],
        child_restarts: Callable[[], int] = lambda: 0,
    ) -> None:
        self.state = state
        self._child_restarts = child_restarts
        self.child = child
        self._send = send_to_child
        self._db_path = db_path
        self._reload = reload

    async def handle(self, request: Message) -> list[m.Response]:
        match request:
            case m.ActivateRequest():
                return await self.activate(request)
            case m.ListRequest():
                return await self.list_tunnels(request)
            case m.RemoveRequest():
                return await self.remove(request)
            case m.DbChanged():
                return await self.db_changed(request)
            case m.StatsRequest():
                return await self.stats(request)
            case _:
                return split_response(ErrorCode.INVALID_REQUEST, [f"{type(request).__name__}?"])

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
        self._send(command)
        log.info("phase %d tunnel %d (%s) activated", int(phase), number, name)
        return None

    async def activate(self, req: m.ActivateRequest) -> list[m.Response]:
        items: list[tuple[Phase, int, str, int]] = []
        if req.phase is Phase.PHASE1:
            items = [(Phase.PHASE1, n, d.name, n) for n, d in self._selected_phase1(req)]
        else:
            view = self.state.view
            items = [(Phase.PHASE2, n, d.name, view.phase2_parent[n])
                     for n, d in self._selected_phase2(req)]  # fmt: skip
        if not items:
            return split_response(ErrorCode.NO_SUCH_TUNNEL, ["no matching definition"])
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
        return split_response(status, lines)

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
        sa = next((e for e in installed.sas.values()
                   if e.spi == spi_out and e.phase2_number == n2 and not e.larval
                   and e.direction is m.SaDirection.OUT), None)  # fmt: skip
        if sa is None or not spi_out:
            return {}
        for pol in installed.policies.values():
            sel, direction = pol.key
            if (pol.phase2_number == n2 and pol.reqid == sa.reqid
                    and direction is m.PolicyDirection.OUT):  # fmt: skip
                return {
                    "local_selector": format_selector(sel.src.network, sel.src.protocol,
                                                      sel.src.port),
                    "remote_selector": format_selector(sel.dst.network, sel.dst.protocol,
                                                       sel.dst.port),
                }  # fmt: skip
        return {}

    def _record_rows(
        self, now: float, reports: list[m.StateReport] | None = None
    ) -> list[m.TunnelRow]:
        """Phase 2 tunnels from the parent's own records: every one when the child is not
        answering (state established: the kernel SAs carry traffic), otherwise those that no
        report of the child accounts for (state unmanaged): SAs of a tunnel whose SPIs no
        phase 2 report names, and policies of a phase 2 that has no SA and no report."""
        installed = self.state.installed
        groups: dict[tuple[int, int], list[SaEntry]] = {}
        for e in installed.sas.values():
            if not e.larval and e.tunnel_id is not None:
                groups.setdefault((e.phase2_number, e.tunnel_id), []).append(e)
        p2_reports = [r for r in reports or () if r.phase is Phase.PHASE2]
        state = m.TunnelState.ESTABLISHED if reports is None else m.TunnelState.UNMANAGED
        rows = []
        for (n2, tid), sas in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            spis = {e.spi for e in sas}
            if any(r.number == n2 and ({r.spi_in, r.spi_out} & spis) for r in p2_reports):
                continue
            first = sas[0]
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
        if reports is None:
            return rows
        with_sa = {n2 for n2, _ in groups}
        reported = {r.number for r in p2_reports}
        for n2 in sorted({e.phase2_number for e in installed.policies.values()}):
            if n2 in with_sa or n2 in reported:
                continue
            p2 = self.state.view.phase2.get(n2)
            rows.append(m.TunnelRow(
                n2, None, Phase.PHASE2, _name(p2.name if p2 else "", n2), None,
                m.TunnelState.UNMANAGED, None, None, None, None, "policies only", 0, 0, 0,
                0, 0, self.state.view.phase2_parent.get(n2),
            ))  # fmt: skip
        return rows

    async def _with_counters(self, rows: list[m.TunnelRow]) -> list[m.TunnelRow]:
        st = self.state
        try:
            sas = await st.kernel_call(st.kernel.list_sas)
        except XfrmError as exc:
            log.warning("list: no kernel counters: %s", exc)
            return rows
        counts: dict[int, tuple[int, int]] = {}
        for sa in sas:
            b, p = counts.get(sa.spi, (0, 0))
            counts[sa.spi] = (b + sa.bytes, p + sa.packets)
        out = []
        for row in rows:
            if row.phase is Phase.PHASE2:
                b_in, p_in = counts.get(row.spi_in, (0, 0)) if row.spi_in else (0, 0)
                b_out, p_out = counts.get(row.spi_out, (0, 0)) if row.spi_out else (0, 0)
                top = (1 << 64) - 1
                row = dataclasses.replace(row, bytes=min(b_in + b_out, top),
                                          packets=min(p_in + p_out, top))  # fmt: skip
            out.append(row)
        return out

    async def list_tunnels(self, req: m.ListRequest) -> list[m.Response]:
        if req.db:
            return split_response(ErrorCode.OK, (), self._db_rows(req))
        now = time.time()
        lines: list[str] = []
        listing = await self.child.ask_child(req.phase)
        if listing is None:
            lines.append("negotiator not answering: phase 2 tunnels from the kernel records only")
            rows = self._record_rows(now)
        else:
            rows = [self._report_row(r, now) for r in listing.reports]
            unmanaged = self._record_rows(now, listing.reports)
            if unmanaged:
                lines.append(f"{len(unmanaged)} phase 2 tunnel(s) in the kernel that no "
                             "negotiation accounts for (state unmanaged): `ike cmd=remove` "
                             "removes them")  # fmt: skip
            rows += unmanaged
        rows = [r for r in rows if _wanted(r, req)]
        if req.phase is Phase.PHASE1_PLUS:
            rows = _phase1_plus(rows)
        if not req.verbose:
            return split_response(ErrorCode.OK, lines, rows)
        rows = await self._with_counters(rows)
        return _with_event_counters(split_response(ErrorCode.OK, lines, rows),
                                    self._event_counters(listing),
                                    listing.definitions if listing else ())  # fmt: skip

    # -- stats -----------------------------------------------------------------------------

    def _event_counters(self, listing: ChildListing | None) -> tuple[m.CounterValue, ...]:
        """The child's counters (none when it did not answer), then the parent's."""
        self.state.counters.child_restarts = self._child_restarts()
        child = listing.counters if listing is not None else ()
        return child + self.state.counters.values()

    async def stats(self, _req: m.StatsRequest) -> list[m.Response]:
        listing = await self.child.ask_child(Phase.ALL)
        lines = []
        if listing is None:
            lines.append("negotiator not answering: the parent's counters only")
        elif not listing.counters:
            lines.append("the negotiator sent no counters: the parent's counters only")
        return _with_event_counters(split_response(ErrorCode.OK, lines),
                                    self._event_counters(listing),
                                    listing.definitions if listing else ())  # fmt: skip

    # -- remove ----------------------------------------------------------------------------

    async def _remove_db(self, req: m.RemoveRequest) -> list[m.Response]:
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
            return split_response(ErrorCode.DB_ERROR, [*lines, str(exc)])
        lines.append(await self._reload())
        return split_response(ErrorCode.OK if len(lines) > 1 else ErrorCode.NO_SUCH_TUNNEL,
                              lines)  # fmt: skip

    async def remove(self, req: m.RemoveRequest) -> list[m.Response]:
        """What goes is chosen from the parent's records, as definition numbers: a tunnel
        number selects the phase 2 definitions of the recorded SAs (and reports) with that
        number, and then every recorded SA and policy of those definitions goes, whatever
        the child says. The child's tunnel ids only serve to send the peer Deletes first. A
        bare `remove` removes every recorded object and clears the activations."""
        if req.db:
            return await self._remove_db(req)
        st = self.state
        view = st.view
        listing = await self.child.ask_child(Phase.ALL)
        reports = listing.reports if listing is not None else []
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
                self._send(m.RemoveCommand(Phase.PHASE1, r.tunnel_id))
                lines.append(f"phase 1 tunnel {r.tunnel_id} removed")
                sent_p1.add(r.tunnel_id)
        sent_p2: set[int] = set()
        for r in reports:
            if r.phase is Phase.PHASE2 and r.number in p2defs:
                if r.phase1_tunnel_id not in sent_p1 and r.tunnel_id not in sent_p2:
                    self._send(m.RemoveCommand(Phase.PHASE2, r.tunnel_id))
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
        installer = self.child.installer
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
            return split_response(ErrorCode.KERNEL_ERROR, lines)
        if not lines:
            return split_response(ErrorCode.NO_SUCH_TUNNEL, ["no matching active tunnel"])
        return split_response(ErrorCode.OK, lines)

    async def db_changed(self, _req: m.DbChanged) -> list[m.Response]:
        return split_response(ErrorCode.OK, [await self._reload()])


def _with_event_counters(
    responses: list[m.Response],
    counters: tuple[m.CounterValue, ...],
    definitions: tuple[m.DefinitionCounts, ...] = (),
) -> list[m.Response]:
    """The answer, then one last Response with the counters and the child's per-definition
    tally (it always fits: both are bounded below a control datagram, see
    m.MAX_DEFINITION_COUNTS)."""
    *head, last = responses
    return [*head, dataclasses.replace(last, more=True),
            m.Response(last.status, (), (), more=False, counters=counters,
                       definitions=definitions)]  # fmt: skip


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


def _phase1_plus(rows: Iterable[m.TunnelRow]) -> list[m.TunnelRow]:
    rows = list(rows)
    out: list[m.TunnelRow] = []
    for row in rows:
        if row.phase is Phase.PHASE1:
            out.append(row)
            out += [r for r in rows
                    if r.phase is Phase.PHASE2 and r.phase1_number == row.tunnel_id]  # fmt: skip
    return out
