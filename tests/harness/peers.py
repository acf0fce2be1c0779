"""IKEv1 peer drivers: strongSwan 5.9 charon and libreswan 4.10 pluto, one private instance each.

Every driver implements the same small contract (`Peer`), so a scenario can put any daemon on
either side, including ikepriv itself (a driver module `harness/peer_<impl>.py` that registers a
`Peer` subclass with `@register` is found by `make_peer(impl, ...)`):

    start()            daemon up in its netns and ready to respond / to be told to initiate
    initiate(timeout)  phase 1 + Quick Mode; blocks until done; True on success
    initiate_phase1()  the ISAKMP SA only (or at least); True once it is established
    established()      this instance holds an established ISAKMP SA *and* an IPsec SA
    ike_established()  phase 1 only (usable on the host, whose kernel has no ESP)
    stop()             stop the daemon by its PID; logs stay
    logs()             files worth keeping after a run

Instances keep all state in `state_root/<name>`. Daemons install their own kernel SAs and
policies; routes are the topology's job. Proposals use strongSwan syntax everywhere and are
translated per driver (a DH group in ESP means PFS with that group).
"""

from __future__ import annotations

import abc
import importlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from . import netns as nsmod

DEFAULT_IKE = "aes128-sha256-modp2048"
DEFAULT_ESP = "aes128-sha256"
ROLES = ("initiator", "responder")
EXCHANGES = ("main", "aggressive")


class PeerError(RuntimeError):
    """A peer could not be started or driven; the message carries its log tail."""


@dataclass(frozen=True)
class PeerSpec:
    """One side of a tunnel. IDs are ID_IPV4_ADDR = local / remote; tunnel mode."""

    name: str
    netns: str | None
    role: str
    local: str
    remote: str
    psk: str
    local_ts: str
    remote_ts: str
    ike: str = DEFAULT_IKE
    esp: str = DEFAULT_ESP
    exchange: str = "main"
    debug: bool = False
    encap: bool = False  # force ESP-in-UDP (strongSwan: fake NAT-D); others ignore it
    dpd_delay: int = 0  # seconds between DPD probes when idle, 0 = driver default/off
    ah: bool = False  # `esp` names AH integrity algorithms (e.g. "sha256"), not ESP
    ike_lifetime: int = 0  # phase 1 lifetime in seconds, 0 = driver default
    child_lifetime: int = 0  # phase 2 lifetime in seconds, 0 = driver default
    ike_margin: int = 0  # ikepriv rekey_margin of phase 1 / phase 2, 0 = its default
    child_margin: int = 0
    rekey: bool = True  # False: strongSwan never rekeys (the other side must)
    # several subnets per side (instead of local_ts/remote_ts when set): one tunnel per
    # (local, remote) pair; ikepriv local_subnets=, libreswan leftsubnets=, strongSwan one
    # child per pair (IKEv1 carries one traffic selector per child)
    local_subnets: tuple[str, ...] = ()
    remote_subnets: tuple[str, ...] = ()
    # IKE fragmentation: `fragmentation` for strongSwan (yes|accept|force|no) and libreswan
    # (yes|no|force), "" = their default; charon.fragment_size (0 = its default, 1280),
    # which libreswan and ikepriv ignore for now
    fragmentation: str = ""
    fragment_size: int = 0
    # certificate authentication: "psk" or "pubkey" (RSA or ECDSA by the key in `pki`)
    auth: str = "psk"
    # with pubkey: this side's credential directory (harness.pki_files): ee.pem, cert.pem
    # (ours then intermediates), key.pem, ca.pem, optional im.pem, crl.pem
    pki: str = ""
    local_id: str = ""  # "" = the local address (ID_IPV4_ADDR); else a DN or an FQDN
    remote_id: str = ""

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every (local, remote) selector pair, in ikepriv's and libreswan's order."""
        locals_ = self.local_subnets or (self.local_ts,)
        remotes = self.remote_subnets or (self.remote_ts,)
        return [(lo, re) for lo in locals_ for re in remotes]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} not in {ROLES}")
        if self.exchange not in EXCHANGES:
            raise ValueError(f"exchange {self.exchange!r} not in {EXCHANGES}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name):
            raise ValueError(f"bad instance name {self.name!r}")
        if '"' in self.psk or "\n" in self.psk:
            raise ValueError("PSK must not contain quotes or newlines")
        if self.auth not in ("psk", "pubkey") or (self.auth == "pubkey") != bool(self.pki):
            raise ValueError(f"auth {self.auth!r} with pki {self.pki!r}")

    @property
    def my_id(self) -> str:
        return self.local_id or self.local

    @property
    def peer_id(self) -> str:
        return self.remote_id or self.remote


class Peer(abc.ABC):
    """Base of all drivers: owns the state dir and the daemon process."""

    impl: ClassVar[str]

    def __init__(self, spec: PeerSpec, state_root: Path) -> None:
        self.spec = spec
        self.dir = Path(state_root) / spec.name
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def initiate(self, timeout: float = 30) -> bool: ...

    def initiate_phase1(self, timeout: float = 30) -> bool:
        """Bring up the ISAKMP SA (Quick Mode may follow and fail, e.g. on the ESP-less host
        kernel); True once this side reports it established. Drivers that can initiate phase
        1 alone override this."""
        self.initiate(timeout)
        return self.ike_established()

    @abc.abstractmethod
    def established(self) -> bool: ...

    @abc.abstractmethod
    def ike_established(self) -> bool: ...

    @abc.abstractmethod
    def logs(self) -> list[Path]: ...

    def stop(self) -> None:
        """TERM the daemon by PID, KILL after a grace period; reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # helpers for drivers -------------------------------------------------------------------
    def _fresh_dir(self, *subdirs: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in ("", *subdirs):
            (self.dir / d).mkdir(parents=True, exist_ok=True)

    def _spawn(
        self,
        argv: Sequence[str],
        binds: Sequence[tuple[str, str]] = (),
        env: dict[str, str] | None = None,
        out_name: str = "daemon.stdout",
    ) -> None:
        """Start the daemon directly (no shell, no ip-netns-exec): its PID is ours to stop."""
        with open(self.dir / out_name, "wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 (test harness, fixed argv)
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                preexec_fn=nsmod.preexec(self.spec.netns, binds),
            )

    def _wait_for(self, path: Path, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not self.alive():
                raise PeerError(
                    f"{self.impl} {self.spec.name}: {what} exited early\n" + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{self.impl} {self.spec.name}: no {path.name} after "
                    f"{timeout}s\n" + self.log_tail()
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 15) -> str:
        parts = []
        for p in self.logs():
            if p.suffix in (".log", ".stdout", ".out") and p.exists():
                text = p.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {p}\n" + "\n".join(text))
        return "\n".join(parts)


DRIVERS: dict[str, type[Peer]] = {}


def register(cls: type[Peer]) -> type[Peer]:
    DRIVERS[cls.impl] = cls
    return cls


def make_peer(impl: str, spec: PeerSpec, state_root: Path) -> Peer:
    """Driver `impl` for `spec`; an unknown impl is looked up as module harness.peer_<impl>."""
    if impl not in DRIVERS:
        importlib.import_module(f"{__package__}.peer_{impl}")
    return DRIVERS[impl](spec, state_root)


# --- strongSwan ----------------------------------------------------------------------------------

CHARON = os.environ.get("SS_CHARON", "/usr/lib/ipsec/charon")
SWANCTL = os.environ.get("SS_SWANCTL", "/usr/sbin/swanctl")
# few plugins = few dlopen()s: a faster start under UML, where every syscall is traced
CHARON_PLUGINS = "random nonce openssl kdf kernel-netlink socket-default vici"
# and for certificates: parsing, revocation, chain constraints, signature auth
CHARON_CERT_PLUGINS = "pem pkcs1 pkcs8 x509 revocation constraints pubkey"

_SS_CONF = """\
charon {{
  load_modular = no
  load = {plugins}
  # charon refuses to respond to Aggressive Mode with PSK unless told so
  i_dont_care_about_security_and_use_aggressive_mode_psk = {aggressive}
  retransmit_tries = 3
  install_virtual_ip = no
{charon_extra}  filelog {{
    main {{
      path = {dir}/charon.log
      time_format = %b %e %T
      append = no
      flush_line = yes
      default = {level}
      ike = 2
      cfg = 2
      knl = 2
      chd = 2
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
    encap = {encap}
    dpd_delay = {dpd_delay}s
{ike_extra}    local {{
      auth = {auth}
      id = "{local_id}"
{local_extra}    }}
    remote {{
      auth = {auth}
      id = "{remote_id}"
    }}
    children {{
{children}    }}
  }}
}}
secrets {{
{secrets}}}
"""


_SS_PSK = """\
  ike-c {{
    secret = "{psk}"
  }}
"""


_SS_CHILD = """\
      {name} {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        {esp_key} = {esp}
        mode = tunnel
{child_extra}        start_action = none
      }}
"""


def ss_child_names(s: PeerSpec) -> list[str]:
    """strongSwan child names, one per selector pair: c, c2, c3, ..."""
    return ["c" if i == 0 else f"c{i + 1}" for i in range(len(s.pairs))]


def _ss_children(s: PeerSpec) -> str:
    return "".join(
        _SS_CHILD.format(
            name=name,
            local_ts=lo,
            remote_ts=re,
            esp_key="ah_proposals" if s.ah else "esp_proposals",
            esp=s.esp,
            child_extra=_ss_lifetimes(s, "        ", ike=False),
        )
        for name, (lo, re) in zip(ss_child_names(s), s.pairs, strict=True)
    )


def _ss_lifetimes(s: PeerSpec, indent: str, *, ike: bool) -> str:
    """swanctl lifetime lines: rekey off (`rekey_time = 0s`) and/or a fixed lifetime."""
    lines = []
    if not s.rekey:
        lines += ["rekey_time = 0s"] + (["reauth_time = 0s"] if ike else [])
    life = s.ike_lifetime if ike else s.child_lifetime
    if life:
        lines.append(f"life_time = {life}s" if not s.rekey else f"rekey_time = {life}s")
    return "".join(f"{indent}{ln}\n" for ln in lines)


@register
class StrongSwan(Peer):
    """charon with its own strongswan.conf (STRONGSWAN_CONF), vici socket and private /run
    (the pid file path /var/run/charon.pid is compiled in)."""

    impl = "strongswan"

    @property
    def conf(self) -> Path:
        return self.dir / "strongswan.conf"

    @property
    def vici(self) -> Path:
        return self.dir / "charon.vici"

    def start(self) -> None:
        s = self.spec
        self._fresh_dir("run")
        aggressive = "yes" if s.exchange == "aggressive" else "no"
        cert_auth = s.auth == "pubkey"
        self.conf.write_text(
            _SS_CONF.format(
                plugins=CHARON_PLUGINS + (" " + CHARON_CERT_PLUGINS if cert_auth else ""),
                aggressive=aggressive,
                dir=self.dir,
                level=2 if s.debug else 1,
                charon_extra=f"  fragment_size = {s.fragment_size}\n" if s.fragment_size else "",
            )
        )
        conn = self.dir / "swanctl.conf"
        conn.write_text(
            _SS_CONN.format(
                aggressive=aggressive,
                local=s.local,
                remote=s.remote,
                ike=s.ike,
                encap="yes" if s.encap else "no",
                dpd_delay=s.dpd_delay,
                ike_extra=_ss_lifetimes(s, "    ", ike=True)
                + (f"    fragmentation = {s.fragmentation}\n" if s.fragmentation else "")
                + ("    send_cert = always\n" if cert_auth else ""),
                children=_ss_children(s),
                auth=s.auth,
                local_id=s.my_id,
                remote_id=s.peer_id,
                local_extra="      certs = ee.pem\n" if cert_auth else "",
                secrets=self._ss_credentials() if cert_auth else _SS_PSK.format(psk=s.psk),
            )
        )
        conn.chmod(0o600)
        self._spawn(
            [CHARON],
            binds=[(str(self.dir / "run"), "/run")],
            env=self._ss_env(),
            out_name="charon.stdout",
        )
        self._wait_for(self.vici, 30, "charon")
        r = self.swanctl("--load-all", "--file", str(conn), "--noprompt")
        (self.dir / "load.out").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise PeerError(f"swanctl --load-all failed: {r.stdout}{r.stderr}")

    def swanctl(
        self, command: str, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """swanctl against this instance (the --uri must follow the command)."""
        argv = [SWANCTL, command, "--uri", f"unix://{self.vici}", *args]
        return subprocess.run(  # noqa: S603 -- our own programs
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self._ss_env()},
        )

    def _ss_env(self) -> dict[str, str]:
        return {"STRONGSWAN_CONF": str(self.conf)}

    def _ss_credentials(self) -> str:
        """Our certificate, key, CAs and CRL in the credential folders next to swanctl.conf
        (swanctl --file reads them from there); returns the (empty) secrets section."""
        pki = Path(self.spec.pki)
        dirs = {"x509": ["ee.pem"], "x509ca": ["ca.pem", "im.pem"], "x509crl": ["crl.pem"],
                "private": ["key.pem"]}  # fmt: skip
        for sub, names in dirs.items():
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
            for n in names:
                if (pki / n).exists():
                    shutil.copy(pki / n, self.dir / sub / n)
        return ""

    def initiate(self, timeout: float = 30) -> bool:
        """Every child in turn (one per selector pair), under the first one's IKE SA."""
        outs, ok = [], True
        for child in ss_child_names(self.spec):
            r = self.swanctl(
                "--initiate",
                "--child",
                child,
                "--timeout",
                str(int(timeout)),
                "--loglevel",
                "0",
                timeout=timeout + 15,
            )
            outs.append(f"--- {child}\n{r.stdout}{r.stderr}")
            ok = ok and r.returncode == 0
        (self.dir / "initiate.out").write_text("".join(outs))
        return ok

    def initiate_phase1(self, timeout: float = 30) -> bool:
        r = self.swanctl(
            "--initiate",
            "--ike",
            "c",
            "--timeout",
            str(int(timeout)),
            "--loglevel",
            "0",
            timeout=timeout + 15,
        )
        (self.dir / "initiate.out").write_text(r.stdout + r.stderr)
        return r.returncode == 0 and self.ike_established()

    def _list_sas(self) -> str:
        if not self.alive():
            return ""
        r = self.swanctl("--list-sas")
        (self.dir / "list-sas.out").write_text(r.stdout + r.stderr)
        return r.stdout if r.returncode == 0 else ""

    def established(self) -> bool:
        out = self._list_sas()
        return "ESTABLISHED" in out and "INSTALLED" in out

    def ike_established(self) -> bool:
        return "ESTABLISHED" in self._list_sas()

    def logs(self) -> list[Path]:
        names = (
            "charon.log",
            "charon.stdout",
            "load.out",
            "initiate.out",
            "list-sas.out",
            "strongswan.conf",
            "swanctl.conf",
        )
        return [self.dir / n for n in names if (self.dir / n).exists()]


# --- libreswan -----------------------------------------------------------------------------------

LSW_ROOT = Path(os.environ.get("LSW_ROOT", "/opt/libreswan-4.10"))

# strongSwan proposal token -> libreswan name; kind says where it goes
_LSW_ENC = {
    "aes128": "aes128",
    "aes192": "aes192",
    "aes256": "aes256",
    "3des": "3des",
    "aes128gcm16": "aes_gcm128",
    "aes192gcm16": "aes_gcm192",
    "aes256gcm16": "aes_gcm256",
    "aes128ctr": "aes_ctr128",
    "aes192ctr": "aes_ctr192",
    "aes256ctr": "aes_ctr256",
}
_LSW_INTEG = {
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha2_256",
    "sha384": "sha2_384",
    "sha512": "sha2_512",
}
_LSW_DH = {
    "modp1024": "modp1024",
    "modp1536": "modp1536",
    "modp2048": "modp2048",
    "modp3072": "modp3072",
    "modp4096": "modp4096",
    "ecp256": "dh19",
    "ecp384": "dh20",
    "curve25519": "dh31",
    "x25519": "dh31",
}


def libreswan_proposal(proposal: str) -> tuple[str, str | None]:
    """strongSwan syntax -> (libreswan "enc-integ;dh", DH group or None).

    aes128-sha256-modp2048 -> aes128-sha2_256;modp2048; aes256gcm16 -> aes_gcm256-null."""
    enc = integ = dh = None
    for tok in proposal.split("-"):
        if tok in _LSW_ENC:
            enc = _LSW_ENC[tok]
            if "gcm" in tok:
                integ = "null"
        elif tok in _LSW_INTEG:
            integ = _LSW_INTEG[tok]
        elif tok in _LSW_DH:
            dh = _LSW_DH[tok]
        else:
            raise ValueError(f"libreswan driver: unknown proposal token {tok!r} in {proposal!r}")
    if enc is None:
        raise ValueError(f"no cipher in proposal {proposal!r}")
    text = enc + (f"-{integ}" if integ else "") + (f";{dh}" if dh else "")
    return text, dh


_LSW_CONF = """\
config setup
    plutodebug={debug}
    uniqueids=no
    ikev1-policy=accept

conn c
    ikev2=no
    aggressive={aggressive}
    authby={authby}
    left={local}
    leftid={local_id}
    {left_subnet}
    right={remote}
    rightid={remote_id}
    {right_subnet}
    {cert_lines}
    type=tunnel
    ike={ike}
    phase2={phase2}
    phase2alg={esp}
    pfs={pfs}
    ikelifetime=8h
    salifetime=1h
    rekey=no
    leftupdown=/bin/true
    auto=add
{conn_extra}"""


def _lsw_id(identity: str) -> str:
    """leftid=/rightid=: a DN in quotes, an FQDN with libreswan's '@', an address as is."""
    if "=" in identity:
        return f'"{identity}"'
    if identity[:1].isalpha() and "@" not in identity:
        return "@" + identity
    return identity


def _lsw_subnets(side: str, subnets: tuple[str, ...], single: str) -> str:
    """leftsubnet=X, or leftsubnets={X Y} (pluto adds one connection per pair)."""
    if subnets:
        return f"{side}subnets={{{' '.join(subnets)}}}"
    return f"{side}subnet={single}"


@register
class Libreswan(Peer):
    """pluto from the unpacked .deb in LSW_ROOT (it cannot be installed next to strongSwan).
    pluto hard-codes /usr/libexec/ipsec/addconn, so it runs in a private mount namespace with
    LSW_ROOT/usr/libexec bound over /usr/libexec. IKEv1 needs ikev1-policy=accept in 4.10;
    leftupdown=/bin/true keeps the updown script from touching routes."""

    impl = "libreswan"

    @property
    def ctl(self) -> Path:
        return self.dir / "run" / "pluto.ctl"

    def _x(self, tool: str) -> str:
        return str(LSW_ROOT / "usr/libexec/ipsec" / tool)

    def start(self) -> None:
        s = self.spec
        self._fresh_dir("run", "nss", "dump")
        ike, _ = libreswan_proposal(s.ike)
        if s.ah:  # AH: integrity only (sha256 -> sha2_256)
            esp, pfs_group = "+".join(_LSW_INTEG[t] for t in s.esp.split("-")), None
        else:
            esp, pfs_group = libreswan_proposal(s.esp)
        certutil = shutil.which("certutil")
        if certutil is None:
            raise PeerError("certutil not found (apt package libnss3-tools)")
        r = subprocess.run(  # noqa: S603 -- our own programs
            [
                certutil,
                "-N",
                "-d",
                f"sql:{self.dir / 'nss'}",
                "--empty-password",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise PeerError(f"certutil failed: {r.stderr}")
        conf = self.dir / "ipsec.conf"
        conf.write_text(
            _LSW_CONF.format(
                debug="all" if s.debug else "none",
                aggressive="yes" if s.exchange == "aggressive" else "no",
                local=s.local,
                remote=s.remote,
                left_subnet=_lsw_subnets("left", s.local_subnets, s.local_ts),
                right_subnet=_lsw_subnets("right", s.remote_subnets, s.remote_ts),
                ike=ike,
                esp=esp,
                pfs="yes" if pfs_group else "no",
                phase2="ah" if s.ah else "esp",
                conn_extra=f"    fragmentation={s.fragmentation}\n" if s.fragmentation else "",
                authby="rsasig" if s.auth == "pubkey" else "secret",
                local_id=_lsw_id(s.my_id),
                remote_id=_lsw_id(s.peer_id),
                cert_lines=self._lsw_credentials() if s.auth == "pubkey" else "",
            )
        )
        secrets = self.dir / "ipsec.secrets"
        secrets.write_text(
            ": RSA own\n" if s.auth == "pubkey" else f'{s.local} {s.remote} : PSK "{s.psk}"\n'
        )
        secrets.chmod(0o600)
        d = self.dir
        self._spawn(
            [
                self._x("pluto"),
                "--nofork",
                "--config",
                str(conf),
                "--rundir",
                str(d / "run"),
                "--nssdir",
                str(d / "nss"),
                "--secretsfile",
                str(secrets),
                "--ipsecdir",
                str(d),
                "--dumpdir",
                str(d / "dump"),
                "--logfile",
                str(d / "pluto.log"),
                "--log-no-audit",
                "--no-dnssec",
                "--listen",
                s.local,
            ],
            binds=[(str(LSW_ROOT / "usr/libexec"), "/usr/libexec")],
            out_name="pluto.stdout",
        )
        self._wait_for(self.ctl, 30, "pluto")
        # addconn only works once pluto listens on its interfaces
        log = d / "pluto.log"
        deadline = time.monotonic() + 10
        while "adding UDP interface" not in (
            log.read_text(errors="replace") if log.exists() else ""
        ):
            if time.monotonic() > deadline or not self.alive():
                raise PeerError("pluto did not add its interfaces\n" + self.log_tail())
            time.sleep(0.05)
        r = nsmod.run(
            [self._x("addconn"), "--config", str(conf), "--ctlsocket", str(self.ctl), "c"],
            s.netns,
            check=False,
        )
        (d / "addconn.out").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise PeerError(f"addconn failed: {r.stdout}{r.stderr}")
        r = self.whack("--rereadsecrets")
        if r.returncode != 0:
            raise PeerError(f"whack --rereadsecrets failed: {r.stdout}{r.stderr}")

    def _lsw_credentials(self) -> str:
        """Our certificate and key (as PKCS#12), the CA, intermediate and CRL into the NSS
        database; returns the conn lines that use them (libreswan IKEv1: RSA only)."""
        pki, nss = Path(self.spec.pki), f"sql:{self.dir / 'nss'}"
        steps = [["certutil", "-A", "-d", nss, "-n", "ca", "-t", "CT,,", "-i", str(pki / "ca.pem")]]
        if (pki / "im.pem").exists():
            steps.append(["certutil", "-A", "-d", nss, "-n", "im", "-t", ",,",
                          "-i", str(pki / "im.pem")])  # fmt: skip
        steps.append(["pk12util", "-i", str(pki / "own.p12"), "-d", nss, "-W", ""])
        if (pki / "crl.der").exists():
            steps.append(["crlutil", "-I", "-d", nss, "-i", str(pki / "crl.der")])
        for argv in steps:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
            if r.returncode != 0:
                raise PeerError(f"{' '.join(argv)}: {r.stdout}{r.stderr}")
        return "leftcert=own\n    leftsendcert=always\n    sendca=all\n    rightca=%any"

    def whack(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return nsmod.run(
            [self._x("whack"), "--ctlsocket", str(self.ctl), *args],
            self.spec.netns,
            check=False,
            timeout=timeout,
        )

    def initiate(self, timeout: float = 30) -> bool:
        try:
            r = self.whack("--initiate", "--name", "c", timeout=timeout)
        except subprocess.TimeoutExpired:
            (self.dir / "initiate.out").write_text(f"timeout after {timeout}s\n")
            return False
        (self.dir / "initiate.out").write_text(r.stdout + r.stderr)
        return r.returncode == 0

    def _states(self) -> str:
        if not self.alive():
            return ""
        r = self.whack("--showstates")
        (self.dir / "states.out").write_text(r.stdout + r.stderr)
        return r.stdout if r.returncode == 0 else ""

    def ike_established(self) -> bool:
        # 4.10 calls a Main Mode state "STATE_MAIN_R3 (IKE SA established)"
        return re.search(r"(IKE|ISAKMP) SA established", self._states()) is not None

    def established(self) -> bool:
        out = self._states()
        return (
            re.search(r"(IKE|ISAKMP) SA established", out) is not None
            and "IPsec SA established" in out
        )

    def stop(self) -> None:
        super().stop()
        # pluto leaves its IPv6 neighbour-discovery bypass policies behind; only those go
        if self.spec.netns:
            nsmod.run(
                ["ip", "-6", "-n", self.spec.netns, "xfrm", "policy", "deleteall"], check=False
            )

    def logs(self) -> list[Path]:
        names = (
            "pluto.log",
            "pluto.stdout",
            "addconn.out",
            "initiate.out",
            "states.out",
            "ipsec.conf",
        )
        return [self.dir / n for n in names if (self.dir / n).exists()]
