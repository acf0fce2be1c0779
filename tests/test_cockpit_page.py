"""The Cockpit page (deploy/cockpit/ikepriv) in a real browser against real daemons.

Debian's headless Chromium, driven by Selenium through Debian's chromedriver, loads the page
from a real cockpit-ws (a local session, no systemd, loopback only) whose bridge runs `ike`
and `ikedb` against a real ikeprivd in a network namespace, with a second ikeprivd as its
peer. The host kernel has no ESP, so the tunnel checks are on phase 1 (as in
test_e2e_phase1_host.py). The tests run in file order on one browser session (a local
cockpit-ws session ends with its first websocket) and save a screenshot of each view into
docs/console/, which docs/console.md shows.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import PHASE1_NAME, Ikepriv
from harness.peers import make_peer

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deploy" / "cockpit" / "ikepriv"
SHOTS = ROOT / "docs" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
COCKPIT_WS = Path("/usr/lib/cockpit/cockpit-ws")
PATTERNFLY = Path("/usr/share/cockpit/systemd/logs.css.gz")  # cockpit-system's PatternFly
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,1000",
)
WAIT = 30.0

pytestmark = [pytest.mark.root, pytest.mark.browser]


def _missing() -> str | None:
    """Why no browser test can run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces for the daemons)"
    needs = (
        (CHROMIUM, "chromium"),
        (CHROMEDRIVER, "chromium-driver"),
        (COCKPIT_WS, "cockpit-ws"),
        (PATTERNFLY, "cockpit-system"),
    )
    for path, package in needs:
        if not path.exists():
            return f"no browser test: {path} missing (apt-get install {package}; scripts/setup.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no browser test: selenium missing (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Console:
    """The browser on the page, the daemons behind it."""

    driver: Any
    init: Ikepriv
    resp: Ikepriv

    # --- the page, inside the Cockpit shell's frame -------------------------------------
    def frame(self) -> None:
        from selenium.webdriver.common.by import By

        self.driver.switch_to.default_content()
        frame = self.wait(
            lambda: self.driver.find_element(By.CSS_SELECTOR, "iframe[name$='/ikepriv']")
        )
        self.driver.switch_to.frame(frame)

    def wait(self, cond: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
        """cond() until it is truthy (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                got = cond()
                if got:
                    return got
            except Exception as exc:  # element not there yet
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what or cond}: {last}")

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def texts(self, selector: str) -> list[str]:
        """innerText of every match, read in one step (the page re-renders while polling)."""
        script = "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText)"
        return list(self.driver.execute_script(script, selector))

    def click(self, selector: str) -> None:
        self.wait(lambda: self.css(selector).is_displayed() and self.css(selector), what=selector)
        self.driver.execute_script("arguments[0].click()", self.css(selector))

    def view(self, name: str) -> None:
        self.click(f"#tabs [data-view='{name}'] button")
        self.wait(lambda: self.css(f"#view-{name}").is_displayed(), what=f"view {name}")

    def type(self, selector: str, text: str) -> None:
        el = self.wait(lambda: self.css(selector), what=selector)
        el.clear()
        el.send_keys(text)

    def shot(self, name: str) -> Path:
        """A screenshot of the whole window (shell and page) into docs/console/."""
        self.driver.execute_script(  # the success toasts would hide the page's buttons
            "document.querySelectorAll('#alerts .pf-m-success').forEach(a => a.remove())"
        )
        self.driver.switch_to.default_content()
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.frame()
        return path

    # --- the daemon's own word --------------------------------------------------------------
    def phase1_rows(self) -> list[dict[str, Any]]:
        r = self.init.ike("cmd=list", "phase=1", "json")
        assert r.returncode == 0, r.stderr
        return [row for row in json.loads(r.stdout) if row["name"] == PHASE1_NAME]

    def definitions(self) -> dict[str, Any]:
        r = self.init.ikedb("-g", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    work = Path(tempfile.mkdtemp(prefix="ikp-cockpit-"))
    topo = nsmod.Topology(prefix=f"ckp{os.getpid()}")
    topo.build()
    procs: list[subprocess.Popen[bytes]] = []
    driver = None
    try:
        sc = Scenario("ckp", "ikepriv", "ikepriv", "main")
        resp = make_peer("ikepriv", peer_spec(topo, sc, "responder"), work)
        init = make_peer("ikepriv", peer_spec(topo, sc, "initiator"), work)
        assert isinstance(resp, Ikepriv) and isinstance(init, Ikepriv)
        with resp, init:
            resp.start()
            init.start()
            # the package as the install puts it, found by the bridge through XDG_DATA_DIRS
            share = work / "share"
            shutil.copytree(PACKAGE, share / "cockpit" / "ikepriv")
            port = _free_port()
            env = {
                "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": str(work),
                "LANG": "C.UTF-8",
                "XDG_DATA_DIRS": f"{share}:/usr/local/share:/usr/share",
                **init.env,  # ike and ikedb find this daemon's socket and database
            }
            with open(work / "cockpit-ws.log", "wb") as log:
                procs.append(
                    subprocess.Popen(  # noqa: S603
                        [
                            str(COCKPIT_WS),
                            "--no-tls",
                            "--local-session=cockpit-bridge",
                            "--address",
                            "127.0.0.1",
                            "--port",
                            str(port),
                        ],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            options = webdriver.ChromeOptions()
            options.binary_location = str(CHROMIUM)
            for flag in CHROMIUM_FLAGS:
                options.add_argument(flag)
            options.add_argument(f"--user-data-dir={work / 'chromium'}")
            driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
            c = Console(driver, init, resp)
            c.wait(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True)
            driver.get(f"http://127.0.0.1:{port}/ikepriv")
            c.frame()
            c.wait(lambda: c.css("body[data-loaded]"), what="the page's first refresh")
            yield c
    finally:
        if driver is not None:
            driver.quit()
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        topo.destroy()
        shutil.rmtree(work, ignore_errors=True)


def _row(c: Console, phase: int, name: str) -> Any:
    return c.css(f"#tunnels-table tr[data-phase='{phase}'][data-name='{name}']")


def test_activate_lists_the_tunnel_and_remove_takes_it_down(console: Console) -> None:
    c = console
    c.view("tunnels")
    assert _row(c, 1, PHASE1_NAME).get_attribute("data-state") == "defined"
    assert not c.phase1_rows() or c.phase1_rows()[0]["state"] == "defined"
    c.click(f"#tunnels-table tr[data-phase='1'][data-name='{PHASE1_NAME}'] [data-action=activate]")
    assert "cmd=activate phase=1 numlist=1" in c.css(".pf-c-modal-box").text
    c.click("#confirm-run")
    c.wait(
        lambda: _row(c, 1, PHASE1_NAME).get_attribute("data-state") == "established",
        what="the page to list the established tunnel",
    )
    (row,) = c.phase1_rows()
    assert row["state"] == "established" and row["role"] == "i"
    text = _row(c, 1, PHASE1_NAME).text
    assert "192.0.2.2" in text and "AES_CBC-128" in text and "initiator" in text
    assert c.css("#tunnels-table tr.ikp-child[data-name='lan']").is_displayed()  # its phase 2
    c.shot("tunnels")

    c.click(f"#tunnels-table tr[data-phase='1'][data-name='{PHASE1_NAME}'] [data-action=remove]")
    # by the tunnel's number (with several negotiator children it differs from the definition's)
    assert f"cmd=remove phase=1 numlist={row['tunnel_id']}" in c.css(".pf-c-modal-box").text
    c.click("#confirm-run")
    c.wait(
        lambda: _row(c, 1, PHASE1_NAME).get_attribute("data-state") == "defined",
        what="the removed tunnel to go",
    )
    assert all(r["state"] != "established" for r in c.phase1_rows())


def _new_phase1(c: Console, name: str, lifetime: str) -> None:
    c.view("definitions")
    c.click("#new-phase1")
    c.type("#field-name", name)
    c.type("#field-local_addr", "192.0.2.1")
    c.type("#field-remote_addr", "192.0.2.77")
    c.click("#generate-key")
    c.click("#field-proposals-add")  # the default picks: aes128-sha256-modp2048
    c.driver.execute_script("document.querySelector('[data-field=mode]').scrollIntoView()")
    c.shot("definition-form")
    c.click("details.ikp-more summary")
    c.type("#field-lifetime", lifetime)


def test_a_bad_definition_shows_the_field_error_and_a_good_one_is_stored(console: Console) -> None:
    c = console
    _new_phase1(c, "to-siteC", "10")
    c.click("#form-save")
    error = c.wait(lambda: c.css("#error-lifetime").is_displayed() and c.css("#error-lifetime"))
    assert "field 'lifetime': 10 is out of range (60..86400)" in error.text
    assert not c.css("#error-name").is_displayed()  # next to the field it names, not elsewhere
    assert "to-siteC" not in [d["name"] for d in c.definitions()["phase1"]]
    c.shot("definition-error")

    c.type("#field-lifetime", "3600")
    c.click("#form-save")
    c.wait(lambda: not c.all("#definition-form"), what="the form to close")
    (stored,) = [d for d in c.definitions()["phase1"] if d["name"] == "to-siteC"]
    assert stored["lifetime"] == 3600 and stored["psk_stored"] is True
    assert stored["proposals"] == ["aes128-sha256-modp2048"]
    full = c.init.ikedb("-g", "-t", "phase1", "-n", "to-siteC").stdout
    key_line = next(line for line in full.splitlines() if line.startswith("psk_hex = "))
    assert len(key_line.split('"')[1]) == 64  # the generated 32 random bytes
    c.wait(lambda: c.css("#phase1-table tr[data-name='to-siteC']"), what="the new row")

    # editing keeps the stored key: the form never had it
    c.click("#phase1-table tr[data-name='to-siteC'] [data-action=edit]")
    assert c.css("#field-psk_hex").get_attribute("value") == ""
    c.click("details.ikp-more summary")
    c.type("#field-lifetime", "7200")
    c.click("#form-save")
    c.wait(lambda: not c.all("#definition-form"), what="the edit form to close")
    again = c.init.ikedb("-g", "-t", "phase1", "-n", "to-siteC").stdout
    assert key_line in again and "lifetime = 7200" in again
    c.click("#phase1-table tr[data-name='to-siteC'] td button.pf-m-inline")
    assert "stored (never shown)" in c.css("#definition-list").text
    assert key_line.split('"')[1] not in c.driver.page_source
    c.shot("definitions")

    c.click("#phase1-table tr[data-name='to-siteC'] [data-action=delete]")
    c.click("#confirm-run")
    c.wait(lambda: not c.all("#phase1-table tr[data-name='to-siteC']"), what="the deleted row")
    assert "to-siteC" not in [d["name"] for d in c.definitions()["phase1"]]


def test_events_show_the_tunnels_log_lines_and_counters(console: Console) -> None:
    c = console
    assert c.init.initiate_phase1(timeout=15), c.init.log_tail()
    c.view("events")
    c.type("#log-source", str(c.init.daemon_log) + "\n")
    from selenium.webdriver.support.ui import Select

    c.wait(lambda: c.css(f"#log-tunnel option[value='{PHASE1_NAME}']"), what="the tunnel choice")
    Select(c.css("#log-tunnel")).select_by_value(PHASE1_NAME)
    c.click("#log-refresh")
    texts = c.wait(
        lambda: (
            [t for t in c.texts("#log-table tbody tr") if "established" in t]
            and c.texts("#log-table tbody tr")
        ),
        what="log lines of the tunnel",
    )
    established = [i for i, t in enumerate(texts) if "established" in t]
    activated = [i for i, t in enumerate(texts) if "activated" in t]
    assert established[0] < activated[-1]  # newest first
    assert not any("configuration generation" in t for t in texts)  # not this tunnel's
    counters = c.wait(
        lambda: "phase1_established" in c.texts("#counter-list")[0] and c.texts("#counter-list")[0]
    )
    assert "datagrams_in" in counters
    line = "return document.querySelector('.ikp-line-est').getAttribute('d')"
    c.wait(lambda: len(c.driver.execute_script(line)) > 20, what="chart points")
    time.sleep(2 * 3)  # a few more points on the chart for the screenshot
    c.shot("events")


def test_a_stopped_daemon_is_shown_as_not_running(console: Console) -> None:
    c = console
    c.view("tunnels")
    c.init.stop()
    state = c.wait(lambda: c.css("#daemon-state"), what="the not-running state")
    assert "The IKE daemon is not running" in state.text
    assert "ike: " in state.text  # ike's own words
    c.shot("daemon-stopped")
