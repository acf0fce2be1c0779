"""Floods the parent must absorb without filling syslog or growing without bound.

A hostile child can send Log lines and unsolicited tunnel events as fast as it likes; a
peer can flood UDP while the child is busy, so messages for it are dropped. Each of these
would be one log line per message; the parent logs at most a burst per period and sums up
the rest. The real request handler and supervisor are driven in-process.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Iterator
from typing import Any, cast

import pytest
import trio

from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import ProtocolId
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.ratelimit import LOG_BURST
from ikepriv.parent_kernel.requests import UNSOLICITED, ChildRequests
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.supervisor import Supervisor

FLOOD = 5 * LOG_BURST
A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
DATAGRAM = m.DatagramIn(m.Endpoint(A, 500), m.Endpoint(B, 500), False, bytes(28))


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[list[str]]:
    logger = logging.getLogger("ikepriv.parent")
    handler = Lines()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def requests() -> ChildRequests:
    state = ParentState(cast(Any, None), DbView())  # these messages never reach the kernel
    return ChildRequests(state, lambda _msg: True, [])


def test_child_log_flood_is_rate_limited(lines: list[str]) -> None:
    handler = requests()

    async def flood() -> None:
        for i in range(FLOOD):
            await handler.handle(m.Log(m.LogLevel.ERR, f"flood line {i}"))

    trio.run(flood)
    logged = [line for line in lines if line.startswith("child: flood line")]
    assert 0 < len(logged) <= LOG_BURST


def test_unsolicited_tunnel_events_are_rate_limited(lines: list[str]) -> None:
    handler = requests()
    report = m.StateReport(UNSOLICITED, m.Phase.PHASE1, 1, 7, None, m.Role.RESPONDER,
                           m.TunnelState.ESTABLISHED, m.Endpoint(A, 500), m.Endpoint(B, 500),
                           None, None, "flood", 0, 0, 0)  # fmt: skip

    async def flood() -> None:
        for _ in range(FLOOD):
            await handler.handle(report)

    trio.run(flood)
    logged = [line for line in lines if "established with" in line and "(flood)" in line]
    assert 0 < len(logged) <= LOG_BURST


def lagging_supervisor(limit: int) -> Supervisor:
    """A supervisor whose running child reads nothing: its queue only fills."""

    async def never() -> None:
        raise AssertionError("not started")

    supervisor = Supervisor(lambda fd: [], cast(Any, never), never, lambda: None)
    supervisor._queue = deque()  # a running child's queue, nobody sending from it
    supervisor.queue_limit = limit
    supervisor.ready = True
    return supervisor


def test_messages_dropped_for_a_lagging_child_are_not_one_line_each(lines: list[str]) -> None:
    """A UDP flood while the child does not read: the drops are counted, not each logged."""

    supervisor = lagging_supervisor(1)

    async def flood() -> None:
        results = [supervisor.send(DATAGRAM) for _ in range(FLOOD)]
        assert results[0] and not any(results[1:])

    trio.run(flood)
    dropped = [line for line in lines if "dropped" in line]
    assert 0 < len(dropped) <= LOG_BURST


def test_answers_and_expiries_pass_where_peer_datagrams_are_dropped() -> None:
    """A child that lags behind (its queue full of peers' datagrams) still gets the answers
    to its own requests and the kernel's expiries, up to a second queue's worth: losing
    them failed exchanges it had paid for and let SAs expire without successors (seen with
    4,000 tunnels rekeying in User Mode Linux)."""

    supervisor = lagging_supervisor(2)

    async def lagging() -> None:
        assert [supervisor.send(DATAGRAM) for _ in range(3)] == [True, True, False]
        answer = m.SpiReply(7, m.ErrorCode.OK, 0x1234)
        expiry = m.KernelExpire(0x1234, ProtocolId.IPSEC_ESP, A, True)
        assert supervisor.send(answer) and supervisor.send(expiry)
        assert not supervisor.send(answer)  # bounded all the same: twice the queue
        assert not supervisor.send(DATAGRAM)

    trio.run(lagging)
