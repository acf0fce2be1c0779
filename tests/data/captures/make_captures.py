#!/usr/bin/env python3
"""Regenerate the real IKEv1 captures in this directory (run by hand, as root; not in CI).

    .venv/bin/python tests/data/captures/make_captures.py              # every capture
    .venv/bin/python tests/data/captures/make_captures.py --list
    .venv/bin/python tests/data/captures/make_captures.py NAME... [--logs DIR]

Each capture is one strongSwan 5.9.8 <-> libreswan 4.10 (or strongSwan <-> strongSwan)
exchange inside User Mode Linux (the host kernel has no ESP, so the Quick Mode SAs could not
be installed there): the two-gateway topology of tests/harness/netns.py, initiator in gwA,
responder in gwB, tcpdump on gwB's outer interface vB. All traffic stays on plain UDP 500 (no
NAT, no forced encapsulation) and the kernels do real ESP, so a ping between the LANs shows up
as ESP packets between the IKE messages.

Keys come from the strongSwan side's own log: charon with `ike = 4`, `chd = 4` and
`ike_name = yes` prints the phase 1 DH shared secret, SKEYID*, Ka and the first IV per IKE SA,
and for each Quick Mode with PFS the DH secret (inside the "SA seed", which also carries the
SPI). The ESP keys the kernel really used are read from `ip xfrm state` in gwA after each
event. Everything lands in NAME.json next to NAME.pcap (a new run makes new cookies and keys:
keep each pcap with its own JSON).

Events per capture (see CAPTURES): ping through the tunnel; DPD (dpd delay 2 s on both
daemons, then an idle wait: R-U-THERE / R-U-THERE-ACK informationals); phase 2 rekey
(strongSwan's CHILD_SA rekey_time 5 s: a second Quick Mode, then a Delete for the old SAs);
delete (the initiator terminates: Informational Delete for the IPsec SAs and the ISAKMP SA);
reauth (strongSwan's reauth_time 6 s: a second Main Mode, so two ISAKMP SAs in one capture);
lsw-rekey (libreswan salifetime 14 s, rekeymargin 8 s: libreswan starts the second Quick Mode).
`encap` forces UDP encapsulation (port 4500, ESP-in-UDP) without a NAT.

Findings while making them: Debian's libreswan 4.10 refuses modp1024 ("IKE DH algorithm
'modp1024' is not supported") and ECP/Curve25519 as IKEv1 PFS groups, so those suites run
strongSwan <-> strongSwan. A responder-proposed IKE lifetime shorter than libreswan's makes
libreswan delete the ISAKMP SA on expiry (rekey=no), hence over_time = 60s for reauth.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1]
sys.path.insert(0, str(TESTS))

from harness import netns as nsmod  # noqa: E402
from harness import uml  # noqa: E402
from harness.peers import (  # noqa: E402
    CHARON,
    CHARON_PLUGINS,
    LSW_ROOT,
    Libreswan,
    Peer,
    PeerError,
    PeerSpec,
    StrongSwan,
)
from harness.peers import libreswan_proposal as peers_libreswan_proposal  # noqa: E402

PSK = "capture-psk-0123456789abcdef"
TCPDUMP = shutil.which("tcpdump") or "/usr/bin/tcpdump"
CAPTURE_FILTER = "udp port 500 or udp port 4500 or esp"
REKEY_TIME_S = 5
DPD_DELAY_S = 2


@dataclass(frozen=True)
class Capture:
    name: str
    initiator: str  # "strongswan" | "libreswan"
    responder: str
    exchange: str  # "main" | "aggressive"
    ike: str  # strongSwan proposal syntax
    esp: str  # a DH group here means PFS
    events: tuple[str, ...] = ("ping", "delete")
    note: str = ""
    responder_ike: str | None = None  # the responder's own list, when it differs
    responder_esp: str | None = None
    encap: bool = False  # force UDP encapsulation (NAT-T on port 4500 without a NAT)


CAPTURES: dict[str, Capture] = {
    c.name: c
    for c in (
        # libreswan 4.10 (Debian) has no modp1024 and no ECP/Curve25519 PFS in IKEv1: those
        # suites are strongSwan <-> strongSwan
        Capture(
            "ss-ss-mm-3des-sha1-modp1024",
            "strongswan",
            "strongswan",
            "main",
            "3des-sha1-modp1024",
            "3des-md5-modp1024",
            ("ping", "delete"),
            "legacy suite: 8-byte cipher blocks, 128-byte DH values, MD5 ESP, PFS group 2",
        ),
        Capture(
            "ss-lsw-mm-3des-sha1-modp1536",
            "strongswan",
            "libreswan",
            "main",
            "3des-sha1-modp1536",
            "3des-md5",
            ("ping", "delete"),
            "legacy suite with libreswan responding",
        ),
        Capture(
            "lsw-ss-mm-aes256-sha512-modp4096",
            "libreswan",
            "strongswan",
            "main",
            "aes256-sha512-modp4096",
            "aes256-sha256-modp4096",
            ("ping", "dpd", "delete"),
            "libreswan initiates; 512-byte DH values; PFS; DPD both ways",
        ),
        Capture(
            "ss-lsw-am-ecp256-gcm",
            "strongswan",
            "libreswan",
            "aggressive",
            "aes128-sha256-ecp256",
            "aes128gcm16",
            ("ping", "rekey", "delete"),
            "Aggressive Mode, ECP group 19, AES-GCM ESP, strongSwan rekeys phase 2",
        ),
        Capture(
            "lsw-ss-am-ecp384-gcm-pfs",
            "libreswan",
            "strongswan",
            "aggressive",
            "aes256-sha384-ecp384",
            "aes256gcm16-modp2048",
            ("ping", "delete"),
            "libreswan initiates Aggressive Mode, ECP group 20, GCM ESP with MODP PFS",
        ),
        Capture(
            "ss-ss-am-ecp384-gcm-ecp-pfs",
            "strongswan",
            "strongswan",
            "aggressive",
            "aes256-sha384-ecp384",
            "aes256gcm16-ecp384",
            ("ping", "rekey", "delete"),
            "ECP group 20 in phase 1 and as Quick Mode PFS, rekeyed",
        ),
        Capture(
            "ss-lsw-mm-curve25519",
            "strongswan",
            "libreswan",
            "main",
            "aes128-sha256-curve25519",
            "aes128-sha1",
            ("ping", "dpd", "delete"),
            "Curve25519 (group 31) in IKEv1",
        ),
        Capture(
            "lsw-ss-mm-modp3072-rekey-pfs",
            "libreswan",
            "strongswan",
            "main",
            "aes256-sha256-modp3072",
            "aes128-sha256-modp3072",
            ("ping", "rekey", "delete"),
            "strongSwan (the responder) rekeys phase 2 with PFS",
        ),
        Capture(
            "ss-ss-mm-aes192-sha384-x25519-pfs",
            "strongswan",
            "strongswan",
            "main",
            "aes192-sha384-modp2048",
            "aes256-sha512-curve25519",
            ("ping", "dpd", "rekey", "delete"),
            "strongSwan both sides, everything at once",
        ),
        Capture(
            "ss-lsw-mm-multi-proposal-reauth",
            "strongswan",
            "libreswan",
            "main",
            "aes256-sha256-modp2048,aes128-sha1-modp2048,3des-sha1-modp1536",
            "aes256-sha256,aes128-sha1",
            ("ping", "reauth", "delete"),
            "three IKE and two ESP proposals offered, the second chosen; strongSwan "
            "reauthenticates (a second Main Mode and ISAKMP SA in the same capture)",
            responder_ike="aes128-sha1-modp2048",
            responder_esp="aes128-sha1",
        ),
        Capture(
            "lsw-ss-mm-multi-transform-lsw-rekey",
            "libreswan",
            "strongswan",
            "main",
            "aes256-sha256-modp2048,aes128-sha1-modp2048",
            "aes256-sha256,aes128-sha1",
            ("ping", "lsw-rekey", "delete"),
            "libreswan offers several transforms in one proposal and rekeys phase 2 itself",
            responder_ike="aes128-sha1-modp2048",
            responder_esp="aes128-sha1",
        ),
        Capture(
            "lsw-ss-mm-forced-natt",
            "libreswan",
            "strongswan",
            "main",
            "aes128-sha256-modp2048",
            "aes128-sha256",
            ("ping", "dpd", "delete"),
            "libreswan forces UDP encapsulation: MM5 on, QM, ESP-in-UDP on port 4500",
            encap=True,
        ),
        Capture(
            "ss-lsw-am-forced-natt",
            "strongswan",
            "libreswan",
            "aggressive",
            "aes256-sha256-modp3072",
            "aes256gcm16",
            ("ping", "delete"),
            "strongSwan forces UDP encapsulation (fake NAT-D) in Aggressive Mode",
            encap=True,
        ),
    )
}


# --- daemon drivers with key logging, DPD and short phase 2 lifetimes ------------------------

_SS_CONF = """\
charon {{
  load_modular = no
  load = {plugins}
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes
  retransmit_tries = 3
  install_virtual_ip = no
  filelog {{
    main {{
      path = {dir}/charon.log
      time_format = %H:%M:%S
      ike_name = yes
      append = no
      flush_line = yes
      default = 1
      ike = 4
      chd = 4
      cfg = 1
      knl = 1
      enc = 1
      net = 1
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{dir}/charon.vici
    }}
  }}
}}
swanctl {{
  load = pem pkcs1 x509 revocation constraints pubkey openssl random
}}
"""

_SS_CONN = """\
connections {{
  c {{
    version = 1
    aggressive = {aggressive}
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = {ike}
    dpd_delay = {dpd}
    encap = {encap}
    reauth_time = {reauth}
    over_time = 60s
    rand_time = 0s
    local {{
      auth = psk
      id = {local}
    }}
    remote {{
      auth = psk
      id = {remote}
    }}
    children {{
      c {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = {esp}
        mode = tunnel
        start_action = none
        dpd_action = none
        rekey_time = {rekey}
        life_time = {life}
        rand_time = 0s
      }}
    }}
  }}
}}
secrets {{
  ike-c {{
    secret = "{psk}"
  }}
}}
"""


class KeyloggingStrongSwan(StrongSwan):
    """charon as in harness.peers, plus key logging, DPD and the rekey timer."""

    def __init__(self, spec: PeerSpec, state_root: Path, cap: Capture) -> None:
        super().__init__(spec, state_root)
        self.cap = cap

    def start(self) -> None:
        s, cap = self.spec, self.cap
        self._fresh_dir("run")
        self.conf.write_text(_SS_CONF.format(plugins=CHARON_PLUGINS + " curve25519", dir=self.dir))
        rekey = REKEY_TIME_S if "rekey" in cap.events else 3600
        conn = self.dir / "swanctl.conf"
        conn.write_text(
            _SS_CONN.format(
                aggressive="yes" if s.exchange == "aggressive" else "no",
                local=s.local,
                remote=s.remote,
                ike=s.ike,
                esp=s.esp,
                local_ts=s.local_ts,
                remote_ts=s.remote_ts,
                psk=s.psk,
                dpd=f"{DPD_DELAY_S}s" if "dpd" in cap.events else "0s",
                rekey=f"{rekey}s",
                life=f"{rekey * 3}s",
                reauth="6s" if "reauth" in cap.events else "4h",
                encap="yes" if cap.encap else "no",
            )
        )
        conn.chmod(0o600)
        self._spawn(
            [CHARON],
            binds=[(str(self.dir / "run"), "/run")],
            env={"STRONGSWAN_CONF": str(self.conf)},
            out_name="charon.stdout",
        )
        self._wait_for(self.vici, 30, "charon")
        r = self.swanctl("--load-all", "--file", str(conn), "--noprompt")
        (self.dir / "load.out").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise PeerError(f"swanctl --load-all failed: {r.stdout}{r.stderr}")

    def terminate(self) -> None:
        r = self.swanctl(
            "--terminate", "--ike", "c", "--timeout", "5", "--loglevel", "0", timeout=20
        )
        (self.dir / "terminate.out").write_text(r.stdout + r.stderr)

    def log_text(self) -> str:
        path = self.dir / "charon.log"
        return path.read_text(errors="replace") if path.exists() else ""


_LSW_CONF = """\
config setup
    plutodebug=none
    uniqueids=no
    ikev1-policy=accept

conn c
    ikev2=no
    aggressive={aggressive}
    authby=secret
    left={local}
    leftid={local}
    leftsubnet={local_ts}
    right={remote}
    rightid={remote}
    rightsubnet={remote_ts}
    type=tunnel
    ike={ike}
    phase2=esp
    phase2alg={esp}
    pfs={pfs}
    ikelifetime=8h
{lifetimes}    encapsulation={encaps}
    leftupdown=/bin/true
{dpd}    auto=add
"""


def _libreswan_proposals(proposals: str) -> tuple[str, str | None]:
    """harness.peers.libreswan_proposal for a comma-separated list (one DH group for PFS)."""
    parts = [peers_libreswan_proposal(p.strip()) for p in proposals.split(",")]
    return ",".join(text for text, _dh in parts), parts[0][1]


class ConfiguredLibreswan(Libreswan):
    """pluto as in harness.peers with DPD configurable; the rest of start() is the base's,
    fed this template through the module attribute it formats."""

    def __init__(self, spec: PeerSpec, state_root: Path, cap: Capture) -> None:
        super().__init__(spec, state_root)
        self.cap = cap

    def start(self) -> None:
        from harness import peers

        dpd = (
            "    dpddelay=2\n    dpdtimeout=30\n    dpdaction=hold\n"
            if "dpd" in self.cap.events
            else ""
        )
        lifetimes = (
            "    salifetime=14s\n    rekey=yes\n    rekeymargin=8s\n    rekeyfuzz=0%\n"
            if "lsw-rekey" in self.cap.events
            else "    salifetime=1h\n    rekey=no\n"
        )
        saved = peers._LSW_CONF, peers.libreswan_proposal
        peers._LSW_CONF = (
            _LSW_CONF.replace("{dpd}", dpd)
            .replace("{lifetimes}", lifetimes)
            .replace("{encaps}", "yes" if self.cap.encap else "no")
        )
        peers.libreswan_proposal = _libreswan_proposals
        try:
            super().start()
        finally:
            peers._LSW_CONF, peers.libreswan_proposal = saved

    def terminate(self) -> None:
        r = self.whack("--name", "c", "--terminate", timeout=20)
        (self.dir / "terminate.out").write_text(r.stdout + r.stderr)

    def log_text(self) -> str:
        return ""


DRIVERS: dict[str, type[KeyloggingStrongSwan] | type[ConfiguredLibreswan]] = {
    "strongswan": KeyloggingStrongSwan,
    "libreswan": ConfiguredLibreswan,
}


# --- charon's key log ------------------------------------------------------------------------

_LINE = re.compile(r"^\S+ (\d+)\[([A-Z]+)\] (?:<([^>]*)> )?(.*)$")
_LABEL = re.compile(r"^(.+?) => (\d+) bytes @ 0x[0-9a-f]+$")
_HEX_ROW = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} ?){1,16})")
_IKE_LABELS = {
    "shared Diffie Hellman secret": "dh_secret",
    "SKEYID": "SKEYID",
    "SKEYID_d": "SKEYID_d",
    "SKEYID_a": "SKEYID_a",
    "SKEYID_e": "SKEYID_e",
    "encryption key Ka": "Ka",
    "initial IV": "IV",
    "natd_chunk": "natd_chunk",
}
_CHD_LABELS = {
    "DH secret": "dh_secret",
    "initiator SA seed": "seed_i",
    "responder SA seed": "seed_r",
}


def chunks(log: str) -> list[tuple[str, str, str, bytes]]:
    """(group, IKE_SA name, label, bytes) for every `label => N bytes` dump, in log order.
    Continuation rows are matched to their dump by thread (threads interleave)."""
    open_dumps: dict[str, list[Any]] = {}
    out: list[list[Any]] = []
    for line in log.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        thread, group, sa, msg = m[1], m[2], m[3] or "", m[4]
        if lm := _LABEL.match(msg):
            entry = [group, sa, lm[1], bytearray(), int(lm[2])]
            out.append(entry)
            open_dumps[thread] = entry
            continue
        cur = open_dumps.get(thread)
        if cur is not None and (hm := _HEX_ROW.match(msg)) and len(cur[3]) < cur[4]:
            cur[3].extend(bytes.fromhex(hm[1].replace(" ", "")))
        else:
            open_dumps.pop(thread, None)
    return [(g, sa, label, bytes(data)) for g, sa, label, data, _n in out]


def keys_from_charon(log: str) -> dict[str, Any]:
    """Phase 1 keys per IKE SA and the PFS secrets of the Quick Modes, in log order."""
    ike_sas: dict[str, dict[str, str]] = {}
    quick: list[dict[str, Any]] = []
    for group, sa, label, data in chunks(log):
        if group == "IKE" and label in _IKE_LABELS:
            entry = ike_sas.setdefault(sa, {"charon_ike_sa": sa})
            key = _IKE_LABELS[label]
            if key == "natd_chunk":
                entry.setdefault("icookie", data[:8].hex())
                entry.setdefault("rcookie", data[8:16].hex())
            elif key == "dh_secret" and "dh_secret" in entry:
                # a second phase 1 under the same name (reauthentication): a new entry
                entry = ike_sas[f"{sa}#{len(ike_sas)}"] = {"charon_ike_sa": sa}
                entry[key] = data.hex()
            else:
                entry[key] = data.hex()
        elif group == "CHD" and label in _CHD_LABELS:
            key = _CHD_LABELS[label]
            if key == "dh_secret":
                quick.append({"charon_ike_sa": sa, "dh_secret": data.hex(), "spis": []})
            elif quick and "dh_secret" in quick[-1]:
                secret = bytes.fromhex(quick[-1]["dh_secret"])
                if data.startswith(secret):  # seed = g^xy | protocol | SPI | Ni | Nr
                    spi = data[len(secret) + 1 : len(secret) + 5].hex()
                    if spi not in quick[-1]["spis"]:
                        quick[-1]["spis"].append(spi)
    return {"ike_sas": list(ike_sas.values()), "quick_mode_pfs": quick}


# --- kernel SAs --------------------------------------------------------------------------------

_XFRM_HEAD = re.compile(r"^src (\S+) dst (\S+)$")
_XFRM_SPI = re.compile(r"^\s+proto (\S+) spi 0x([0-9a-f]+)")
_XFRM_ALG = re.compile(r"^\s+(enc|auth|auth-trunc|aead) (\S+) 0x([0-9a-f]+)")


def kernel_sas(netns: str) -> list[dict[str, Any]]:
    text = nsmod.run(["ip", "-n", netns, "xfrm", "state"]).stdout
    sas: list[dict[str, Any]] = []
    for line in text.splitlines():
        if m := _XFRM_HEAD.match(line):
            sas.append({"src": m[1], "dst": m[2], "algs": []})
        elif sas and (m := _XFRM_SPI.match(line)):
            sas[-1].update(proto=m[1], spi=m[2])
        elif sas and (m := _XFRM_ALG.match(line)):
            sas[-1]["algs"].append({"kind": m[1], "name": m[2], "key": m[3]})
    return [s for s in sas if s.get("proto") == "esp"]


# --- one capture in the guest ------------------------------------------------------------------


@dataclass
class _Run:
    cap: Capture
    notes: list[str] = field(default_factory=list)
    esp: dict[str, dict[str, Any]] = field(default_factory=dict)

    def snapshot(self, topo: nsmod.Topology) -> None:
        for sa in kernel_sas(topo.gw_a):
            self.esp.setdefault(sa["spi"], sa)


def _spec(topo: nsmod.Topology, cap: Capture, role: str) -> PeerSpec:
    a = role == "initiator"
    return PeerSpec(
        name=f"{'i' if a else 'r'}-{cap.name}",
        netns=topo.gw_a if a else topo.gw_b,
        role=role,
        local=nsmod.GW_A_OUTER if a else nsmod.GW_B_OUTER,
        remote=nsmod.GW_B_OUTER if a else nsmod.GW_A_OUTER,
        psk=PSK,
        local_ts=nsmod.LAN_A_NET if a else nsmod.LAN_B_NET,
        remote_ts=nsmod.LAN_B_NET if a else nsmod.LAN_A_NET,
        ike=cap.ike if a else (cap.responder_ike or cap.ike),
        esp=cap.esp if a else (cap.responder_esp or cap.esp),
        exchange=cap.exchange,
    )


def _wait(pred: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def _start_tcpdump(netns: str, out: Path, state: Path) -> subprocess.Popen[bytes]:
    err = state / "tcpdump.err"
    with err.open("wb") as errf:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                TCPDUMP,
                "-i",
                "vB",
                "-n",
                "-U",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
                str(out),
                CAPTURE_FILTER,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errf,
            preexec_fn=nsmod.preexec(netns),
        )
    if not _wait(lambda: b"listening on" in err.read_bytes(), 15, 0.05):
        proc.kill()
        raise RuntimeError("tcpdump did not start: " + err.read_text(errors="replace"))
    return proc


def _count_child_sas(peer: Peer) -> int:
    if isinstance(peer, KeyloggingStrongSwan):
        return len(re.findall(r"CHILD_SA c\{\d+\} established", peer.log_text()))
    return 0


def run_capture(
    topo: nsmod.Topology, cap: Capture, state_root: Path, out_dir: Path, log_dir: Path | None
) -> dict[str, Any]:
    topo.reset_xfrm()
    run = _Run(cap)
    resp = DRIVERS[cap.responder](_spec(topo, cap, "responder"), state_root, cap)
    init = DRIVERS[cap.initiator](_spec(topo, cap, "initiator"), state_root, cap)
    pcap = out_dir / f"{cap.name}.pcap"
    pcap.unlink(missing_ok=True)
    tcpdump: subprocess.Popen[bytes] | None = None
    ok = False
    try:
        resp.start()
        init.start()
        tcpdump = _start_tcpdump(topo.gw_b, pcap, resp.dir)
        t0 = time.monotonic()
        if not init.initiate(timeout=30):
            run.notes.append("initiate failed")
        elif not _wait(lambda: init.established() and resp.established(), 20):
            run.notes.append("not established on both sides")
        else:
            ok = True
            run.notes.append(f"established after {time.monotonic() - t0:.2f}s")
        if ok and "ping" in cap.events:
            if topo.ping(count=2).returncode != 0:
                run.notes.append("ping through the tunnel failed")
            run.snapshot(topo)
        if ok and "dpd" in cap.events:
            time.sleep(3 * DPD_DELAY_S + 1)
            run.notes.append("idle for DPD")
        if ok and "rekey" in cap.events:
            ss = init if isinstance(init, KeyloggingStrongSwan) else resp
            if _wait(lambda: _count_child_sas(ss) >= 2, REKEY_TIME_S + 15):
                time.sleep(1.5)  # the old SAs' Delete follows the new Quick Mode
                run.notes.append("phase 2 rekeyed")
                topo.ping(count=1)
            else:
                run.notes.append("no phase 2 rekey seen")
            run.snapshot(topo)
        if ok and "reauth" in cap.events:
            ss = init if isinstance(init, KeyloggingStrongSwan) else resp
            if _wait(
                lambda: len(re.findall(r"IKE_SA c\[\d+\] established", ss.log_text())) >= 2, 25
            ):
                time.sleep(2)  # the new Quick Mode and the old SA's deletion follow
                run.notes.append("phase 1 reauthenticated")
                topo.ping(count=1)
            else:
                run.notes.append("no phase 1 reauthentication seen")
            run.snapshot(topo)
        if ok and "lsw-rekey" in cap.events:
            ss = init if isinstance(init, KeyloggingStrongSwan) else resp
            if _wait(lambda: _count_child_sas(ss) >= 2, 20):
                time.sleep(1.5)
                run.notes.append("phase 2 rekeyed by libreswan")
                topo.ping(count=1)
            else:
                run.notes.append("no phase 2 rekey seen")
            run.snapshot(topo)
        if ok and "delete" in cap.events:
            run.snapshot(topo)
            init.terminate()
            time.sleep(1.5)
            run.notes.append("initiator terminated")
    except PeerError as exc:
        run.notes.append(f"peer error: {exc}")
    finally:
        if tcpdump is not None:
            tcpdump.send_signal(signal.SIGINT)
            try:
                tcpdump.wait(timeout=10)
            except subprocess.TimeoutExpired:
                tcpdump.kill()
                tcpdump.wait()
        for p in (init, resp):
            p.stop()
        if log_dir is not None:
            dest = log_dir / cap.name
            dest.mkdir(parents=True, exist_ok=True)
            for p in (init, resp):
                for f in p.logs():
                    shutil.copy(f, dest / f"{p.spec.role}.{f.name}")
    meta = _metadata(cap, init, resp, run, ok)
    (out_dir / f"{cap.name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    if pcap.exists():
        pcap.chmod(0o644)
    return {"name": cap.name, "ok": ok, "notes": run.notes}


def _versions() -> dict[str, str]:
    dpkg = shutil.which("dpkg-query") or "/usr/bin/dpkg-query"
    r = subprocess.run(  # noqa: S603 -- our own programs
        [dpkg, "-W", "-f", "${Version}", "strongswan-charon"],
        capture_output=True,
        text=True,
        check=False,
    )
    lsw = sorted(p.name for p in (LSW_ROOT.parent).glob("libreswan*"))
    return {
        "strongswan": r.stdout.strip(),
        "libreswan": ", ".join(lsw),
        "kernel": f"User Mode Linux {os.uname().release}",
    }


def _metadata(cap: Capture, init: Any, resp: Any, run: _Run, ok: bool) -> dict[str, Any]:
    source = init if isinstance(init, KeyloggingStrongSwan) else resp
    keys = keys_from_charon(source.log_text())
    table = [
        f"{sa['icookie']},{sa['Ka']}" for sa in keys["ike_sas"] if "icookie" in sa and "Ka" in sa
    ]
    side = lambda p: {  # noqa: E731
        "impl": p.impl,
        "address": p.spec.local,
        "id": p.spec.local,
        "traffic_selector": p.spec.local_ts,
    }
    return {
        "capture": f"{cap.name}.pcap",
        "produced_by": "tests/data/captures/make_captures.py (UML guest, tcpdump on gwB vB)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": _versions(),
        "complete": ok,
        "note": cap.note,
        "notes": run.notes,
        "exchange": cap.exchange,
        "ike_proposal": cap.ike,
        "esp_proposal": cap.esp,
        "events": list(cap.events),
        "initiator": side(init),
        "responder": side(resp),
        "psk": PSK,
        "key_source": f"charon log of the {source.spec.role} (ike 4, chd 4)",
        "ike_sas": keys["ike_sas"],
        "quick_mode_pfs": keys["quick_mode_pfs"],
        "kernel_esp_sas": sorted(run.esp.values(), key=lambda s: (s["src"], s["spi"])),
        "wireshark_ikev1_decryption_table": table,
    }


def guest_main(names: list[str], out_dir: str, log_dir: str | None) -> list[dict[str, Any]]:
    """Runs in the UML guest: one topology, every requested capture."""
    topo = nsmod.Topology()
    topo.build()
    state_root = Path(tempfile.mkdtemp(prefix="captures."))
    results = []
    try:
        for name in names:
            r = run_capture(
                topo, CAPTURES[name], state_root, Path(out_dir), Path(log_dir) if log_dir else None
            )
            print(
                ("OK   " if r["ok"] else "FAIL ") + f"{name}: {'; '.join(r['notes'])}", flush=True
            )
            results.append(r)
    finally:
        topo.destroy()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="captures to make (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--logs", help="keep daemon logs and configs per capture in this directory")
    ap.add_argument("--out", default=str(HERE), help="where pcaps and JSON go")
    args = ap.parse_args()
    if args.list:
        for c in CAPTURES.values():
            print(
                f"{c.name:36} {c.initiator}->{c.responder} {c.exchange} ike={c.ike} "
                f"esp={c.esp} {','.join(c.events)}"
            )
        return 0
    names = args.names or list(CAPTURES)
    unknown = [n for n in names if n not in CAPTURES]
    if unknown:
        ap.error(f"unknown capture(s): {', '.join(unknown)}")
    missing = uml.missing_prerequisites()
    if missing:
        print(f"cannot boot UML: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rw = [out]
    if args.logs:
        Path(args.logs).mkdir(parents=True, exist_ok=True)
        rw.append(Path(args.logs).resolve())
    logs = str(Path(args.logs).resolve()) if args.logs else None
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import make_captures as m; "
        f"import json; print({uml.RESULT_MARK!r} + json.dumps(m.guest_main({names!r}, "
        f"{str(out)!r}, {logs!r})), flush=True)"
    )
    res = uml.run(
        uml.python_argv("-c", code), timeout=120 + 60 * len(names), stream=True, rw_dirs=rw
    )
    results = uml.parse_result(res)
    failed = [r["name"] for r in results if not r["ok"]]
    print(
        f"{len(results) - len(failed)} of {len(results)} captures complete"
        + (f"; incomplete: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
