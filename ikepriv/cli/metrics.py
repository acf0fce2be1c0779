"""`ike cmd=list stats prom`: the daemon's counters and tunnel state as Prometheus text.

The output is the Prometheus text exposition format (version 0.0.4), which node_exporter's
textfile collector reads and which every Prometheus-compatible scraper parses:

    cd /var/lib/node_exporter/textfile && ike cmd=list stats prom > ikepriv.tmp &&
        mv ikepriv.tmp ikepriv.prom

Families (every one with HELP and TYPE lines; metric_names() is the one list, which the
man page ike(8) prints):

- ``ikepriv_<counter>_total`` (counter): each event counter of ``ike cmd=list stats``, the
  negotiator's (drops, retransmits, phase 1/2 established and failed, rekeys, DPD) and the
  parent's (``udp_*`` drops before the negotiator, ``refused_requests``, ``child_restarts``).
  They count since the process keeping them started (a restarted negotiator starts again
  from 0, which Prometheus' rate() handles as a counter reset).
- per tunnel definition, labels ``phase`` (1 or 2), ``number`` (definition number) and
  ``name``: ``ikepriv_tunnel_established`` (1 when an active tunnel of it is established or
  rekeying), ``ikepriv_tunnel_active`` (active tunnels of it, in any state),
  ``ikepriv_tunnel_bytes`` / ``ikepriv_tunnel_packets`` (of its current phase 2 SAs, from
  the kernel; they restart at a rekey, hence gauges), ``ikepriv_tunnel_remaining_seconds``
  (shortest remaining lifetime of its active tunnels, 0 when none).
- per tunnel definition, same labels, counters: ``ikepriv_tunnel_rekeys_total`` (rekeys the
  negotiator started for it: replacement phase 1 exchanges or Quick Modes) and
  ``ikepriv_tunnel_dpd_failures_total`` (phase 1 definitions only: its peers declared dead
  by DPD). They are the daemon-wide ``ikepriv_phase1_rekeys_total``,
  ``ikepriv_phase2_rekeys_total`` and ``ikepriv_dpd_dead_peers_total`` split by definition,
  and like them count since the negotiator started (a definition added later starts at 0;
  one deleted and added again starts again from 0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ikepriv.ipc.messages import CounterValue, DefinitionCounts, Phase, TunnelRow, TunnelState

PREFIX = "ikepriv_"

COUNTER_HELP: dict[str, str] = {
    # the negotiator (ikepriv/child_negotiator/counters.py)
    "datagrams_in": "IKE datagrams the negotiator received",
    "dropped_malformed": "Datagrams dropped because the ISAKMP codec rejected them",
    "dropped_replay": "Datagrams dropped as replays or late for a finished step",
    "dropped_unexpected": "Well-formed messages dropped as not what the exchange waits for",
    "dropped_unknown_sa": "Messages dropped for cookies or a message ID of no known exchange",
    "dropped_half_open": "Phase 1 requests dropped because the half-open table was full",
    "dropped_auth": "Messages dropped because HASH or decryption checks failed",
    "dropped_policy": "Proposals, IDs or selectors refused as outside the definition",
    "dropped_clear_informational": "Unencrypted informational messages dropped after phase 1",
    "dropped_stale_reply": "Parent replies dropped because no exchange waited for them",
    "duplicates_answered": "Repeated messages answered with the last reply",
    "retransmits": "Timer-driven retransmissions",
    "exchanges_timed_out": "Exchanges abandoned after their last retransmission",
    "half_open_expired": "Half-open phase 1 exchanges expired",
    "half_open_evicted": "Unproven responder exchanges evicted for newer first messages",
    "dropped_work_budget": "Aggressive Mode first messages over the per-source/prefix work budget",
    "notifies_sent": "Notify messages sent",
    "notifies_suppressed": "Unencrypted notifies suppressed by the rate limit",
    "deletes_received": "Delete payloads received",
    "deletes_unknown": "Delete payloads naming an SA the peer does not own",
    "phase1_established": "Phase 1 SAs established",
    "phase1_failed": "Phase 1 negotiations that failed",
    "phase2_established": "Phase 2 SAs established",
    "phase2_failed": "Phase 2 negotiations that failed",
    "parent_errors": "Negotiator requests the parent refused, as seen by the negotiator",
    "requests_abandoned": "Parent requests forgotten unanswered (table bound)",
    "dpd_probes_sent": "DPD R-U-THERE probes sent",
    "dpd_acks_received": "DPD R-U-THERE-ACKs received for an outstanding probe",
    "dpd_acks_sent": "DPD R-U-THERE-ACKs sent to a peer",
    "dpd_dead_peers": "Peers declared dead by DPD (DPD failures)",
    "dpd_restarts": "Phase 1 restarts after a dead peer",
    "phase1_rekeys": "Replacement phase 1 exchanges started (rekeys)",
    "phase2_rekeys": "Replacement Quick Modes started (rekeys)",
    "rekey_collisions": "Rekeys both peers started at once (one SA retired)",
    "phase1_parallel": "ISAKMP SAs the peer opened at once alongside another (not collisions)",
    "log_lines_suppressed": "Log lines about unauthenticated first messages left out",
    "flood_initiations": "Phase 1 started towards a peer whose first messages were drowned",
    "fragments_received": "IKE fragments received and taken in for reassembly",
    "fragments_dropped": "IKE fragments dropped (malformed, unwanted or over a limit)",
    "fragments_duplicate": "IKE fragments received twice (ignored)",
    "fragments_abandoned": "Partly received IKE messages abandoned (timeout, new fragment ID)",
    "fragments_evicted": "Partly received IKE messages evicted by the reassembly bounds",
    "fragments_reassembled": "IKE messages reassembled from fragments",
    "fragments_sent": "IKE fragments sent",
    # the parent (ikepriv/parent_kernel/state.py ParentCounters)
    "udp_forwarded": "Datagrams the parent forwarded to the negotiator",
    "udp_keepalives": "NAT-T keepalives received (dropped, as they should be)",
    "udp_dropped_truncated": "Datagrams dropped by the parent as truncated",
    "udp_dropped_no_marker": "Port 4500 datagrams dropped without the non-ESP marker",
    "udp_dropped_not_unicast": "Datagrams dropped by the parent as not unicast",
    "udp_dropped_bad_source": "Datagrams dropped by the parent for their source address",
    "udp_dropped_unsendable": "Datagrams dropped because they do not fit a DatagramIn",
    "udp_dropped_no_child": "Datagrams dropped because the negotiator was not running",
    "udp_dropped_live_overflow": "Datagrams of live exchanges dropped: parent queue full",
    "udp_dropped_first_overflow": "First messages dropped by the parent's fair queue",
    "udp_dropped_unknown_cookies": "Datagrams with a responder cookie the parent never relayed",
    "udp_receive_errors": "Receive errors on the IKE sockets",
    "udp_send_errors": "Send errors on the IKE sockets",
    "udp_send_refused": "Negotiator datagrams refused (not a relayed exchange, over budget)",
    "refused_requests": "Negotiator requests the parent's vetting refused",
    "child_throttled": "Pauses in reading a negotiator over its request budget",
    "child_throttled_ms": "Milliseconds the parent did not read an over-budget negotiator",
    "child_lines_dropped": "Negotiator log lines dropped over its line budget",
    "child_restarts": "Restarts of the negotiator by the parent",
}


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str


TUNNEL_GAUGES: tuple[Gauge, ...] = (
    Gauge("tunnel_established", "1 when an active tunnel of this definition is established"),
    Gauge("tunnel_active", "Active tunnels of this definition, in any state"),
    Gauge("tunnel_bytes", "Bytes through the current phase 2 SAs of this definition"),
    Gauge("tunnel_packets", "Packets through the current phase 2 SAs of this definition"),
    Gauge("tunnel_remaining_seconds", "Shortest remaining lifetime of its active tunnels"),
)

TUNNEL_COUNTERS: tuple[Gauge, ...] = (
    Gauge("tunnel_rekeys", "Rekeys the negotiator started for this definition"),
    Gauge("tunnel_dpd_failures", "Peers of this phase 1 definition declared dead by DPD"),
)
"""Per-definition counters (family name plus _total); DPD failures only for phase 1."""

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def metric_names() -> list[tuple[str, str, str]]:
    """(name, type, help) of every family this module can print: the documented list."""
    out = [(f"{PREFIX}{name}_total", "counter", text) for name, text in COUNTER_HELP.items()]
    out += [(f"{PREFIX}{g.name}", "gauge", g.help) for g in TUNNEL_GAUGES]
    out += [(f"{PREFIX}{c.name}_total", "counter", c.help) for c in TUNNEL_COUNTERS]
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _counter_lines(counters: Iterable[CounterValue]) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for counter in counters:
        if counter.name in seen or not _NAME.fullmatch(counter.name):
            continue
        seen.add(counter.name)
        family = f"{PREFIX}{counter.name}_total"
        text = COUNTER_HELP.get(counter.name, f"ikepriv event counter {counter.name}")
        lines += [f"# HELP {family} {text}", f"# TYPE {family} counter",
                  f"{family} {counter.value}"]  # fmt: skip
    return lines


def _key(row: TunnelRow) -> tuple[int, int]:
    return (int(row.phase), row.number)


def _names(
    definitions: Sequence[TunnelRow], active: Sequence[TunnelRow]
) -> dict[tuple[int, int], str]:
    names: dict[tuple[int, int], str] = {_key(row): row.name for row in definitions}
    for row in active:
        names.setdefault(_key(row), row.name)
    return names


def _labels(names: dict[tuple[int, int], str], phase: int, number: int) -> str:
    return f'phase="{phase}",number="{number}",name="{_label(names[phase, number])}"'


def _tunnel_lines(definitions: Sequence[TunnelRow], active: Sequence[TunnelRow]) -> list[str]:
    names = _names(definitions, active)
    values: dict[str, dict[tuple[int, int], int]] = {
        g.name: dict.fromkeys(names, 0) for g in TUNNEL_GAUGES
    }
    remaining: dict[tuple[int, int], int] = {}
    for row in active:
        if row.tunnel_id is None or row.phase not in (Phase.PHASE1, Phase.PHASE2):
            continue
        key = _key(row)
        values["tunnel_active"][key] += 1
        if row.state in (TunnelState.ESTABLISHED, TunnelState.REKEYING):
            values["tunnel_established"][key] = 1
        values["tunnel_bytes"][key] += row.bytes
        values["tunnel_packets"][key] += row.packets
        if row.remaining_seconds:
            remaining[key] = min(remaining.get(key, row.remaining_seconds), row.remaining_seconds)
    values["tunnel_remaining_seconds"].update(remaining)
    lines: list[str] = []
    for gauge in TUNNEL_GAUGES:
        family = f"{PREFIX}{gauge.name}"
        lines += [f"# HELP {family} {gauge.help}", f"# TYPE {family} gauge"]
        for phase, number in sorted(names):
            labels = _labels(names, phase, number)
            lines.append(f"{family}{{{labels}}} {values[gauge.name][phase, number]}")
    return lines


def _tally_lines(
    definitions: Sequence[TunnelRow],
    active: Sequence[TunnelRow],
    tally: Sequence[DefinitionCounts],
) -> list[str]:
    """Rekeys (both phases) and DPD failures (phase 1) of every listed definition, 0 when
    the negotiator tallied nothing for it; a tallied definition the listing no longer
    has (deleted in between) is left out, it has no name to show."""
    names = _names(definitions, active)
    counts = {(int(d.phase), d.number): (d.rekeys, d.dpd_failures) for d in tally}
    rekeys, dpd = TUNNEL_COUNTERS
    lines: list[str] = []
    for counter, index, phases in ((rekeys, 0, (1, 2)), (dpd, 1, (1,))):
        family = f"{PREFIX}{counter.name}_total"
        lines += [f"# HELP {family} {counter.help}", f"# TYPE {family} counter"]
        for phase, number in sorted(names):
            if phase in phases:
                value = counts.get((phase, number), (0, 0))[index]
                lines.append(f"{family}{{{_labels(names, phase, number)}}} {value}")
    return lines


def render(
    counters: Sequence[CounterValue],
    definitions: Sequence[TunnelRow],
    active: Sequence[TunnelRow],
    tally: Sequence[DefinitionCounts] = (),
) -> str:
    """Prometheus text (0.0.4): event counters, then per-definition tunnel gauges and
    per-definition counters (rekeys, DPD failures)."""
    lines = _counter_lines(counters) + _tunnel_lines(definitions, active)
    return "\n".join(lines + _tally_lines(definitions, active, tally)) + "\n"
