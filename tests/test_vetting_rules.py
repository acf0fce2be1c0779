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
import time

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
from ikepriv.parent_kernel.nonces import MAX_NONCES, NONCE_LIFETIME
from ikepriv.parent_kernel.peers import MAX_PEERS as PEERS_KEPT
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.vetting import (
    MIN_POLICY_PRIORITY,
    Activation,
    Phase2Plan,
    Phase2Removal,
    Refusal,
    SpiPlan,
    Vetter,
    sa_requests,
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

ICOOKIE, RCOOKIE = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")


def numbered(text: str) -> DbView:
    defs = load_definitions(text)
    p1 = [dataclasses.replace(d, number=i + 1) for i, d in enumerate(defs.phase1)]
    p2 = [dataclasses.replace(d, number=i + 1) for i, d in enumerate(defs.phase2)]
    return DbView.build(1, p1, p2)


IN_SPI = 0x777  # the inbound SPI the parent allocated for phase 2 1 (see `allocate`)


def allocate(vetter: Vetter, spi: int = IN_SPI, phase2: int = 1, peer: object = B) -> None:
    """Record the larval SA of an SpiRequest, as the parent does when it allocates one."""
    phase1 = vetter.view.phase2_parent[phase2]
    proto = ESP if phase2 == 1 else AH
    vetter.installed.add_sa(SaEntry((A, spi, proto), phase1, phase2, peer,  # type: ignore[arg-type]
                                    larval=True))  # fmt: skip


@pytest.fixture
def vetter() -> Vetter:
    """Gateway B talked to us once, long ago: its tunnel is usable, SKEYID is not. The
    parent allocated inbound SPI IN_SPI for phase 2 1."""
    peers = PeerTable()
    peers.record(A, B, 500, natt=False, now=0.0)
    vetter = Vetter(numbered(DEFS), Installed(), peers, {})
    allocate(vetter)
    return vetter


def ts(src: str, dst: str, proto: int = 6, sport: int = 0, dport: int = 443) -> m.TrafficSelector:
    return m.TrafficSelector(m.SelectorSide(ipaddress.ip_network(src), proto, sport),
                             m.SelectorSide(ipaddress.ip_network(dst), proto, dport))  # fmt: skip


OUT_TS = ts("198.51.100.0/24", "203.0.113.0/24")


def keys(spi: int = 0x5000, **changes: object) -> m.Phase2Sa:
    """One SA's keys as a correct child sends them for phase 2 1 (AES-CBC-128/SHA-256)."""
    base = m.Phase2Sa(
        spi, m.CryptKey(EspTransformId.AES_CBC, bytes(16)),
        m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(32)), None,
        m.Lifetimes(3000, 3600, 90000, 100000),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def ah_keys(spi: int) -> m.Phase2Sa:
    return m.Phase2Sa(spi, None, m.AuthKey(AuthAlgorithm.HMAC_SHA, bytes(20)), None,
                      m.Lifetimes(0, 3600, 0, 0))  # fmt: skip


def policies(selector: m.TrafficSelector, mode: EncapsulationMode = TUNNEL,
             priority: int = 1000) -> tuple[m.Phase2Policy, ...]:  # fmt: skip
    """out, in (and fwd in tunnel mode), with the SAs' selector: what install.py sends."""
    back = m.TrafficSelector(selector.dst, selector.src)
    out = [m.Phase2Policy(m.PolicyDirection.OUT, selector, priority),
           m.Phase2Policy(m.PolicyDirection.IN, back, priority)]  # fmt: skip
    if mode is TUNNEL:
        out.append(m.Phase2Policy(m.PolicyDirection.FWD, back, priority))
    return tuple(out)


def install(out: dict[str, object] | None = None, inb: dict[str, object] | None = None,
            **changes: object) -> m.Phase2Install:  # fmt: skip
    """A correct child's Phase2Install for phase 2 1, with `changes` to the install, `out`
    to the outbound SA's keys and `inb` to the inbound one's. Policies follow the (changed)
    selector and mode unless given."""
    fields: dict[str, object] = dict(
        request_id=1, phase1_number=1, phase2_number=1, tunnel_id=1, local=A, remote=B,
        proto=ESP, mode=TUNNEL, reqid=9, inbound=keys(IN_SPI, **(inb or {})),
        outbound=keys(0x5000, **(out or {})), encap=None, selector=OUT_TS,
    )  # fmt: skip
    fields.update(changes)
    if "policies" not in fields:
        fields["policies"] = policies(fields["selector"], fields["mode"])  # type: ignore[arg-type]
    return m.Phase2Install(**fields)  # type: ignore[arg-type]


def ah_install(remote: object, inbound_spi: int = 0x6001, **changes: object) -> m.Phase2Install:
    """Phase 2 2 ("any2": AH under the %any phase 1 2)."""
    fields: dict[str, object] = dict(
        phase1_number=2, phase2_number=2, tunnel_id=2, remote=remote, proto=AH,
        inbound=ah_keys(inbound_spi), outbound=ah_keys(0x6000), reqid=12,
        selector=ts("198.51.100.0/24", "203.0.113.0/24", proto=0, dport=0),
    )  # fmt: skip
    fields.update(changes)
    return install(**fields)


def refusal(result: object, code: ErrorCode, text: str = "") -> None:
    assert isinstance(result, Refusal), result
    assert result.code is code, result
    assert text in result.reason


def accepted(result: object) -> Phase2Plan:
    assert isinstance(result, Phase2Plan), result
    return result


def record(vetter: Vetter, plan: Phase2Plan) -> None:
    """What installer.py records once the kernel took the whole install."""
    for pol in plan.policies:
        vetter.installed.add_policy(pol.entry)
    vetter.installed.add_sa(plan.outbound.entry)
    vetter.installed.add_sa(plan.inbound.entry)


def test_good_install_is_planned_whole(vetter: Vetter) -> None:
    plan = accepted(vetter.phase2_install(install()))
    out, inbound = plan.outbound, plan.inbound
    assert not out.update and inbound.update  # the inbound SA fills the larval SPI
    assert (out.spec.src, out.spec.dst, out.spec.spi) == (A, B, 0x5000)
    assert (inbound.spec.src, inbound.spec.dst, inbound.spec.spi) == (B, A, IN_SPI)
    assert out.spec.encryption is not None and out.spec.encryption.name == "cbc(aes)"
    assert out.spec.lifetime.hard_seconds == 3600
    assert out.spec.lifetime.hard_bytes == 100000 * 1024
    assert inbound.spec.selector is not None and inbound.spec.selector.src == OUT_TS.dst.network
    assert [p.spec.direction.name for p in plan.policies] == ["OUT", "IN", "FWD"]
    for pol in plan.policies:  # templates are the install's own
        (tmpl,) = pol.spec.templates
        assert tmpl.reqid == 9 and {tmpl.src, tmpl.dst} == {A, B}
        assert pol.replaces is None
    assert {e.tunnel_id for e in (out.entry, inbound.entry)} == {1}


# every rule vetting applies to one SA, now on either SA of the install
SA_REFUSALS = [
    ({"encryption": m.CryptKey(EspTransformId.AES_CBC, bytes(32))}, ErrorCode.BAD_ALGORITHM,
     "256"),
    ({"encryption": m.CryptKey(EspTransformId.TRIPLE_DES, bytes(24))}, ErrorCode.BAD_ALGORITHM,
     ""),
    ({"integrity": m.AuthKey(AuthAlgorithm.HMAC_SHA, bytes(20))}, ErrorCode.BAD_ALGORITHM, ""),
    ({"integrity": m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(20))}, ErrorCode.BAD_LENGTH,
     "needs 32"),
    ({"integrity": None}, ErrorCode.BAD_ALGORITHM, "without integrity"),
    ({"lifetimes": m.Lifetimes(0, 0, 0, 0)}, ErrorCode.NOT_PERMITTED, "hard lifetime"),
    ({"lifetimes": m.Lifetimes(100, 3601, 0, 100)}, ErrorCode.NOT_PERMITTED, "hard lifetime"),
    ({"lifetimes": m.Lifetimes(100, 3600, 0, 0)}, ErrorCode.NOT_PERMITTED, "volume"),
    ({"lifetimes": m.Lifetimes(3600, 100, 0, 100)}, ErrorCode.INVALID_REQUEST, "soft"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "code", "text"), SA_REFUSALS)
@pytest.mark.parametrize("side", ["out", "inb"])
def test_sa_refusals_on_either_side_refuse_the_install(
    vetter: Vetter, side: str, changes: dict[str, object], code: ErrorCode, text: str
) -> None:
    refusal(vetter.phase2_install(install(**{side: changes})), code, text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code", "text"),
    [
        ({"remote": STRANGER}, ErrorCode.NOT_PERMITTED, "not the gateway"),
        ({"local": STRANGER}, ErrorCode.NOT_PERMITTED, "not the gateway"),
        ({"phase2_number": 9}, ErrorCode.NO_SUCH_TUNNEL, ""),
        ({"phase1_number": 2}, ErrorCode.NOT_PERMITTED, "belongs to phase 1 1"),
        ({"mode": EncapsulationMode.TRANSPORT}, ErrorCode.NOT_PERMITTED, "TRANSPORT"),
        ({"reqid": 0}, ErrorCode.INVALID_REQUEST, "reqid"),
        ({"selector": ts("198.51.100.0/23", "203.0.113.0/24")}, ErrorCode.NOT_PERMITTED, "wider"),
        ({"selector": ts("198.51.100.0/24", "203.0.113.0/24", proto=0, dport=0)},
         ErrorCode.NOT_PERMITTED, "wider"),
        ({"selector": ts("198.51.100.0/24", "203.0.113.0/24", dport=80)},
         ErrorCode.NOT_PERMITTED, "wider"),
        ({"encap": m.NatTEncap(4500, 4500)}, ErrorCode.NOT_PERMITTED, "never seen"),
        ({"proto": AH, "inbound": ah_keys(IN_SPI), "outbound": ah_keys(0x5000)},
         ErrorCode.BAD_ALGORITHM, "IPSEC_AH not configured"),
        ({"inbound": keys(0x778)}, ErrorCode.NOT_PERMITTED, "not allocated"),
    ],
)  # fmt: skip
def test_install_refusals(vetter: Vetter, changes: dict[str, object], code: ErrorCode,
                          text: str) -> None:  # fmt: skip
    refusal(vetter.phase2_install(install(**changes)), code, text)


def test_the_parts_must_agree(vetter: Vetter) -> None:
    """Consistency between the parts: one algorithm for both SAs, and policies with exactly
    the SAs' selectors (each inside the definition too)."""
    aead = m.AeadKey(EspTransformId.AES_GCM_16, bytes(32), bytes(4))
    gcm = {"encryption": None, "integrity": None, "aead": aead}
    assert isinstance(vetter.phase2_install(install(out=gcm, inb=gcm)), Phase2Plan)
    refusal(vetter.phase2_install(install(out=gcm)), ErrorCode.BAD_ALGORITHM, "inbound")
    short = {**gcm, "aead": m.AeadKey(EspTransformId.AES_GCM_16, bytes(16), bytes(4))}
    refusal(vetter.phase2_install(install(out=short, inb=short)), ErrorCode.BAD_ALGORITHM)
    narrow = ts("198.51.100.128/25", "203.0.113.7/32")
    assert isinstance(vetter.phase2_install(install(selector=narrow)), Phase2Plan)
    # policies narrower than the SAs (inside the definition, but not the SAs' selector)
    refusal(vetter.phase2_install(install(policies=policies(narrow))), ErrorCode.NOT_PERMITTED,
            "not the SAs'")  # fmt: skip
    # policies wider than the SAs and than the definition
    wide = ts("198.51.100.0/23", "203.0.113.0/24")
    refusal(vetter.phase2_install(install(policies=policies(wide))), ErrorCode.NOT_PERMITTED,
            "wider")  # fmt: skip
    everything = ts("0.0.0.0/0", "203.0.113.0/24")
    refusal(vetter.phase2_install(install(policies=policies(everything))),
            ErrorCode.NOT_PERMITTED, "wider")  # fmt: skip
    # an out policy with the in selector (and the other way round)
    out, in_, fwd = policies(OUT_TS)
    swapped = (dataclasses.replace(out, selector=in_.selector),
               dataclasses.replace(in_, selector=out.selector), fwd)  # fmt: skip
    refusal(vetter.phase2_install(install(policies=swapped)), ErrorCode.NOT_PERMITTED, "wider")
    other_protocol = m.TrafficSelector(OUT_TS.src, m.SelectorSide(
        ipaddress.ip_network("203.0.113.0/24"), 17, 443))  # fmt: skip
    refusal(vetter.phase2_install(install(policies=policies(other_protocol))),
            ErrorCode.NOT_PERMITTED)  # fmt: skip


def test_policies_never_outrank_the_operators(vetter: Vetter) -> None:
    for priority in (0, 1, MIN_POLICY_PRIORITY - 1):
        refusal(vetter.phase2_install(install(policies=policies(OUT_TS, priority=priority))),
                ErrorCode.NOT_PERMITTED, "priority")  # fmt: skip
    out, in_, fwd = policies(OUT_TS)
    one_low = (out, dataclasses.replace(in_, priority=MIN_POLICY_PRIORITY - 1), fwd)
    refusal(vetter.phase2_install(install(policies=one_low)), ErrorCode.NOT_PERMITTED, "priority")


def test_nat_t_ports_must_be_the_ones_the_parent_saw(vetter: Vetter) -> None:
    vetter.peers.record(A, B, 61000, natt=True, now=0)
    # seen, but no exchange of which the peer proved it receives: a forged datagram
    refusal(vetter.phase2_install(install(encap=m.NatTEncap(4500, 61000))),
            ErrorCode.NOT_PERMITTED, "proven")  # fmt: skip
    prove_natt_exchange(vetter, 61000)
    plan = accepted(vetter.phase2_install(install(encap=m.NatTEncap(4500, 61000))))
    assert plan.inbound.spec.encap is not None and plan.inbound.spec.encap.sport == 61000
    refusal(vetter.phase2_install(install(encap=m.NatTEncap(4500, 61001))),
            ErrorCode.NOT_PERMITTED, "61001")  # fmt: skip
    refusal(vetter.phase2_install(install(encap=m.NatTEncap(4501, 61000))),
            ErrorCode.NOT_PERMITTED, "local")  # fmt: skip


def test_encap_true_accepts_only_esp_in_udp() -> None:
    """encap = true: an install without UDP encapsulation is wider than the definition."""
    peers = PeerTable()
    peers.record(A, B, 500, natt=False, now=0.0)
    peers.record(A, B, 4500, natt=True, now=0.0)
    forced = DEFS.replace("nat_traversal = true", "nat_traversal = true\nencap = true", 1)
    vetter = Vetter(numbered(forced), Installed(), peers, {})
    prove_natt_exchange(vetter, 4500)  # the parent relayed a real exchange that floated
    allocate(vetter)
    refusal(vetter.phase2_install(install()), ErrorCode.NOT_PERMITTED, "encap = true")
    accepted(vetter.phase2_install(install(encap=m.NatTEncap(4500, 4500))))


def prove_natt_exchange(vetter: Vetter, port: int) -> None:
    """What the parent relays of a real Main Mode with B, which then floats to NAT-T."""
    now = time.monotonic()
    mm1 = ICOOKIE + bytes(8) + bytes([1, 0x10, 2, 0]) + bytes(4) + (28).to_bytes(4, "big")
    vetter.egress.received(A, 500, B, 500, False, mm1, now)
    mm2 = ICOOKIE + RCOOKIE + mm1[16:]
    assert vetter.egress.check_send(A, 500, B, 500, False, mm2, False, now) is None
    vetter.egress.received(A, 4500, B, port, True, mm2, now)  # the peer echoes our cookie


def test_inbound_sa_needs_an_spi_allocated_for_the_same_phase2(vetter: Vetter) -> None:
    request = m.SpiRequest(1, 1, ESP, B, A)
    assert isinstance(vetter.spi(request), SpiPlan)
    refusal(vetter.spi(m.SpiRequest(1, 1, ESP, STRANGER, A)), ErrorCode.NOT_PERMITTED)
    refusal(vetter.spi(m.SpiRequest(1, 1, AH, B, A)), ErrorCode.BAD_ALGORITHM)
    vetter.installed.add_sa(SaEntry((A, 0x778, ESP), 2, 2, B, larval=True))
    refusal(vetter.phase2_install(install(inbound=keys(0x778))), ErrorCode.NOT_PERMITTED,
            "not allocated")  # fmt: skip
    refusal(vetter.phase2_install(install(inbound=keys(0x779))), ErrorCode.NOT_PERMITTED,
            "not allocated")  # fmt: skip
    allocate(vetter, 0x77A, peer=STRANGER)  # allocated for another peer
    refusal(vetter.phase2_install(install(inbound=keys(0x77A))), ErrorCode.NOT_PERMITTED,
            "not allocated")  # fmt: skip
    record(vetter, accepted(vetter.phase2_install(install())))
    refusal(vetter.phase2_install(install(outbound=keys(0x5001))), ErrorCode.NOT_PERMITTED,
            "not allocated")  # filled already  # fmt: skip


def test_reqid_is_bound_to_one_phase2_and_counts_are_bounded(vetter: Vetter) -> None:
    record(vetter, accepted(vetter.phase2_install(install())))
    allocate(vetter, 0x780)
    refusal(vetter.phase2_install(install(inbound=keys(0x780))), ErrorCode.NOT_PERMITTED,
            "already exists")  # the outbound SPI 0x5000 again  # fmt: skip
    vetter.peers.record(A, STRANGER, 500, natt=False, now=0)  # makes the %any tunnel usable
    allocate(vetter, 0x6001, phase2=2, peer=STRANGER)
    refusal(vetter.phase2_install(ah_install(STRANGER, reqid=9)), ErrorCode.NOT_PERMITTED,
            "reqid 9 belongs to phase 2 1")  # fmt: skip
    assert isinstance(vetter.phase2_install(ah_install(STRANGER, reqid=10)), Phase2Plan)
    for spi in range(0x8000, 0x8000 + inst.MAX_SAS_PER_PHASE2 - 3):
        vetter.installed.add_sa(SaEntry((B, spi, ESP), 1, 1, A, larval=False, reqid=9))
    refusal(vetter.phase2_install(install(inbound=keys(0x780), outbound=keys(0x9999))),
            ErrorCode.LIMIT_REACHED)  # fmt: skip


def test_policy_counts_and_owners(vetter: Vetter) -> None:
    plan = accepted(vetter.phase2_install(install()))
    record(vetter, plan)
    # a rekey under the same selectors: the policies are there already, nothing to write
    allocate(vetter, 0x781)
    rekey = {"inbound": keys(0x781), "outbound": keys(0x5001)}
    again = accepted(vetter.phase2_install(install(**rekey)))
    assert all(p.unchanged for p in again.policies)
    # a different priority: this phase 2's own policies are replaced
    lower = policies(OUT_TS, priority=900)
    moved = accepted(vetter.phase2_install(install(**rekey, policies=lower)))
    assert all(p.replaces is not None and not p.unchanged for p in moved.policies)
    # another phase 2's policy is never taken over
    for pol in plan.policies:
        pol.entry.phase2_number = 2
    refusal(vetter.phase2_install(install(**rekey)), ErrorCode.NOT_PERMITTED,
            "belongs to phase 2 2")  # fmt: skip
    # per phase 2 bound on policies
    vetter.installed.policies.clear()
    for i in range(inst.MAX_POLICIES_PER_PHASE2 - 2):
        sel = ts(f"198.51.100.{i}/32", "203.0.113.0/24")
        vetter.installed.add_policy(dataclasses.replace(
            plan.policies[0].entry, key=(sel, m.PolicyDirection.OUT), phase2_number=1))  # fmt: skip
    refusal(vetter.phase2_install(install(**rekey)), ErrorCode.LIMIT_REACHED, "policies")


def test_any_peer_definition_only_for_peers_that_talked_to_us(vetter: Vetter) -> None:
    allocate(vetter, 0x6001, phase2=2, peer=STRANGER)
    refusal(vetter.phase2_install(ah_install(STRANGER)), ErrorCode.NOT_PERMITTED,
            "192.0.2.66 is not the gateway")  # fmt: skip
    vetter.peers.record(A, STRANGER, 500, natt=False, now=0)
    assert isinstance(vetter.phase2_install(ah_install(STRANGER)), Phase2Plan)


def test_activation_override_is_a_gateway_too() -> None:
    activations = {1: Activation(1, None, STRANGER)}
    vetter = Vetter(numbered(DEFS), Installed(), PeerTable(), activations)
    allocate(vetter, peer=STRANGER)
    assert isinstance(vetter.phase2_install(install(remote=STRANGER)), Phase2Plan)


def remove(**changes: object) -> m.Phase2Remove:
    base = m.Phase2Remove(3, 1, 1, A, B, ESP, IN_SPI, 0x5000, 9, False)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_removes_only_of_recorded_sas(vetter: Vetter) -> None:
    plan = accepted(vetter.phase2_install(install()))
    record(vetter, plan)
    removal = vetter.phase2_remove(remove())
    assert isinstance(removal, Phase2Removal)
    assert removal.sas == (plan.inbound.entry, plan.outbound.entry)
    for bad in [
        {"spi_out": 0x5001}, {"spi_in": 0x776}, {"proto": AH}, {"tunnel_id": 2},
        {"phase2_number": 2}, {"reqid": 10}, {"local": B, "remote": A},
        {"spi_in": 0x5000, "spi_out": IN_SPI},
    ]:  # fmt: skip
        refusal(vetter.phase2_remove(remove(**bad)), ErrorCode.NOT_PERMITTED, "not ours")
    # removed by the parent (remove, expiry): a late remove is fine and deletes nothing
    vetter.installed.forget_sa(plan.outbound.entry.key)
    late = vetter.phase2_remove(remove())
    assert isinstance(late, Phase2Removal) and late.sas == (plan.inbound.entry,)
    vetter.installed.forget_sa(plan.inbound.entry.key)
    gone = vetter.phase2_remove(remove())
    assert isinstance(gone, Phase2Removal) and gone.sas == ()
    # the policies go with the last SA of their reqid, and only this phase 2's
    assert len(vetter.installed.unused_policies(1, 9)) == 3
    assert vetter.installed.unused_policies(2, 9) == []


def test_remove_of_an_install_that_never_happened_takes_the_allocated_spi(vetter: Vetter) -> None:
    removal = vetter.phase2_remove(remove())
    assert isinstance(removal, Phase2Removal) and removal.keep_policies
    assert [e.key for e in removal.sas] == [(A, IN_SPI, ESP)]
    refusal(vetter.phase2_remove(remove(phase2_number=2)), ErrorCode.NOT_PERMITTED,
            "not allocated for phase 2 2")  # fmt: skip


def test_skeyid(vetter: Vetter) -> None:
    nr = b"r" * 20
    now = 1000.0
    issued = vetter.nonce(m.NonceRequest(1, 1), now)  # an initiator's Ni is the parent's
    assert isinstance(issued, tuple)
    nonce_id, ni = issued
    assert nonce_id != 0 and len(ni) == m.PARENT_NONCE_BYTES
    by_number = m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, nonce_id, nr)
    refusal(vetter.skeyid(by_number, now), ErrorCode.NO_SUCH_TUNNEL)  # nobody is negotiating
    vetter.peers.record(A, B, 500, natt=False, now=now)
    refusal(vetter.skeyid(by_number, now), ErrorCode.NOT_PERMITTED)  # that nonce is used up
    nonce_id, ni = vetter.nonce(m.NonceRequest(1, 1), now)  # type: ignore[misc]
    by_number = m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, nonce_id, nr)
    assert vetter.skeyid(by_number, now) == (
        hmac.new(b"secret one", ni + nr, hashlib.sha256).digest(),
        b"",
    )
    refusal(vetter.skeyid(by_number, now), ErrorCode.NOT_PERMITTED)  # single use
    refusal(vetter.skeyid(m.SkeyidRequest(1, 1, None, IkeHash.SHA, 0, nr), now),
            ErrorCode.BAD_ALGORITHM)  # fmt: skip
    refusal(vetter.skeyid(m.SkeyidRequest(1, 7, None, IkeHash.SHA2_256, 0, nr), now),
            ErrorCode.NO_SUCH_TUNNEL)  # fmt: skip
    # a responder names the initiator's nonce; the parent makes Nr and returns it
    by_peer = m.SkeyidRequest(1, None, B, IkeHash.SHA2_256, 0, nr)
    answer = vetter.skeyid(by_peer, now)
    assert isinstance(answer, tuple)
    skeyid, ours = answer
    assert len(ours) == m.PARENT_NONCE_BYTES
    assert skeyid == hmac.new(b"secret one", nr + ours, hashlib.sha256).digest()
    refusal(vetter.skeyid(by_peer, now + 3600), ErrorCode.NO_SUCH_TUNNEL)  # B went quiet
    # the %any definition is aggressive mode: never chosen by peer address
    vetter.peers.record(A, STRANGER, 500, natt=False, now=now)
    refusal(vetter.skeyid(m.SkeyidRequest(1, None, STRANGER, IkeHash.SHA, 0, nr), now),
            ErrorCode.NO_SUCH_TUNNEL)  # fmt: skip
    assert isinstance(vetter.skeyid(m.SkeyidRequest(1, 2, None, IkeHash.SHA, 0, nr), now), tuple)
    refusal(vetter.nonce(m.NonceRequest(1, 7), now), ErrorCode.NO_SUCH_TUNNEL)


def test_initiator_nonces_are_bound_single_use_bounded_and_expire(vetter: Vetter) -> None:
    now = 1000.0
    vetter.peers.record(A, B, 500, natt=False, now=now)
    vetter.peers.record(A, STRANGER, 500, natt=False, now=now)
    nonce_id, _ = vetter.nonce(m.NonceRequest(1, 2), now)  # type: ignore[misc]
    # made for definition 2: useless for definition 1 (and then used up)
    refusal(vetter.skeyid(m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, nonce_id, b"r" * 16),
                          now), ErrorCode.NOT_PERMITTED)  # fmt: skip
    nonce_id, _ = vetter.nonce(m.NonceRequest(1, 1), now)  # type: ignore[misc]
    late = now + NONCE_LIFETIME + 1
    vetter.peers.record(A, B, 500, natt=False, now=late)
    refusal(vetter.skeyid(m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, nonce_id, b"r" * 16),
                          late), ErrorCode.NOT_PERMITTED)  # fmt: skip
    ids = [vetter.nonce(m.NonceRequest(1, 1), late)[0] for _ in range(MAX_NONCES + 10)]  # type: ignore[index]
    assert len(vetter.nonces) == MAX_NONCES
    refusal(vetter.skeyid(m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, ids[0], b"r" * 16),
                          late), ErrorCode.NOT_PERMITTED)  # the oldest went first  # fmt: skip
    ok = vetter.skeyid(m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, ids[-1], b"r" * 16), late)
    assert isinstance(ok, tuple) and ok[1] == b""


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
    cbc = install(out={"encryption": m.CryptKey(EspTransformId.AES_CBC, b"\x01" * 16),
                       "integrity": m.AuthKey(AuthAlgorithm.HMAC_SHA, b"\x02" * 20)})  # fmt: skip
    line = esp_line(sa_requests(cbc)[1])
    assert line == (
        '"IPv4","192.0.2.1","192.0.2.2","0x00005000","AES-CBC [RFC3602]","0x' + "01" * 16
        + '","HMAC-SHA-1-96 [RFC2404]","0x' + "02" * 20 + '"\n'
    )  # fmt: skip
    aead = m.AeadKey(EspTransformId.AES_GCM_16, b"\x03" * 16, b"\x04" * 4)
    gcm = esp_line(sa_requests(install(out={"encryption": None, "integrity": None,
                                            "aead": aead}))[1])  # fmt: skip
    assert gcm is not None and '"AES-GCM [RFC4106]","0x' + "03" * 16 + "04" * 4 in gcm


def test_snapshot_carries_no_secret() -> None:
    view = numbered(DEFS)
    encoded = b"".join(encode(msg) for msg in view.config_messages())
    assert b"secret one" not in encoded and b"secret any" not in encoded
    first = view.config_messages()[1]
    assert isinstance(first, m.ConfigPhase1) and first.definition.remote_addr == B


def test_a_peer_that_proved_its_address_stays_known_when_spoofing_churns_the_peer_table(
    vetter: Vetter,
) -> None:
    """A road warrior (the "%any" definition) behind a NAT proved in a real exchange that it
    receives at its address; then a flood from spoofed sources pushes it out of the bounded
    table of peers seen lately. Our own datagrams to its NAT-T port (DPD, a Delete, a phase 1
    rekey) and its phase 2 installs are still allowed: spoofing proves nothing."""
    ports = frozenset({500, 4500})
    to_b = m.DatagramOut(m.Endpoint(A, 4500), m.Endpoint(STRANGER, 41234), True, bytes(28))
    now = time.monotonic()
    mm1 = ICOOKIE + bytes(8) + bytes([1, 0x10, 2, 0]) + bytes(4) + (28).to_bytes(4, "big")
    vetter.peers.record(A, STRANGER, 41234, natt=True, now=now)
    vetter.egress.received(A, 4500, STRANGER, 41234, True, mm1, now)
    mm2 = ICOOKIE + RCOOKIE + mm1[16:]
    assert vetter.egress.check_send(A, 4500, STRANGER, 41234, True, mm2, False, now) is None
    vetter.egress.received(A, 4500, STRANGER, 41234, True, mm2, now)  # our cookie echoed
    allocate(vetter, 0x6001, phase2=2, peer=STRANGER)
    for k in range(PEERS_KEPT + 1):  # spoofed sources, each seen once
        vetter.peers.record(A, ipaddress.ip_address(0x0A000000 + k), 500, natt=False, now=now)
    assert not vetter.peers.seen(A, STRANGER)
    assert vetter.datagram(to_b, ports) is None
    assert isinstance(vetter.phase2_install(ah_install(STRANGER)), Phase2Plan)
    # a peer that never proved anything is not let in by the same road
    other = dataclasses.replace(to_b, remote=m.Endpoint(ipaddress.ip_address("192.0.2.77"), 41234))
    assert isinstance(vetter.datagram(other, ports), Refusal)
