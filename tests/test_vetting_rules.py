"""The vetting rules one by one, without a kernel: Vetter against database definitions.

Each test builds the request a correct child would send, checks it is accepted, then
changes one thing and checks the refusal and its code. So a rule that refused everything
would fail here as surely as one that let everything through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress

import pytest

from ikepriv.config import load_definitions
from ikepriv.ipc import encode
from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    IkeHash,
    ProtocolId,
)
from ikepriv.parent_kernel import installed as inst
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.installed import Installed, SaEntry
from ikepriv.parent_kernel.keylog import esp_line, ike_line
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.vetting import (
    Activation,
    PolicyPlan,
    PolicyRemoval,
    Refusal,
    SaPlan,
    SaRemoval,
    SpiPlan,
    Vetter,
)

DEFS = """
[[phase1]]
name = "p1"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "secret one"
proposals = ["aes128-sha256-modp2048"]
nat_traversal = true

[[phase2]]
name = "p2"
phase1 = "p1"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
protocol = "tcp"
remote_port = 443
proposals = ["aes128-sha256", "aes256gcm16"]
lifetime = 3600
lifetime_kb = 100000

[[phase1]]
name = "any"
local_addr = "192.0.2.1"
remote_addr = "%any"
remote_id = "peer@example.org"
mode = "aggressive"
psk = "secret any"
proposals = ["aes256-sha1-modp2048"]
nat_traversal = false
dpd_action = "clear"

[[phase2]]
name = "any2"
phase1 = "any"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
ah_proposals = ["sha1"]
"""

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
STRANGER = ipaddress.ip_address("192.0.2.66")
ESP, AH = ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH
TUNNEL = EncapsulationMode.TUNNEL


def numbered(text: str) -> DbView:
    defs = load_definitions(text)
    p1 = [dataclasses.replace(d, number=i + 1) for i, d in enumerate(defs.phase1)]
    p2 = [dataclasses.replace(d, number=i + 1) for i, d in enumerate(defs.phase2)]
    return DbView.build(1, p1, p2)


@pytest.fixture
def vetter() -> Vetter:
    """Gateway B talked to us once, long ago: its tunnel is usable, SKEYID is not."""
    peers = PeerTable()
    peers.record(A, B, 500, natt=False, now=0.0)
    return Vetter(numbered(DEFS), Installed(), peers, {})


def ts(src: str, dst: str, proto: int = 6, sport: int = 0, dport: int = 443) -> m.TrafficSelector:
    return m.TrafficSelector(m.SelectorSide(ipaddress.ip_network(src), proto, sport),
                             m.SelectorSide(ipaddress.ip_network(dst), proto, dport))  # fmt: skip


OUT_TS = ts("198.51.100.0/24", "203.0.113.0/24")


def sa(**changes: object) -> m.SaAdd:
    base = m.SaAdd(
        request_id=1, phase1_number=1, phase2_number=1, tunnel_id=1,
        direction=m.SaDirection.OUT, src=A, dst=B, proto=ESP, spi=0x5000, mode=TUNNEL,
        encryption=m.CryptKey(EspTransformId.AES_CBC, bytes(16)),
        integrity=m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(32)), aead=None,
        lifetimes=m.Lifetimes(3000, 3600, 90000, 100000), encap=None, selector=None, reqid=9,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def refusal(result: object, code: ErrorCode, text: str = "") -> None:
    assert isinstance(result, Refusal), result
    assert result.code is code, result
    assert text in result.reason


def test_good_outbound_sa_is_planned_as_an_add(vetter: Vetter) -> None:
    plan = vetter.sa_add(sa())
    assert isinstance(plan, SaPlan) and not plan.update
    assert plan.spec.encryption is not None and plan.spec.encryption.name == "cbc(aes)"
    assert plan.spec.lifetime.hard_seconds == 3600
    assert plan.spec.lifetime.hard_bytes == 100000 * 1024


@pytest.mark.parametrize(
    ("changes", "code", "text"),
    [
        ({"dst": STRANGER}, ErrorCode.NOT_PERMITTED, "not the gateway"),
        ({"src": STRANGER}, ErrorCode.NOT_PERMITTED, "not the gateway"),
        ({"phase2_number": 9}, ErrorCode.NO_SUCH_TUNNEL, ""),
        ({"phase1_number": 2}, ErrorCode.NOT_PERMITTED, "belongs to phase 1 1"),
        ({"mode": EncapsulationMode.TRANSPORT}, ErrorCode.NOT_PERMITTED, "TRANSPORT"),
        ({"encryption": m.CryptKey(EspTransformId.AES_CBC, bytes(32))}, ErrorCode.BAD_ALGORITHM,
         "256"),
        ({"encryption": m.CryptKey(EspTransformId.TRIPLE_DES, bytes(24))},
         ErrorCode.BAD_ALGORITHM, ""),
        ({"integrity": m.AuthKey(AuthAlgorithm.HMAC_SHA, bytes(20))}, ErrorCode.BAD_ALGORITHM, ""),
        ({"integrity": m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(20))}, ErrorCode.BAD_LENGTH,
         "needs 32"),
        ({"lifetimes": m.Lifetimes(0, 0, 0, 0)}, ErrorCode.NOT_PERMITTED, "hard lifetime"),
        ({"lifetimes": m.Lifetimes(100, 3601, 0, 100)}, ErrorCode.NOT_PERMITTED, "hard lifetime"),
        ({"lifetimes": m.Lifetimes(100, 3600, 0, 0)}, ErrorCode.NOT_PERMITTED, "volume"),
        ({"lifetimes": m.Lifetimes(3600, 100, 0, 100)}, ErrorCode.INVALID_REQUEST, "soft"),
        ({"reqid": 0}, ErrorCode.INVALID_REQUEST, "reqid"),
        ({"selector": ts("198.51.100.0/23", "203.0.113.0/24")}, ErrorCode.NOT_PERMITTED, "wider"),
        ({"selector": ts("198.51.100.0/24", "203.0.113.0/24", proto=0, dport=0)},
         ErrorCode.NOT_PERMITTED, "wider"),
        ({"selector": ts("198.51.100.0/24", "203.0.113.0/24", dport=80)},
         ErrorCode.NOT_PERMITTED, "wider"),
        ({"encap": m.NatTEncap(4500, 4500)}, ErrorCode.NOT_PERMITTED, "never seen"),
    ],
)  # fmt: skip
def test_outbound_sa_refusals(vetter: Vetter, changes: dict[str, object], code: ErrorCode,
                              text: str) -> None:  # fmt: skip
    refusal(vetter.sa_add(sa(**changes)), code, text)


def test_narrower_selector_and_aead_are_accepted(vetter: Vetter) -> None:
    narrow = ts("198.51.100.128/25", "203.0.113.7/32")
    aead = m.AeadKey(EspTransformId.AES_GCM_16, bytes(32), bytes(4))
    plan = vetter.sa_add(sa(selector=narrow, encryption=None, integrity=None, aead=aead))
    assert isinstance(plan, SaPlan)
    assert plan.spec.aead is not None and len(plan.spec.aead.key) == 36
    refusal(vetter.sa_add(sa(encryption=None, integrity=None,
                             aead=m.AeadKey(EspTransformId.AES_GCM_16, bytes(16), bytes(4)))),
            ErrorCode.BAD_ALGORITHM)  # fmt: skip


def test_nat_t_ports_must_be_the_ones_the_parent_saw(vetter: Vetter) -> None:
    vetter.peers.record(A, B, 61000, natt=True, now=0)
    assert isinstance(vetter.sa_add(sa(encap=m.NatTEncap(4500, 61000))), SaPlan)
    refusal(vetter.sa_add(sa(encap=m.NatTEncap(4500, 61001))), ErrorCode.NOT_PERMITTED, "61001")
    refusal(vetter.sa_add(sa(encap=m.NatTEncap(4501, 61000))), ErrorCode.NOT_PERMITTED, "local")
    inbound = vetter.sa_add(sa(direction=m.SaDirection.IN, src=B, dst=A,
                               encap=m.NatTEncap(61000, 4500)))  # fmt: skip
    refusal(inbound, ErrorCode.NOT_PERMITTED, "not allocated")  # ports fine, SPI not ours


def test_inbound_sa_needs_an_spi_allocated_for_the_same_phase2(vetter: Vetter) -> None:
    request = m.SpiRequest(1, 1, ESP, B, A)
    plan = vetter.spi(request)
    assert isinstance(plan, SpiPlan)
    refusal(vetter.spi(m.SpiRequest(1, 1, ESP, STRANGER, A)), ErrorCode.NOT_PERMITTED)
    refusal(vetter.spi(m.SpiRequest(1, 1, AH, B, A)), ErrorCode.BAD_ALGORITHM)
    vetter.installed.add_sa(SaEntry((A, 0x777, ESP), 1, 1, B, larval=True))
    vetter.installed.add_sa(SaEntry((A, 0x778, ESP), 2, 2, B, larval=True))
    inbound = {"direction": m.SaDirection.IN, "src": B, "dst": A}
    good = vetter.sa_add(sa(spi=0x777, **inbound))
    assert isinstance(good, SaPlan) and good.update
    refusal(vetter.sa_add(sa(spi=0x778, **inbound)), ErrorCode.NOT_PERMITTED, "not allocated")
    refusal(vetter.sa_add(sa(spi=0x779, **inbound)), ErrorCode.NOT_PERMITTED, "not allocated")
    vetter.installed.add_sa(good.entry)
    refusal(vetter.sa_add(sa(spi=0x777, **inbound)), ErrorCode.NOT_PERMITTED)  # filled already


def test_reqid_is_bound_to_one_phase2_and_counts_are_bounded(vetter: Vetter) -> None:
    first = vetter.sa_add(sa())
    assert isinstance(first, SaPlan)
    vetter.installed.add_sa(first.entry)
    refusal(vetter.sa_add(sa(spi=0x5000)), ErrorCode.NOT_PERMITTED, "already exists")
    vetter.peers.record(A, STRANGER, 500, natt=False, now=0)  # makes the %any tunnel usable
    ah = m.SaAdd(
        request_id=2, phase1_number=2, phase2_number=2, tunnel_id=2,
        direction=m.SaDirection.OUT, src=A, dst=STRANGER, proto=AH, spi=0x6000, mode=TUNNEL,
        encryption=None, integrity=m.AuthKey(AuthAlgorithm.HMAC_SHA, bytes(20)), aead=None,
        lifetimes=m.Lifetimes(0, 3600, 0, 0), encap=None, selector=None, reqid=9,
    )  # fmt: skip
    refusal(vetter.sa_add(ah), ErrorCode.NOT_PERMITTED, "reqid 9 belongs to phase 2 1")
    assert isinstance(vetter.sa_add(dataclasses.replace(ah, reqid=10)), SaPlan)
    for spi in range(0x8000, 0x8000 + inst.MAX_SAS_PER_PHASE2 - 1):
        vetter.installed.add_sa(SaEntry((B, spi, ESP), 1, 1, A, larval=False, reqid=9))
    refusal(vetter.sa_add(sa(spi=0x9999)), ErrorCode.LIMIT_REACHED)


def test_any_peer_definition_only_for_peers_that_talked_to_us(vetter: Vetter) -> None:
    ah = m.SaAdd(
        request_id=2, phase1_number=2, phase2_number=2, tunnel_id=2,
        direction=m.SaDirection.OUT, src=A, dst=STRANGER, proto=AH, spi=0x6000, mode=TUNNEL,
        encryption=None, integrity=m.AuthKey(AuthAlgorithm.HMAC_SHA, bytes(20)), aead=None,
        lifetimes=m.Lifetimes(0, 3600, 0, 0), encap=None, selector=None, reqid=12,
    )  # fmt: skip
    refusal(vetter.sa_add(ah), ErrorCode.NOT_PERMITTED, "192.0.2.66 is not the gateway")
    vetter.peers.record(A, STRANGER, 500, natt=False, now=0)
    assert isinstance(vetter.sa_add(ah), SaPlan)


def test_activation_override_is_a_gateway_too() -> None:
    activations = {1: Activation(1, None, STRANGER)}
    vetter = Vetter(numbered(DEFS), Installed(), PeerTable(), activations)
    assert isinstance(vetter.sa_add(sa(dst=STRANGER)), SaPlan)


def test_policies(vetter: Vetter) -> None:
    tmpl = m.PolicyTemplate(A, B, ESP, TUNNEL, 9)
    good = m.PolicyAdd(1, 1, OUT_TS, m.PolicyDirection.OUT, tmpl, 1000)
    plan = vetter.policy_add(good)
    assert isinstance(plan, PolicyPlan) and not plan.update
    back = ts("203.0.113.0/24", "198.51.100.0/24", sport=443, dport=0)
    inbound = m.PolicyAdd(2, 1, back, m.PolicyDirection.IN, m.PolicyTemplate(B, A, ESP, TUNNEL, 9),
                          1000)  # fmt: skip
    assert isinstance(vetter.policy_add(inbound), PolicyPlan)
    for bad, code in [
        (dataclasses.replace(good, direction=m.PolicyDirection.IN), ErrorCode.NOT_PERMITTED),
        (dataclasses.replace(good, selector=ts("0.0.0.0/0", "203.0.113.0/24")),
         ErrorCode.NOT_PERMITTED),
        (dataclasses.replace(good, template=m.PolicyTemplate(A, STRANGER, ESP, TUNNEL, 9)),
         ErrorCode.NOT_PERMITTED),
        (dataclasses.replace(good, template=m.PolicyTemplate(A, B, AH, TUNNEL, 9)),
         ErrorCode.BAD_ALGORITHM),
        (dataclasses.replace(good, selector=m.TrafficSelector(OUT_TS.src, m.SelectorSide(
            ipaddress.ip_network("203.0.113.0/24"), 17, 443))), ErrorCode.NOT_PERMITTED),
    ]:  # fmt: skip
        refusal(vetter.policy_add(bad), code)
    vetter.installed.add_policy(plan.entry)
    again = vetter.policy_add(good)
    assert isinstance(again, PolicyPlan) and again.update  # its own policy: replaced
    removal = vetter.policy_delete(m.PolicyDelete(3, OUT_TS, m.PolicyDirection.OUT))
    assert isinstance(removal, PolicyRemoval) and removal.entry is plan.entry
    refusal(vetter.policy_delete(m.PolicyDelete(4, OUT_TS, m.PolicyDirection.FWD)),
            ErrorCode.NOT_PERMITTED)  # fmt: skip


def test_deletes_only_of_recorded_sas(vetter: Vetter) -> None:
    entry = SaEntry((B, 0x5000, ESP), 1, 1, A, larval=False, tunnel_id=1, reqid=9)
    vetter.installed.add_sa(entry)
    removal = vetter.sa_delete(m.SaDelete(1, 0x5000, ESP, B))
    assert isinstance(removal, SaRemoval) and removal.entry is entry
    refusal(vetter.sa_delete(m.SaDelete(2, 0x5001, ESP, B)), ErrorCode.NOT_PERMITTED)
    refusal(vetter.sa_delete(m.SaDelete(3, 0x5000, AH, B)), ErrorCode.NOT_PERMITTED)
    vetter.installed.forget_sa(entry.key)  # removed by the parent (remove, expiry)
    late = vetter.sa_delete(m.SaDelete(4, 0x5000, ESP, B))
    assert isinstance(late, SaRemoval) and late.entry is None


def test_skeyid(vetter: Vetter) -> None:
    ni, nr = b"n" * 16, b"r" * 20
    now = 1000.0
    by_number = m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, ni, nr)
    refusal(vetter.skeyid(by_number, now), ErrorCode.NO_SUCH_TUNNEL)  # nobody is negotiating
    vetter.peers.record(A, B, 500, natt=False, now=now)
    value = vetter.skeyid(by_number, now)
    assert value == hmac.new(b"secret one", ni + nr, hashlib.sha256).digest()
    refusal(vetter.skeyid(m.SkeyidRequest(1, 1, None, IkeHash.SHA, ni, nr), now),
            ErrorCode.BAD_ALGORITHM)  # fmt: skip
    refusal(vetter.skeyid(m.SkeyidRequest(1, 7, None, IkeHash.SHA2_256, ni, nr), now),
            ErrorCode.NO_SUCH_TUNNEL)  # fmt: skip
    by_peer = m.SkeyidRequest(1, None, B, IkeHash.SHA2_256, ni, nr)
    assert vetter.skeyid(by_peer, now) == value
    refusal(vetter.skeyid(by_peer, now + 3600), ErrorCode.NO_SUCH_TUNNEL)  # B went quiet
    # the %any definition is aggressive mode: never chosen by peer address
    vetter.peers.record(A, STRANGER, 500, natt=False, now=now)
    refusal(vetter.skeyid(m.SkeyidRequest(1, None, STRANGER, IkeHash.SHA, ni, nr), now),
            ErrorCode.NO_SUCH_TUNNEL)  # fmt: skip
    assert isinstance(vetter.skeyid(m.SkeyidRequest(1, 2, None, IkeHash.SHA, ni, nr), now), bytes)


def test_datagrams(vetter: Vetter) -> None:
    ports = frozenset({500, 4500})
    ok = m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(B, 500), False, bytes(28))
    assert vetter.datagram(ok, ports) is None
    for bad in [
        dataclasses.replace(ok, remote=m.Endpoint(STRANGER, 500)),
        dataclasses.replace(ok, local=m.Endpoint(STRANGER, 500)),
        dataclasses.replace(ok, local=m.Endpoint(A, 501)),
        dataclasses.replace(ok, natt=True),
        dataclasses.replace(ok, data=bytes(27)),
    ]:
        assert isinstance(vetter.datagram(bad, ports), Refusal), bad
    vetter.peers.record(A, STRANGER, 4500, natt=True, now=0)
    natt = m.DatagramOut(m.Endpoint(A, 4500), m.Endpoint(STRANGER, 4500), True, bytes(28))
    assert vetter.datagram(natt, ports) is None


def test_keylog_lines() -> None:
    assert ike_line(m.KeyLog(bytes.fromhex("0102030405060708"), b"\xaa" * 16)) == (
        "0102030405060708," + "aa" * 16 + "\n"
    )
    line = esp_line(sa(encryption=m.CryptKey(EspTransformId.AES_CBC, b"\x01" * 16),
                       integrity=m.AuthKey(AuthAlgorithm.HMAC_SHA, b"\x02" * 20)))  # fmt: skip
    assert line == (
        '"IPv4","192.0.2.1","192.0.2.2","0x00005000","AES-CBC [RFC3602]","0x' + "01" * 16
        + '","HMAC-SHA-1-96 [RFC2404]","0x' + "02" * 20 + '"\n'
    )  # fmt: skip
    aead = m.AeadKey(EspTransformId.AES_GCM_16, b"\x03" * 16, b"\x04" * 4)
    gcm = esp_line(sa(encryption=None, integrity=None, aead=aead))
    assert gcm is not None and '"AES-GCM [RFC4106]","0x' + "03" * 16 + "04" * 4 in gcm


def test_snapshot_carries_no_secret() -> None:
    view = numbered(DEFS)
    encoded = b"".join(encode(msg) for msg in view.config_messages())
    assert b"secret one" not in encoded and b"secret any" not in encoded
    first = view.config_messages()[1]
    assert isinstance(first, m.ConfigPhase1) and first.definition.remote_addr == B
