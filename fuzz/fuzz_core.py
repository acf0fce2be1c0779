"""Atheris harness for the whole negotiation core (ikepriv.child_negotiator.core.engine).

Each input is replayed against a fresh, deterministic pair of cores (initiator and
responder, pre-shared keys or ECDSA P-256 certificates, NAT-T on) advanced to one of several
points of a Main Mode or Aggressive Mode + Quick Mode exchange: before the first message,
after the second, after the fourth, mid Quick Mode, established. The input then supplies
datagrams, delivered to one core as DatagramIn from its peer's address; whatever that core
sends goes on to the other core, requests are answered like the parent would, and timers
run far ahead (retransmissions, half-open expiry, keepalives, DPD, rekeys).

Invariants, on every input: no exception escapes the core; every message it emits passes
the IPC schema (the parent would kill a child sending anything else); the tables stay under
the bounds of the core's Settings. Endless loops are caught by atheris' -timeout.

Input layout (see split_input): byte 0 picks the stage, byte 1 holds flags (which core
receives, from port 4500, from another source port, run timers), then up to MAX_DATAGRAMS
datagrams, each a 2-byte big-endian length and that many bytes.

    .venv/bin/python fuzz/make_core_corpus.py     # (re)build fuzz/corpus/core/
    .venv/bin/python fuzz/fuzz_core.py -max_total_time=60 -timeout=10 fuzz/corpus/core
"""

from __future__ import annotations

import datetime
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports(include=["ikepriv"]):
        import ikepriv.child_negotiator.core.engine
        import ikepriv.crypto.oakley
        import ikepriv.isakmp  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from harness.core_sim import (  # found through the path set above
    LEFT,
    RIGHT,
    IPAddress,
    esp_proposal,
    ike_proposal,
    phase1_def,
    phase2_def,
    selector,
)
from harness.signer import sign_request, signing_key

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot, Credentials
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.crypto.oakley import skeyid_psk
from ikepriv.ipc import schema
from ikepriv.ipc.messages import (
    PARENT_NONCE_BYTES,
    DatagramIn,
    DatagramOut,
    DpdSettings,
    Endpoint,
    ErrorCode,
    Identity,
    InitiateCommand,
    NonceReply,
    NonceRequest,
    Phase,
    Phase2Commit,
    Phase2Install,
    Phase2Remove,
    ResultReply,
    SendCert,
    SignatureReply,
    SignatureRequest,
    SkeyidReply,
    SkeyidRequest,
    SpiReply,
    SpiRequest,
)
from ikepriv.ipc.schema import Message
from ikepriv.isakmp.constants import (
    NATT_KEEPALIVE,
    NATT_PORT,
    AuthMethod,
    EncapsulationMode,
    ExchangeType,
    GroupId,
    IdType,
)
from ikepriv.parent_kernel.signer import SigningKey

# LEFT (192.0.2.1) is the initiator, RIGHT (192.0.2.2) the responder, as in core_sim.
PSK = b"fuzzing is not a secret"
MAX_DATAGRAMS = 6
MAX_DATAGRAM = 4096
MAX_EVENTS = 600  # per input: bounds the ping-pong between the cores
TIMER_STEPS = (1.0, 3.0, 10.0, 30.0, 61.0, 130.0, 700.0, 4000.0, 30000.0)
SIDES = ("initiator", "responder")
SETTINGS = Settings()


@dataclass(frozen=True)
class Stage:
    name: str
    mode: ExchangeType
    delivered: int | None  # datagrams delivered before the input; None: run to the end
    auth: AuthMethod = AuthMethod.PRE_SHARED_KEY


ECDSA = AuthMethod.ECDSA_SHA256_P256


STAGES: tuple[Stage, ...] = (
    Stage("mm-start", ExchangeType.IDENTITY_PROTECTION, 0),
    Stage("mm-after-mm2", ExchangeType.IDENTITY_PROTECTION, 2),
    Stage("mm-after-mm4", ExchangeType.IDENTITY_PROTECTION, 4),
    Stage("mm-mid-qm", ExchangeType.IDENTITY_PROTECTION, 7),
    Stage("mm-established", ExchangeType.IDENTITY_PROTECTION, None),
    Stage("am-start", ExchangeType.AGGRESSIVE, 0),
    Stage("am-after-am2", ExchangeType.AGGRESSIVE, 2),
    Stage("am-mid-qm", ExchangeType.AGGRESSIVE, 4),
    Stage("am-established", ExchangeType.AGGRESSIVE, None),
    # signatures: CERT, CR and SIG payloads, certificate validation, SignatureRequest
    Stage("mm-sig-start", ExchangeType.IDENTITY_PROTECTION, 0, ECDSA),
    Stage("mm-sig-after-mm4", ExchangeType.IDENTITY_PROTECTION, 4, ECDSA),
    Stage("mm-sig-established", ExchangeType.IDENTITY_PROTECTION, None, ECDSA),
    Stage("am-sig-start", ExchangeType.AGGRESSIVE, 0, ECDSA),
    Stage("am-sig-after-am2", ExchangeType.AGGRESSIVE, 2, ECDSA),
    Stage("am-sig-established", ExchangeType.AGGRESSIVE, None, ECDSA),
)

# Flags (byte 1 of the input).
TO_INITIATOR = 0x01  # else the datagrams go to the responder
FROM_NATT = 0x02  # sent from/to port 4500 (natt flag set)
OTHER_PORT = 0x04  # from a source port the peer never used
RUN_TIMERS = 0x08


# ---------------------------------------------------------------------------- set-up


# ---------------------------------------------------------------------------- certificates

CERT_START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
WALL = (CERT_START + datetime.timedelta(days=30)).timestamp()  # the cores' wall clock


Issuer = tuple[x509.Name, ec.EllipticCurvePrivateKey]


def _cert(cn: str, key: ec.EllipticCurvePrivateKey, ca: Issuer | None) -> x509.Certificate:
    """Deterministic (derived key, fixed dates and serial, deterministic ECDSA): the seed
    corpus does not change when it is rebuilt."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    issuer, signer = ca if ca is not None else (name, key)
    usage = x509.KeyUsage(True, False, False, False, False, ca is None, ca is None, False, False)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(cn.encode(), "big") % (1 << 64) + 1)
        .not_valid_before(CERT_START)
        .not_valid_after(CERT_START + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
        .sign(signer, hashes.SHA256(), ecdsa_deterministic=True)
    )


_CA_KEY = ec.derive_private_key(0xCA, ec.SECP256R1())
CA = _cert("fuzz CA", _CA_KEY, None)
KEYS = {side: ec.derive_private_key(i + 0x100, ec.SECP256R1()) for i, side in enumerate(SIDES)}
CERTS = {side: _cert(f"fuzz {side}", KEYS[side], (CA.subject, _CA_KEY)) for side in SIDES}


def dn_of(side: str) -> Identity:
    return Identity(IdType.DER_ASN1_DN, CERTS[side].subject.public_bytes())


def credentials(side: str) -> Credentials:
    der = CERTS[side].public_bytes(serialization.Encoding.DER)
    return Credentials((der,), (CA.public_bytes(serialization.Encoding.PEM),))


def config(
    mode: ExchangeType,
    local: IPAddress,
    remote: IPAddress,
    auth: AuthMethod = AuthMethod.PRE_SHARED_KEY,
) -> ConfigSnapshot:
    """One tunnel, transport mode between the gateways, NAT-T and DPD on, PFS; with a
    signature method, each side's certificate (by DN) from one CA, sent when asked."""
    me, peer = ("initiator", "responder") if local == LEFT else ("responder", "initiator")
    signed = auth is not AuthMethod.PRE_SHARED_KEY
    ids = {"local_id": dn_of(me), "remote_id": dn_of(peer)} if signed else {}
    p1 = phase1_def(
        1,
        local,
        remote,
        (ike_proposal(),),
        name="fuzz",
        mode=mode,
        nat_t=True,
        dpd=DpdSettings(True, 10, 30),
        auth_method=auth,
        send_cert=SendCert.IF_ASKED,
        **ids,  # type: ignore[arg-type]
    )
    p2 = phase2_def(
        1,
        1,
        selector(f"{local}/32"),
        selector(f"{remote}/32"),
        (esp_proposal(pfs=GroupId.MODP_1024),),
        EncapsulationMode.TRANSPORT,
        name="fuzz-2",
    )
    return ConfigSnapshot.of([p1], [p2], credentials={1: credentials(me)} if signed else None)


@dataclass
class Parent:
    """Answers requests like the real parent would (OK, real SKEYID, real signatures,
    fresh SPIs)."""

    signer: SigningKey  # the parent's own (parent_kernel/signer.py)
    next_spi: int = 0x1000
    next_nonce: int = 0

    def answer(self, msg: Message) -> Message | None:
        if isinstance(msg, NonceRequest):  # deterministic stand-ins for the parent's nonces
            self.next_nonce += 1
            nonce = self.next_nonce.to_bytes(PARENT_NONCE_BYTES, "big")
            return NonceReply(msg.request_id, ErrorCode.OK, self.next_nonce, nonce)
        if isinstance(msg, SkeyidRequest):
            if msg.nonce_id:
                ni, nr, ours = msg.nonce_id.to_bytes(PARENT_NONCE_BYTES, "big"), msg.peer_nonce, b""
            else:
                ni, nr = msg.peer_nonce, b"\x5a" * PARENT_NONCE_BYTES
                ours = nr
            return SkeyidReply(msg.request_id, ErrorCode.OK, skeyid_psk(msg.prf, PSK, ni, nr), ours)
        if isinstance(msg, SignatureRequest):
            # deterministic: an input replays against a pair rebuilt from scratch
            signature = sign_request(msg, self.signer, deterministic=True)
            return SignatureReply(msg.request_id, ErrorCode.OK, signature)
        if isinstance(msg, SpiRequest):
            self.next_spi += 1
            return SpiReply(msg.request_id, ErrorCode.OK, self.next_spi)
        if isinstance(msg, Phase2Install | Phase2Commit | Phase2Remove):
            return ResultReply(msg.request_id, ErrorCode.OK, "")
        return None


@dataclass
class Pair:
    cores: dict[str, Negotiator]
    parents: dict[str, Parent]
    now: float = 1000.0
    queue: deque[tuple[str, Message]] = field(default_factory=deque)
    delivered: int = 0
    held: list[tuple[str, DatagramIn]] = field(default_factory=list)  # not yet delivered
    log: list[tuple[str, DatagramIn]] = field(default_factory=list)  # delivered, in order
    emitted: list[tuple[str, Message]] = field(default_factory=list)
    events: int = 0

    def peer(self, side: str) -> str:
        return SIDES[1] if side == SIDES[0] else SIDES[0]

    def route(self, side: str, actions: list[Message], limit: int | None) -> None:
        for action in actions:
            self.emitted.append((side, action))
            if isinstance(action, DatagramOut):
                if action.data == NATT_KEEPALIVE:
                    continue  # the receiving parent drops keepalives
                inbound = DatagramIn(action.remote, action.local, action.natt, action.data)
                target = self.peer(side)
                if limit is not None and self.delivered >= limit:
                    self.held.append((target, inbound))
                else:
                    self.delivered += 1
                    self.log.append((target, inbound))
                    self.queue.append((target, inbound))
                continue
            reply = self.parents[side].answer(action)
            if reply is not None:
                self.queue.append((side, reply))

    def pump(self, limit: int | None = None) -> None:
        while self.queue and self.events < MAX_EVENTS:
            self.events += 1
            side, message = self.queue.popleft()
            self.route(side, self.cores[side].handle(message, self.now), limit)

    def timers(self, until: float) -> None:
        for step in TIMER_STEPS:
            self.now += step
            for side in SIDES:
                core = self.cores[side]
                deadline = core.next_deadline()
                # a few rounds: timers may start exchanges whose first steps are due at once
                for _ in range(4):
                    if deadline is None or deadline > self.now:
                        break
                    self.route(side, core.handle_timers(self.now), None)
                    deadline = core.next_deadline()
            self.pump()
            if self.now >= until:
                return


def build(stage: Stage) -> Pair:
    """A fresh pair at `stage`; the same every time (seeded randomness, fixed clock)."""
    rng = random.Random(stage.name)  # noqa: S311 - replayable on purpose
    cores = {
        "initiator": Negotiator(
            config(stage.mode, LEFT, RIGHT, stage.auth),
            1000.0,
            random.Random(rng.random()).randbytes,  # noqa: S311
            wall_clock=lambda: WALL,
        ),
        "responder": Negotiator(
            config(stage.mode, RIGHT, LEFT, stage.auth),
            1000.0,
            random.Random(rng.random()).randbytes,  # noqa: S311
            wall_clock=lambda: WALL,
        ),
    }
    parents = {side: Parent(signing_key(ECDSA, KEYS[side], dn_of(side))) for side in SIDES}
    pair = Pair(cores, parents)
    pair.route(
        "initiator",
        cores["initiator"].handle(InitiateCommand(Phase.PHASE2, 1, None, None), pair.now),
        stage.delivered,
    )
    pair.pump(stage.delivered)
    pair.emitted.clear()
    return pair


# ---------------------------------------------------------------------------- the input


@dataclass(frozen=True)
class Input:
    stage: Stage
    flags: int
    datagrams: tuple[bytes, ...]


def split_input(data: bytes) -> Input | None:
    if len(data) < 2:
        return None
    stage = STAGES[data[0] % len(STAGES)]
    flags = data[1]
    datagrams: list[bytes] = []
    pos = 2
    while pos + 2 <= len(data) and len(datagrams) < MAX_DATAGRAMS:
        size = int.from_bytes(data[pos : pos + 2], "big") % (MAX_DATAGRAM + 1)
        pos += 2
        chunk = data[pos : pos + size]
        pos += len(chunk)
        if chunk:
            datagrams.append(chunk)
    return Input(stage, flags, tuple(datagrams))


def join_input(stage: int, flags: int, datagrams: list[bytes]) -> bytes:
    """The inverse of split_input (for the seed generator and the tests)."""
    out = bytearray([stage, flags])
    for d in datagrams[:MAX_DATAGRAMS]:
        out += len(d).to_bytes(2, "big") + d
    return bytes(out)


def endpoints(flags: int) -> tuple[str, Endpoint, Endpoint, bool]:
    """(receiving side, its local endpoint, the sender's endpoint, natt)."""
    natt = bool(flags & FROM_NATT)
    port = NATT_PORT if natt else 500
    target = "initiator" if flags & TO_INITIATOR else "responder"
    me, peer = (LEFT, RIGHT) if target == "initiator" else (RIGHT, LEFT)
    peer_port = 40000 + (flags >> 4) if flags & OTHER_PORT else port
    return target, Endpoint(me, port), Endpoint(peer, peer_port), natt


def check_bounds(core: Negotiator) -> None:
    s = core.settings
    assert len(core.half_open) <= s.half_open_max, "half-open table over its bound"
    assert len(core.sas.by_tunnel) <= s.half_open_max + 16, "ISAKMP SA table unbounded"
    assert len(core.sas.children) <= 64, "IPsec SA table unbounded"
    assert len(core._waiting) <= 256, "requests waiting for replies unbounded"
    for sa in core.sas.by_tunnel.values():
        assert len(sa.exchanges) <= 5 * s.quick_mode_max_parallel, "Quick Mode table unbounded"
        assert len(sa.finished_mids) <= s.finished_message_ids, "message ID memory unbounded"
        assert len(sa.extensions) <= 8, "extensions unbounded"
        if sa.iv is not None:
            assert len(sa.iv.active_exchanges()) <= s.quick_mode_max_parallel + 4


def run(data: bytes, on_pair: Callable[[Pair], None] | None = None) -> Pair | None:
    parsed = split_input(data)
    if parsed is None:
        return None
    pair = build(parsed.stage)
    target, local, remote, natt = endpoints(parsed.flags)
    for datagram in parsed.datagrams:
        message = DatagramIn(local, remote, natt, datagram)
        pair.route(target, pair.cores[target].handle(message, pair.now), None)
        pair.pump()
    if parsed.flags & RUN_TIMERS:
        pair.timers(pair.now + 40000.0)
    for side, message in pair.emitted:
        try:
            schema.encode(message)
        except Exception as exc:
            raise AssertionError(
                f"{side} emitted an invalid {type(message).__name__}: {exc}"
            ) from exc
    for side in SIDES:
        check_bounds(pair.cores[side])
    if on_pair is not None:
        on_pair(pair)
    return pair


def TestOneInput(data: bytes) -> None:
    run(data)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
