"""ESP AES-CTR (RFC 3686, IKEv1 ESP transform 13) without a kernel: the proposal keywords
as strongSwan spells them, KEYMAT cut into key | 4-byte nonce, a Quick Mode between two
negotiators that agree on it, and the parent's vetting of the key lengths."""

from __future__ import annotations

import pytest
from harness.core_sim import Simulation, esp_proposal, mirrored
from test_vetting_rules import IN_SPI, A, B, accepted, install, numbered, refusal

from ikepriv.config import load_definitions
from ikepriv.config.proposals import EspProposal, ProposalError, parse_esp_proposals
from ikepriv.crypto.keymat import esp_layout
from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.isakmp.constants import AuthAlgorithm, EspTransformId
from ikepriv.parent_kernel.installed import Installed, SaEntry
from ikepriv.parent_kernel.keylog import esp_line
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.vetting import Vetter, sa_requests

CTR = EspTransformId.AES_CTR
SHA256 = AuthAlgorithm.HMAC_SHA2_256


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_keywords_and_keymat_layout(bits: int) -> None:
    (p,) = parse_esp_proposals([f"aes{bits}ctr-sha256"])
    assert p == EspProposal(CTR, bits, SHA256, None)
    assert p.keyword == f"aes{bits}ctr-sha256" and not p.aead
    layout = esp_layout(CTR, bits, SHA256)
    assert layout.cipher is not None and layout.cipher.xfrm_name == "rfc3686(ctr(aes))"
    assert (layout.enc_key_bytes, layout.integ_key_bytes) == (bits // 8 + 4, 32)


@pytest.mark.parametrize(
    ("text", "why"),
    [("aes128ctr", "needs an integrity algorithm"), ("aes512ctr-sha1", "aes512ctr")],
)
def test_bad_ctr_proposals_refused_naming_the_field(text: str, why: str) -> None:
    with pytest.raises(ProposalError, match=why):
        parse_esp_proposals([text])
    defs = f"""
[[phase1]]
name = "p1"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "secret one"
[[phase2]]
name = "p2"
phase1 = "p1"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
proposals = ["{text}"]
"""
    with pytest.raises(ValueError, match="proposals"):
        load_definitions(defs)


@pytest.mark.parametrize("bits", [128, 256])
def test_quick_mode_agrees_on_ctr_keys_with_nonce(bits: int) -> None:
    init, resp = mirrored(esp=[esp_proposal(CTR, bits, SHA256)])
    sim = Simulation(init, resp, seed=bits)
    sim.initiate()
    sim.run()
    pairs = sim.assert_keys_match(expected_pairs=2)
    for out, _ in pairs:
        assert out.encryption is not None and out.encryption.transform is CTR
        assert len(out.encryption.key) == bits // 8 + 4  # key | nonce, as XFRM takes it
        assert out.integrity is not None and out.integrity.algorithm is SHA256
    # the two directions have their own keys and nonces
    assert pairs[0][0].encryption != pairs[1][0].encryption


def test_responder_picks_ctr_only_when_configured() -> None:
    init, resp = mirrored(
        esp=[esp_proposal(CTR, 128, SHA256), esp_proposal(EspTransformId.AES_CBC, 128, SHA256)],
        responder_esp=[esp_proposal(EspTransformId.AES_CBC, 128, SHA256)],
    )
    sim = Simulation(init, resp, seed=5)
    sim.initiate()
    sim.run()
    for out, _ in sim.assert_keys_match(expected_pairs=2):
        assert out.encryption is not None and out.encryption.transform is EspTransformId.AES_CBC


DEFS = """
[[phase1]]
name = "p1"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "secret one"
proposals = ["aes128-sha256-modp2048"]

[[phase2]]
name = "p2"
phase1 = "p1"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
protocol = "tcp"
remote_port = 443
proposals = ["aes256ctr-sha256"]
lifetime = 3600
lifetime_kb = 100000
"""


@pytest.fixture
def vetter() -> Vetter:
    peers = PeerTable()
    peers.record(A, B, 500, natt=False, now=0.0)
    v = Vetter(numbered(DEFS), Installed(), peers, {})
    v.installed.add_sa(SaEntry((A, IN_SPI, m.ProtocolId.IPSEC_ESP), 1, 1, B, larval=True))
    return v


def _ctr(key_bytes: int, transform: EspTransformId = CTR) -> dict[str, object]:
    return {"encryption": m.CryptKey(transform, bytes(range(key_bytes)))}


def test_vetting_takes_key_and_nonce_and_nothing_else(vetter: Vetter) -> None:
    plan = accepted(vetter.phase2_install(install(out=_ctr(36), inb=_ctr(36))))
    assert plan.outbound.spec.encryption is not None
    assert plan.outbound.spec.encryption.name == "rfc3686(ctr(aes))"
    assert len(plan.outbound.spec.encryption.key) == 36
    # AES-256 without the nonce, AES-128 | nonce (not configured), CBC (not configured)
    for bad in (_ctr(32), _ctr(20), _ctr(32, EspTransformId.AES_CBC)):
        refusal(vetter.phase2_install(install(out=bad, inb=bad)), ErrorCode.BAD_ALGORITHM)
    refusal(vetter.phase2_install(install(out=_ctr(4), inb=_ctr(4))), ErrorCode.BAD_LENGTH)


def test_keylog_names_ctr_for_wireshark(vetter: Vetter) -> None:
    line = esp_line(sa_requests(install(out=_ctr(20)))[1])
    assert line is not None and '"AES-CTR [RFC3686]","0x' + bytes(range(20)).hex() in line
