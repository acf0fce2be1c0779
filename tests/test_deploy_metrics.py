"""`ike cmd=list stats prom` against real daemons, read with prometheus_client's parser; and
`ikeprivd` starting without a database (a fresh install), then loaded with `ikedb -p`.

Two real ikeprivd in two namespaces bring phase 1 of "to-siteB" up (the host kernel has
XFRM, so phase 1 needs no ESP). The operator's `ike` prints Prometheus text; the real
parser of the prometheus_client package must read it, every family has HELP and TYPE, the
tunnel gauges say which definition is up, the per-definition rekey and DPD failure counters
are there for every definition, and the event counters equal `stats json`.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_daemon_support import ROOT, SITE, Daemon, Topology, wait_for, write_db

from ikepriv.cli import metrics
from ikepriv.ipc.control import CONTROL_PATH_ENV
from ikepriv.parent_kernel.state import PARENT_COUNTER_NAMES
from ikepriv.process_contract import COUNTER_NAMES

BIN = Path(sys.executable).parent


def tool(daemon: Daemon, name: str, *words: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own installed scripts
        [str(BIN / name), *words], capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, CONTROL_PATH_ENV: daemon.control_path, **env},
    )  # fmt: skip


def test_every_counter_has_documented_help() -> None:
    assert set(metrics.COUNTER_HELP) == COUNTER_NAMES | PARENT_COUNTER_NAMES
    names = [name for name, _, _ in metrics.metric_names()]
    assert len(names) == len(set(names))


def test_prom_is_a_stats_word() -> None:
    from ikepriv.cli.ike_args import UsageError, parse_args

    with pytest.raises(UsageError, match="prom goes with stats"):
        parse_args(["cmd=list", "prom"])
    with pytest.raises(UsageError, match="exclude each other"):
        parse_args(["cmd=list", "stats", "json", "prom"])


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        yield t


@pytest.mark.root
def test_prometheus_text_parses_and_shows_the_tunnel(topo: Topology, tmp_path: Path) -> None:
    db_a, db_b = tmp_path / "a.db", tmp_path / "b.db"
    write_db(db_a)
    write_db(db_b, SITE, swap=True)
    a = Daemon.start(topo.a, tmp_path, name="a", db=db_a)
    b = Daemon.start(topo.b, tmp_path, name="b", db=db_b)
    try:
        up = tool(a, "ike", "cmd=activate", "phase=1", "numlist=1")
        assert up.returncode == 0, up
        a.wait_log(r"phase 1 .*established")

        def scrape() -> dict[str, object]:
            out = tool(a, "ike", "cmd=list", "stats", "prom")
            assert out.returncode == 0, out
            return {f.name: f for f in text_string_to_metric_families(out.stdout)} | {
                "_text": out.stdout
            }

        families = wait_for(
            "phase 1 established in the gauges",
            lambda: (
                (f := scrape())
                and any(s.value == 1 for s in f["ikepriv_tunnel_established"].samples)  # type: ignore[attr-defined]
                and f
            ),
        )
        assert isinstance(families, dict)
        text = families.pop("_text")
        assert isinstance(text, str)
        for name, kind, help_text in metrics.metric_names():
            base = name.removesuffix("_total") if kind == "counter" else name
            assert f"# HELP {name} {help_text}\n" in text
            assert families[base].type == kind  # type: ignore[attr-defined]
        gauges = {
            (s.labels["phase"], s.labels["name"]): s.value
            for s in families["ikepriv_tunnel_established"].samples  # type: ignore[attr-defined]
        }
        assert gauges[("1", "to-siteB")] == 1
        assert gauges[("1", "to-siteC")] == 0  # defined, not active
        assert gauges[("2", "lanA-lanB")] == 0  # phase 2 was not asked for
        active = {
            (s.labels["phase"], s.labels["name"]): s.value
            for s in families["ikepriv_tunnel_active"].samples  # type: ignore[attr-defined]
        }
        assert active[("1", "to-siteB")] == 1
        as_json = json.loads(tool(a, "ike", "cmd=list", "stats", "json").stdout)
        # per definition: rekeys of both phases, DPD failures of phase 1 only, as counters;
        # every listed definition has them (0 until something happened), and `stats json`
        # carries the same tally (only definitions that had any)
        rekeys = {
            (s.labels["phase"], s.labels["number"], s.labels["name"]): s.value
            for s in families["ikepriv_tunnel_rekeys"].samples  # type: ignore[attr-defined]
        }
        dpd = {
            (s.labels["phase"], s.labels["number"], s.labels["name"]): s.value
            for s in families["ikepriv_tunnel_dpd_failures"].samples  # type: ignore[attr-defined]
        }
        assert {key[2] for key in rekeys} >= {"to-siteB", "to-siteC", "lanA-lanB"}
        assert {key[0] for key in dpd} == {"1"} and {key[2] for key in dpd} >= {"to-siteB"}
        assert families["ikepriv_tunnel_rekeys"].type == "counter"  # type: ignore[attr-defined]
        tally = as_json.pop("definitions")
        assert isinstance(tally, list)
        for entry in tally:
            key = (str(entry["phase"]), str(entry["number"]))
            assert any(k[:2] == key and v >= entry["rekeys"] for k, v in rekeys.items())
        for counter, value in as_json.items():
            family = families[f"ikepriv_{counter}"]
            (sample,) = family.samples  # type: ignore[attr-defined]
            assert sample.name == f"ikepriv_{counter}_total"
            assert sample.value >= value  # counters only grow between the two calls
        assert as_json["phase1_established"] >= 1
        # usage errors stay one line, exit 2
        bad = tool(a, "ike", "cmd=list", "prom")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad
    finally:
        a.stop()
        b.stop()


@pytest.mark.root
def test_daemon_starts_without_a_database_and_takes_definitions(
    topo: Topology, tmp_path: Path
) -> None:
    state = tmp_path / "var-lib-ikepriv"  # does not exist yet, as after a fresh install
    db = state / "tunnels.db"
    (tmp_path / "empty").mkdir()
    log_path = tmp_path / "fresh.log"
    control = str(tmp_path / "fresh.ctl")
    with open(log_path, "wb") as err:
        cmd = ["ip", "netns", "exec", topo.a, sys.executable, "-m", "ikepriv.cli.ikeprivd",
               "--db", str(db), "--control", control, "--chroot", str(tmp_path / "empty"),
               "--log-stderr"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                                stderr=err, cwd=ROOT)  # fmt: skip
    d = Daemon(proc, control, log_path, topo.a, None)
    wait_for("the control socket", d._control_up)
    try:
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        d.wait_log("created an empty tunnel database")
        listed = tool(d, "ike", "cmd=list", "db")
        assert listed.returncode == 0, listed
        assert "to-siteB" not in listed.stdout
        defs = tmp_path / "site.toml"
        defs.write_text(SITE)
        put = tool(d, "ikedb", "-p", str(defs), IKEPRIV_DB=str(db))
        assert put.returncode == 0, put
        wait_for(
            "the daemon to reload", lambda: "to-siteB" in tool(d, "ike", "cmd=list", "db").stdout
        )
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("definitions reloaded", 2)
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0
