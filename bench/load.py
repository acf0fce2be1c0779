"""IKEv1 responder load: ikepriv (ikeprivd) against strongSwan 5.9.8, side by side, one run.

    sudo .venv/bin/python bench/load.py [--peers 32] [--window 16] [--duration 8] [--reps 1]
        [--scenarios mm,mm1,mmqm] [--initiators strongswan,core] [--auth psk,rsa2048,ecdsa256]
        [--children 1,2]
        [--out results.jsonl]

An initiator in one network namespace opens Main Mode PSK handshakes (aes128-sha256-modp2048
by default) against a responder in another: the real ikeprivd (parent + sandboxed negotiator
child, definitions written with ikedb) or a strongSwan charon responder, one after the other
under the same load, alternating the order per repetition (compare the ratios pair by pair:
absolute times on a shared VM drift). The load is closed-loop: WINDOW initiations under way,
each a new ISAKMP SA, for DURATION seconds; then the ones under way finish. Initiators:
  strongswan  a charon with one connection per initiation (distinct peer configs, so it opens
              a new IKE SA each time), driven over vici (bench/vici.py, standard library)
  core        ikepriv's own sans-I/O negotiation core with one definition per initiation, real
              UDP sockets on every peer address (bench/core_initiator.py)

Authentication (--auth, both sides, each method in turn within a repetition): psk, or
certificates made for the run (bench/load_auth.py: RSA-2048 or ECDSA P-256 from one root CA
of that type, DN identities, send_cert always); certificates with the strongSwan initiator
only. ikepriv's parent signs at most 4 a second per definition (burst 16: vetting.py), so
give certificate runs one definition per few handshakes (--peers 253, scenario mm).

Scenarios:
  mm    Main Mode, PEERS initiator addresses (ID = address), one ikepriv definition each
  mm1   Main Mode, one initiator address and ID, many connections (one ikepriv definition)
  mmqm  Main Mode + one Quick Mode per initiation (ESP aes128-sha256, no PFS), PEERS
        addresses, at most --qm-per-peer initiations per address

Measured per responder, from the processes this script started: handshakes completed
(initiations that succeeded) and per second; responder CPU (utime + stime from
/proc/PID/stat, ikepriv's parent and negotiator child separately) per handshake over the
whole run, from the first initiation to 0.5 s after the last one returned; the initiator's
CPU per handshake; initiation latency percentiles (request to success, as the initiator
sees it); memory: PSS (/proc/PID/smaps_rollup) after a warm-up handshake and at the end, and
per ISAKMP SA (slope of PSS over completed handshakes, sampled once a second); responder
counters (ikepriv: `ike cmd=list stats json` deltas; strongSwan: its log).

--children: ikeprivd's negotiator children (`ikeprivd --children N`), one ikepriv run per
value in the list (default 1; "1,2" measures the scaling side by side); the children's CPU
and PSS are summed ("child"), and the table has a column for N.

Quick Mode on this host: the kernel has XFRM but no ESP, so kernel SAs cannot be added. The
reference harness (lab/perf) therefore measures phase 1 only on the host. Here the initiator
keeps its SAs in user space (strongSwan's kernel-libipsec plugin; the core initiator's
stand-in parent installs nothing), so its Quick Modes complete; each responder negotiates the
whole Quick Mode (SPI allocation from the kernel, QM1/QM2/QM3, keys) and then fails to add
the SA to its kernel (ikepriv: the parent's XFRM write refused with EPROTONOSUPPORT, the
policies undone, a Delete for the phase 2 SA sent; strongSwan: kernel-netlink "unable to
install", a Delete for the CHILD_SA sent); both keep the ISAKMP SA. Both responders do the
same negotiation and hit the same refusal; real installs are measured in User Mode Linux,
where this script runs as it is (one guest CPU; every system call and thread switch costs
tens to hundreds of microseconds there, so the ratios are not a host's):

    RK_MEM=1G tests/realkernel/run-in-kernel.sh .venv/bin/python bench/load.py --peers 32 \
        --duration 8 --scenarios mmqm --initiators core

Network: two namespaces created here (random suffix), one veth pair, addresses only from
192.0.2.0/24 (outer) and 198.51.100.0/24, 203.0.113.0/24 (Quick Mode selectors), no default
route (checked). Processes are stopped by their PIDs and the namespaces deleted, also on
error. A bench, not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_auth
from load_auth import PSK, Credentials
from vici import DriveResult, drive

VENV_BIN = Path(sys.executable).parent
IP = shutil.which("ip") or "/usr/sbin/ip"
CHARON = "/usr/lib/ipsec/charon"
SWANCTL = shutil.which("swanctl") or "/usr/sbin/swanctl"
TCK = os.sysconf("SC_CLK_TCK")
RESPONDER_ADDR = "192.0.2.2"
INIT_NET = "198.51.100"  # Quick Mode: initiator side selector 198.51.100.<peer+1>/32
RESP_NET = "203.0.113"  # Quick Mode: responder side selector 203.0.113.<peer+1>/32
QM_NOTE = (
    "Quick Mode on this host: no ESP in the kernel (the reference harness measures phase 1 "
    "only here). The initiators keep their SAs in user space (strongSwan kernel-libipsec; "
    "the core's stand-in parent); both responders negotiate the whole Quick Mode, then their "
    "kernel SA install is refused (EPROTONOSUPPORT) and they send a Delete for the phase 2 "
    "SA; the ISAKMP SA stays. Real installs: User Mode Linux."
)
QM_NOTE_ESP = (
    "Quick Mode with ESP in this kernel (esp4 loaded, as in User Mode Linux): both responders "
    "install their SAs and policies; the initiators keep theirs in user space."
)
SCENARIOS = {
    "mm": "Main Mode, one definition per peer address",
    "mm1": "Main Mode, one peer address, many connections",
    "mmqm": "Main Mode + Quick Mode, one definition per peer address",
}


def peer_addr(j: int) -> str:
    """Initiator address of peer j: 192.0.2.1, then 192.0.2.3 .. 192.0.2.254."""
    return "192.0.2.1" if j == 0 else f"192.0.2.{j + 2}"


def run_tool(
    argv: list[str], stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One of the fixed tools (ip, swanctl, ikedb, ike) with arguments built here."""
    return subprocess.run(  # noqa: S603 -- fixed tools, arguments built by this script
        argv, input=stdin, capture_output=True, text=True, env=env, check=False
    )


# processes and memory -----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat: the share taken by everything,
    ours or not, shows how much else ran on the machine during a run."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
    return busy, sum(v)


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


class Processes:
    """Everything this script started; stopped by PID, never by name."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
        with open(log, "wb") as out:
            p = subprocess.Popen(  # noqa: S603 -- our daemons, arguments built here
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.procs.append(p)
        return p.pid

    def start_piped(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Started with stdin and stdout as pipes (stderr to `log`)."""
        with open(log, "wb") as err:
            p = subprocess.Popen(  # noqa: S603 -- our own script, arguments built here
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        """SIGTERM to each, SIGKILL to what is still there after 5 s (by PID)."""
        for p in self.procs:
            if p.poll() is None:
                with suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


# network namespaces ----------------------------------------------------------------------------
def ip(*args: str, stdin: str | None = None) -> str:
    res = run_tool([IP, *args], stdin=stdin)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


@contextmanager
def namespaces(peers: int) -> Iterator[tuple[str, str]]:
    """Initiator and responder namespaces joined by one veth pair; deleted on exit."""
    tag = secrets.token_hex(3)
    nsi, nsr = f"blI{tag}", f"blR{tag}"
    made: list[str] = []
    try:
        for ns in (nsi, nsr):
            ip("netns", "add", ns)
            made.append(ns)
        ip("link", "add", "vI", "netns", nsi, "type", "veth", "peer", "name", "vR", "netns", nsr)
        # outer addresses on the veth; the Quick Mode selector addresses on lo (kernel-libipsec
        # routes the initiator's selectors through its TUN device with them as source)
        batch = "".join(
            f"addr add {peer_addr(j)}/24 dev vI\naddr add {INIT_NET}.{j + 1}/32 dev lo\n"
            for j in range(peers)
        )
        ip("-n", nsi, "-batch", "-", stdin=batch)
        ip("-n", nsr, "addr", "add", f"{RESPONDER_ADDR}/24", "dev", "vR")
        for ns, dev in ((nsi, "vI"), (nsr, "vR")):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
            if ip("-n", ns, "route", "show", "default").strip():
                raise RuntimeError(f"default route in {ns}")
        yield nsi, nsr
    finally:
        for ns in made:
            run_tool([IP, "netns", "del", ns])


# strongSwan -----------------------------------------------------------------------------------
def strongswan_conf(d: Path, threads: int, log_level: int, plugins: str) -> None:
    (d / "run").mkdir(parents=True, exist_ok=True)
    (d / "strongswan.conf").write_text(f"""charon {{
  threads = {threads}
  load_modular = no
  load = {plugins}
  install_routes = no
  install_virtual_ip = no
  ikesa_table_size = 4096
  ikesa_table_segments = 16
  block_threshold = 1000000
  cookie_threshold = 1000000
  init_limit_half_open = 0
  retransmit_tries = 3
  filelog {{ main {{ path = {d}/charon.log
                   default = {log_level}
                   flush_line = yes
                   append = no }} }}
  syslog {{ daemon {{ default = -1 }} }}
  plugins {{ vici {{ socket = unix://{d}/charon.vici }} }}
}}
""")


def start_charon(procs: Processes, ns: str, d: Path) -> int:
    """charon in `ns`, with /run of its own (a private mount namespace), connections loaded."""
    script = 'mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2"'
    argv = [IP, "netns", "exec", ns, "unshare", "--mount", "--propagation", "private"]
    pid = procs.start([*argv, "sh", "-c", script, "sh", str(d), CHARON], d / "stdout.log")
    vici = d / "charon.vici"
    for _ in range(100):
        if vici.exists():
            break
        time.sleep(0.1)
    res = run_tool(
        [SWANCTL, "--load-all", "--file", str(d / "swanctl.conf"), "--uri", f"unix://{vici}"]
    )
    if res.returncode != 0:
        raise RuntimeError(f"swanctl --load-all in {d}: {res.stdout[-500:]}{res.stderr[-500:]}")
    return pid


def initiator_conf(
    d: Path, conns: int, peers: int, ike: str, esp: str, qm: bool, creds: Credentials | None
) -> list[str]:
    """N distinct initiator connections p<k>; k uses peer address k mod peers. rand_time
    makes the peer configs distinct (charon reuses an IKE SA of any equal peer config)."""
    load_auth.swan_install(creds, "initiator", d)
    lines = ["connections {"]
    for k in range(conns):
        j = k % peers
        a = peer_addr(j)
        child = (
            f" children {{ c {{ esp_proposals = {esp}\n local_ts = {INIT_NET}.{j + 1}/32\n"
            f" remote_ts = {RESP_NET}.{j + 1}/32 }} }}"
            if qm
            else ""
        )
        lines.append(
            f" p{k} {{ version = 1\n local_addrs = {a}\n remote_addrs = {RESPONDER_ADDR}\n"
            f" proposals = {ike}\n rekey_time = 8h\n rand_time = {k + 1}s\n unique = never\n"
            + load_auth.swan_auth(creds, "initiator", a, RESPONDER_ADDR)
            + f"{child} }}"
        )
    lines += ["}", load_auth.swan_secrets(creds)]
    (d / "swanctl.conf").write_text("\n".join(lines))
    return [f"p{k}" for k in range(conns)]


def responder_swanctl(d: Path, ike: str, esp: str, creds: Credentials | None) -> None:
    load_auth.swan_install(creds, "responder", d)
    auth = load_auth.swan_auth(creds, "responder", RESPONDER_ADDR, "%any")
    (d / "swanctl.conf").write_text(f"""connections {{ r {{ version = 1
  local_addrs = {RESPONDER_ADDR}
  remote_addrs = 192.0.2.0/24
  proposals = {ike}
  unique = never
  rekey_time = 8h
{auth}  children {{ c {{ esp_proposals = {esp}
                 local_ts = {RESP_NET}.0/24
                 remote_ts = {INIT_NET}.0/24 }} }} }} }}
{load_auth.swan_secrets(creds)}""")


# ikepriv --------------------------------------------------------------------------------------
def ikepriv_definitions(peers: int, ike: str, esp: str, creds: Credentials | None) -> str:
    out = []
    for j in range(peers):
        out.append(
            f'[[phase1]]\nname = "peer{j}"\nlocal_addr = "{RESPONDER_ADDR}"\n'
            f'remote_addr = "{peer_addr(j)}"\nmode = "main"\n'
            + load_auth.ikepriv_phase1(creds)
            + f'proposals = ["{ike}"]\ndpd_delay = 0\n\n'
            f'[[phase2]]\nname = "peer{j}-c"\nphase1 = "peer{j}"\n'
            f'local_subnet = "{RESP_NET}.{j + 1}/32"\nremote_subnet = "{INIT_NET}.{j + 1}/32"\n'
            f'proposals = ["{esp}"]\n\n'
        )
    return "".join(out)


class Ikepriv:
    """ikeprivd in `ns` with its own database, control socket and chroot under `d`."""

    def __init__(
        self,
        procs: Processes,
        ns: str,
        d: Path,
        peers: int,
        args: argparse.Namespace,
        creds: Credentials | None,
        children: int = 1,
        definitions: list[str] | None = None,
    ) -> None:
        """`definitions`: TOML files for ikedb, put one after the other (each under ikedb's
        size limit; default: one phase 1 + phase 2 per peer)."""
        self.d = d
        self.control = d / "control.sock"
        (d / "empty").mkdir(parents=True)
        (d / "run").mkdir(mode=0o700)
        if definitions is None:
            definitions = [ikepriv_definitions(peers, args.ike, args.esp, creds)]
        db = d / "db" / "tunnels.db"
        for k, text in enumerate(definitions):
            defs = d / f"tunnels{k}.toml"
            defs.write_text(text)
            res = run_tool([str(VENV_BIN / "ikedb"), "--db", str(db), "-p", str(defs)])
            if res.returncode != 0:
                raise RuntimeError(f"ikedb: {res.stderr[-500:]}")
        notify_path = d / "run" / "notify.sock"
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(notify_path),
            "IKEPRIV_CONTROL": str(self.control),
        }
        argv = [IP, "netns", "exec", ns, str(VENV_BIN / "ikeprivd"), "--db", str(db)]
        argv += ["--control", str(self.control), "--chroot", str(d / "empty"), "--log-stderr"]
        argv += ["--children", str(children)]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.settimeout(0.2)
            self.pid = procs.start(argv, d / "ikeprivd.log", env=env)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if b"READY=1" in notify.recv(4096).split(b"\n"):
                        break
                except TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("ikeprivd not ready:\n" + self.log_tail())
        kids = children_of(self.pid)
        if len(kids) != children:
            raise RuntimeError(f"ikeprivd: expected {children} negotiator children, found {kids}")
        self.children = sorted(kids)

    def log_tail(self, n: int = 10) -> str:
        return "\n".join((self.d / "ikeprivd.log").read_text().splitlines()[-n:])

    def ike(self, *args: str) -> str:
        env = {**os.environ, "IKEPRIV_CONTROL": str(self.control)}
        res = run_tool([str(VENV_BIN / "ike"), *args], env=env)
        if res.returncode != 0:
            raise RuntimeError(f"ike {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def counters(self) -> dict[str, int]:
        return {
            k: v
            for k, v in json.loads(self.ike("cmd=list", "stats", "json")).items()
            if isinstance(v, int)
        }

    def held(self) -> int:
        return len(json.loads(self.ike("cmd=list", "phase=1", "json")))


# one run ------------------------------------------------------------------------------------
@dataclass
class Run:
    scenario: str
    initiator: str
    responder: str
    peers: int
    window: int
    duration: float
    rep: int
    auth: str = "psk"  # load_auth.AUTHS: psk, rsa2048, ecdsa256 (both sides)
    children: int = 0  # ikeprivd's negotiator children (0: strongSwan)
    ike: str = ""
    esp: str = ""
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    per_s: float = 0.0
    parent_cpu_s: float = 0.0  # strongSwan: the one charon process
    child_cpu_s: float = 0.0
    initiator_cpu_s: float = 0.0
    machine_busy: float = 0.0  # share of all CPUs busy during the load (anything running)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    pss_kb_start: dict[str, int] = field(default_factory=dict)
    pss_kb_end: dict[str, int] = field(default_factory=dict)
    held_start: int = 0
    held_end: int = 0
    # (handshakes completed, responder PSS kB) once a second during the load
    pss_samples: list[tuple[int, int]] = field(default_factory=list)
    responder_events: dict[str, int] = field(default_factory=dict)
    initiator_counters: dict[str, int] = field(default_factory=dict)

    @property
    def total_cpu_s(self) -> float:
        return self.parent_cpu_s + self.child_cpu_s

    def ms_per(self, seconds: float) -> float | None:
        return 1000 * seconds / self.ok if self.ok else None

    def kb_per_sa(self) -> float | None:
        """PSS growth per ISAKMP SA: the least-squares slope of the responder's PSS over the
        handshakes completed, sampled once a second during the load (every completed
        initiation leaves one ISAKMP SA held; see held_end; a refused Quick Mode leaves no
        phase 2 SA on either responder)."""
        pts = self.pss_samples
        if len(pts) < 3 or pts[-1][0] - pts[0][0] < 100:
            return None
        mx = statistics.fmean(x for x, _ in pts)
        my = statistics.fmean(y for _, y in pts)
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def strongswan_held(d: Path) -> int:
    res = run_tool([SWANCTL, "--stats", "--uri", f"unix://{d}/charon.vici"])
    m = re.search(r"IKE_SAs:\s*(\d+) total", res.stdout)
    return int(m.group(1)) if m else -1


def strongswan_events(d: Path) -> dict[str, int]:
    text = (d / "charon.log").read_text(errors="replace")
    return {
        "ike_established": text.count("established between"),
        "child_established": len(re.findall(r"CHILD_SA \S+ established", text)),
        "child_install_failed": text.count("unable to install"),
        "ike_deleting": text.count("deleting IKE_SA"),
    }


class Initiator:
    pid: int

    def warm_up(self) -> bool:
        """One handshake (Main Mode, or Main Mode + Quick Mode) before measuring."""
        raise NotImplementedError

    def load(self, result: DriveResult) -> None:
        """The closed-loop load; `result` fills as it goes (read by the memory sampler)."""
        raise NotImplementedError


class SwanInitiator(Initiator):
    """A strongSwan charon with one connection per initiation, driven over vici."""

    def __init__(
        self,
        procs: Processes,
        ns: str,
        d: Path,
        args: argparse.Namespace,
        peers: int,
        conns: int,
        qm: bool,
        creds: Credentials | None,
    ) -> None:
        plugins = "random nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici"
        strongswan_conf(
            d, args.window + 16, args.initiator_log, load_auth.charon_plugins(plugins, creds)
        )
        self.names = initiator_conf(d, conns, peers, args.ike, args.esp, qm, creds)
        self.pid = start_charon(procs, ns, d)
        self.vici = str(d / "charon.vici")
        self.child = "c" if qm else None
        self.window, self.duration = args.window, args.duration

    def warm_up(self) -> bool:
        return drive(self.vici, self.names[:1], 1, 30, child=self.child).ok == 1

    def load(self, result: DriveResult) -> None:
        drive(self.vici, self.names[1:], self.window, self.duration, self.child, result=result)


class CoreInitiator(Initiator):
    """ikepriv's own negotiation core as the initiator (bench/core_initiator.py)."""

    def __init__(
        self,
        procs: Processes,
        ns: str,
        d: Path,
        args: argparse.Namespace,
        peers: int,
        conns: int,
        qm: bool,
    ) -> None:
        if args.ike != "aes128-sha256-modp2048" or args.esp != "aes128-sha256":
            raise RuntimeError("the core initiator proposes aes128-sha256-modp2048 / aes128-sha256")
        script = Path(__file__).resolve().parent / "core_initiator.py"
        argv = [IP, "netns", "exec", ns, sys.executable, str(script), "--peers", str(peers)]
        argv += ["--per-peer", str(-(-conns // peers)), "--responder", RESPONDER_ADDR]
        argv += ["--psk", PSK, "--window", str(args.window), "--duration", str(args.duration)]
        argv += ["--phase", "2" if qm else "1"]
        self.proc = procs.start_piped(argv, d / "core_initiator.log")
        self.pid = self.proc.pid

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode()

    def warm_up(self) -> bool:
        return self._line().strip() == "READY"

    def load(self, result: DriveResult) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        while True:
            line = self._line()
            if not line:
                raise RuntimeError("core initiator ended without a result")
            if line.startswith("PROGRESS "):
                result.ok = int(line.split()[1])
            elif line.startswith("RESULT "):
                r = json.loads(line[7:])
                result.started, result.ok, result.failed = r["started"], r["ok"], r["failed"]
                result.latencies = [x / 1000 for x in r["latencies_ms"]]
                result.elapsed = r["elapsed"]
                result.counters = r["counters"]
                if r["failed"]:
                    result.errors = {"timed out": r["failed"]}
                return


def one_run(
    args: argparse.Namespace,
    scenario: str,
    initiator: str,
    responder: str,
    rep: int,
    base: Path,
    creds: Credentials | None,
    children: int = 0,
) -> Run:
    peers = 1 if scenario == "mm1" else args.peers
    qm = scenario == "mmqm"
    run = Run(scenario, initiator, responder, peers, args.window, args.duration, rep)
    run.ike, run.esp, run.children = args.ike, args.esp, children
    run.auth = creds.auth if creds else "psk"
    work = base / f"{scenario}-{run.auth}-{initiator}-{responder}{children or ''}-{rep}"
    di, dr = work / "I", work / "R"
    di.mkdir(parents=True)
    dr.mkdir(parents=True)
    procs = Processes()
    with namespaces(peers) as (nsi, nsr):
        try:
            ipk: Ikepriv | None = None
            if responder == "ikepriv":
                ipk = Ikepriv(procs, nsr, dr, peers, args, creds, children)
                pids = {"parent": ipk.pid} | {f"child{k}": p for k, p in enumerate(ipk.children)}
            else:
                strongswan_conf(
                    dr,
                    16,
                    args.responder_log,
                    load_auth.charon_plugins(
                        "random nonce openssl kdf kernel-netlink socket-default vici", creds
                    ),
                )
                responder_swanctl(dr, args.ike, args.esp, creds)
                pids = {"charon": start_charon(procs, nsr, dr)}
            # Quick Mode: at most qm_per_peer per peer address, under the parent's bounds on
            # unused SPIs and SAs per phase 2 definition (16 and 32)
            conns = min(args.conns, peers * args.qm_per_peer + 1) if qm else args.conns
            init: Initiator
            if initiator == "strongswan":
                init = SwanInitiator(procs, nsi, di, args, peers, conns, qm, creds)
            else:
                init = CoreInitiator(procs, nsi, di, args, peers, conns, qm)
            if not init.warm_up():
                tail = ipk.log_tail() if ipk else (dr / "charon.log").read_text()[-800:]
                raise RuntimeError(f"warm-up handshake failed ({initiator} initiator)\n{tail}")
            time.sleep(0.5)

            def held() -> int:
                return ipk.held() if ipk else strongswan_held(dr)

            run.held_start = held()
            run.pss_kb_start = {k: pss_kb(p) for k, p in pids.items()}
            before = ipk.counters() if ipk else strongswan_events(dr)
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            icpu0 = cpu_seconds(init.pid)
            m0 = machine_ticks()
            t0 = time.monotonic()
            res = DriveResult()
            done = threading.Event()

            def sample() -> None:
                while not done.wait(1.0):
                    total = sum(pss_kb(p) for p in pids.values())
                    run.pss_samples.append((res.ok, total))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            init.load(res)
            done.set()
            sampler.join()
            time.sleep(0.5)  # the responder's last QM3 / Delete handling
            cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
            run.wall_s = time.monotonic() - t0 - 0.5
            run.initiator_cpu_s = cpu_seconds(init.pid) - icpu0
            m1 = machine_ticks()
            run.machine_busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
            run.pss_kb_end = {k: pss_kb(p) for k, p in pids.items()}
            after = ipk.counters() if ipk else strongswan_events(dr)
            run.held_end = held()
            if ipk and sorted(children_of(ipk.pid)) != ipk.children:
                raise RuntimeError("a negotiator child was restarted during the run")
        finally:
            procs.stop_all()
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    run.parent_cpu_s = cpu.get("parent", cpu.get("charon", 0.0))
    run.child_cpu_s = sum(v for k, v in cpu.items() if k.startswith("child"))
    run.ok, run.failed, run.errors = res.ok, res.failed, res.errors
    run.initiator_counters = res.counters
    run.per_s = res.ok / run.wall_s if run.wall_s else 0.0
    run.latency_ms = {f"p{int(q * 100)}": res.percentile(q) for q in (0.5, 0.9, 0.99)} | {
        "max": res.percentile(1.0)
    }
    run.responder_events = {
        k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return run


# report ---------------------------------------------------------------------------------------
def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


SHORT = {
    "phase1_established": "p1 ok",
    "phase1_failed": "p1 failed",
    "phase2_established": "p2 ok",
    "phase2_failed": "p2 failed",
    "parent_errors": "parent refusals",
    "rekey_collisions": "collisions",
    "exchanges_timed_out": "timed out",
    "retransmits": "retransmits",
    "child_throttled": "throttled",
    "child_throttled_ms": "throttled ms",
    "ike_established": "p1 ok",
    "child_established": "p2 ok",
    "child_install_failed": "p2 install failed",
    "ike_deleting": "p1 deleted",
}


def counters_text(events: dict[str, int]) -> str:
    """The counters worth a glance (every non-zero delta is in the JSON lines)."""
    return ", ".join(f"{SHORT[k]} {v}" for k, v in events.items() if v and k in SHORT) or "-"


def label(r: Run) -> str:
    """The responder as the tables name it: "ikepriv x2" for two negotiator children."""
    return r.responder if r.children <= 1 else f"{r.responder} x{r.children}"


def table(runs: list[Run]) -> str:
    head = (
        "| scenario | auth | initiator | responder | rep | ok | failed | per s | CPU ms/hs "
        "| parent ms/hs "
        "| child ms/hs | initiator ms/hs | latency p50 / p90 / p99 / max ms "
        "| PSS start MB | PSS end MB | SAs held start -> end | KB per SA | machine busy "
        "| responder counters |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        is_ikp = r.responder == "ikepriv"
        lat = " / ".join(fmt(r.latency_ms.get(k), ".0f") for k in ("p50", "p90", "p99", "max"))
        pss0, pss1 = sum(r.pss_kb_start.values()) / 1024, sum(r.pss_kb_end.values()) / 1024
        kids = sum(v for k, v in r.pss_kb_end.items() if k.startswith("child"))
        pss_detail = f" ({r.pss_kb_end['parent'] / 1024:.0f}+{kids / 1024:.0f})" if is_ikp else ""
        rows.append(
            f"| {r.scenario} | {r.auth} | {r.initiator} | {label(r)} | {r.rep} | {r.ok} "
            f"| {r.failed} "
            f"| {r.per_s:.1f} "
            f"| **{fmt(r.ms_per(r.total_cpu_s))}** "
            f"| {fmt(r.ms_per(r.parent_cpu_s)) if is_ikp else '-'} "
            f"| {fmt(r.ms_per(r.child_cpu_s)) if is_ikp else '-'} "
            f"| {fmt(r.ms_per(r.initiator_cpu_s))} | {lat} | {pss0:.1f} | {pss1:.1f}{pss_detail} "
            f"| {r.held_start} -> {r.held_end} | {fmt(r.kb_per_sa(), '.1f')} "
            f"| {r.machine_busy:.0%} "
            f"| {counters_text(r.responder_events)} |"
        )
    return "\n".join(rows)


def medians(runs: list[Run]) -> str:
    """Per scenario, initiator and responder: medians over the repetitions."""
    groups: dict[tuple[str, str, str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.auth, r.initiator, label(r)), []).append(r)

    def med(values: list[float | None], spec: str = ".2f") -> str:
        present = [v for v in values if v is not None]
        return fmt(statistics.median(present), spec) if present else "-"

    head = (
        "| scenario | auth | initiator | responder | reps | per s | CPU ms/hs | parent ms/hs "
        "| child ms/hs | latency p50 / p99 ms | KB per SA | failed |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for (scenario, auth, initiator, responder), g in groups.items():
        is_ikp = responder.startswith("ikepriv")
        rows.append(
            f"| {scenario} | {auth} | {initiator} | {responder} | {len(g)} "
            f"| {med([r.per_s for r in g], '.1f')} "
            f"| **{med([r.ms_per(r.total_cpu_s) for r in g])}** "
            f"| {med([r.ms_per(r.parent_cpu_s) for r in g]) if is_ikp else '-'} "
            f"| {med([r.ms_per(r.child_cpu_s) for r in g]) if is_ikp else '-'} "
            f"| {med([r.latency_ms.get('p50') for r in g], '.0f')} / "
            f"{med([r.latency_ms.get('p99') for r in g], '.0f')} "
            f"| {med([r.kb_per_sa() for r in g], '.1f')} | {sum(r.failed for r in g)} |"
        )
    return "\n".join(rows)


def ratios(runs: list[Run]) -> str:
    """ikepriv / strongSwan (and ikepriv with N children / with one), pair by pair (same
    scenario and repetition), then the median."""
    pairs: dict[tuple[str, str, str, int], dict[str, Run]] = {}
    for r in runs:
        pairs.setdefault((r.scenario, r.auth, r.initiator, r.rep), {})[label(r)] = r
    by_scenario: dict[tuple[str, str, str, str], list[tuple[float, float]]] = {}
    for (scenario, auth, initiator, _), d in pairs.items():
        against = [(k, "strongswan") for k in d if k.startswith("ikepriv")]
        against += [(k, "ikepriv") for k in d if k.startswith("ikepriv x")]
        for num, den in against:
            a, b = d.get(num), d.get(den)
            if a and b and a.ok and b.ok and b.total_cpu_s > 0 and b.per_s > 0:
                cpu_ratio = a.ms_per(a.total_cpu_s) / b.ms_per(b.total_cpu_s)  # type: ignore[operator]
                ratio = (cpu_ratio, a.per_s / b.per_s)
                by_scenario.setdefault((scenario, auth, initiator, f"{num}/{den}"), []).append(
                    ratio
                )
    rows = [
        "| scenario | auth | initiator | ratio | CPU per handshake (per rep; median) "
        "| handshakes per s |",
        "|---|---|---|---|---|---|",
    ]
    for (scenario, auth, initiator, which), rs in by_scenario.items():
        cpu = ", ".join(f"{c:.2f}" for c, _ in rs)
        rate = ", ".join(f"{x:.2f}" for _, x in rs)
        rows.append(
            f"| {scenario} | {auth} | {initiator} | {which} | {cpu}; "
            f"**{statistics.median(c for c, _ in rs):.2f}** "
            f"| {rate}; {statistics.median(x for _, x in rs):.2f} |"
        )
    return "\n".join(rows)


def by_auth(runs: list[Run]) -> str:
    """Responder CPU per Main Mode handshake by authentication method, ikepriv and strongSwan
    side by side (medians over the repetitions; per-rep figures in the tables above)."""
    groups: dict[tuple[str, str, str], dict[str, list[Run]]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.initiator, r.auth), {}).setdefault(label(r), []).append(r)

    def med(g: list[Run], seconds: str) -> str:
        values = [r.ms_per(getattr(r, seconds)) for r in g]
        present = [v for v in values if v is not None]
        return fmt(statistics.median(present)) if present else "-"

    head = (
        "| scenario | initiator | auth | ikepriv parent ms/MM | ikepriv child ms/MM "
        "| ikepriv total ms/MM | ikepriv MM/s | strongSwan ms/MM | strongSwan MM/s |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for (scenario, initiator, auth), d in groups.items():
        ikp, ss = d.get("ikepriv", []), d.get("strongswan", [])
        rate = {k: fmt(statistics.median(r.per_s for r in g), ".1f") if g else "-"
                for k, g in (("ikp", ikp), ("ss", ss))}  # fmt: skip
        rows.append(
            f"| {scenario} | {initiator} | {auth} | {med(ikp, 'parent_cpu_s')} "
            f"| {med(ikp, 'child_cpu_s')} | **{med(ikp, 'total_cpu_s')}** | {rate['ikp']} "
            f"| **{med(ss, 'total_cpu_s')}** | {rate['ss']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=32, help="peer addresses (1..253)")
    parser.add_argument("--window", type=int, default=16, help="concurrent initiations")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    parser.add_argument("--reps", type=int, default=1, help="repetitions (order alternates)")
    parser.add_argument("--conns", type=int, default=3000, help="initiator connections per run")
    parser.add_argument("--qm-per-peer", type=int, default=8, help="mmqm: initiations per peer")
    parser.add_argument("--scenarios", default="mm,mm1,mmqm", help=",".join(SCENARIOS))
    parser.add_argument("--responders", default="ikepriv,strongswan")
    parser.add_argument(
        "--initiators", default="strongswan", help="strongswan (charon over vici), core (ikepriv's)"
    )
    parser.add_argument(
        "--children", default="1", help="ikeprivd negotiator children, one run per value (1,2)"
    )
    parser.add_argument("--ike", default="aes128-sha256-modp2048")
    parser.add_argument("--esp", default="aes128-sha256")
    parser.add_argument(
        "--auth",
        default="psk",
        help="authentication methods, both sides, one after the other: "
        + ",".join(load_auth.AUTHS)
        + " (certificates made for the run; strongswan initiator only)",
    )
    parser.add_argument("--out", type=Path, help="append one JSON line per run")
    parser.add_argument("--keep", action="store_true", help="keep configs and logs")
    parser.add_argument("--initiator-log", type=int, default=-1, help="initiator log level")
    parser.add_argument(
        "--responder-log", type=int, default=0, help="strongSwan responder log level"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("load.py: run as root (network namespaces, the daemons)")
    if not 1 <= args.peers <= 253:
        sys.exit("load.py: --peers must be 1..253")
    for tool in (CHARON, SWANCTL, str(VENV_BIN / "ikeprivd")):
        if not os.access(tool, os.X_OK):
            sys.exit(f"load.py: {tool} missing (scripts/setup.sh installs strongSwan and .venv)")
    children = [int(c) for c in args.children.split(",") if c]
    scenarios = [s for s in args.scenarios.split(",") if s]
    responders = [r for r in args.responders.split(",") if r]
    initiators = [r for r in args.initiators.split(",") if r]
    unknown = (
        set(scenarios) - set(SCENARIOS)
        | set(responders) - {"ikepriv", "strongswan"}
        | set(initiators) - {"strongswan", "core"}
    )
    auths = [a for a in args.auth.split(",") if a]
    unknown |= set(auths) - set(load_auth.AUTHS)
    if unknown:
        sys.exit(f"load.py: unknown {sorted(unknown)}")
    if "core" in initiators and set(auths) - {"psk"}:
        sys.exit("load.py: the core initiator authenticates with PSK only")
    print(
        f"# load.py {' '.join(sys.argv[1:])}: {os.cpu_count()} CPUs, {args.ike}, esp {args.esp},"
        f" auth {','.join(auths)}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    if "mmqm" in scenarios:
        print(f"# {QM_NOTE_ESP if Path('/sys/module/esp4').exists() else QM_NOTE}")
    base = Path(tempfile.mkdtemp(prefix="ikepriv-load-"))
    runs: list[Run] = []
    try:
        creds = {a: load_auth.make(base, a) for a in auths}
        for rep in range(1, args.reps + 1):
            order = responders if rep % 2 else responders[::-1]
            for initiator in initiators:
                for scenario in scenarios:
                    for auth in auths:
                        for responder in order:
                            counts = children if responder == "ikepriv" else [0]
                            for n in counts if rep % 2 else counts[::-1]:
                                run = one_run(
                                    args, scenario, initiator, responder, rep, base, creds[auth], n
                                )
                                runs.append(run)
                                report(run, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"# kept {base}")
    print()
    print(table(runs))
    print()
    print(medians(runs))
    print()
    print(ratios(runs))
    if auths != ["psk"]:
        print()
        print(by_auth(runs))


def report(run: Run, out: Path | None) -> None:
    """One run's JSON line, on stdout and appended to --out."""
    line = json.dumps({**asdict(run), "scenario_text": SCENARIOS[run.scenario]})
    print(f"RESULT {line}", flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
