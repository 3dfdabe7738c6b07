"""The facts' search index, derived from the store (echo.memory.facts) and rebuilt from it.

Facts are searched as documents of their own, as turns are: BM25 over the same terms (a
tantivy index in memory: at 30,000 facts it builds in about a second) and e5 vectors kept
with the turns' by text hash. A fact found brings the turns it cites; a superseded fact
ranks after the fact that replaced it, which is brought in beside it, and a stale one after
the fresh ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from echo.memory.facts import Fact, FactStore, PartLines, stale_ids, superseded_by
from echo.memory.lexical import LexicalIndex
from echo.memory.replay import text_hash


@dataclass
class FactView:
    """The live facts as search sees them at one store stamp."""

    facts: list[Fact]
    users: np.ndarray
    hashes: list[str]
    replaced_by: dict[int, int]  # a superseded fact -> the newest fact that replaces it
    stale: np.ndarray  # bool per fact
    lexical: LexicalIndex | None
    number: dict[str, int]  # fact id -> its place in facts

    @classmethod
    def build(cls, store: FactStore, parts: PartLines) -> FactView:
        facts = store.live()
        number = {f.id: i for i, f in enumerate(facts)}
        newest = superseded_by(facts)
        stale = stale_ids(facts, parts)
        lexical = None
        if facts:
            lexical = LexicalIndex(None)
            lexical.update(({"id": f.id, "user": f.user, "text": f"{f.about} {f.text}", "path": ""} for f in facts), delete=(), upsert=False)
        return cls(
            facts,
            np.array([f.user for f in facts], dtype=object),
            [text_hash(f.text) for f in facts],
            {number[old]: number[new] for old, new in newest.items() if old in number and new in number},
            np.array([f.id in stale for f in facts], dtype=bool),
            lexical,
            number,
        )

    def __len__(self) -> int:
        return len(self.facts)

    def lexical_ranking(self, query: str, k: int, user: str | None) -> list[int]:
        if self.lexical is None:
            return []
        return [self.number[i] for i, _ in self.lexical.search(query, k, user) if i in self.number]

    def dense_ranking(self, scores: np.ndarray | None, k: int, user: str | None) -> list[int]:
        """The k facts most similar by vector (scores: one per fact, -inf without a vector)."""
        if scores is None or not len(scores):
            return []
        if user is not None:
            scores = np.where(self.users == user, scores, -np.inf)
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [int(i) for i in best if np.isfinite(scores[i])]

    def ordered(self, ranking: Sequence[int], user: str | None) -> list[int]:
        """A ranking of facts as recall should use it: a superseded fact after the one that
        replaced it (brought in if it was not found), stale ones after the fresh."""
        out: list[int] = []
        for i in ranking:
            newer = self.replaced_by.get(i)
            if newer is not None and newer not in out and (user is None or self.users[newer] == user):
                out.append(newer)
            if i not in out:
                out.append(i)
        rank = {i: n for n, i in enumerate(out)}
        return sorted(out, key=lambda i: (i in self.replaced_by, bool(self.stale[i]), rank[i]))

    def shown(self, i: int) -> dict:
        """A fact as a memory found through it carries it."""
        f = self.facts[i]
        newer = self.replaced_by.get(i)
        return {
            "id": f.id,
            "text": f.text,
            "about": f.about,
            "kind": f.kind,
            "date": f.date,
            "stale": bool(self.stale[i]),
            "superseded_by": self.facts[newer].id if newer is not None else None,
        }


def cited_rows(fact: Fact, session_of_path: dict[str, int], rows_of_session, line_start: np.ndarray, line_end: np.ndarray) -> list[int]:
    """The turn rows a fact cites: those of its parts whose lines overlap a citation."""
    found: list[int] = []
    for cite in fact.cites:
        session = session_of_path.get(cite.path)
        if session is None:
            continue
        rows = rows_of_session(session)
        hit = rows[(line_start[rows] <= cite.line_end) & (line_end[rows] >= cite.line_start)]
        found.extend(int(r) for r in hit if int(r) not in found)
    return found
