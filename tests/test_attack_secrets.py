"""Attack: a compromised child uses the parent's SKEYID service as a PSK oracle.

SKEYID = prf(PSK, Ni_b | Nr_b). When the child named both nonces, Ni = "Key Pad " and
Nr = "for IKEv2" gave it prf(PSK, "Key Pad for IKEv2"), the key of IKEv2 PSK authentication
(RFC 7296 2.15): with it the child could authenticate as the gateway to any IKEv2 peer that
shares the key, without ever seeing the PSK, and keep doing so after a restart. The class:
any keyed function of a long-term secret over an input the child fully chooses.

A real ikeprivd in a network namespace of the test's own, and a hostile child speaking the
IPC as a real process (test_vetting_hostile_child.StandIn). The peer really talks to us
(the "negotiation in progress" gate is open), so only the binding of SKEYID to the parent's
own nonce stands between the child and the oracle.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from test_vetting_hostile_child import PSK_B, B, refused, setup, talk  # noqa: F401

from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import encode
from ikepriv.isakmp.constants import IkeHash

pytestmark = [pytest.mark.attacks, pytest.mark.root]

KEY_PAD = b"Key Pad for IKEv2"


def prf(data: bytes) -> bytes:
    return hmac.new(PSK_B, data, hashlib.sha256).digest()


def _legacy_request(request_id: int, ni: bytes, nr: bytes) -> bytes:
    """SkeyidRequest as it was before IPC version 4: both nonces chosen by the child
    (type, request id, phase1_number present, number 1, peer absent, prf, ni, nr)."""
    head = struct.pack(">HIBIBB", m.SkeyidRequest.TYPE, request_id, 1, 1, 0, IkeHash.SHA2_256)
    return head + struct.pack(">H", len(ni)) + ni + struct.pack(">H", len(nr)) + nr


def test_key_pad_for_ikev2_from_a_hostile_child_is_refused(setup) -> None:  # noqa: F811
    """The reproduced attack, byte for byte: no reply may carry prf(PSK, "Key Pad for
    IKEv2"). Today the message is no longer a valid request (the child is restarted)."""
    daemon, child, _ = setup
    talk(child)
    child.send_raw(_legacy_request(41, b"Key Pad ", b"for IKEv2"))
    got = []
    while (msg := child.recv()) is not None:
        got.append(msg)
        if isinstance(msg, m.SkeyidReply):
            break
    for msg in got:
        assert not (isinstance(msg, m.SkeyidReply) and msg.skeyid == prf(KEY_PAD)), (
            "the parent computed the IKEv2 PSK authenticator key for a hostile child"
        )
    assert all(not isinstance(msg, m.SkeyidReply) or msg.error is not m.ErrorCode.OK for msg in got)
    daemon.wait_log("protocol violation")


def test_every_skeyid_holds_fresh_parent_bytes_at_a_fixed_place(setup) -> None:  # noqa: F811
    """The class, through the current interface: whatever the child names, the prf input
    holds 32 fresh random bytes of the parent's (first as initiator, last as responder);
    initiator nonces are single use and bound to their definition; shorter peer nonces
    than 16 bytes are not even a valid request."""
    daemon, child, _ = setup
    talk(child)
    # responder form: the child names Ni; Nr is the parent's, and comes back with SKEYID
    seen_nr = set()
    for rid, chosen in enumerate((KEY_PAD, b"Key Pad for IKEv2" + bytes(15), bytes(16)), 1):
        reply = child.ask(m.SkeyidRequest(rid, None, B, IkeHash.SHA2_256, 0, chosen))
        assert isinstance(reply, m.SkeyidReply) and reply.error is m.ErrorCode.OK, reply
        assert len(reply.nonce) == m.PARENT_NONCE_BYTES and reply.nonce not in seen_nr
        seen_nr.add(reply.nonce)
        assert reply.skeyid == prf(chosen + reply.nonce) != prf(KEY_PAD)
    # initiator form: only a nonce the parent issued, once, for the definition it named
    issued = child.ask(m.NonceRequest(10, 1))
    assert isinstance(issued, m.NonceReply) and issued.error is m.ErrorCode.OK, issued
    ask = m.SkeyidRequest(11, 1, None, IkeHash.SHA2_256, issued.nonce_id, KEY_PAD)
    reply = child.ask(ask)
    assert isinstance(reply, m.SkeyidReply) and reply.error is m.ErrorCode.OK, reply
    assert reply.skeyid == prf(issued.nonce + KEY_PAD) and reply.nonce == b""
    again = child.ask(m.SkeyidRequest(12, 1, None, IkeHash.SHA2_256, issued.nonce_id, KEY_PAD))
    assert isinstance(again, m.SkeyidReply) and again.error is m.ErrorCode.NOT_PERMITTED
    guessed = child.ask(m.SkeyidRequest(13, 1, None, IkeHash.SHA2_256, 0x4B657920, KEY_PAD))
    assert isinstance(guessed, m.SkeyidReply) and guessed.error is m.ErrorCode.NOT_PERMITTED
    refused(daemon, "SKEYID request", "unknown, used, expired")
    other = child.ask(m.NonceRequest(14, 2))  # made for definition 2, used for 1
    assert isinstance(other, m.NonceReply) and other.error is m.ErrorCode.OK
    cross = child.ask(m.SkeyidRequest(15, 1, None, IkeHash.SHA2_256, other.nonce_id, KEY_PAD))
    assert isinstance(cross, m.SkeyidReply) and cross.error is m.ErrorCode.NOT_PERMITTED
    # an 8-byte peer nonce (RFC 2409's minimum) is malformed: the child is restarted
    short = encode(m.SkeyidRequest(16, None, B, IkeHash.SHA2_256, 0, bytes(16)))
    child.send_raw(short[: -16 - 2] + struct.pack(">H", 8) + b"Key Pad ")
    assert child.closed()
    daemon.wait_log("protocol violation")
