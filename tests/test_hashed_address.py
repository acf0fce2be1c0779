"""Addresses made from the wire hash once (ipc/hashed_address.py) and mix with plain ones.

The parent's tables hold addresses from definitions (plain `ipaddress` objects) and are
probed with addresses from datagrams and IPC messages (the hashed subclasses): a lookup
that missed because of the class would refuse a peer's datagram or lose a record.
"""

from __future__ import annotations

import ipaddress

import pytest

from ikepriv.ipc import messages as m
from ikepriv.ipc.hashed_address import HashedIPv4Address, HashedIPv6Address, hashed_address
from ikepriv.ipc.schema import Direction, decode, encode

TEXTS = ["192.0.2.1", "203.0.113.254", "2001:db8::1", "2001:db8:0:1::ff"]


@pytest.mark.parametrize("text", TEXTS)
def test_a_hashed_address_is_the_plain_one_in_tables(text: str) -> None:
    plain, fast = ipaddress.ip_address(text), hashed_address(text)
    assert type(fast) in (HashedIPv4Address, HashedIPv6Address)
    assert fast == plain and plain == fast and hash(fast) == hash(plain)
    table = {(plain, plain): "definition"}
    assert table.get((fast, fast)) == "definition"
    assert {fast} == {plain} and str(fast) == text and repr(fast) == repr(plain)
    assert hashed_address(plain.packed) == plain


def test_the_codec_decodes_hashed_addresses_and_accepts_both() -> None:
    local, remote = ipaddress.ip_address("192.0.2.1"), hashed_address("2001:db8::7")
    msg = m.DatagramIn(m.Endpoint(local, 500), m.Endpoint(hashed_address("192.0.2.2"), 500),
                       False, bytes(28))  # fmt: skip
    back = decode(encode(msg), Direction.PARENT_TO_CHILD)
    assert back == msg and isinstance(back, m.DatagramIn)
    assert type(back.local.addr) is HashedIPv4Address
    v6 = m.Endpoint(remote, 500)
    assert v6.addr is remote  # taken as it is, no conversion


def test_a_scoped_hashed_address_is_still_refused_by_the_codec() -> None:
    with pytest.raises(Exception, match="scope"):
        m.Endpoint(hashed_address("fe80::1%eth0"), 500)
