"""Pages of `ike cmd=list`, served from a sorted snapshot of tunnel ids.

A page is the LIST_PAGE lowest listable tunnel ids above `after` (ListCommand). Finding
them with a pass over every table costs O(n) per page and O(n^2 / LIST_PAGE) per listing:
about 0.19 s of a child's CPU for 20,000 tunnels, most of the daemon's share of a
listing. The parent asks for the pages of one listing in order, each `after` being the
last tunnel id it got, so the child sorts the ids once, when a listing begins, and goes on
from where the previous page ended: a page then costs the rows it returns, plus the ids
of tunnels that went away in between.

A listing is therefore the tunnels that existed when its first page was made, less those
gone since (each id is looked up again when its page is made); a tunnel set up while a
listing is under way shows in the next listing. At most CURSORS listings are followed at
once (two `ike` commands side by side); a page that continues none of them starts a fresh
snapshot at its `after`, which gives the same rows, only at the old cost. A cursor holds
one int per tunnel, so what they keep is bounded by CURSORS times the tables' own bounds.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ikepriv.ipc.messages import LIST_PAGE, Phase

CURSORS = 2

_Row = TypeVar("_Row")


@dataclass(slots=True)
class _Cursor:
    """Where one listing stands: the snapshot, the index of the next id to look at, and
    the last id returned (the `after` that the listing's next page will carry)."""

    phase: Phase
    ids: list[int]
    next: int
    last: int


class ListingCursors(Generic[_Row]):
    """The listings under way, most recent last."""

    __slots__ = ("_cursors",)

    def __init__(self) -> None:
        self._cursors: list[_Cursor] = []

    def page(
        self,
        phase: Phase,
        after: int,
        ids: Callable[[], Iterable[int]],
        row: Callable[[int], _Row | None],
    ) -> list[_Row]:
        """The rows of the next page: `row(tid)` for the listable ids above `after` in
        ascending order, skipping those for which it returns None (gone, or not to be
        listed), at most LIST_PAGE. `ids()` gives every id that may be listed; it is
        called only when the page continues no listing under way."""
        cursor = self._continuing(phase, after)
        if cursor is None:
            snapshot = sorted(ids())
            cursor = _Cursor(phase, snapshot, bisect.bisect_right(snapshot, after), after)
        rows: list[_Row] = []
        snapshot, index = cursor.ids, cursor.next
        while index < len(snapshot) and len(rows) < LIST_PAGE:
            tunnel_id = snapshot[index]
            index += 1
            found = row(tunnel_id)
            if found is not None:
                rows.append(found)
                cursor.last = tunnel_id
        if len(rows) == LIST_PAGE and index < len(snapshot):  # the parent will ask again
            cursor.next = index
            self._cursors.append(cursor)
            del self._cursors[:-CURSORS]
        return rows

    def _continuing(self, phase: Phase, after: int) -> _Cursor | None:
        """The listing whose next page this is, taken out of the list (None: none). Two
        listings can stand at the same id: the most recent is taken, which is right when
        the parent asks for their pages in turn."""
        for i in range(len(self._cursors) - 1, -1, -1):
            cursor = self._cursors[i]
            if cursor.phase == phase and cursor.last == after:
                del self._cursors[i]
                return cursor
        return None
