"""Hypothesis strategies derived from the IPC schema tables, shared by the test_ipc_* files.

Every field kind maps to a strategy, so a new message or field is covered without touching
the tests. The few cross-field shape rules (`Struct.check`) are met by small fix-ups keyed on
the struct class, which keep the drawn values random but consistent. Addresses in one
message all come from one family, drawn per test (the catalogue refuses mixed families).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import ip_network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikepriv.ipc import messages as m
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.schema import (
    Addr,
    Bool,
    Bytes,
    Charset,
    EnumOf,
    Fixed,
    Kind,
    ListOf,
    Message,
    Nested,
    Net,
    Opt,
    Str,
    Struct,
    UInt,
    registry,
)
from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    IdType,
    ProtocolId,
)

NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@:+/-"
PRINTABLE = st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ")
SPREAD = 48  # how far past its minimum a drawn length or count may go


def _addresses(family: int) -> st.SearchStrategy[Any]:
    return st.ip_addresses(v=4) if family == 4 else st.ip_addresses(v=6)


def _networks(family: int) -> st.SearchStrategy[Any]:
    bits = 32 if family == 4 else 128
    return st.builds(
        lambda address, prefix: ip_network((address, prefix), strict=False),
        _addresses(family),
        st.integers(0, bits),
    )


def _text(kind: Str) -> st.SearchStrategy[str]:
    if kind.charset is Charset.NAME:
        return st.text(NAME_ALPHABET, min_size=kind.min_len, max_size=min(kind.max_len, 40))
    # at most 4 bytes per character, so max_len // 4 characters always fit
    return st.text(PRINTABLE, min_size=kind.min_len, max_size=min(kind.max_len // 4, 40))


def kind_strategy(kind: Kind, family: int) -> st.SearchStrategy[Any]:
    """Values `kind` accepts (and nothing it refuses)."""
    match kind:
        case UInt():
            return st.integers(kind.lo, kind.hi)
        case Bool():
            return st.booleans()
        case EnumOf():
            return st.sampled_from(sorted(kind.members.values()))
        case Bytes():
            return st.binary(
                min_size=kind.min_len, max_size=min(kind.max_len, kind.min_len + SPREAD)
            )
        case Fixed():
            return st.binary(min_size=kind.length, max_size=kind.length)
        case Str():
            return _text(kind)
        case Addr():
            return _addresses(family)
        case Net():
            return _networks(family)
        case Opt():
            return st.none() | kind_strategy(kind.inner, family)
        case ListOf():
            return st.lists(
                kind_strategy(kind.inner, family),
                min_size=kind.min_count,
                max_size=min(kind.max_count, kind.min_count + 4),
            ).map(tuple)
        case Nested():
            return struct_strategy(kind.cls, family)
    raise AssertionError(f"no strategy for {type(kind).__name__}: add one here")


# --- fix-ups for the cross-field shape rules -------------------------------------------


def _fit(data: bytes, length: int) -> bytes:
    return data.ljust(length, b"\x01")[:length]


_ID_LENGTHS = {
    IdType.IPV4_ADDR: 4,
    IdType.IPV6_ADDR: 16,
    IdType.IPV4_ADDR_SUBNET: 8,
    IdType.IPV4_ADDR_RANGE: 8,
    IdType.IPV6_ADDR_SUBNET: 32,
    IdType.IPV6_ADDR_RANGE: 32,
}


def _fix_identity(kw: dict[str, Any]) -> None:
    length = _ID_LENGTHS.get(kw["id_type"])
    if length is not None:
        kw["data"] = _fit(kw["data"], length)


def _fix_proposal(kw: dict[str, Any]) -> None:
    table = EspTransformId if kw["protocol"] is ProtocolId.IPSEC_ESP else AhTransformId
    members = sorted(table)
    kw["transform_id"] = int(members[kw["transform_id"] % len(members)])
    if kw["protocol"] is ProtocolId.IPSEC_AH and kw["auth_alg"] is None:
        kw["auth_alg"] = AuthAlgorithm.HMAC_SHA2_256


def _fix_aead(kw: dict[str, Any]) -> None:
    salt = 3 if kw["transform"].name.startswith("AES_CCM") else 4
    kw["salt"] = _fit(kw["salt"], salt)


def _fix_range(kw: dict[str, Any]) -> None:
    kw["first"], kw["last"] = sorted((kw["first"], kw["last"]))


def _result(field: str, minimum: int) -> Callable[[dict[str, Any]], None]:
    def fix(kw: dict[str, Any]) -> None:
        if kw["error"] is m.ErrorCode.OK:
            kw[field] = _fit(kw[field], max(len(kw[field]), minimum))
        else:
            kw[field] = b""

    return fix


def _fix_spi_reply(kw: dict[str, Any]) -> None:
    if kw["error"] is m.ErrorCode.OK:
        kw["spi"] = max(kw["spi"], m.MIN_INBOUND_SPI)
    else:
        kw["spi"] = 0


def _fix_skeyid_request(kw: dict[str, Any]) -> None:
    if kw["phase1_number"] is None and kw["peer"] is None:
        kw["phase1_number"] = 1
    elif kw["phase1_number"] is not None and kw["peer"] is not None:
        kw["peer"] = None
    if kw["peer"] is not None:
        kw["nonce_id"] = 0  # an initiator's nonce goes with a definition number


def _fix_skeyid_reply(kw: dict[str, Any]) -> None:
    _result("skeyid", m.MIN_SKEYID)(kw)
    if kw["error"] is not m.ErrorCode.OK or kw["nonce"]:
        kw["nonce"] = b"" if kw["error"] is not m.ErrorCode.OK else _fit(kw["nonce"], 32)


def _fix_nonce_reply(kw: dict[str, Any]) -> None:
    ok = kw["error"] is m.ErrorCode.OK
    kw["nonce"] = _fit(kw["nonce"], 32) if ok else b""
    kw["nonce_id"] = max(kw["nonce_id"], 1) if ok else 0


def _fix_phase2_sa(proto: ProtocolId, sa: m.Phase2Sa) -> m.Phase2Sa:
    enc, integ, aead = sa.encryption, sa.integrity, sa.aead
    if proto is ProtocolId.IPSEC_AH:
        enc = aead = None
        if integ is None:
            integ = m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, b"\x02" * 32)
    elif aead is not None:
        enc = integ = None
    elif enc is None:
        enc = m.CryptKey(EspTransformId.AES_CBC, b"\x03" * 16)
    return m.Phase2Sa(sa.spi, enc, integ, aead, sa.lifetimes)


def _fix_phase2_install(kw: dict[str, Any]) -> None:
    proto = kw["proto"]
    kw["inbound"] = _fix_phase2_sa(proto, kw["inbound"])
    kw["outbound"] = _fix_phase2_sa(proto, kw["outbound"])
    if proto is ProtocolId.IPSEC_AH:
        kw["encap"] = None
    drawn = kw["policies"]
    wanted = [m.PolicyDirection.OUT, m.PolicyDirection.IN]
    if kw["mode"] is EncapsulationMode.TUNNEL:
        wanted.append(m.PolicyDirection.FWD)
    # one policy per direction, from the drawn ones (selectors and priorities as drawn)
    kw["policies"] = tuple(
        m.Phase2Policy(d, drawn[i % len(drawn)].selector, drawn[i % len(drawn)].priority)
        for i, d in enumerate(wanted)
    )


def _fix_activate(kw: dict[str, Any]) -> None:
    if (kw["src"] is None) != (kw["dst"] is None):
        kw["src"] = kw["dst"] = None


def _fix_list(kw: dict[str, Any]) -> None:
    if kw["db"]:
        kw["role"] = None


def _fix_hello(kw: dict[str, Any]) -> None:
    kw["shard"] %= kw["shards"]


def _fix_definition_counts(kw: dict[str, Any]) -> None:
    if kw["phase"] is m.Phase.PHASE2:
        kw["dpd_failures"] = 0


FIXUPS: dict[type[Struct], Callable[[dict[str, Any]], None]] = {
    m.Identity: _fix_identity,
    m.Phase2Proposal: _fix_proposal,
    m.AeadKey: _fix_aead,
    m.NumRange: _fix_range,
    m.SkeyidReply: _fix_skeyid_reply,
    m.NonceReply: _fix_nonce_reply,
    m.SignatureReply: _result("signature", 1),
    m.SpiReply: _fix_spi_reply,
    m.SkeyidRequest: _fix_skeyid_request,
    m.Phase2Install: _fix_phase2_install,
    m.ActivateRequest: _fix_activate,
    m.ListRequest: _fix_list,
    m.DefinitionCounts: _fix_definition_counts,
    m.Hello: _fix_hello,
}

_CACHE: dict[tuple[type[Struct], int], st.SearchStrategy[Any]] = {}


def struct_strategy(cls: type[Struct], family: int) -> st.SearchStrategy[Any]:
    """Valid instances of `cls`, every address of IP version `family`."""
    key = (cls, family)
    if key not in _CACHE:
        fields = {name: kind_strategy(kind, family) for name, kind in cls.schema()}
        fix = FIXUPS.get(cls)

        def build(kw: dict[str, Any]) -> Any:
            if fix is not None:
                fix(kw)
            return cls(**kw)

        _CACHE[key] = st.fixed_dictionaries(fields).map(build)
    return _CACHE[key]


MESSAGE_TYPES = sorted(registry().values(), key=lambda cls: cls.TYPE)


def any_message(family: int | None = None) -> st.SearchStrategy[Message]:
    """A valid message of any type; family None mixes IPv4 and IPv6 between messages."""
    families = (4, 6) if family is None else (family,)
    return st.one_of([struct_strategy(cls, f) for cls in MESSAGE_TYPES for f in families])


# --- the strategies themselves must hold to what they promise --------------------------


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_strategy_draws_valid_messages_of_one_family(
    cls: type[Message], data: st.DataObject
) -> None:
    for family in (4, 6):
        msg = data.draw(struct_strategy(cls, family))
        assert type(msg) is cls
        addresses = re.findall(r"IPv(\d)(?:Address|Network)", repr(msg))
        assert set(addresses) <= {str(family)}


def test_every_kind_has_a_strategy() -> None:
    kinds = [Addr(), Bool(), Bytes(0, 3), Fixed(2), Str(9), Net(), UInt(1)]
    kinds += [Opt(UInt(2)), ListOf(Bool(), 2), EnumOf(ProtocolId), Nested(m.Endpoint)]
    for kind in kinds:
        assert kind_strategy(kind, 4) is not None


@given(st.data())
def test_fixups_do_not_hide_rejections(data: st.DataObject) -> None:
    """The fix-ups only repair what they aim at; the result still passes strict checks."""
    msg = data.draw(any_message())
    for name, _ in type(msg).schema():
        value = getattr(msg, name)
        assert not isinstance(value, list)
    try:
        type(msg)(**{name: getattr(msg, name) for name, _ in type(msg).schema()})
    except IpcError as exc:  # pragma: no cover - would mean the strategy built an invalid one
        pytest.fail(f"rebuild refused: {exc}")
