"""ikepriv <-> ikepriv in a real kernel with ESP: the `ike` life cycle, key log, sandbox, crash.

Guest entry point: `run_cases(groups, log_dir)` builds the topology once, checks that the guard
policies block cleartext and runs the case groups. gwA holds the daemon that is told what to
do, gwB answers. Daemon starts dominate the run time under UML (every Python import is slow
there), so one responder serves the groups that use the standard definitions, each group with
a fresh initiator; it is restarted if it still holds a tunnel after its initiator shut down.
The crash case comes last on that responder. Every case that brings a tunnel up ends with a
LAN-to-LAN ping carried as ESP (the counters of both gateways rise both ways, the guard
policies still in place) and the real `ike cmd=list json` checked on both sides.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import (
    PHASE1_NAME,
    PHASE2_NAME,
    Ikepriv,
    IkeprivOptions,
    Phase2Def,
    definitions,
    tool,
)
from harness.peers import make_peer

from e2e.common import (
    LAN_A_HI,
    LAN_A_HOST_HI,
    LAN_A_LO,
    LAN_B_HI,
    LAN_B_HOST_HI,
    LAN_B_LO,
    Capture,
    Case,
    add_hi_hosts,
    check_blocked,
    check_esp_ping,
    check_listing,
    esp_sa_count,
    guarded,
    guards_present,
    kernel_log_tail,
    ping_stats,
    sandbox_facts,
    wait_until,
)

EST_TIMEOUT = 30.0
DOWN_TIMEOUT = 15.0


class Lab:
    """The topology, the state directory and the shared standard responder in gwB."""

    def __init__(self, topo: nsmod.Topology, root: Path) -> None:
        self.topo = topo
        self.root = root
        self.peers: list[Ikepriv] = []
        self._b: Ikepriv | None = None
        self._b_count = 0
        self.notes: list[str] = []

    def make(self, role: str, tag: str, opts: IkeprivOptions) -> Ikepriv:
        p = make_peer(
            "ikepriv", peer_spec(self.topo, Scenario(tag, "ikepriv", "ikepriv"), role), self.root
        )
        assert isinstance(p, Ikepriv)
        p.options = opts
        self.peers.append(p)
        return p

    def initiator(self, tag: str, opts: IkeprivOptions | None = None) -> Ikepriv:
        return self.make("initiator", tag, opts or IkeprivOptions(keylog=True))

    def responder(self) -> Ikepriv:
        """The running shared responder (standard definitions, key log on)."""
        if self._b is None or not self._b.alive():
            self._b_count += 1
            self._b = self.make("responder", f"shared{self._b_count}", IkeprivOptions(keylog=True))
            self._b.start()
        return self._b

    def settle(self) -> None:
        """After an initiator stopped: the responder must have dropped everything (the
        initiator's Deletes); otherwise it is replaced so the next group starts clean."""
        b = self._b
        if b is None:
            return
        clean = wait_until(
            lambda: not b.rows() and esp_sa_count(self.topo, self.topo.gw_b) == 0,
            DOWN_TIMEOUT,
            step=0.2,
        )
        if not clean:
            self.notes.append(f"{b.spec.name} still had {b.rows()!r:.300} after its peer stopped")
            self.drop_responder()

    def drop_responder(self) -> None:
        if self._b is not None:
            self._b.stop()
            self._b = None
        self.topo.reset_xfrm()

    def stop_all(self) -> None:
        for p in self.peers:
            p.stop()


def _start(case: Case, a: Ikepriv, b: Ikepriv | None = None) -> None:
    case.step("start the daemon(s)")
    t = time.monotonic()
    if b is not None:
        b.start()
    a.start()
    case.timed("start", t)


def _activate(case: Case, a: Ikepriv, *words: str) -> bool:
    case.step(f"ike cmd=activate {' '.join(words)}".strip())
    r = a.ike("cmd=activate", *words)
    return case.check(
        r.returncode == 0,
        f"ike cmd=activate {' '.join(words)} rc {r.returncode}: {(r.stdout + r.stderr).strip()}",
    )


def _wait_up(case: Case, a: Ikepriv, b: Ikepriv, phase2: int = 1, key: str = "") -> bool:
    t = time.monotonic()
    ok = wait_until(lambda: a.established(phase2) and b.established(phase2), EST_TIMEOUT)
    if key:
        case.timed(key, t)
    return case.check(
        ok,
        f"not established on both sides within {EST_TIMEOUT}s "
        f"(A {a.phase_states()}, B {b.phase_states()})",
    )


def _wait_down(case: Case, topo: nsmod.Topology, a: Ikepriv, b: Ikepriv) -> bool:
    """No tunnel rows on either side and no ESP SA left in either gateway."""

    def down() -> bool:
        return (
            not a.rows()
            and not b.rows()
            and esp_sa_count(topo, topo.gw_a) == 0
            and esp_sa_count(topo, topo.gw_b) == 0
        )

    ok = wait_until(down, DOWN_TIMEOUT, step=0.2)
    return case.check(
        ok,
        f"tunnels or SAs left after remove: A {a.rows()!r:.300} B "
        f"{b.rows()!r:.300} ESP SAs A {esp_sa_count(topo, topo.gw_a)} "
        f"B {esp_sa_count(topo, topo.gw_b)}",
    )


def _verify(
    case: Case,
    topo: nsmod.Topology,
    a: Ikepriv,
    b: Ikepriv,
    p2: tuple[str, ...] = (PHASE2_NAME,),
    label: str = "ping",
) -> None:
    """The end of every case that has a tunnel up: listing on both sides, ping through ESP."""
    case.step(f"verify ({label})")
    case.check(guards_present(topo), "guard policy missing on a gateway")
    check_listing(case, a, (PHASE1_NAME,), p2)
    check_listing(case, b, (PHASE1_NAME,), p2)
    check_esp_ping(case, topo, label=label)


def _tid(peer: Ikepriv, phase: int, name: str) -> int | None:
    for r in peer.rows():
        if r["phase"] == phase and r["name"] == name:
            return int(r["tunnel_id"]) if r["tunnel_id"] is not None else None
    return None


# --- case groups -------------------------------------------------------------------------


def group_activate_all(lab: Lab) -> dict[str, Any]:
    """activate-all (captured; key log on), keylog-capture, sandbox."""
    out: dict[str, Any] = {}
    topo, root = lab.topo, lab.root
    case = Case("activate-all")
    a = lab.initiator("all")
    b: Ikepriv | None = None
    cap: Capture | None = None
    try:
        with guarded(case):
            b = lab.responder()
            _start(case, a)
            cap = Capture(topo.gw_a, "vA", root / "activate-all.pcap")
            t = time.monotonic()
            if _activate(case, a):
                case.timed("activate_call", t)
                _wait_up(case, a, b)
                case.timed("activate_to_both_established", t)
                _verify(case, topo, a, b)
        frames = cap.stop() if cap is not None else 0
        out[case.name] = case.result([p for p in (a, b) if p])

        cap_case = Case("keylog-capture")
        with guarded(cap_case):
            cap_case.step("ikedump --keys")
            cap_case.details["frames"] = frames
            _check_capture(cap_case, root / "activate-all.pcap", a.keylog)
        out[cap_case.name] = cap_case.result((a,))

        sb = Case("sandbox")
        with guarded(sb):
            sb.step("read /proc of the daemon's child")
            for p in (a, b):
                if p is not None:
                    _check_sandbox(sb, p)
        out[sb.name] = sb.result([p for p in (a, b) if p])
    finally:
        a.stop()
        lab.settle()
    return out


def group_phased(lab: Lab) -> dict[str, Any]:
    """activate phase=1 then phase=2; remove phase=1; remove everything; remove db."""
    out: dict[str, Any] = {}
    topo = lab.topo
    a = lab.initiator("phased")
    case = Case("activate-phased")
    try:
        with guarded(case):
            b = lab.responder()
            _start(case, a)
            if _activate(case, a, "phase=1"):
                case.step("phase 1 up on both sides, no phase 2")
                ok = wait_until(lambda: a.ike_established() and b.ike_established(), EST_TIMEOUT)
                case.check(
                    ok, f"phase 1 not established (A {a.phase_states()}, B {b.phase_states()})"
                )
                time.sleep(0.5)
                case.check(
                    not a.phase_states()[2] and not b.phase_states()[2],
                    f"phase 2 rows after phase=1 only: A {a.phase_states()} B {b.phase_states()}",
                )
                case.check(
                    esp_sa_count(topo, topo.gw_a) == 0 == esp_sa_count(topo, topo.gw_b),
                    "ESP SAs exist after activating phase 1 only",
                )
                check_blocked(case, topo, label="ping-before-phase2")
                if _activate(case, a, "phase=2"):
                    t = time.monotonic()
                    _wait_up(case, a, b)
                    case.timed("phase2_to_both_established", t)
                    _verify(case, topo, a, b)
        out[case.name] = case.result((a, lab.responder()))
        b = lab.responder()

        rm = Case("remove-phase1")
        with guarded(rm):
            tid = _tid(a, 1, PHASE1_NAME)
            rm.step(f"ike cmd=remove phase=1 numlist={tid} (its phase 2 goes too)")
            r = a.ike("cmd=remove", "phase=1", f"numlist={tid}")
            rm.check(r.returncode == 0, f"remove phase=1 rc {r.returncode}: {r.stderr.strip()}")
            _wait_down(rm, topo, a, b)
            check_blocked(rm, topo, label="ping-after-remove-phase1")
            if _activate(rm, a):
                _wait_up(rm, a, b)
                _verify(rm, topo, a, b, label="ping-reactivated")
        out[rm.name] = rm.result((a, b))

        rm = Case("remove-all")
        with guarded(rm):
            rm.step("ike cmd=remove (everything)")
            r = a.ike("cmd=remove")
            rm.check(r.returncode == 0, f"remove rc {r.returncode}: {r.stderr.strip()}")
            _wait_down(rm, topo, a, b)
            check_blocked(rm, topo, label="ping-after-remove")
            if _activate(rm, a):
                _wait_up(rm, a, b)
                _verify(rm, topo, a, b)
        out[rm.name] = rm.result((a, b))

        db = Case("remove-db")
        with guarded(db):
            _remove_db(db, topo, a, b)
        out[db.name] = db.result((a, b))
    finally:
        a.stop()
        lab.settle()
    return out


def _remove_db(case: Case, topo: nsmod.Topology, a: Ikepriv, b: Ikepriv) -> None:
    """`ike cmd=remove db`: the definitions go, and with them what the parent installed for
    them (revoked at the reload); activate fails until they are put back with ikedb."""
    defs = [r for r in a.rows("db", "phase=1") if r["name"] == PHASE1_NAME]
    case.check(len(defs) == 1, f"ike cmd=list db phase=1: {defs}")
    num = defs[0]["number"] if defs else 1
    case.step(f"ike cmd=remove db phase=1 numlist={num}")
    r = a.ike("cmd=remove", "db", "phase=1", f"numlist={num}")
    case.check(r.returncode == 0, f"remove db rc {r.returncode}: {r.stderr.strip()}")
    rc, rows, _err = a.list_json("db")
    case.details["list_db_after"] = rows
    case.check(rc == 0 and not rows, f"ike cmd=list db after remove db: rc {rc} {rows}")
    g = a.ikedb("-g")
    case.check(
        g.returncode == 0 and "[[phase" not in g.stdout,
        f"ikedb -g after remove db: rc {g.returncode} {g.stdout[:300]!r}",
    )
    case.step("ike cmd=remove; activate without definitions fails")
    r = a.ike("cmd=remove")
    case.check(r.returncode == 0, f"remove rc {r.returncode}: {r.stderr.strip()}")
    _wait_down(case, topo, a, b)
    r = a.ike("cmd=activate")
    case.check(r.returncode != 0, "ike cmd=activate succeeded with no definitions")
    case.step("ikedb -p again; activate at once")
    a.put_definitions(definitions(a.spec, a.options))
    r = a.ike("cmd=activate")
    if not case.check(
        r.returncode == 0,
        "ike cmd=activate right after ikedb -p refused "
        f"(rc {r.returncode}: {(r.stdout + r.stderr).strip()}): the daemon had "
        "not noticed the new definitions",
    ):
        time.sleep(3)  # the daemon polls the database generation: go on to test the rest
        r = a.ike("cmd=activate")
        case.check(r.returncode == 0, f"ike cmd=activate 3 s after ikedb -p: rc {r.returncode}")
    if r.returncode == 0:
        _wait_up(case, a, b)
        _verify(case, topo, a, b)


def group_autostart_crash(lab: Lab) -> dict[str, Any]:
    """autostart at daemon start and with activate autostart; then kill -9 of the child."""
    out: dict[str, Any] = {}
    topo = lab.topo
    a = lab.initiator("auto", IkeprivOptions(keylog=True, autostart=True))
    case = Case("autostart")
    try:
        with guarded(case):
            b = lab.responder()
            t = time.monotonic()
            _start(case, a)
            case.step("the daemon start brings the autostart tunnel up")
            _wait_up(case, a, b)
            case.timed("start_to_both_established", t)
            _verify(case, topo, a, b, label="ping-start")
            case.step("ike cmd=remove; ike cmd=activate autostart")
            r = a.ike("cmd=remove")
            case.check(r.returncode == 0, f"remove rc {r.returncode}: {r.stderr.strip()}")
            _wait_down(case, topo, a, b)
            if _activate(case, a, "autostart"):
                _wait_up(case, a, b)
                _verify(case, topo, a, b)
        out[case.name] = case.result((a, lab.responder()))

        crash = Case("crash")
        with guarded(crash):
            b = lab.responder()
            if not (a.established() and b.established()):
                crash.step("bring the tunnel up for the crash")
                if _activate(crash, a):
                    _wait_up(crash, a, b)
            _crash(crash, topo, a, b)
        out[crash.name] = crash.result((a, lab.responder()))
    finally:
        a.stop()
        lab.drop_responder()  # its peer's new child never knew the tunnel: no Deletes came
    return out


def _check_capture(case: Case, pcap: Path, keylog: Path) -> None:
    import json

    case.check(keylog.exists() and keylog.stat().st_size > 0, f"key log {keylog} empty/missing")
    argv = [*tool("ikedump"), str(pcap), "--keys", str(keylog), "--json"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # noqa: S603
    case.details["ikedump_rc"] = r.returncode
    case.details["ikedump_stderr"] = r.stderr[-1000:]
    case.check(r.returncode == 0, f"ikedump rc {r.returncode}: {r.stderr.strip()[-500:]}")
    records = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    exchanges = sorted({str(x.get("exchange")) for x in records})
    encrypted = [x for x in records if x.get("encrypted")]
    case.details.update(
        messages=len(records),
        exchanges=exchanges,
        encrypted=len(encrypted),
        decrypted=sum(1 for x in encrypted if x.get("decrypted")),
    )
    case.check(
        len(records) >= 9,
        f"only {len(records)} IKE messages in the capture (Main Mode 6 + Quick Mode 3 expected)",
    )
    case.check(
        bool(encrypted) and all(x.get("decrypted") for x in encrypted),
        f"{len(encrypted)} encrypted messages, not all decrypted",
    )
    case.check("QUICK_MODE" in " ".join(exchanges).upper(), f"no Quick Mode in {exchanges}")


def _check_sandbox(case: Case, peer: Ikepriv) -> None:
    assert peer.pid is not None
    kids = peer.child_pids()
    if not case.check(len(kids) == 1, f"{peer.spec.name}: daemon children {kids}, want one"):
        return
    f = sandbox_facts(kids[0], peer.pid)
    case.details[peer.spec.name] = f
    st = f["status"]
    uids = st.get("Uid", "0").split()
    case.check(bool(uids) and all(u != "0" for u in uids), f"child uids {uids}")
    case.check(st.get("CapEff") == "0000000000000000", f"CapEff {st.get('CapEff')}")
    case.check(st.get("CapPrm") == "0000000000000000", f"CapPrm {st.get('CapPrm')}")
    case.check(st.get("CapBnd") == "0000000000000000", f"CapBnd {st.get('CapBnd')}")
    case.check(st.get("NoNewPrivs") == "1", f"NoNewPrivs {st.get('NoNewPrivs')}")
    case.check(st.get("Seccomp") == "2", f"Seccomp {st.get('Seccomp')} (2 = filter)")
    case.check(f["ns_net_same_as_parent"] is False, "child shares the daemon's network namespace")


def _crash(case: Case, topo: nsmod.Topology, a: Ikepriv, b: Ikepriv) -> None:
    """kill -9 the child while a ping runs through the tunnel."""
    case.step("ping while the child is killed")
    if not case.check(a.established() and b.established(), "tunnel not up before the crash"):
        return
    old = a.child_pids()
    if not case.check(len(old) == 1, f"daemon children {old}"):
        return
    # the resumed phase 2 has the new child as Quick Mode initiator and b as responder: b's
    # inbound SA is in its kernel before its QM2 (Phase2Install.inbound_first), so nothing
    # a sends on its new SA from QM3 on meets a larval SPI there (XfrmAcquireError) or no
    # SA at all (XfrmInNoStates)
    b_stat = nsmod.xfrm_stat_errors(topo.gw_b)
    argv = nsmod.ping_argv(nsmod.LAN_B_HOST, 30, 0.1, 2)
    pinger = subprocess.Popen(  # noqa: S603 -- our own programs
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=nsmod.preexec(topo.lan_a),
    )
    time.sleep(1.0)
    t = time.monotonic()
    os.kill(old[0], signal.SIGKILL)
    new: list[int] = []

    def respawned() -> bool:
        new[:] = [p for p in a.child_pids() if p != old[0]]
        return bool(new)

    got = wait_until(respawned, 10, step=0.01)
    case.timed("new_child_after_kill", t)
    case.details["old_child"], case.details["new_child"] = old[0], new
    case.check(got, "no new child within 10 s")
    case.check(
        got and case.times["new_child_after_kill"] <= 1.0,
        f"new child after {case.times['new_child_after_kill']}s (want within 1 s)",
    )
    case.step("ike cmd=list after the restart")
    answered = wait_until(lambda: a.try_list() is not None, 10, step=0.05)
    case.timed("list_answers_after_kill", t)
    case.check(answered, "ike cmd=list does not answer after the child was killed")
    rc, rows, err = a.list_json()
    case.details["list_after"] = rows
    case.check(rc == 0, f"ike cmd=list json rc {rc} after the restart: {err.strip()}")
    try:
        text, _ = pinger.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pinger.kill()
        text, _ = pinger.communicate()
    sent, got_back = ping_stats(text)
    case.details["ping"] = text[-400:]
    case.check(sent >= 25 and got_back == sent, f"ping during the crash: {got_back}/{sent} replies")
    case.check(a.alive(), "daemon died with its child")
    case.step("tunnel still carries ESP")
    check_esp_ping(case, topo, label="ping-after-crash")
    grown = nsmod.counter_increase(b_stat, nsmod.xfrm_stat_errors(topo.gw_b))
    case.details["responder_xfrm_stat_increase"] = grown
    drops = {k: v for k, v in grown.items() if k in ("XfrmInNoStates", "XfrmAcquireError")}
    case.check(not drops, f"the Quick Mode responder dropped ESP of the resumed phase 2: {drops}")


def group_two_phase2(lab: Lab) -> dict[str, Any]:
    """Two phase 2 tunnels under one phase 1; remove one phase 2, the peer drops it too."""
    out: dict[str, Any] = {}
    esp = "aes128-sha256"
    a_opts = IkeprivOptions(
        only_extra_phase2=True,
        extra_phase2=[
            Phase2Def("lan-lo", LAN_A_LO, LAN_B_LO, esp),
            Phase2Def("lan-hi", LAN_A_HI, LAN_B_HI, esp),
        ],
    )
    b_opts = IkeprivOptions(
        only_extra_phase2=True,
        extra_phase2=[
            Phase2Def("lan-lo", LAN_B_LO, LAN_A_LO, esp),
            Phase2Def("lan-hi", LAN_B_HI, LAN_A_HI, esp),
        ],
    )
    topo = lab.topo
    a = lab.initiator("two", a_opts)
    b = lab.make("responder", "two", b_opts)
    both = ("lan-hi", "lan-lo")
    case = Case("two-phase2")
    try:
        with guarded(case):
            _start(case, a, b)
            if _activate(case, a):
                _wait_up(case, a, b, phase2=2)
                _verify(case, topo, a, b, p2=both, label="ping-lo")
                check_esp_ping(
                    case, topo, src_addr=LAN_A_HOST_HI, dst=LAN_B_HOST_HI, label="ping-hi"
                )
                case.check(
                    esp_sa_count(topo, topo.gw_a) == 4 == esp_sa_count(topo, topo.gw_b),
                    f"ESP SAs A {esp_sa_count(topo, topo.gw_a)} "
                    f"B {esp_sa_count(topo, topo.gw_b)}, want 4 each",
                )
        out[case.name] = case.result((a, b))

        rm = Case("remove-phase2")
        with guarded(rm):
            tid = _tid(a, 2, "lan-hi")
            rm.step(f"ike cmd=remove phase=2 numlist={tid}")
            r = a.ike("cmd=remove", "phase=2", f"numlist={tid}")
            rm.check(r.returncode == 0, f"remove phase=2 rc {r.returncode}: {r.stderr.strip()}")

            def dropped() -> bool:
                return esp_sa_count(topo, topo.gw_a) == 2 == esp_sa_count(
                    topo, topo.gw_b
                ) and "lan-hi" not in {x["name"] for x in b.rows()}

            ok = wait_until(dropped, DOWN_TIMEOUT, step=0.2)
            rm.check(
                ok,
                f"after remove phase=2: ESP SAs A {esp_sa_count(topo, topo.gw_a)} "
                f"B {esp_sa_count(topo, topo.gw_b)} (want 2), B rows "
                f"{[x['name'] for x in b.rows()]}",
            )
            check_blocked(rm, topo, src_addr=LAN_A_HOST_HI, dst=LAN_B_HOST_HI, label="ping-hi")
            _verify(rm, topo, a, b, p2=("lan-lo",), label="ping-lo")
        out[rm.name] = rm.result((a, b))
    finally:
        a.stop()
        b.stop()
    return out


GROUPS: dict[str, Callable[[Lab], dict[str, Any]]] = {
    "activate-all": group_activate_all,
    "phased": group_phased,
    "autostart-crash": group_autostart_crash,
    "two-phase2": group_two_phase2,
}


def run_cases(groups: list[str] | None = None, log_dir: str | None = None) -> dict[str, Any]:
    """Guest entry point: one topology, guard self-check, the groups; per-case results."""
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="e2e."))
    topo = nsmod.Topology()
    topo.build()
    add_hi_hosts(topo)
    lab = Lab(topo, root)
    out: dict[str, Any] = {"kernel": os.uname().release, "results": {}, "groups_s": {}}
    try:
        topo.reset_xfrm()
        out["guard_blocks"] = topo.guard_blocks()
        for g in groups or list(GROUPS):
            t = time.monotonic()
            res = GROUPS[g](lab)
            for name, r in res.items():
                status = "PASS" if r["ok"] else "FAIL " + "; ".join(r["why"])[:500]
                print(f"{status} {name}: {r['times']}", flush=True)
            out["groups_s"][g] = round(time.monotonic() - t, 1)
            print(f"group {g}: {out['groups_s'][g]}s", flush=True)
            out["results"].update(res)
    finally:
        lab.stop_all()
        topo.destroy()
        if log_dir:
            _save(root, Path(log_dir))
    out["notes"] = lab.notes
    out["guest_s"] = round(time.monotonic() - t0, 3)
    out["kernel_log"] = kernel_log_tail()
    return out


def _save(root: Path, dest: Path) -> None:
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for inst in root.iterdir():
        if inst.is_dir():
            for f in inst.iterdir():
                if f.is_file() and f.suffix in (".log", ".out", ".toml", ".txt", ".esp_sa"):
                    shutil.copy(f, dest / f"{inst.name}.{f.name}")
        elif inst.suffix == ".pcap":
            shutil.copy(inst, dest / inst.name)
