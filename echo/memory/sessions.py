"""Sessions in recall. A part is a session: one conversation, or 395 lines of one. Search ranks
sessions first, by everything their turns say, then shows the best turns of the best sessions,
so that a budget of ten lines reaches ten conversations rather than ten lines of one, and a
question is shown with its answer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from echo.memory.dates import Bound

RRF_K = 60
UNKNOWN_DAY = -1  # a part whose folder names no real day: no time bound keeps it


def fuse(rankings: Sequence[tuple[float, Sequence[int]] | tuple[float, Sequence[int], np.ndarray]], size: int, k: int = RRF_K) -> np.ndarray:
    """Reciprocal rank fusion: each item scores the sum of weight / (60 + rank) over the
    rankings it appears in (rank from 1), so no ranking's score scale has to be tuned.

    A ranking may come with what it can see (a mask): the vectors cover only the turns
    embedded so far, and the newest turns (what was just said) wait their turn. An item a
    ranking cannot see is not held to have lost it: its score is scaled as if that ranking
    had ranked it as the others that see it did, on average."""
    scores, unseen, total = np.zeros(size), None, 0.0
    for weight, ranking, *sees in rankings:
        if len(ranking):
            scores[np.asarray(ranking, dtype=np.int64)] += weight / (k + 1 + np.arange(len(ranking)))
        if sees:
            unseen = (0.0 if unseen is None else unseen) + weight * ~sees[0]
        total += weight
    if unseen is not None:
        blind = (unseen > 0) & (unseen < total)
        scores[blind] *= total / (total - unseen[blind])
    return scores


def first_seen(values: Sequence[int]) -> list[int]:
    """The values in order of first appearance: the sessions of a ranking of turns."""
    return list(dict.fromkeys(int(v) for v in values))


@dataclass(frozen=True)
class Sessions:
    """The sessions of the turns table: for each turn row its session, and per session its
    path, user, day (a date ordinal) and last write (ns)."""

    paths: list[str]
    of_row: np.ndarray
    users: np.ndarray
    days: np.ndarray
    written: np.ndarray
    contiguous: bool  # each session's rows are one run (replay sorts turns by part and line)

    @classmethod
    def of(cls, row_paths: Sequence[str] | pa.Array, row_users: Sequence[str], dates: dict[str, date], written: dict[str, int]) -> Sessions:
        # Numbered in the order they first appear (Arrow's dictionary order), in one pass in C.
        encoded = (row_paths if isinstance(row_paths, pa.Array) else pa.array(list(row_paths), pa.string())).dictionary_encode()
        of_row = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        paths = encoded.dictionary.to_pylist()
        users = np.empty(len(paths), dtype=object)
        users[of_row] = np.asarray(row_users, dtype=object)
        days = np.array([dates[p].toordinal() if p in dates else UNKNOWN_DAY for p in paths], dtype=np.int64)
        contiguous = bool(np.all(np.diff(of_row) >= 0))
        return cls(paths, of_row, users, days, np.array([written.get(p, 0) for p in paths], dtype=np.int64), contiguous)

    def __len__(self) -> int:
        return len(self.paths)

    def allowed(self, user: str | None, since: Bound | None, before: Bound | None) -> np.ndarray | None:
        """Which sessions a search may find (None: all): user's only, and only those dated from
        since and before before (on the bound's own day, by when the part was last written)."""
        keep = np.ones(len(self), dtype=bool)
        if user is not None:
            keep &= self.users == user
        for bound, wanted in ((since, True), (before, False)):
            if bound is not None:
                day = bound.day.toordinal()
                after = (self.days > day) | ((self.days == day) & (self.written >= (bound.ns if bound.ns is not None else 0)))
                keep &= (after if wanted else ~after) & (self.days != UNKNOWN_DAY)
        return None if keep.all() else keep

    def rows(self, session: int) -> np.ndarray:
        """The turn rows of a session."""
        if self.contiguous:
            return np.arange(*np.searchsorted(self.of_row, [session, session + 1]))
        return np.flatnonzero(self.of_row == session)

    def dated(self, start: date, end: date) -> np.ndarray:
        """The sessions dated in [start, end)."""
        return np.flatnonzero((self.days >= start.toordinal()) & (self.days < end.toordinal()))


def partner(row: int, of_row: np.ndarray, speakers: Sequence[str]) -> int | None:
    """The other half of a turn's exchange in its session: the answer after a question, or
    else the turn it answers; None when the neighbours are the same speaker or elsewhere."""
    for other in (row + 1, row - 1):
        if 0 <= other < len(of_row) and of_row[other] == of_row[row] and speakers[other] != speakers[row]:
            return other
    return None


def pick_turns(
    ranked: Sequence[int],
    sessions: Sequence[int],
    best_turn: Callable[[int], int],
    of_row: np.ndarray,
    k: int,
    focus: int,
    partner: Callable[[int], int | None],
) -> list[int]:
    """k rows for a budget of k lines: the first focus lines go to the best turns (ranked, best
    first), each followed by its exchange partner when it has one; the rest to one turn, its
    best_turn, of each further session in order, so that the budget reaches more conversations."""
    chosen: list[int] = []
    for row in ranked:
        if len(chosen) >= min(focus, k):
            break
        for r in (row, partner(row)):
            if r is not None and r not in chosen and len(chosen) < min(focus, k):
                chosen.append(r)
    shown = {int(of_row[r]) for r in chosen}
    for session in sessions:
        if len(chosen) >= k:
            break
        if session not in shown:
            chosen.append(best_turn(session))
            shown.add(session)
    for row in ranked:  # fewer sessions than lines: the next best turns
        if len(chosen) >= k:
            break
        if row not in chosen:
            chosen.append(row)
    return chosen
