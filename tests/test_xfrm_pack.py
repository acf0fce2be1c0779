"""xfrm_pack.py against pyroute2: every request the parent sends, byte for byte.

The parent packs its requests with precompiled struct packers (xfrm_pack.py) instead of
pyroute2's field-by-field encoder; the pyroute2 classes of xfrm_messages.py stay the
reference (test_xfrm_messages.py checks them against a C compiler's layouts). Here many
varied specs (IPv4 and IPv6, tunnel with either inner family and transport, every
algorithm of the project's table, ESP and AH, NAT-T encapsulation with and without an
original address, lifetimes with and without limits, replay windows on both sides of the
legacy bitmap, selectors with ports and protocols, policies with up to XFRM_MAX_DEPTH
templates) are packed both ways and must agree on every byte, so any slip in a layout,
an order, a byte order or a padding fails here. The reference builds pyroute2's
messages from the specs field by field, as the client did before.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from typing import Any

import pytest

from ikepriv.crypto.keymat import ESP_CIPHERS, INTEGRITY
from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.kernel import xfrm_messages as xm
from ikepriv.parent_kernel.kernel import xfrm_pack as xp
from ikepriv.parent_kernel.kernel.specs import (
    AF_FOR_VERSION,
    ALL_ALGOS,
    REPLAY_BITMAP_MAX,
    Aead,
    Encap,
    Encryption,
    Integrity,
    IPAddress,
    Lifetime,
    PolicySpec,
    SaSpec,
    SelectorSpec,
    Template,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import (
    XFRM_INF,
    Direction,
    MsgType,
    PolicyAction,
    XfrmMode,
)

CASES = 400

# -- the reference: pyroute2's classes, filled field by field ------------------------------


def _addr(addr: IPAddress | None) -> bytes:
    return b"" if addr is None else addr.packed


def ref_selector(sel: SelectorSpec | None) -> dict[str, Any]:
    if sel is None:
        return {}
    return {"daddr": sel.dst.network_address.packed, "saddr": sel.src.network_address.packed,
            "dport": sel.dport, "dport_mask": 0xFFFF if sel.dport else 0,
            "sport": sel.sport, "sport_mask": 0xFFFF if sel.sport else 0,
            "family": AF_FOR_VERSION[sel.src.version], "prefixlen_d": sel.dst.prefixlen,
            "prefixlen_s": sel.src.prefixlen, "proto": sel.proto}  # fmt: skip


def ref_lifetime(lt: Lifetime) -> dict[str, int]:
    def lim(v: int | None) -> int:
        return XFRM_INF if v is None else v

    return {"soft_byte_limit": lim(lt.soft_bytes), "hard_byte_limit": lim(lt.hard_bytes),
            "soft_packet_limit": lim(lt.soft_packets),
            "hard_packet_limit": lim(lt.hard_packets),
            "soft_add_expires_seconds": lt.soft_seconds or 0,
            "hard_add_expires_seconds": lt.hard_seconds or 0}  # fmt: skip


def ref_flags(spec: SaSpec) -> int:
    flags = 0
    if spec.proto == IpProtocol.AH and spec.family == socket.AF_INET:
        flags |= xm.XFRM_STATE_ALIGN4
    if (spec.mode == XfrmMode.TUNNEL and spec.selector is not None
            and spec.selector.family != spec.family):  # fmt: skip
        flags |= xm.XFRM_STATE_AF_UNSPEC
    return flags


def ref_sa_attrs(spec: SaSpec) -> list[tuple[str, Any]]:
    attrs: list[tuple[str, Any]] = []
    if spec.encryption is not None:
        attrs.append(("XFRMA_ALG_CRYPT", {"name": spec.encryption.name,
                                          "key": spec.encryption.key}))  # fmt: skip
    if spec.integrity is not None:
        i = spec.integrity
        attrs.append(("XFRMA_ALG_AUTH_TRUNC",
                      {"name": i.name, "key": i.key, "trunc_bits": i.trunc_bits}))  # fmt: skip
    if spec.aead is not None:
        a = spec.aead
        attrs.append(("XFRMA_ALG_AEAD", {"name": a.name, "key": a.key, "icv_bits": a.icv_bits}))
    if spec.encap is not None:
        e = spec.encap
        attrs.append(("XFRMA_ENCAP", {"encap_type": e.type, "encap_sport": e.sport,
                                      "encap_dport": e.dport,
                                      "encap_oa": _addr(e.original_address)}))  # fmt: skip
    if spec.replay_window > REPLAY_BITMAP_MAX:
        words = (spec.replay_window + 31) // 32
        attrs.append(("XFRMA_REPLAY_ESN_VAL",
                      {"bmp_len": words, "replay_window": spec.replay_window}))  # fmt: skip
    return attrs


def encoded(msg: Any, msg_type: int, flags: int) -> bytes:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg.encode()
    return bytes(msg.data)


def ref_sa(spec: SaSpec, msg_type: MsgType) -> bytes:
    msg = xm.xfrm_usersa_info()
    msg["sel"] = ref_selector(spec.selector)
    msg["id"] = {"daddr": spec.dst.packed, "spi": spec.spi, "proto": int(spec.proto)}
    msg["saddr"] = spec.src.packed
    msg["lft"] = ref_lifetime(spec.lifetime)
    msg["reqid"] = spec.reqid
    msg["family"] = spec.family
    msg["mode"] = int(spec.mode)
    msg["replay_window"] = spec.replay_window if spec.replay_window <= REPLAY_BITMAP_MAX else 0
    msg["flags"] = ref_flags(spec)
    msg["attrs"] = ref_sa_attrs(spec)
    return encoded(msg, msg_type, xp.WRITE)


def ref_template(tmpl: Template, family: int) -> dict[str, Any]:
    return {"id": {"daddr": _addr(tmpl.dst), "spi": tmpl.spi, "proto": int(tmpl.proto)},
            "family": AF_FOR_VERSION[tmpl.dst.version] if tmpl.dst is not None else family,
            "saddr": _addr(tmpl.src), "reqid": tmpl.reqid, "mode": int(tmpl.mode),
            "optional": int(tmpl.optional), "aalgos": ALL_ALGOS, "ealgos": ALL_ALGOS,
            "calgos": ALL_ALGOS}  # fmt: skip


def ref_policy(spec: PolicySpec, msg_type: MsgType) -> bytes:
    msg = xm.xfrm_userpolicy_info()
    msg["sel"] = ref_selector(spec.selector)
    msg["lft"] = ref_lifetime(Lifetime())
    msg["priority"] = spec.priority
    msg["dir"] = int(spec.direction)
    msg["action"] = int(spec.action)
    if spec.templates:
        family = spec.selector.family
        msg["attrs"] = [("XFRMA_TMPL", [ref_template(t, family) for t in spec.templates])]
    return encoded(msg, msg_type, xp.WRITE)


def ref_sa_id(dst: IPAddress, spi: int, proto: int) -> bytes:
    msg = xm.xfrm_usersa_id()
    msg["daddr"] = dst.packed
    msg["spi"] = spi
    msg["family"] = AF_FOR_VERSION[dst.version]
    msg["proto"] = proto
    return encoded(msg, MsgType.DELSA, xp.WRITE)


def ref_policy_id(sel: SelectorSpec, direction: Direction) -> bytes:
    msg = xm.xfrm_userpolicy_id()
    msg["sel"] = ref_selector(sel)
    msg["dir"] = int(direction)
    return encoded(msg, MsgType.DELPOLICY, xp.WRITE)


def ref_spi(src: IPAddress, dst: IPAddress, proto: IpProtocol, reqid: int, mode: XfrmMode,
            lo: int, hi: int, seq: int) -> bytes:  # fmt: skip
    msg = xm.xfrm_userspi_info()
    msg["info"] = {"id": {"daddr": dst.packed, "proto": int(proto)}, "saddr": src.packed,
                   "lft": ref_lifetime(Lifetime()), "reqid": reqid, "seq": seq,
                   "family": AF_FOR_VERSION[dst.version], "mode": int(mode)}  # fmt: skip
    msg["min"] = lo
    msg["max"] = hi
    return encoded(msg, MsgType.ALLOCSPI, xp.NLM_F_REQUEST)


# -- varied specs ---------------------------------------------------------------------------


def address(rng: random.Random, version: int) -> IPAddress:
    if version == 4:
        return ipaddress.IPv4Address(rng.getrandbits(32))
    return ipaddress.IPv6Address(rng.getrandbits(128))


def selector(rng: random.Random, version: int) -> SelectorSpec:
    bits = 32 if version == 4 else 128

    def net() -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network((address(rng, version), rng.randint(0, bits)), strict=False)

    proto = rng.choice([0, 0, 1, 6, 17, 58, 255])
    ports = proto in (6, 17)
    return SelectorSpec(net(), net(), proto,
                        rng.choice([0, 1, 500, 4500, 0xFFFF]) if ports else 0,
                        rng.choice([0, 80, 443, 0xFFFF]) if ports else 0)  # fmt: skip


def limit(rng: random.Random) -> int | None:
    return rng.choice([None, 1, rng.randint(1, 1 << 40), XFRM_INF - 1])


def lifetime(rng: random.Random) -> Lifetime:
    return Lifetime(limit(rng), limit(rng), limit(rng), limit(rng),
                    rng.choice([None, 1, 3000, 0xFFFFFFFF]),
                    rng.choice([None, 2, 3600, 1 << 40]))  # fmt: skip


def algorithms(rng: random.Random, proto: IpProtocol) -> dict[str, Any]:
    integ = rng.choice(list(INTEGRITY.values()))
    integrity = Integrity(integ.xfrm_name, rng.randbytes(integ.key_bytes), integ.truncation_bits)
    if proto == IpProtocol.AH:
        return {"integrity": integrity}
    cipher = rng.choice(list(ESP_CIPHERS.values()))
    key = rng.randbytes(rng.choice(sorted(cipher.key_bits)) // 8 + cipher.salt_bytes)
    if cipher.icv_bits is not None:
        return {"aead": Aead(cipher.xfrm_name, key, cipher.icv_bits)}
    return {"encryption": Encryption(cipher.xfrm_name, key), "integrity": integrity}


def sa_spec(rng: random.Random) -> SaSpec:
    outer = rng.choice([4, 6])
    mode = rng.choice([XfrmMode.TUNNEL, XfrmMode.TRANSPORT])
    inner = rng.choice([4, 6]) if mode == XfrmMode.TUNNEL else outer
    proto = rng.choice([IpProtocol.ESP, IpProtocol.ESP, IpProtocol.AH])
    encap = None
    if proto == IpProtocol.ESP and rng.random() < 0.4:
        oa = rng.choice([None, address(rng, outer)])
        encap = Encap(rng.choice([4500, 1, 0xFFFF]), rng.choice([4500, 4501]),
                      original_address=oa)  # fmt: skip
    sel = selector(rng, inner) if mode == XfrmMode.TRANSPORT or rng.random() < 0.9 else None
    return SaSpec(address(rng, outer), address(rng, outer), proto,
                  rng.choice([0x100, rng.randint(0x100, 0xFFFFFFFF), 0xFFFFFFFF]), mode,
                  rng.choice([0, 1, rng.getrandbits(32)]), encap=encap,
                  lifetime=lifetime(rng),
                  replay_window=rng.choice([0, 1, 32, 33, 64, 1000, xm.XFRMA_REPLAY_ESN_MAX * 8]),
                  selector=sel, **algorithms(rng, proto))  # fmt: skip


def template(rng: random.Random, version: int) -> Template:
    mode = rng.choice([XfrmMode.TUNNEL, XfrmMode.TRANSPORT])
    ends = rng.choice([4, 6])
    tunnel = mode == XfrmMode.TUNNEL
    return Template(rng.choice([IpProtocol.ESP, IpProtocol.AH]), mode,
                    rng.choice([0, 7, rng.getrandbits(32)]),
                    address(rng, ends) if tunnel else None,
                    address(rng, ends) if tunnel else None,
                    rng.choice([0, 0x1234, 0xFFFFFFFF]), rng.random() < 0.3)  # fmt: skip


def policy_spec(rng: random.Random) -> PolicySpec:
    version = rng.choice([4, 6])
    action = rng.choice([PolicyAction.ALLOW, PolicyAction.ALLOW, PolicyAction.BLOCK])
    count = 0 if action == PolicyAction.BLOCK else rng.randint(0, xm.XFRM_MAX_DEPTH)
    return PolicySpec(selector(rng, version), rng.choice(list(Direction)), action,
                      rng.choice([0, 1, 2000, 0xFFFFFFFF]),
                      tuple(template(rng, version) for _ in range(count)))  # fmt: skip


# -- the comparisons -----------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", [MsgType.NEWSA, MsgType.UPDSA])
def test_sa_messages_equal_pyroute2s(msg_type: MsgType) -> None:
    rng = random.Random(f"sa {msg_type}")  # noqa: S311
    for _ in range(CASES):
        spec = sa_spec(rng)
        assert bytes(xp.sa_message(spec, msg_type)) == ref_sa(spec, msg_type), spec


def test_every_algorithm_of_the_table_is_packed_as_pyroute2_does() -> None:
    """Each cipher with each of its key sizes, each integrity algorithm, ESP and AH."""
    rng = random.Random("every algorithm")  # noqa: S311
    gw = (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2"))
    specs: list[SaSpec] = []
    for integ in INTEGRITY.values():
        integrity = Integrity(integ.xfrm_name, rng.randbytes(integ.key_bytes),
                              integ.truncation_bits)  # fmt: skip
        specs.append(SaSpec(*gw, IpProtocol.AH, 0x1000, XfrmMode.TUNNEL, 1, integrity=integrity))
        for cipher in ESP_CIPHERS.values():
            for bits in sorted(cipher.key_bits):
                key = rng.randbytes(bits // 8 + cipher.salt_bytes)
                algs: dict[str, Any] = (
                    {"aead": Aead(cipher.xfrm_name, key, cipher.icv_bits)}
                    if cipher.icv_bits is not None
                    else {"encryption": Encryption(cipher.xfrm_name, key), "integrity": integrity}
                )
                specs.append(SaSpec(*gw, IpProtocol.ESP, 0x1000, XfrmMode.TUNNEL, 1, **algs))
    assert len(specs) > len(INTEGRITY) * len(ESP_CIPHERS)
    for spec in specs:
        assert bytes(xp.sa_message(spec, MsgType.NEWSA)) == ref_sa(spec, MsgType.NEWSA), spec


def test_an_algorithm_key_of_any_length_is_padded_as_pyroute2_does() -> None:
    """Keys of the table are multiples of 4 bytes; the attribute's padding still must agree
    (its length leaves the padding out)."""
    gw = (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2"))
    spec = SaSpec(*gw, IpProtocol.ESP, 0x1000, XfrmMode.TUNNEL, 1,
                  encryption=Encryption("cbc(aes)", bytes(16)),
                  integrity=Integrity("hmac(sha256)", bytes(32), 128))  # fmt: skip
    for length in range(0, 9):
        key = bytes(range(1, length + 1))
        ours = xp.sa_message(spec, MsgType.NEWSA)[: xp.SA_INFO.size] + xp._algo(
            xm.Attr.ALG_CRYPT, "cbc(aes)", key
        )
        msg = xm.xfrm_usersa_info()
        msg["id"] = {"daddr": gw[1].packed, "spi": 0x1000, "proto": 50}
        msg["saddr"] = gw[0].packed
        msg["lft"] = ref_lifetime(Lifetime())
        msg["reqid"], msg["family"], msg["mode"], msg["replay_window"] = 1, socket.AF_INET, 1, 32
        msg["attrs"] = [("XFRMA_ALG_CRYPT", {"name": "cbc(aes)", "key": key})]
        theirs = encoded(msg, MsgType.NEWSA, xp.WRITE)
        # the header's length is the whole message's: compare it apart
        assert ours[4:] == theirs[4:] and len(ours) == len(theirs), length


@pytest.mark.parametrize("msg_type", [MsgType.NEWPOLICY, MsgType.UPDPOLICY])
def test_policy_messages_equal_pyroute2s(msg_type: MsgType) -> None:
    rng = random.Random(f"policy {msg_type}")  # noqa: S311
    for _ in range(CASES):
        spec = policy_spec(rng)
        assert bytes(xp.policy_message(spec, msg_type)) == ref_policy(spec, msg_type), spec


def test_deletes_and_spi_requests_equal_pyroute2s() -> None:
    rng = random.Random("ids")  # noqa: S311
    for _ in range(CASES):
        version = rng.choice([4, 6])
        dst = address(rng, version)
        spi, proto = rng.choice([0x100, rng.getrandbits(32)]), rng.choice([50, 51])
        assert bytes(xp.sa_id_message(dst, spi, proto, MsgType.DELSA)) == ref_sa_id(dst, spi, proto)
        sel, direction = selector(rng, version), rng.choice(list(Direction))
        assert bytes(xp.policy_id_message(sel, direction, MsgType.DELPOLICY)) == ref_policy_id(
            sel, direction
        )
        lo = rng.randint(0x100, 0xFFFFFFFF)
        hi = rng.choice([lo, 0xFFFFFFFF])
        seq = rng.choice([0, rng.getrandbits(32)])
        args = (address(rng, version), dst, IpProtocol(proto), rng.getrandbits(32),
                rng.choice(list(XfrmMode)), lo, hi, seq)  # fmt: skip
        assert bytes(xp.spi_message(*args)) == ref_spi(*args)


def test_dump_requests_equal_pyroute2s() -> None:
    dump = 0x1 | 0x300
    assert bytes(xp.sa_id_message(None, 0, 0, MsgType.GETSA, dump)) == encoded(
        xm.xfrm_usersa_id(), MsgType.GETSA, dump
    )
    assert bytes(xp.policy_id_message(None, Direction.IN, MsgType.GETPOLICY, dump)) == encoded(
        xm.xfrm_userpolicy_id(), MsgType.GETPOLICY, dump
    )


def test_the_sequence_number_goes_into_the_header() -> None:
    data = xp.sa_id_message(ipaddress.ip_address("192.0.2.1"), 0x1000, 50, MsgType.DELSA)
    xp.set_sequence(data, 0xDEADBEEF)
    msg = xm.xfrm_usersa_id()
    msg["header"]["sequence_number"] = 0xDEADBEEF
    msg["daddr"], msg["spi"], msg["family"], msg["proto"] = (
        ipaddress.ip_address("192.0.2.1").packed, 0x1000, socket.AF_INET, 50)  # fmt: skip
    assert bytes(data) == encoded(msg, MsgType.DELSA, xp.WRITE)


def test_what_cannot_be_packed_is_an_error() -> None:
    with pytest.raises(ValueError, match="too long"):
        xp._algo(xm.Attr.ALG_CRYPT, "x" * 64, b"")
