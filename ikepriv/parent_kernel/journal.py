"""The state file: what this daemon has (or may have) in the kernel, surviving a `kill -9`.

The kernel's XFRM objects outlive the parent. To recognise its own leftovers after a restart
of the whole daemon (a crash, `kill -9`, an OOM kill), the parent keeps, beside its control
socket (`<control>.installed`, root-only; on /run, cleared by a reboot together with the
kernel state it describes), the exact identity of every SA and policy it wrote: SA by
(destination, SPI, protocol, reqid), policy by (selector, direction, reqid).

Why a state file and not a mark in the kernel objects: an XFRM mark on a policy changes which
packets it matches (only packets carrying that mark), so it cannot label without changing
behaviour; a reqid range or priority band would be shared with any other IKE daemon on the
host (strongSwan counts reqids up from 1, libreswan uses its own band) and would make the
parent delete objects that are not its own. The file names each object exactly, and an
object is only touched at start-up if the kernel still holds it with the recorded reqid.

Write-ahead: installer.py saves an object here *before* it writes it to the kernel, and
drops it after the kernel removed it; so whatever the moment of a kill, nothing ikepriv wrote
is missing from the file (the file may name more than the kernel holds; those are skipped).
One exception: an SPI from ALLOCSPI is known only after the kernel made the larval SA; such a
larval SA expires by itself (net.xfrm acq_expires, 30 s) if a kill falls between the two.

At start-up (`sweep`), before the first child runs, every object of the file that the kernel
still holds with the recorded reqid is removed: nothing manages it any more (the activations
died with the old parent), and an SA or policy nobody rekeys would blackhole the traffic at
its end of life. Tunnels that should be up (autostart) are negotiated afresh right after.

The file is a log, one JSON line per change ("s"/"p": an SA or policy as written, "s-"/"p-":
gone), appended (O(1) per change: rewriting it whole made every install cost time in
proportion to the SAs held, 20 ms and more at 10,000 tunnels), and compacted (rewritten whole
from the live set, temporary file and rename) once it holds more than twice the live lines
plus COMPACT_SLACK; so it stays bounded by the record limits of installed.py. A torn last
line (a kill during the write) is ignored; a file that does not parse otherwise is logged
and ignored (never trusted further). A file of version 1 (one JSON document rewritten whole,
what ikeprivd wrote before the log) is read too: after an upgrade, a crash of the old
version leaves such a file, and its objects must still be swept.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.installed import (
    MAX_POLICIES_TOTAL,
    MAX_SAS_TOTAL,
    PolicyEntry,
    SaEntry,
)
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.kernel.specs import SelectorSpec, XfrmError
from ikepriv.parent_kernel.kernel.xfrm_messages import Direction
from ikepriv.parent_kernel.vetting import XFRM_PROTO

log = logging.getLogger("ikepriv.parent")

SUFFIX: Final = ".installed"
VERSION: Final = 2  # 1: one JSON document rewritten whole
# Twice the live lines plus the slack at the record limits (installed.py: 32,768 SAs and
# 32,768 policies), at up to about 120 bytes a line (IPv6 policies; IPv4 lines are 50).
MAX_FILE: Final = 32 * 1024 * 1024
COMPACT_SLACK: Final = 1024  # change lines a file may carry beyond twice the live objects
_GONE: Final = frozenset({errno.ESRCH, errno.ENOENT})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class SaMark:
    dst: IPAddress
    spi: int
    proto: int  # IP protocol number (50 ESP, 51 AH)
    reqid: int  # 0 for a larval SA


@dataclass(frozen=True)
class PolicyMark:
    selector: SelectorSpec
    direction: Direction
    reqid: int


def sa_mark(entry: SaEntry) -> SaMark:
    return SaMark(entry.dst, entry.spi, int(XFRM_PROTO[entry.proto]),
                  0 if entry.larval else entry.reqid)  # fmt: skip


def policy_mark(entry: PolicyEntry) -> PolicyMark:
    return PolicyMark(entry.spec.selector, entry.spec.direction, entry.reqid)


def _replay(line: object, sas: dict[_SaId, int], pols: dict[_PolicyId, int]) -> None:
    """Apply one change line; anything but the four shapes is a ValueError."""
    if not isinstance(line, dict) or len(line) != 1:
        raise ValueError(f"line {line!r}")
    ((op, v),) = line.items()
    if not isinstance(v, list) or not all(isinstance(x, int | str) for x in v):
        raise ValueError(f"line {line!r}")
    if op == "s" and len(v) == 4:
        sas[(str(v[0]), int(v[1]), int(v[2]))] = int(v[3])
    elif op == "s-" and len(v) == 3:
        sas.pop((str(v[0]), int(v[1]), int(v[2])), None)
    elif op == "p" and len(v) == 7:
        pols[(str(v[0]), str(v[1]), int(v[2]), int(v[3]), int(v[4]), int(v[5]))] = int(v[6])
    elif op == "p-" and len(v) == 6:
        pols.pop((str(v[0]), str(v[1]), int(v[2]), int(v[3]), int(v[4]), int(v[5])), None)
    else:
        raise ValueError(f"line {line!r}")
    if len(sas) > MAX_SAS_TOTAL * 2 or len(pols) > MAX_POLICIES_TOTAL * 2:
        raise ValueError("more objects than the parent ever records")


_SaId = tuple[str, int, int]  # destination, SPI, IP protocol: the kernel's SA id
_PolicyId = tuple[str, str, int, int, int, int]  # selector and direction
_V1_START: Final = b'{"version":1,'  # json.dump with compact separators, "version" first


def _read_log(data: bytes) -> tuple[dict[_SaId, int], dict[_PolicyId, int]]:
    """Version 2: a header line, then change lines replayed in order."""
    lines = data.split(b"\n")
    if lines and lines[-1] and not data.endswith(b"\n"):
        lines.pop()  # torn by a kill in the middle of an append
    header = json.loads(lines[0]) if lines else {}
    if not isinstance(header, dict) or header.get("version") != VERSION:
        raise ValueError("not a state file of this version")
    sas: dict[_SaId, int] = {}
    pols: dict[_PolicyId, int] = {}
    for raw in lines[1:]:
        if raw:
            _replay(json.loads(raw), sas, pols)
    return sas, pols


def _read_v1(data: bytes) -> tuple[dict[_SaId, int], dict[_PolicyId, int]]:
    """Version 1: one document {"version": 1, "sas": [{dst, spi, proto, reqid}],
    "policies": [{sel: {src, dst, proto, sport, dport}, dir, reqid}]}, turned into the
    change lines version 2 would hold, so the same checks apply to every value."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ValueError("not a state file of version 1")
    sas: dict[_SaId, int] = {}
    pols: dict[_PolicyId, int] = {}
    for s in doc["sas"]:
        _replay({"s": [s["dst"], s["spi"], s["proto"], s["reqid"]]}, sas, pols)
    for p in doc["policies"]:
        sel = p["sel"]
        _replay({"p": [sel["src"], sel["dst"], sel["proto"], sel["sport"], sel["dport"],
                       p["dir"], p["reqid"]]}, sas, pols)  # fmt: skip
    return sas, pols


# What the file says, in memory, keyed by the objects the records hold (an address, a
# selector): the strings of a line are made only to write it (they cost about 1 kB per tunnel
# when kept, issue 11).
_SaKey = tuple[IPAddress, int, int]
_PolicyKey = tuple[SelectorSpec, Direction]


def _sa_key(mark: SaMark) -> _SaKey:
    return (mark.dst, mark.spi, mark.proto)


def _policy_key(mark: PolicyMark) -> _PolicyKey:
    return (mark.selector, mark.direction)


def _sa_id(key: _SaKey) -> _SaId:
    return (str(key[0]), key[1], key[2])


def _policy_id(key: _PolicyKey) -> _PolicyId:
    sel, direction = key
    return (str(sel.src), str(sel.dst), sel.proto, sel.sport, sel.dport, int(direction))


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self._sas: dict[_SaKey, int] = {}  # what the file says: SA -> reqid
        self._policies: dict[_PolicyKey, int] = {}  # policy -> reqid
        self._lines = 0  # change lines in the file since it was last written whole

    # -- writing ---------------------------------------------------------------------------

    def put(self, sas: Iterable[SaMark] = (), policies: Iterable[PolicyMark] = ()) -> None:
        """Record objects about to be written (or written: an allocated SPI), replacing
        what the file said about the same kernel object."""
        lines = []
        for s in sas:
            key = _sa_key(s)
            if self._sas.get(key) != s.reqid:
                self._sas[key] = s.reqid
                lines.append({"s": [*_sa_id(key), s.reqid]})
        for p in policies:
            pkey = _policy_key(p)
            if self._policies.get(pkey) != p.reqid:
                self._policies[pkey] = p.reqid
                lines.append({"p": [*_policy_id(pkey), p.reqid]})
        self._append(lines)

    def drop(self, sas: Iterable[SaMark] = (), policies: Iterable[PolicyMark] = ()) -> None:
        """Forget objects the kernel no longer holds (removed, never written)."""
        lines = []
        for s in sas:
            key = _sa_key(s)
            if self._sas.pop(key, None) is not None:
                lines.append({"s-": list(_sa_id(key))})
        for p in policies:
            pkey = _policy_key(p)
            if self._policies.pop(pkey, None) is not None:
                lines.append({"p-": list(_policy_id(pkey))})
        self._append(lines)

    def save(self, sas: Iterable[SaMark], policies: Iterable[PolicyMark]) -> None:
        """Replace the file's content with exactly these objects (atomically)."""
        self._sas = {_sa_key(s): s.reqid for s in sas}
        self._policies = {_policy_key(p): p.reqid for p in policies}
        self._rewrite()

    def _append(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        self._lines += len(lines)
        if self._lines > 2 * (len(self._sas) + len(self._policies)) + COMPACT_SLACK:
            self._rewrite()
            return
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as exc:  # errors are logged, never raised: the kernel write matters more
            log.error("state file %s: %s", self.path, exc)

    def _rewrite(self) -> None:
        self._lines = 0
        out = [json.dumps({"version": VERSION})]
        out += [json.dumps({"s": [*_sa_id(k), reqid]}, separators=(",", ":"))
                for k, reqid in self._sas.items()]  # fmt: skip
        out += [json.dumps({"p": [*_policy_id(k), reqid]}, separators=(",", ":"))
                for k, reqid in self._policies.items()]  # fmt: skip
        tmp = f"{self.path}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("\n".join(out) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("state file %s: %s", self.path, exc)

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> tuple[list[SaMark], list[PolicyMark]]:
        """What the file names (see the module docstring), of either version; nothing if
        it is missing or unreadable (logged)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE + 1)
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            log.error("state file %s: %s", self.path, exc)
            return [], []
        try:
            if len(data) > MAX_FILE:
                raise ValueError("too large")
            sas, pols = _read_v1(data) if data.startswith(_V1_START) else _read_log(data)
            sa_marks = [SaMark(ipaddress.ip_address(d), spi, proto, reqid)
                        for (d, spi, proto), reqid in sas.items()]  # fmt: skip
            pol_marks = [PolicyMark(SelectorSpec(ipaddress.ip_network(src),
                                                 ipaddress.ip_network(dst), proto, sport,
                                                 dport), Direction(d), reqid)
                         for (src, dst, proto, sport, dport, d), reqid in pols.items()]  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            log.error("state file %s unreadable, ignored: %s", self.path, exc)
            return [], []
        return sa_marks, pol_marks

    # -- start-up --------------------------------------------------------------------------

    def sweep(self, kernel: XfrmKernel) -> tuple[int, int]:
        """Remove the previous run's leftovers (see the module docstring); the counts of SAs
        and policies removed. The file is emptied afterwards."""
        sas, pols = self.load()
        if not sas and not pols:
            self.save((), ())
            return 0, 0
        try:
            live_sas = {(r.dst, r.spi, r.proto): r for r in kernel.list_sas()}
            live_pols = {(r.selector, r.direction): r for r in kernel.list_policies()}
        except XfrmError as exc:
            log.error("leftovers of the previous run not checked: %s", exc)
            return 0, 0
        removed_pols = 0
        for p in pols:
            rec = live_pols.get((p.selector, p.direction))
            if rec is None or not any(t.reqid == p.reqid for t in rec.templates):
                continue
            try:
                kernel.delete_policy(p.selector, p.direction)
                removed_pols += 1
            except XfrmError as exc:
                if exc.errno not in _GONE:
                    log.error("leftover policy %s -> %s: %s", p.selector.src, p.selector.dst,
                              exc)  # fmt: skip
        removed_sas = 0
        for s in sas:
            sa = live_sas.get((s.dst, s.spi, s.proto))
            if sa is None or (s.reqid and sa.reqid != s.reqid):
                continue
            try:
                kernel.delete_sa(s.dst, s.spi, IpProtocol(s.proto))
                removed_sas += 1
            except XfrmError as exc:
                if exc.errno not in _GONE:
                    log.error("leftover SA spi %#x: %s", s.spi, exc)
        if removed_sas or removed_pols:
            log.warning("removed %d SA(s) and %d policy(ies) a previous run of ikeprivd left "
                        "in the kernel", removed_sas, removed_pols)  # fmt: skip
        self.save((), ())
        return removed_sas, removed_pols


def unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
