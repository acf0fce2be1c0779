"""Authentication for bench/load.py: pre-shared keys, or certificates made for the run.

`--auth rsa2048` / `--auth ecdsa256` give both sides of the load a certificate from one
root CA of the same key type (RSA-2048 with SHA-256, or P-256 with SHA-256), made with
`cryptography` by the test suite's PKI (tests/pki.py), so the bench and the tests share one
way of making certificates. The responder and the initiator each get an end-entity
certificate whose subject DN is their IKE identity; both send it always (no CR round to
depend on) and both check the other's chain against the CA and its DN against the
configured remote identity. Every initiator connection uses the same initiator
certificate: what is measured is the responder's work per handshake (its signature, the
peer's chain validated and its signature verified), not a directory of peers.

The text fragments here are the only place the bench's configurations differ by method, so
ikepriv and strongSwan get the same credentials in each run.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pki  # tests/pki.py: the test suite's certificate factory

PSK = "bench-psk-0123456789abcdef"
# method name -> (key kind of tests/pki.py, ikepriv's `auth`)
AUTHS: dict[str, tuple[str, str]] = {
    "psk": ("", "psk"),
    "rsa2048": ("rsa2048", "rsa-sig"),
    "ecdsa256": ("p256", "ecdsa-sig"),
}
CA_DN = "C=CH, O=ikepriv bench, CN=Bench Root CA"
DNS = {
    "responder": "C=CH, O=ikepriv bench, CN=responder.bench.example",
    "initiator": "C=CH, O=ikepriv bench, CN=initiator.bench.example",
}
# charon plugins certificate authentication needs besides the bench's PSK set
CHARON_CERT_PLUGINS = "pem pkcs1 pkcs8 x509 revocation constraints pubkey"


@dataclass(frozen=True)
class Side:
    """One side's files (certificate, PKCS#8 key at 0600, the CA) and its identity."""

    cert: Path
    key: Path
    ca: Path
    dn: str


@dataclass(frozen=True)
class Credentials:
    """The method and both sides' credentials; `None` stands for PSK everywhere."""

    auth: str
    responder: Side
    initiator: Side

    @property
    def ikepriv_auth(self) -> str:
        return AUTHS[self.auth][1]


def make(base: Path, auth: str) -> Credentials | None:
    """Fresh certificates for `auth` under `base` (None for "psk")."""
    kind = AUTHS[auth][0]
    if not kind:
        return None
    ca = pki.make_ca(CA_DN, kind, slot=20)
    sides = {}
    for role, dn in DNS.items():
        ee = pki.make_end_entity(ca, dn, sans=[dn.rsplit("CN=", 1)[1]], key_kind=kind,
                                 fresh_key=True)  # fmt: skip
        files = pki.write_credentials(base / f"pki-{auth}" / role, ee, ca)
        sides[role] = Side(files.cert, files.key, files.ca, dn)
    return Credentials(auth, sides["responder"], sides["initiator"])


def ikepriv_phase1(creds: Credentials | None) -> str:
    """The authentication lines of an ikepriv responder definition (TOML)."""
    if creds is None:
        return f'auth = "psk"\npsk = "{PSK}"\n'
    me, peer = creds.responder, creds.initiator
    return (
        f'auth = "{creds.ikepriv_auth}"\nlocal_id = "{me.dn}"\nremote_id = "{peer.dn}"\n'
        f'cert = "{me.cert}"\nkey = "{me.key}"\nca = ["{me.ca}"]\nsend_cert = "always"\n'
    )


def swan_install(creds: Credentials | None, role: str, d: Path) -> None:
    """Our certificate, key and the CA into the credential folders next to swanctl.conf
    (`swanctl --load-all --file` reads them from there)."""
    if creds is None:
        return
    side = creds.responder if role == "responder" else creds.initiator
    for sub, src in (("x509", side.cert), ("private", side.key), ("x509ca", side.ca)):
        (d / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, d / sub / src.name)


def swan_auth(creds: Credentials | None, role: str, local_id: str, remote_id: str) -> str:
    """A swanctl connection's local and remote sections (and send_cert): PSK with the given
    IDs, or our certificate and DN against the peer's DN."""
    if creds is None:
        return (
            f" local {{ auth = psk\n id = {local_id} }}\n"
            f" remote {{ auth = psk\n id = {remote_id} }}\n"
        )
    me = creds.responder if role == "responder" else creds.initiator
    peer = creds.initiator if role == "responder" else creds.responder
    return (
        " send_cert = always\n"
        f' local {{ auth = pubkey\n certs = {me.cert.name}\n id = "{me.dn}" }}\n'
        f' remote {{ auth = pubkey\n id = "{peer.dn}" }}\n'
    )


def swan_secrets(creds: Credentials | None) -> str:
    """The swanctl secrets section: the PSK, or nothing (the key is in private/)."""
    return f'secrets {{ ike-any {{ secret = "{PSK}" }} }}\n' if creds is None else ""


def charon_plugins(base: str, creds: Credentials | None) -> str:
    return base if creds is None else f"{base} {CHARON_CERT_PLUGINS}"
