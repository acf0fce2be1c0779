"""Issue 9 points 1-4 in the fast tier: the SA flags the kernel gets (AH alignment, the
family of tunnel-mode selectors), rekey_margin from the definition to the negotiator's
deadlines, its limits in the model, and the phase 1 lifetime the listing shows."""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import replace

import pytest
from harness.core_sim import Simulation, esp_proposal, ike_proposal, mirrored
from hypothesis import given
from hypothesis import strategies as st
from test_config_loader import GOOD, problems

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.lifetimes import kernel_lifetimes, rekey_margin, soft_time
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.config.loader import load_definitions
from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import Direction, decode, encode
from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.definitions import _phase1_to_ipc, _phase2_to_ipc
from ikepriv.parent_kernel.kernel import xfrm_messages as xm
from ikepriv.parent_kernel.kernel.specs import Encryption, Integrity, SaSpec, SelectorSpec
from ikepriv.parent_kernel.kernel.xfrm_messages import XfrmMode
from ikepriv.parent_kernel.kernel.xfrm_pack import sa_flags

V4 = (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2"))
V6 = (ipaddress.ip_address("2001:db8:1::1"), ipaddress.ip_address("2001:db8:1::2"))
SEL4 = SelectorSpec(ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"))
SEL6 = SelectorSpec(
    ipaddress.ip_network("2001:db8:a::/64"), ipaddress.ip_network("2001:db8:b::/64")
)


def _ah(gw: tuple[object, ...], alg: str, key: int, icv: int, **kw: object) -> SaSpec:
    return SaSpec(
        src=gw[0],
        dst=gw[1],
        proto=IpProtocol.AH,
        spi=0x1000,
        mode=XfrmMode.TUNNEL,  # type: ignore[arg-type]
        reqid=1,
        integrity=Integrity(alg, b"k" * key, icv),
        **kw,
    )  # type: ignore[arg-type]


def _esp(
    gw: tuple[object, ...], sel: SelectorSpec | None, mode: XfrmMode = XfrmMode.TUNNEL
) -> SaSpec:
    return SaSpec(
        src=gw[0],
        dst=gw[1],
        proto=IpProtocol.ESP,
        spi=0x1000,
        mode=mode,
        reqid=1,  # type: ignore[arg-type]
        encryption=Encryption("cbc(aes)", b"k" * 16),
        integrity=Integrity("hmac(sha256)", b"a" * 32, 128),
        selector=sel,
    )


# ------------------------------------------------------------------- point 1: AH alignment


@pytest.mark.parametrize(
    ("alg", "key", "icv"),
    [
        ("hmac(sha256)", 32, 128),
        ("hmac(sha384)", 48, 192),
        ("hmac(sha512)", 64, 256),
        ("hmac(sha1)", 20, 96),
    ],
)
def test_ipv4_ah_sas_ask_for_32_bit_alignment_and_ipv6_keeps_64(
    alg: str, key: int, icv: int
) -> None:
    assert sa_flags(_ah(V4, alg, key, icv)) & xm.XFRM_STATE_ALIGN4
    assert not sa_flags(_ah(V6, alg, key, icv)) & xm.XFRM_STATE_ALIGN4  # RFC 4302: 64 bits
    assert not sa_flags(_esp(V4, SEL4)) & xm.XFRM_STATE_ALIGN4  # ESP pads on its own


# ------------------------------------------------------------ point 2: 6-in-4 and 4-in-6


@pytest.mark.parametrize(("gw", "sel"), [(V4, SEL6), (V6, SEL4)])
def test_tunnel_sas_carry_the_other_family_with_its_selector(
    gw: tuple[object, ...], sel: SelectorSpec
) -> None:
    spec = _esp(gw, sel)  # refused before: "selector family differs from the SA's"
    assert spec.selector == sel
    assert spec.family != sel.family
    assert sa_flags(spec) & xm.XFRM_STATE_AF_UNSPEC
    assert not sa_flags(_esp(gw, SEL4 if gw == V4 else SEL6)) & xm.XFRM_STATE_AF_UNSPEC


def test_transport_mode_selector_must_stay_the_gateways_family() -> None:
    with pytest.raises(ValueError, match="transport mode selector family"):
        _esp(V4, SEL6, XfrmMode.TRANSPORT)


def test_definitions_of_6in4_load() -> None:
    text = GOOD.replace("198.51.100.0/24", "2001:db8:a::/64").replace(
        "203.0.113.0/24", "2001:db8:b::/64"
    )
    defs = load_definitions(text)
    assert {d.local_subnet.version for d in defs.phase2} == {6}
    assert {d.local_addr.version for d in defs.phase1} == {4}


# ------------------------------------------------------------------ point 3: rekey_margin


def _core(seed: int) -> Negotiator:
    rng = random.Random(seed)  # noqa: S311 - replayable on purpose
    return Negotiator(None, 0.0, rng.randbytes)


def test_a_60_s_sa_with_margin_30_rekeys_between_15_and_30_s() -> None:
    times = [soft_time(_core(seed), 100.0, 60, 30) for seed in range(200)]
    assert all(115.0 <= t <= 130.0 for t in times), (min(times), max(times))
    assert max(times) - min(times) > 10  # randomised, only towards earlier


def test_a_long_sa_rekeys_like_strongswan_margin_and_rand_time() -> None:
    times = [soft_time(_core(seed), 0.0, 28800, 540) for seed in range(200)]
    assert all(28800 - 1080 <= t <= 28800 - 540 for t in times)


def test_a_lifetime_the_peer_shortened_gets_half_of_it_as_margin() -> None:
    assert rekey_margin(_core(1), 60, 540) == 30
    assert all(15 <= soft_time(_core(s), 0.0, 60, 540) <= 30 for s in range(50))


@given(
    life=st.integers(60, 86400),
    margin=st.integers(30, 43200),
    shortened=st.integers(60, 86400),
    seed=st.integers(0, 2**16),
)
def test_the_old_sa_outlives_the_rekey_retry_and_the_overlap(
    life: int, margin: int, shortened: int, seed: int
) -> None:
    """Whatever the model accepts (30 <= margin <= lifetime / 2), and whatever shorter
    lifetime the peer imposes: the latest rekey start plus one retry period plus the overlap
    ends no later than the hard expiry; the kernel's soft expiry comes after our rekey."""
    margin = min(margin, life // 2)
    life = min(life, shortened)
    s = Settings()
    core = _core(seed)
    start = soft_time(core, 0.0, life, margin)
    assert 0 < start <= life - s.rekey_retry - s.rekey_overlap
    assert start >= (life - rekey_margin(core, life, margin)) / 2
    lt = kernel_lifetimes(core, life, 0, margin)
    assert life - rekey_margin(core, life, margin) <= lt.soft_seconds <= life


def _with_margins(
    p1_margin: int, p2_margin: int, p1_life: int, p2_life: int
) -> tuple[ConfigSnapshot, ConfigSnapshot]:
    init, resp = mirrored(
        ike=[ike_proposal(lifetime=p1_life)], esp=[esp_proposal(lifetime=p2_life)]
    )

    def margins(c: ConfigSnapshot) -> ConfigSnapshot:
        return ConfigSnapshot.of(
            [replace(d, rekey_margin=p1_margin) for d in c.phase1.values()],
            [replace(d, rekey_margin=p2_margin) for d in c.phase2.values()],
        )

    return margins(init), margins(resp)


def test_the_negotiator_rekeys_by_the_definitions_margins() -> None:
    """Before: a global margin capped at 10 % of the lifetime (a 60 s SA rekeyed after
    48-54 s); now the definition's rekey_margin, for phase 1 and phase 2."""
    for seed in range(8):
        sim = Simulation(*_with_margins(40, 30, 80, 60), seed=seed)
        sim.initiate()
        sim.run(duration=5)
        (sa,) = sim.established_isakmp("initiator")
        (child,) = sim.established_children("initiator")
        assert 20 <= sa.rekey_at - sa.established_at <= 40
        assert 15 <= child.rekey_at - child.created <= 30


def test_rekey_margin_travels_from_the_database_to_the_child() -> None:
    """Before, Phase1Def/Phase2Def carried lifetimes only: the child never saw the margin."""
    text = GOOD.replace("lifetime = 28800", "lifetime = 28800\nrekey_margin = 900")
    text = text.replace("lifetime = 3600", "lifetime = 3600\nrekey_margin = 120")
    defs = load_definitions(text)
    p1 = _phase1_to_ipc(defs.phase1[0], 1)
    p2 = _phase2_to_ipc(defs.phase2[0], 1, 1)
    for msg in (m.ConfigPhase1(1, p1), m.ConfigPhase2(1, p2)):
        back = decode(encode(msg), Direction.PARENT_TO_CHILD)
        assert back == msg
    assert (p1.rekey_margin, p2.rekey_margin) == (900, 120)


@pytest.mark.parametrize(
    ("margin", "words"), [("29", "at least 30"), ("14401", "at most half of lifetime")]
)
def test_impossible_margins_are_refused_naming_the_field(margin: str, words: str) -> None:
    text = GOOD.replace("lifetime = 28800", f"lifetime = 28800\nrekey_margin = {margin}")
    got = problems(text)
    assert any(f == "rekey_margin" and words in msg for _, f, msg in got), got


# --------------------------------------------------------- point 4: the lifetime in force


def test_the_listing_shows_the_phase1_lifetime_in_force_not_the_peers_proposal() -> None:
    init, resp = mirrored(
        ike=[ike_proposal(lifetime=31680)], responder_ike=[ike_proposal(lifetime=28800)]
    )
    sim = Simulation(init, resp, seed=3)
    sim.initiate()
    sim.run(duration=5)
    (sa,) = sim.established_isakmp("responder")
    report = sim.responder.core.report_isakmp(sa, 0)
    assert sa.lifetime == 28800
    assert report.algorithms.endswith(" 28800s"), report.algorithms
    assert report.expires_at - sim.responder.core.wall(0) <= 28800
    assert socket.AF_INET  # keep the import honest for the family tests above
