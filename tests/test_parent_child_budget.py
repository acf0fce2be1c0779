"""The parent's budgets for what the child sends (child_budget.py): back-pressure for
requests, but a Log line over the line budget is dropped, never waited for."""

from __future__ import annotations

import ipaddress

from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import IkeHash
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


def test_signatures_stay_at_a_quarter_of_the_secret_rate() -> None:
    """SKEYID and nonces are HMACs for the parent; a signature is a private-key operation:
    a child asking only for signatures gets a quarter as many as SKEYIDs, at once and per
    second (what it can make the parent spend on RSA stayed as it was)."""
    rate, burst = BUDGETS[Kind.SECRET]
    peer = ipaddress.ip_address("192.0.2.2")
    sig = m.SignatureRequest(1, 1, peer, IkeHash.SHA2_256, False, bytes(32), bytes(256),
                             bytes(256), bytes(8), bytes(8), bytes(40))  # fmt: skip
    skeyid = m.NonceRequest(1, 1)
    for request, per_second in ((sig, rate / 4), (skeyid, rate)):
        budget = ChildBudget()
        at_once = 0
        while budget.charge(request, 0.0)[0] == 0.0:
            at_once += 1
        assert at_once == burst / (rate / per_second)
        waited, _ = budget.charge(request, 0.0)
        assert abs(waited - (1 + 1) / per_second) < 1e-9  # the debt of two, at its rate
