"""Every definition the model accepts survives TOML -> model -> DB -> model -> TOML unchanged,
and reaches the child as the IPC message the parent built from it.

The strategies draw values more loosely than the rules allow (ports without TCP, autostart
with %any, margins past the lifetime, transport mode with wide subnets, ...) and let the
model's constructors decide, so what is tested is "whatever the constructors accept round
trips", not only what a sample file holds.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tempfile
from pathlib import Path
from typing import TypeVar

import pki
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from ikepriv.config import dump_definitions, load_definitions
from ikepriv.config.errors import DefinitionError
from ikepriv.config.identity import Identity, identity_for_address, parse_identity
from ikepriv.config.model import (
    BOUNDS,
    MAX_PSK_BYTES,
    PORT_PROTOCOLS,
    Definitions,
    DpdAction,
    Fragmentation,
    IPAddress,
    IPNetwork,
    Phase1Definition,
    Phase2Definition,
    SendCert,
    check_binding,
)
from ikepriv.config.proposals import (
    _AEAD,
    _AH_TRANSFORM,
    _ESP_CIPHER_NAME,
    _GROUP_NAME,
    _HASH_NAME,
    _IKE_CIPHER_NAME,
    MAX_PROPOSALS,
    AhProposal,
    EspProposal,
    IkeProposal,
)
from ikepriv.config.store import TunnelDB
from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import decode_any, encode
from ikepriv.isakmp.constants import (
    AuthMethod,
    EncapsulationMode,
    ExchangeType,
    GroupId,
    IdType,
)
from ikepriv.parent_kernel.definitions import DbView

_Def = TypeVar("_Def", Phase1Definition, Phase2Definition)


def accepted(build: type[_Def], **fields: object) -> _Def:
    """The definition if the model accepts these values; otherwise the example is rejected."""
    try:
        return build(**fields)  # type: ignore[arg-type]
    except DefinitionError:
        reject()


names = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
dns_names = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
groups = st.sampled_from(sorted(_GROUP_NAME))
integrities = st.sampled_from(sorted(_AH_TRANSFORM))


def ranged(key: str) -> st.SearchStrategy[int]:
    return st.integers(*BOUNDS[key])


def addresses(version: int) -> st.SearchStrategy[IPAddress]:
    return st.ip_addresses(v=4 if version == 4 else 6).filter(
        lambda a: not (a.is_unspecified or a.is_multicast)
    )


def networks(version: int) -> st.SearchStrategy[IPNetwork]:
    return st.tuples(
        st.ip_addresses(v=4 if version == 4 else 6), st.integers(0, 32 if version == 4 else 128)
    ).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))


identities: st.SearchStrategy[Identity] = st.one_of(
    st.one_of(addresses(4), addresses(6)).map(identity_for_address),
    dns_names.map(lambda n: Identity(IdType.FQDN, n)),  # also "1.2.3.4" as a DNS name
    st.tuples(st.from_regex(r"[A-Za-z0-9.!#$%&'*+/?^_`{|}~-]{1,20}", fullmatch=True),
              dns_names).map(lambda t: parse_identity(f"{t[0]}@{t[1]}")),
    _LABEL.map(lambda cn: parse_identity(f"C=CH, O=Example Org, CN={cn}")),
)  # fmt: skip

ike_proposals = st.builds(
    lambda cipher, h, g: IkeProposal(cipher[0], cipher[1], h, g),
    st.sampled_from(sorted(_IKE_CIPHER_NAME, key=str)),
    st.sampled_from(sorted(_HASH_NAME)),
    groups,
)


def esp_proposals(group: GroupId | None) -> st.SearchStrategy[EspProposal]:
    return st.builds(
        lambda cipher, integ, pfs, esn: EspProposal(
            cipher[0], cipher[1], None if cipher[0] in _AEAD else integ, group if pfs else None, esn
        ),
        st.sampled_from(sorted(_ESP_CIPHER_NAME, key=str)),
        integrities,
        st.booleans(),
        st.booleans(),
    )


def ah_proposals(group: GroupId | None) -> st.SearchStrategy[AhProposal]:
    return st.builds(
        lambda integ, pfs, esn: AhProposal(
            _AH_TRANSFORM[integ], integ, group if pfs else None, esn
        ),
        integrities,
        st.booleans(),
        st.booleans(),
    )


def lifetime_and_margin(key: str) -> st.SearchStrategy[tuple[int, int]]:
    return ranged(key).flatmap(lambda life: st.tuples(st.just(life), st.integers(0, life + 10)))


_FILES: list[pki.CredentialFiles] = []


def credential_files() -> pki.CredentialFiles:
    """One set of real RSA credential files for the session (the daemon's view reads them)."""
    if not _FILES:
        ca = pki.make_ca()
        ee = pki.make_end_entity(ca, "C=CH, O=ikepriv test, CN=gw-a")
        where = Path(tempfile.mkdtemp(prefix="ikepriv-roundtrip-"))
        _FILES.append(pki.write_credentials(where, ee, ca, crl=pki.make_crl(ca)))
    return _FILES[0]


@st.composite
def authentication(draw: st.DrawFn) -> dict[str, object]:
    """A PSK, or RSA signatures with real files (ECDSA's method comes from the key)."""
    if draw(st.booleans()):
        return {"auth": AuthMethod.PRE_SHARED_KEY,
                "psk": draw(st.binary(min_size=1, max_size=MAX_PSK_BYTES))}  # fmt: skip
    files = credential_files()
    return {
        "auth": AuthMethod.RSA_SIGNATURES,
        "psk": None,
        "cert": str(files.cert),
        "key": str(files.key),
        "ca": (str(files.ca),),
        "crl": draw(st.sampled_from([(), (str(files.crl),)])),
    }


@st.composite
def phase1s(draw: st.DrawFn) -> Phase1Definition:
    version = draw(st.sampled_from([4, 6]))
    local = draw(addresses(version))
    any_peer = draw(st.booleans())
    remote = None if any_peer else draw(addresses(version))
    lifetime, margin = draw(lifetime_and_margin("phase1.lifetime"))
    dpd_delay = draw(st.one_of(st.just(0), ranged("dpd_delay")))
    nat_traversal = draw(st.booleans())
    return accepted(
        Phase1Definition,
        name=draw(names),
        local_addr=local,
        remote_addr=remote,
        local_id=draw(identities),
        remote_id=draw(identities),
        mode=draw(st.sampled_from([ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE])),
        **draw(authentication()),
        send_cert=draw(st.sampled_from(SendCert)),
        fragmentation=draw(st.sampled_from(Fragmentation)),
        fragment_size=draw(ranged("fragment_size")),
        proposals=tuple(
            draw(st.lists(ike_proposals, min_size=1, max_size=MAX_PROPOSALS, unique=True))
        ),
        lifetime=lifetime,
        rekey_margin=margin,
        keying_tries=draw(ranged("keying_tries")),
        dpd_delay=dpd_delay,
        dpd_timeout=draw(st.integers(max(dpd_delay - 5, 10), BOUNDS["dpd_timeout"][1])),
        dpd_action=draw(st.sampled_from(DpdAction)),
        nat_traversal=nat_traversal,
        autostart=draw(st.booleans()),
        encap=nat_traversal and draw(st.booleans()),
        rekey=draw(st.booleans()),
    )


@st.composite
def phase2s(draw: st.DrawFn, p1: Phase1Definition) -> Phase2Definition:
    version = p1.local_addr.version
    transport = draw(st.booleans())
    if transport and draw(st.integers(0, 9)):
        host = 32 if version == 4 else 128
        peer = p1.remote_addr or draw(addresses(version))
        local = ipaddress.ip_network(f"{p1.local_addr}/{host}")
        remote = ipaddress.ip_network(f"{peer}/{host}")
    else:
        local, remote = draw(networks(version)), draw(networks(version))
    protocol = draw(st.one_of(st.sampled_from(sorted(PORT_PROTOCOLS)), ranged("protocol")))
    ports = st.one_of(st.just(0), ranged("port"))
    group = draw(st.one_of(st.none(), groups))
    esp: tuple[EspProposal, ...] = ()
    ah: tuple[AhProposal, ...] = ()
    if draw(st.booleans()):
        esp = tuple(draw(st.lists(esp_proposals(group), min_size=1, max_size=8, unique=True)))
    else:
        ah = tuple(draw(st.lists(ah_proposals(group), min_size=1, max_size=8, unique=True)))
    lifetime, margin = draw(lifetime_and_margin("phase2.lifetime"))
    return accepted(
        Phase2Definition,
        name=draw(names),
        phase1=p1.name,
        local_subnet=local,
        remote_subnet=remote,
        protocol=int(protocol),
        local_port=draw(ports),
        remote_port=draw(ports),
        esp_proposals=esp,
        ah_proposals=ah,
        mode=EncapsulationMode.TRANSPORT if transport else EncapsulationMode.TUNNEL,
        lifetime=lifetime,
        lifetime_kb=draw(st.one_of(st.just(0), ranged("phase2.lifetime_kb"))),
        rekey_margin=margin,
        autostart=draw(st.booleans()),
        rekey=draw(st.booleans()),
    )


definitions = phase1s().flatmap(
    lambda p1: st.lists(phase2s(p1), max_size=2, unique_by=lambda d: d.name).map(
        lambda p2: Definitions((p1,), tuple(p2))
    )
)


def _unnumbered(defs: Definitions) -> Definitions:
    return Definitions(
        tuple(dataclasses.replace(d, number=None) for d in defs.phase1),
        tuple(dataclasses.replace(d, number=None) for d in defs.phase2),
    )


@settings(max_examples=150, deadline=None)
@given(definitions)
def test_every_definition_survives_toml_db_toml(defs: Definitions) -> None:
    for p2 in defs.phase2:  # the rules between a phase 2 and its phase 1
        try:
            check_binding(p2, defs.phase1[0])
        except DefinitionError:
            reject()
    text = dump_definitions(defs)
    loaded = load_definitions(text, "<written>")
    assert loaded == defs
    with tempfile.TemporaryDirectory() as tmp:
        with TunnelDB(Path(tmp) / "t.db") as db:
            stored = db.put(loaded)
        with TunnelDB(Path(tmp) / "t.db", create=False, readonly=True) as db:
            read = db.read_all()
            assert read.bad == ()
            assert (read.phase1, read.phase2) == (stored.phase1, stored.phase2)
            assert db.phase1_definitions() == stored.phase1  # the strict readers agree
            assert db.phase2_definitions() == stored.phase2
            view = DbView.load(db)
    back = _unnumbered(Definitions(read.phase1, read.phase2))
    assert back == defs
    assert dump_definitions(back) == text
    # and the child gets every one of them, unchanged by the wire
    assert len(view.ipc_phase1) == len(defs.phase1)
    assert len(view.ipc_phase2) == len(defs.phase2)
    for msg in view.config_messages():
        if isinstance(msg, m.ConfigPhase1 | m.ConfigPhase2 | m.ConfigCredential):
            assert decode_any(encode(msg)) == msg
