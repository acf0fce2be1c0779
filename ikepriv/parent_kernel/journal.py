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

The file is rewritten whole (temporary file and rename), bounded by the record limits of
installed.py. A file that does not parse is logged and ignored (never trusted further).
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
VERSION: Final = 1
MAX_FILE: Final = 8 * 1024 * 1024
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


def _sel_json(sel: SelectorSpec) -> dict[str, Any]:
    return {"src": str(sel.src), "dst": str(sel.dst), "proto": sel.proto,
            "sport": sel.sport, "dport": sel.dport}  # fmt: skip


def _sel_from(raw: dict[str, Any]) -> SelectorSpec:
    return SelectorSpec(ipaddress.ip_network(str(raw["src"])),
                        ipaddress.ip_network(str(raw["dst"])), int(raw["proto"]),
                        int(raw["sport"]), int(raw["dport"]))  # fmt: skip


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path

    # -- writing ---------------------------------------------------------------------------

    def save(self, sas: Iterable[SaMark], policies: Iterable[PolicyMark]) -> None:
        """Replace the file's content (atomically). Errors are logged, never raised: the
        kernel write it precedes matters more than the file."""
        doc = {
            "version": VERSION,
            "sas": [{"dst": str(s.dst), "spi": s.spi, "proto": s.proto, "reqid": s.reqid}
                    for s in sas],
            "policies": [{"sel": _sel_json(p.selector), "dir": int(p.direction),
                          "reqid": p.reqid} for p in policies],
        }  # fmt: skip
        tmp = f"{self.path}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("state file %s: %s", self.path, exc)

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> tuple[list[SaMark], list[PolicyMark]]:
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
            doc = json.loads(data)
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            sas = [SaMark(ipaddress.ip_address(str(s["dst"])), int(s["spi"]), int(s["proto"]),
                          int(s["reqid"])) for s in doc["sas"][:MAX_SAS_TOTAL * 2]]  # fmt: skip
            pols = [PolicyMark(_sel_from(p["sel"]), Direction(int(p["dir"])), int(p["reqid"]))
                    for p in doc["policies"][:MAX_POLICIES_TOTAL * 2]]  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("state file %s unreadable, ignored: %s", self.path, exc)
            return [], []
        return sas, pols

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
