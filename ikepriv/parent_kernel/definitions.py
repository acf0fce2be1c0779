"""The daemon's view of the tunnel database, and the secret-free copy the child gets.

The parent vets against the database definitions themselves (`DbView`, config model
objects with their pre-shared keys); the child receives `Phase1Def`/`Phase2Def` built
here, which carry everything but the secrets. Keeping both in one place makes sure the
child never negotiates a definition the parent would not accept, and vice versa.

Every definition here is valid by construction: the model's constructors check it, also
when the store decodes it from a (possibly hand-edited) row; a row that breaks a rule never
becomes a definition and is logged with its field. What is left to check here spans
definitions: a phase 2 against its phase 1 (`check_binding`), and the IPC bounds.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from ikepriv.config.credentials import read_credential
from ikepriv.config.model import (
    DpdAction,
    Fragmentation,
    Phase1Definition,
    Phase2Definition,
    SendCert,
    check_binding,
)
from ikepriv.config.model import Identity as ConfigIdentity
from ikepriv.config.store import TunnelDB
from ikepriv.ipc import messages as m
from ikepriv.ipc.interning import Interner
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.schema import Message
from ikepriv.isakmp.constants import IdType, ProtocolId
from ikepriv.parent_kernel.signer import SigningKey

log = logging.getLogger("ikepriv.parent")

_ADDRESS_IDS: Final = frozenset({IdType.IPV4_ADDR, IdType.IPV6_ADDR})
_TEXT_IDS: Final = frozenset({IdType.FQDN, IdType.USER_FQDN})
_MAX_KB: Final = 0xFFFFFFFF
_DPD_ACTION: Final[dict[DpdAction, m.DpdAction]] = {
    DpdAction.CLEAR: m.DpdAction.CLEAR,
    DpdAction.HOLD: m.DpdAction.HOLD,
    DpdAction.RESTART: m.DpdAction.RESTART,
}
_SEND_CERT: Final[dict[SendCert, m.SendCert]] = {
    SendCert.ALWAYS: m.SendCert.ALWAYS,
    SendCert.IF_ASKED: m.SendCert.IF_ASKED,
    SendCert.NEVER: m.SendCert.NEVER,
}
_FRAGMENTATION: Final[dict[Fragmentation, m.Fragmentation]] = {
    Fragmentation.YES: m.Fragmentation.YES,
    Fragmentation.ACCEPT: m.Fragmentation.ACCEPT,
    Fragmentation.FORCE: m.Fragmentation.FORCE,
    Fragmentation.NO: m.Fragmentation.NO,
}

Credential = tuple[m.CredentialKind, int, bytes]
"""(kind, index within the kind, the file's bytes): one ConfigCredential of a definition."""


class SnapshotError(ValueError):
    """A stored definition cannot be expressed in the IPC catalogue (it stays unusable)."""


_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")
_IA5_OIDS = frozenset({NameOID.EMAIL_ADDRESS, NameOID.DOMAIN_COMPONENT})


def _printable(attr: x509.NameAttribute[str | bytes]) -> x509.NameAttribute[str | bytes]:
    """An attribute as strongSwan and libreswan encode a configured DN: PrintableString
    when the value allows it (else UTF8String). libreswan re-encodes the peer's configured
    ID from its own configuration when it checks an Aggressive Mode HASH_I, so ours must be
    byte-identical to that encoding (found in the real-kernel interop)."""
    value = attr.value
    if attr.oid in _IA5_OIDS or not isinstance(value, str) or not _PRINTABLE.fullmatch(value):
        return attr
    return x509.NameAttribute(attr.oid, value, _type=_ASN1Type.PrintableString)


def identity_to_ipc(ident: ConfigIdentity) -> m.Identity:
    """The ID payload data of a configured identity (RFC 2407 4.6.2)."""
    if ident.type in _ADDRESS_IDS:
        return m.Identity(ident.type, ipaddress.ip_address(ident.value).packed)
    if ident.type in _TEXT_IDS:
        return m.Identity(ident.type, ident.value.encode("ascii"))
    if ident.type is IdType.DER_ASN1_DN:
        parsed = x509.Name.from_rfc4514_string(re.sub(r",\s+", ",", ident.value))
        # written in the usual "C=.., O=.., CN=.." order, which is the DER order; RFC 4514
        # strings list the last RDN first, so the parser reversed it
        rdns = [x509.RelativeDistinguishedName([_printable(a) for a in rdn])
                for rdn in reversed(parsed.rdns)]  # fmt: skip
        return m.Identity(ident.type, x509.Name(rdns).public_bytes())
    raise SnapshotError(f"identity type {ident.type.name} is not supported")


def _phase1_to_ipc(d: Phase1Definition, number: int) -> m.Phase1Def:
    proposals = tuple(
        m.IkeProposal(p.encryption, p.key_length or 0, p.hash, p.group, d.lifetime)
        for p in d.proposals
    )
    if len(proposals) > m.MAX_PROPOSALS:
        log.warning("phase 1 %d: only the first %d proposals are offered", number,
                    m.MAX_PROPOSALS)  # fmt: skip
        proposals = proposals[: m.MAX_PROPOSALS]
    return m.Phase1Def(
        number=number,
        name=d.name,
        local_addr=d.local_addr,
        remote_addr=d.remote_addr,
        local_id=identity_to_ipc(d.local_id),
        remote_id=identity_to_ipc(d.remote_id),
        mode=d.mode,
        auth_method=d.auth,
        proposals=proposals,
        dpd=m.DpdSettings(
            d.dpd_delay > 0,
            min(d.dpd_delay, 0xFFFF),
            min(d.dpd_timeout, 0xFFFF),
            _DPD_ACTION[d.dpd_action],
        ),
        nat_t=d.nat_traversal,
        encap=d.encap,
        rekey=d.rekey,
        rekey_margin=d.rekey_margin,
        send_cert=_SEND_CERT[d.send_cert],
        fragmentation=_FRAGMENTATION[d.fragmentation],
        fragment_size=d.fragment_size,
    )


def _credentials(d: Phase1Definition) -> tuple[Credential, ...]:
    """The cert, ca and crl files of a signature definition as raw bytes, for the child.

    Not parsed here: certificates and CRLs are parsed only in the sandboxed child. Read
    again at every load, so a renewed certificate or CRL takes effect with the next reload.
    """
    out: list[Credential] = []
    if d.cert is not None:
        out.append((m.CredentialKind.OWN_CERT, 0, read_credential("cert", d.cert)))
    out += [(m.CredentialKind.TRUST_ANCHOR, i, read_credential("ca", path))
            for i, path in enumerate(d.ca)]  # fmt: skip
    out += [(m.CredentialKind.CRL, i, read_credential("crl", path))
            for i, path in enumerate(d.crl)]  # fmt: skip
    return tuple(out)


def _shared(d: Phase2Definition, interner: Interner) -> Phase2Definition:
    """`d` with its subnets and proposals shared with equal ones of other definitions."""
    return dataclasses.replace(
        d,
        local_subnet=interner.one(d.local_subnet),
        remote_subnet=interner.one(d.remote_subnet),
        esp_proposals=interner.one(d.esp_proposals),
        ah_proposals=interner.one(d.ah_proposals),
        extra_local_subnets=interner.one(d.extra_local_subnets),
        extra_remote_subnets=interner.one(d.extra_remote_subnets),
    )


def _phase2_to_ipc(d: Phase2Definition, number: int, phase1_number: int) -> m.Phase2Def:
    kb = min(d.lifetime_kb, _MAX_KB)
    esp = ProtocolId.IPSEC_ESP
    proposals = [
        m.Phase2Proposal(esp, p.transform, p.key_length or 0, p.integrity, p.group, d.lifetime, kb)
        for p in d.esp_proposals
    ] + [
        m.Phase2Proposal(ProtocolId.IPSEC_AH, p.transform, 0, p.integrity, p.group, d.lifetime, kb)
        for p in d.ah_proposals
    ]
    if len(proposals) > m.MAX_PROPOSALS:
        log.warning("phase 2 %d: only the first %d proposals are offered", number,
                    m.MAX_PROPOSALS)  # fmt: skip
        proposals = proposals[: m.MAX_PROPOSALS]
    return m.Phase2Def(
        number=number,
        phase1_number=phase1_number,
        name=d.name,
        local=m.SelectorSide(d.local_subnet, d.protocol, d.local_port),
        remote=m.SelectorSide(d.remote_subnet, d.protocol, d.remote_port),
        proposals=tuple(proposals),
        mode=d.mode,
        rekey=d.rekey,
        rekey_margin=d.rekey_margin,
        extra_local=d.extra_local_subnets,
        extra_remote=d.extra_remote_subnets,
    )


@dataclass(frozen=True)
class DbView:
    """One consistent read of the database: definitions by number, and their IPC form.

    Definitions that cannot be expressed for the child are left out of both (and logged):
    the parent never vets a request against a definition the child could not have had.
    """

    generation: int = 0
    phase1: MappingProxyType[int, Phase1Definition] = field(
        default_factory=lambda: MappingProxyType({})
    )
    phase2: MappingProxyType[int, Phase2Definition] = field(
        default_factory=lambda: MappingProxyType({})
    )
    phase2_parent: MappingProxyType[int, int] = field(default_factory=lambda: MappingProxyType({}))
    ipc_phase1: tuple[m.Phase1Def, ...] = ()
    ipc_phase2: tuple[m.Phase2Def, ...] = ()
    # signature definitions: the files the child gets, and our keys, which it never gets
    credentials: MappingProxyType[int, tuple[Credential, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    signers: MappingProxyType[int, SigningKey] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        generation: int,
        phase1: Iterable[Phase1Definition],
        phase2: Iterable[Phase2Definition],
    ) -> DbView:
        """The view of valid definitions (the model checked each when it was built).

        What is left to check here is what spans definitions: a phase 2 and its phase 1,
        and whether the child can be told the definition.
        """
        p1: dict[int, Phase1Definition] = {}
        ipc1: list[m.Phase1Def] = []
        by_name: dict[str, int] = {}
        credentials: dict[int, tuple[Credential, ...]] = {}
        signers: dict[int, SigningKey] = {}
        for d in phase1:
            if d.number is None:
                continue
            try:
                ipc = _phase1_to_ipc(d, d.number)
                if d.uses_signatures:
                    # a file that cannot be used makes this definition unusable (the
                    # CredentialError names the field), never the others
                    credentials[d.number] = _credentials(d)
                    signers[d.number] = SigningKey.load(d, ipc.local_id)
            except (ValueError, IpcError) as exc:  # CredentialError is a ValueError
                credentials.pop(d.number, None)
                log.error("phase 1 definition %d (%s) unusable: %s", d.number, d.name, exc)
                continue
            ipc1.append(ipc)
            p1[d.number] = d
            by_name[d.name] = d.number
        p2: dict[int, Phase2Definition] = {}
        parent: dict[int, int] = {}
        ipc2: list[m.Phase2Def] = []
        interner = Interner()  # equal subnets and proposals shared (memory)
        for d2 in phase2:
            number = d2.number
            if number is None:
                continue
            owner = by_name.get(d2.phase1)
            if owner is None:
                log.error("phase 2 definition %d (%s) unusable: its phase 1 '%s' is unusable",
                          number, d2.name, d2.phase1)  # fmt: skip
                continue
            try:
                d2 = _shared(d2, interner)
                check_binding(d2, p1[owner])
                ipc2.append(interner.phase2(_phase2_to_ipc(d2, number, owner)))
            except (ValueError, IpcError) as exc:  # DefinitionError is a ValueError
                log.error("phase 2 definition %d (%s) unusable: %s", number, d2.name, exc)
                continue
            p2[number] = d2
            parent[number] = owner
        return cls(
            generation,
            MappingProxyType(p1),
            MappingProxyType(p2),
            MappingProxyType(parent),
            tuple(ipc1),
            tuple(ipc2),
            MappingProxyType(credentials),
            MappingProxyType(signers),
        )

    @classmethod
    def load(cls, db: TunnelDB) -> DbView:
        """The database as the daemon uses it: a row that is not a valid definition (edited
        by hand) is logged with the field that is wrong and left out; the rest loads."""
        stored = db.read_all()
        for bad in stored.bad:
            log.error("%s: %s; definition unusable", db.path, bad)
        return cls.build(stored.generation, stored.phase1, stored.phase2)

    def phase1_of(self, phase2_number: int) -> Phase1Definition | None:
        owner = self.phase2_parent.get(phase2_number)
        return None if owner is None else self.phase1.get(owner)

    def phase2_under(self, phase1_number: int) -> list[int]:
        return sorted(n for n, owner in self.phase2_parent.items() if owner == phase1_number)

    def config_messages(self) -> list[Message]:
        """ConfigBegin, the definitions, ConfigEnd: what a child gets after Hello.

        Each signature definition's ConfigPhase1 is followed by its ConfigCredentials (our
        chain, the trust anchors, the CRLs), counted in ConfigEnd.credential_count.
        """
        gen = self.generation & 0xFFFFFFFF
        out: list[Message] = [m.ConfigBegin(gen)]
        count = 0
        for d in self.ipc_phase1:
            out.append(m.ConfigPhase1(gen, d))
            for kind, index, blob in self.credentials.get(d.number, ()):
                out.append(m.ConfigCredential(gen, d.number, kind, index, blob))
                count += 1
        out += [m.ConfigPhase2(gen, d) for d in self.ipc_phase2]
        out.append(m.ConfigEnd(gen, len(self.ipc_phase1), len(self.ipc_phase2), count))
        return out
