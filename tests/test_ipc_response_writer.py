"""ResponseWriter: a listing's Responses joined from each row's and line's own bytes.

The daemon sizes each row by encoding it and keeps those bytes, so a Response is never
encoded a second time. What the CLI reads must not change for that: every Response the
writer hands out is exactly what `encode` makes of the same Response (so it decodes, and
re-encodes to the same bytes), the pages hold every row and line in order, none is over
the datagram size or MAX_ROWS items, and what the writer cannot carry it refuses with an
IpcError and goes on as if it had not been offered.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ipc_strategies import struct_strategy

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import ResponseWriter, merge, split_encoded, split_response
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import MAX_MESSAGE_SIZE, Direction, decode, encode
from ikepriv.isakmp.constants import IdType

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("198.51.100.7")


def _row(tunnel_id: int) -> m.TunnelRow:
    return m.TunnelRow(
        tunnel_id, tunnel_id, m.Phase.PHASE1, f"peer-{tunnel_id}", m.Role.RESPONDER,
        m.TunnelState.ESTABLISHED, A, B, m.Identity(IdType.IPV4_ADDR, A.packed),
        m.Identity(IdType.FQDN, b"gw.example.net"),
        "AES_CBC-128 SHA2_256 MODP_2048 PRE_SHARED_KEY 28800s", 3600, 0, 0, 0, 0, None,
    )  # fmt: skip


def _decoded(parts: list[bytes]) -> list[m.Response]:
    out = []
    for data in parts:
        response = decode(data, Direction.DAEMON_TO_CLI)
        assert isinstance(response, m.Response)
        assert encode(response) == data  # the bytes `encode` makes of it
        out.append(response)
    return out


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(struct_strategy(m.TunnelRow, 4) | struct_strategy(m.TunnelRow, 6),
                  max_size=40),
    lines=st.lists(st.text(max_size=60).filter(str.isprintable), max_size=20),
    status=st.sampled_from(list(m.ErrorCode)),
)  # fmt: skip
def test_each_response_is_what_encode_makes_of_it(
    rows: list[m.TunnelRow], lines: list[str], status: m.ErrorCode
) -> None:
    parts = _decoded(split_encoded(status, lines, rows))
    assert merge(parts) == (status, lines, rows)
    assert [p.more for p in parts] == [True] * (len(parts) - 1) + [False]
    assert split_response(status, lines, rows) == parts


def test_a_listing_of_many_pages_is_complete_and_in_order() -> None:
    rows = [_row(n) for n in range(1, 10_002)]
    writer = ResponseWriter()
    parts = [full for row in rows if (full := writer.row(row)) is not None]
    parts.append(writer.finish(m.ErrorCode.OK, more=True))
    assert len(parts) > 20
    assert max(len(p) for p in parts) <= MAX_MESSAGE_SIZE
    responses = _decoded(parts)
    assert all(len(r.rows) <= m.MAX_ROWS for r in responses)
    assert all(r.more for r in responses)  # finish(more=True): the counters follow
    assert [row.tunnel_id for r in responses for row in r.rows] == list(range(1, 10_002))
    assert [row for r in responses for row in r.rows] == rows


def test_more_than_max_rows_short_lines_split_by_count() -> None:
    lines = [""] * (m.MAX_ROWS + 1)  # one byte each: the count fills a Response first
    responses = _decoded(split_encoded(m.ErrorCode.OK, lines))
    assert [len(r.lines) for r in responses] == [m.MAX_ROWS, 1]


@dataclasses.dataclass(frozen=True)
class _LookAlike:
    """Has a TunnelRow's fields but was never checked as one."""

    row: m.TunnelRow

    def __getattr__(self, name: str) -> object:
        return getattr(self.row, name)


def test_what_is_not_a_checked_row_or_a_text_line_is_refused_and_changes_nothing() -> None:
    writer = ResponseWriter()
    assert writer.row(_row(1)) is None
    with pytest.raises(IpcError) as info:
        writer.row(_LookAlike(_row(2)))  # type: ignore[arg-type]
    assert info.value.reason is Reason.BAD_TYPE
    with pytest.raises(IpcError) as info:
        writer.line("no\x1b[2Jescape")
    assert info.value.reason is Reason.BAD_CHARSET
    with pytest.raises(IpcError) as info:
        writer.line("x" * 256)
    assert info.value.reason is Reason.BAD_LENGTH
    assert writer.line("done") is None
    (response,) = _decoded([writer.finish(m.ErrorCode.OK)])
    assert response == m.Response(m.ErrorCode.OK, ("done",), (_row(1),))
