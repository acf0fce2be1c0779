"""The parent's budgets for what the child sends (child_budget.py): back-pressure for
requests, but a Log line over the line budget is dropped, never waited for."""

from __future__ import annotations

from ikepriv.ipc import messages as m
from ikepriv.parent_kernel.child_budget import BUDGETS, ChildBudget, Kind


def test_log_lines_over_budget_are_dropped_not_waited_for() -> None:
    """Found under a forged-packet flood: the child's lines exceeded the line budget and
    the parent stopped reading it, so its answers to live exchanges, and our own activate
    and remove commands, stalled behind them. A line over budget is dropped now; answers
    and requests still get back-pressure, never a drop."""
    budget = ChildBudget()
    rate, burst = BUDGETS[Kind.LINE]
    line = m.Log(m.LogLevel.NOTICE, "forged first message")
    dropped = 0
    for _ in range(int(burst) + 100):
        if budget.drop_log(line, 100.0):
            dropped += 1
        else:
            assert budget.charge(line, 100.0) == (0.0, Kind.LINE)
    assert dropped == 100
    # a request is never dropped: it is charged (and may wait)
    request = m.NonceRequest(1, 1)
    assert not budget.drop_log(request, 100.0)
    # the line budget refills at its rate
    assert not budget.drop_log(line, 100.0 + 2.0 / rate)
