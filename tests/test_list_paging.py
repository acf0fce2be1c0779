"""What the parent accepts in answer to one page of a listing (ListCommand), without a
kernel: a correct child's pages pass, and each way a child could try to make the parent
hold more than a page, or list for ever, is a protocol violation (the supervisor kills and
restarts the child): more reports than LIST_PAGE, reports out of tunnel-id order or not
after the page's start, a phase that was not asked for, reports to a counters-only request.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from typing import cast

import pytest
import trio
import trio.testing

from ikepriv.ipc import messages as m
from ikepriv.parent_kernel import requests as rq
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.requests import ChildListing, ChildRequests
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.supervisor import ProtocolViolation

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")


def report(request_id: int, tunnel_id: int, phase: m.Phase = m.Phase.PHASE1) -> m.StateReport:
    return m.StateReport(request_id, phase, 1, tunnel_id,
                         None if phase is m.Phase.PHASE1 else 1, m.Role.RESPONDER,
                         m.TunnelState.ESTABLISHED, m.Endpoint(A, 500), m.Endpoint(B, 500),
                         None, None, "", 0, 0, 0)  # fmt: skip


Answer = Callable[[m.ListCommand], list[m.Message]]


def ask(answer: Answer, **kwargs: object) -> ChildListing | ProtocolViolation | None:
    """One page asked through ChildRequests, the stand-in child answering with `answer`."""
    sent: list[m.ListCommand] = []
    state = ParentState(kernel=cast(XfrmKernel, None), view=DbView())

    def send(msg: object) -> bool:
        assert isinstance(msg, m.ListCommand)
        sent.append(msg)
        return True

    requests = ChildRequests(state, send, [])
    result: list[ChildListing | ProtocolViolation | None] = []

    async def main() -> None:
        async def asker() -> None:
            result.append(await requests.ask_child(m.Phase.PHASE1, **kwargs))  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker)
            await trio.testing.wait_all_tasks_blocked()
            (cmd,) = sent
            try:
                for msg in answer(cmd):
                    await requests.handle(msg)
            except ProtocolViolation as exc:
                result.append(exc)
                nursery.cancel_scope.cancel()

    trio.run(main)
    return result[-1]


def page(cmd: m.ListCommand, ids: range, phase: m.Phase = m.Phase.PHASE1) -> list[m.Message]:
    return [*(report(cmd.request_id, i, phase) for i in ids),
            m.StateReportEnd(cmd.request_id, len(ids))]  # fmt: skip


def test_a_full_page_and_the_rest_pass() -> None:
    full = ask(lambda cmd: page(cmd, range(1, m.LIST_PAGE + 1)))
    assert isinstance(full, ChildListing) and full.full
    rest = ask(lambda cmd: page(cmd, range(cmd.after + 1, cmd.after + 5)), after=600)
    assert isinstance(rest, ChildListing) and not rest.full
    assert [r.tunnel_id for r in rest.reports] == [601, 602, 603, 604]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (lambda cmd: page(cmd, range(1, m.LIST_PAGE + 2)), "more StateReports than one page"),
        (lambda cmd: page(cmd, range(5, 0, -1)), "StateReport of tunnel 4 after 5"),
        (lambda cmd: page(cmd, range(7, 9)), "StateReport of tunnel 7 after 9"),
        (lambda cmd: page(cmd, range(1, 3), m.Phase.PHASE2), "phase 2 StateReport"),
    ],
    ids=["beyond-page", "out-of-order", "not-after-start", "wrong-phase"],
)
def test_a_page_the_parent_did_not_ask_for_is_a_protocol_violation(
    answer: Answer, why: str
) -> None:
    after = 9 if "after 9" in why else 0
    got = ask(answer, after=after)
    assert isinstance(got, ProtocolViolation) and why in str(got)


def test_reports_to_a_counters_only_request_are_a_protocol_violation() -> None:
    got = ask(lambda cmd: page(cmd, range(1, 2)), rows=False)
    assert isinstance(got, ProtocolViolation)
    assert "counters-only" in str(got)


def test_a_listing_stops_after_max_listed_tunnels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that invents tunnels without end cannot keep a listing going for ever."""
    monkeypatch.setattr(rq, "MAX_LISTED", 3 * m.LIST_PAGE)
    state = ParentState(kernel=cast(XfrmKernel, None), view=DbView())
    channel: list[m.ListCommand] = []

    def send(msg: object) -> bool:
        assert isinstance(msg, m.ListCommand)
        channel.append(msg)
        return True

    requests = ChildRequests(state, send, [])
    pages = 0

    async def child() -> None:
        while True:
            await trio.testing.wait_all_tasks_blocked()
            while channel:
                cmd = channel.pop()
                for msg in page(cmd, range(cmd.after + 1, cmd.after + m.LIST_PAGE + 1)):
                    await requests.handle(msg)

    async def main() -> None:
        nonlocal pages
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            async for got in requests.walk(m.Phase.PHASE1):
                assert got is not None and got.full
                pages += 1
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert pages == 3


def test_the_next_page_is_made_while_this_one_is_passed_on() -> None:
    """When a full page arrives the next is asked for at once (the child makes it while
    the parent passes this one on), never more than that one ahead; a caller that stops
    early leaves that page unwanted, and its late arrival is no protocol violation."""
    state = ParentState(kernel=cast(XfrmKernel, None), view=DbView())
    sent: list[m.ListCommand] = []

    def send(msg: object) -> bool:
        assert isinstance(msg, m.ListCommand)
        sent.append(msg)
        return True

    requests = ChildRequests(state, send, [])
    asked_when_held: list[int] = []

    async def answer(cmd: m.ListCommand) -> None:
        for msg in page(cmd, range(cmd.after + 1, cmd.after + m.LIST_PAGE + 1)):
            await requests.handle(msg)

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def child() -> None:
                answered = 0
                while answered < 2:  # the first two pages, then the caller stops
                    await trio.testing.wait_all_tasks_blocked()
                    while answered < len(sent) and answered < 2:
                        await answer(sent[answered])
                        answered += 1

            nursery.start_soon(child)
            async with contextlib.aclosing(requests.walk(m.Phase.PHASE1)) as pages:
                async for got in pages:
                    assert got is not None and got.full
                    asked_when_held.append(len(sent))
                    if len(asked_when_held) == 2:
                        break
            await trio.testing.wait_all_tasks_blocked()
            # the third page, asked for when the second arrived, comes after the caller left
            assert [cmd.after for cmd in sent] == [0, m.LIST_PAGE, 2 * m.LIST_PAGE]
            await answer(sent[2])  # ignored: no ProtocolViolation

    trio.run(main)
    assert asked_when_held == [2, 3]
