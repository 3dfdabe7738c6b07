"""Recall: hybrid search over the replayed memory, and the memories a prompt carries.

Turns are found by BM25 and by embedding, fused by reciprocal rank fusion (each scores the sum
of 1/(60 + rank) over the rankings it appears in, so no score scale is tuned against another);
a turn not embedded yet, such as what was just said, counts its BM25 rank for both.
Sessions (parts, echo.memory.sessions) are ranked the same way, by what finds them: their
best turn by BM25, their best turn by embedding, a time the question names ("last week",
"작년 여름"), and how recent they are among the best found (a new message most often goes on
with the latest conversation on its topic). A turn then counts its session's score too. Of k
lines, the first half go to the best turns, each with the other half of its exchange; the
rest to the best turn of each further session, so that recall reaches more conversations.
A search can be bounded in time (since, before) and to one user.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from echo.memory.dates import Bound, infer_date, shown, time_in_query
from echo.memory.dense import Embedder, VectorStore
from echo.memory.fact_index import FactView, cited_rows
from echo.memory.facts import FactStore, PartLines
from echo.memory.lexical import TURNS_DIR, LexicalIndex, overlap
from echo.memory.replay import Replayer
from echo.memory.sessions import RRF_K, Sessions, first_seen, fuse, partner, pick_turns

TURN_CANDIDATES = 100  # turns from each turn ranking: their sessions, and which turns to show
SESSION_CANDIDATES = 100  # sessions ranked by their best turn's vector
FACT_CANDIDATES = 100  # facts from each fact ranking: the turns they cite (50 recalled 0.01 less on RealMem)
# Rank fusion's constant for the session rankings: with facts among them, their first ranks are
# precise (a fact names what a conversation was about), and a smaller constant lets agreement
# at the top count more. RealMem, facts imported: 60 -> 20 gave 0.72 -> 0.74 on each half of the
# personas; without facts 20 lost 0.02, so it stays 60 there.
SESSION_RRF_K = RRF_K
SESSION_RRF_K_WITH_FACTS = 20
RECENCY_POOL = 50  # the best sessions found that the recency ranking orders by when they were written
RECENCY_MATCH = 0.5  # ... of those, the ones whose best BM25 turn scores at least this share of the best one's
MODES = ("hybrid", "lexical", "dense")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Stages:
    """What search does beyond fusing turns; each can be turned off (the recall benchmark
    measures each one's share). All off is the turn-level fusion Echo had before sessions."""

    sessions: bool = True  # a long message: rank sessions, then show their best turns
    topic_words: int = 16  # a message of this many words or more is searched session first
    neighbours: bool = True  # a turn's exchange partner comes next in its session
    time_in_query: float = 1.0  # weight of the sessions dated when the question says
    recency: float = 1.0  # weight of the best sessions found, ranked newest first
    session_weight: float = 1.0  # a turn's score counts its session's this much
    focus: float = 0.5  # the share of the lines for the best turns, wherever they are; the rest go to further sessions, one turn each
    # ... when facts found sessions: each session's line is then the one its best fact cites,
    # the evidence itself, so every line can go to another conversation.
    focus_with_facts: float = 0.0
    # A short question's turns: bigram BM25's long tail is mostly turns that share a common
    # syllable pair with the query ("였지", "내가"), noise to the fusion beyond its top 10.
    lexical_turns: int = 10
    dense_turns: int = 50
    facts: float = 1.0  # weight of the turns (and sessions) that the facts found cite, per fact ranking


# A turn can be a whole pasted document (a part may hold a 10 MB line): a result shows its
# start, and the citation says where the rest is.
TEXT_CHARS = 2000


@dataclass(frozen=True)
class Memory:
    """A remembered turn and where it is written."""

    path: str  # relative to the memory folder
    line_start: int
    line_end: int
    day: str
    user: str
    speaker: str
    text: str
    score: float
    date: str | None = None  # ISO 8601, the year inferred (echo.memory.dates)
    fact: dict | None = None  # the fact that found this turn, when one did (FactView.shown)

    def as_dict(self) -> dict:
        return dict(vars(self))  # flat fields: no deep copy needed


class MemorySearch:
    """Search over an index folder made by echo.memory.replay; refresh() after each replay."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder | None = None,
        timezone: str = "UTC",
        stages: Stages = Stages(),
        facts: FactStore | None = None,
        memory_dir: Path | None = None,
        replayer: Replayer | None = None,
    ):
        """facts (with memory_dir, whose lines they cite): the store whose facts are searched
        beside the turns; replayer: the one that keeps index_dir (else it is read from disk)."""
        self.index_dir = index_dir
        self.facts = facts
        self.part_lines = PartLines(memory_dir) if facts is not None and memory_dir is not None else None
        self._fact_view: tuple[tuple, FactView, list[list[int]], np.ndarray] | None = None
        self._fact_dense: np.ndarray | None = None  # each fact's row in vectors.all (-1: none yet)
        self._generation = 0
        self.embedder = embedder
        self.timezone = timezone  # the day folders' time zone: it dates the turns
        self.stages = stages
        self.vectors = VectorStore(index_dir / "dense" / embedder.name) if embedder else None
        # Held while a search runs and while refresh() swaps in a new replay's tables: a search
        # that overlapped an update would mix the old turns with the new sessions.
        self._lock = threading.RLock()
        self._dense: tuple[np.ndarray, np.ndarray] | None = None  # turn rows with a vector, their rows in vectors.all
        self._embedded: tuple[np.ndarray, np.ndarray] | None = None  # which turn rows, and which sessions, have a vector
        self.refresh(replayer)

    def refresh(self, replayer: Replayer | None = None) -> None:
        """Load the turns that are not duplicates, and the lexical index, as the last replay left
        them: the replayer's (the MemoryActor holds one), else read from disk."""
        folder = self.index_dir / TURNS_DIR  # reopened: a full replay makes a new one
        lexical = LexicalIndex(folder) if LexicalIndex.exists(folder) else None
        if replayer is None:
            replayer = Replayer(self.index_dir)
            replayer.load()
        columns = ["id", "day", "user", "speaker", "text", "hash", "path", "line_start", "line_end"]
        turns = replayer.all_turns().combine_chunks()  # a chunk per part: filtering thousands of chunks costs more than joining them
        table = turns.filter(pc.is_null(turns.column("duplicate_of"))).select(columns)
        written = replayer.all_parts(["path", "day", "mtime_ns"]).to_pylist()
        dates = {p["path"]: d for p in written if (d := infer_date(p["day"], p["mtime_ns"], self.timezone)) is not None}
        listed = {c: table.column(c).to_pylist() for c in ("id", "user", "hash", "path", "speaker")}
        lines = tuple(np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=np.int64) for c in ("line_start", "line_end"))
        sessions = Sessions.of(table.column("path").combine_chunks(), listed["user"], dates, {p["path"]: p["mtime_ns"] for p in written})
        with self._lock:
            self.lexical = lexical
            self.date_of_part = {path: d.isoformat() for path, d in dates.items()}
            self.table = table  # the rest of each turn is read only for the turns found
            self.turns = listed
            self.sessions = sessions
            self.row_of = {turn_id: row for row, turn_id in enumerate(self.turns["id"])}
            self.lines = lines
            self.session_of_path = {p: i for i, p in enumerate(sessions.paths)}
            self._dense = self._embedded = None
            self._generation += 1  # the facts' cited turns are found anew

    def vectors_changed(self) -> None:
        with self._lock:
            self._dense = self._embedded = self._fact_dense = None

    def fact_view(self) -> tuple[FactView, list[list[int]], np.ndarray] | None:
        """The live facts as of the store's last write, the turn rows each one cites, and the
        session of its first (-1: its lines are not in the index); None without a store."""
        if self.facts is None or self.part_lines is None:
            return None
        with self._lock:
            key = (self.facts.stamp(), self._generation)
            if self._fact_view is None or self._fact_view[0] != key:
                view = FactView.build(self.facts, self.part_lines)
                cited = [cited_rows(f, self.session_of_path, self.sessions.rows, *self.lines) for f in view.facts]
                where = np.array([self.sessions.of_row[c[0]] if c else -1 for c in cited], dtype=np.int64)  # the session of its first cited turn
                self._fact_view = (key, view, cited, where)
                self._fact_dense = None
            return self._fact_view[1:]

    def _fact_scores(self, view: FactView, similarity: np.ndarray | None) -> np.ndarray | None:
        """Each fact's similarity to the query (-inf: no vector yet), read from the one product
        of the query with every vector kept (turns' and facts' together)."""
        if similarity is None or not len(view):
            return None
        with self._lock:
            if self._fact_dense is None or len(self._fact_dense) != len(view):
                rows = np.fromiter((self.vectors.position.get(h, -1) for h in view.hashes), dtype=np.int64, count=len(view))
                self._fact_dense = rows
            rows = self._fact_dense
        scores = np.full(len(view), -np.inf, dtype=np.float32)
        have = (rows >= 0) & (rows < len(similarity))
        scores[have] = similarity[rows[have]]
        return scores

    def embedded(self) -> int:
        """How many of the turns have a vector."""
        return len(self._positions()[0]) if self.vectors is not None else 0

    def embed_pending(
        self, batch: int = 32, chunk: int = 512, stop: threading.Event | None = None, on_chunk: Callable[[int], object] | None = None, facts_only: bool = False
    ) -> int:
        """Embed the facts, then the turns, that have no vector yet, saving every chunk; returns
        how many. Runs in the background: a restart loses at most the chunk being filled.
        """
        if self.embedder is None or self.vectors is None:
            return 0
        with self._lock:
            text_of = {} if facts_only else dict(zip(self.turns["hash"], self.table.column("text").to_pylist()))
        found = self.fact_view()
        if found is not None:  # facts first: there are few, and each stands for its lines
            text_of = {**dict(zip(found[0].hashes, (f.text for f in found[0].facts))), **text_of}
        todo = self.vectors.missing(text_of)
        done = 0
        for start in range(0, len(todo), chunk):
            hashes = todo[start : start + chunk]
            parts = []
            for offset in range(0, len(hashes), batch):
                if stop is not None and stop.is_set():
                    break
                parts.append(self.embedder.passages([text_of[h] for h in hashes[offset : offset + batch]]))
            if parts:
                vectors = np.concatenate(parts)
                self.vectors.add(hashes[: len(vectors)], vectors)
                self.vectors_changed()
                done += len(vectors)
                if on_chunk is not None:
                    on_chunk(len(vectors))
            if stop is not None and stop.is_set():
                break
        return done

    def _memories(self, found: list[tuple[int, float]], fact_of: Callable[[int], dict | None] = lambda _: None) -> list[Memory]:
        """The found (row, score) pairs as memories, in their order: the rows read in one take;
        fact_of(row) is the fact that found a row, if one did."""
        # Lines found through outdated knowledge come after the rest: a superseded fact's after
        # the one that replaced it, a stale one's (its lines changed) after fresh ones.
        facts = {row: fact_of(row) for row, _ in found}
        found = sorted(found, key=lambda rs: _outdated(facts[rs[0]]))
        rows = self.table.take(pa.array([r for r, _ in found], type=pa.int64())).to_pylist() if found else []
        return [
            Memory(
                t["path"],
                t["line_start"],
                t["line_end"],
                t["day"],
                t["user"],
                t["speaker"],
                t["text"] if len(t["text"]) <= TEXT_CHARS else t["text"][:TEXT_CHARS] + " …",
                round(score, 6),
                self.date_of_part.get(t["path"]),
                facts[row],
            )
            for t, (row, score) in zip(rows, found, strict=True)
        ]

    def lexical_ranking(self, query: str, k: int, user: str | None, paths: list[str] | None = None) -> list[tuple[int, float]]:
        if self.lexical is None:
            return []
        return [(self.row_of[i], s) for i, s in self.lexical.search(query, k, user, paths) if i in self.row_of]

    def similarity(self, query: str) -> np.ndarray | None:
        """The query's similarity to every vector kept (vectors.all's rows); None without vectors."""
        if self.embedder is None or self.vectors is None or not len(self.vectors.position):
            return None  # nothing embedded yet: the search is lexical
        return self.vectors.all @ self.embedder.query(query)

    def dense_scores(self, similarity: np.ndarray | None, allowed: np.ndarray | None) -> np.ndarray | None:
        """Every turn's similarity to the query (-inf: no vector yet, or not allowed); None without vectors."""
        if similarity is None:
            return None
        rows, positions = self._positions()
        if not len(rows):
            return None
        # Vectorized throughout: at 300,000 turns a Python loop over the rows, or a full sort,
        # would cost more than the question's embedding.
        scores = np.full(len(self.turns["id"]), -np.inf, dtype=np.float32)
        scores[rows] = similarity[positions]
        if allowed is not None:
            scores[~allowed[self.sessions.of_row]] = -np.inf
        return scores

    def _positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(the turn rows that have a vector, where each vector is in vectors.all), kept until the vectors change."""
        with self._lock:
            if self._dense is None:
                self._dense = self.vectors.positions(self.turns["hash"])
            return self._dense

    def seen_by_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Which turns have a vector (a bool per row), and which sessions have one in any of
        their turns: what the dense rankings can see. Kept until the vectors change."""
        with self._lock:
            if self._embedded is None:
                rows = np.zeros(len(self.turns["id"]), dtype=bool)
                rows[self._positions()[0]] = True
                sessions = np.zeros(len(self.sessions), dtype=bool)
                sessions[self.sessions.of_row[rows]] = True
                self._embedded = rows, sessions
            return self._embedded

    def dense_ranking(self, query: str, k: int, user: str | None) -> list[tuple[int, float]]:
        return _best(self.dense_scores(self.similarity(query), self.sessions.allowed(user, None, None)), k)

    def search(
        self, query: str, k: int = 10, user: str | None = None, mode: str = "hybrid", since: Bound | None = None, before: Bound | None = None
    ) -> list[Memory]:
        """The k turns that best answer query, best first; only user's when user is given, only
        those dated from since and before before when they are given."""
        with self._lock:
            return self._search(query, k, user, mode, since, before)

    def _search(self, query: str, k: int, user: str | None, mode: str, since: Bound | None, before: Bound | None) -> list[Memory]:
        if mode not in MODES:
            raise ValueError(f"mode = {mode!r}: use one of {', '.join(MODES)}")
        if not query.strip() or k <= 0:
            return []
        st = self.stages
        allowed = self.sessions.allowed(user, since, before)
        paths = None if allowed is None else [self.sessions.paths[i] for i in np.flatnonzero(allowed)]
        # A question of a few words asks for a line; a message of several sentences sets a
        # topic that whole conversations match: only those are searched session first.
        broad = st.sessions and len(_WORD.findall(query)) >= st.topic_words
        depth = (TURN_CANDIDATES, TURN_CANDIDATES) if broad else (st.lexical_turns, st.dense_turns)
        lexical = self.lexical_ranking(query, depth[0], None, paths) if mode != "dense" else []
        similarity = self.similarity(query) if mode != "lexical" else None
        dense = self.dense_scores(similarity, allowed)
        dense_turns = _best(dense, depth[1])
        embedded = self.seen_by_vectors() if dense is not None else None
        fact_turns, fact_rows, fact_of = self._fact_rankings(query, similarity, user, allowed, mode)
        rankings = [(1.0, [r for r, _ in lexical])]
        if embedded is not None:  # a turn not embedded yet (just saved) keeps what lexical gave it
            rankings.append((1.0, [r for r, _ in dense_turns], embedded[0]))
        rankings += [(st.facts, rows) for rows in fact_turns]
        turn_score = fuse(rankings, len(self.turns["id"]))
        if broad:
            return self._by_session(query, k, allowed, before, lexical, dense, embedded, turn_score, fact_turns, fact_rows, fact_of)
        if mode == "lexical" and not st.time_in_query and not fact_turns:
            return self._memories(lexical[:k])
        if mode == "dense" and not st.time_in_query and not fact_turns:
            return self._memories(dense_turns[:k])
        if st.time_in_query and (when := self._time_in_query(query, before)) is not None:
            found = np.flatnonzero(turn_score)
            dated = found[np.isin(self.sessions.of_row[found], self.sessions.dated(*when))]
            turn_score[dated] += st.time_in_query / (RRF_K + 1)
        best = np.argsort(-turn_score, kind="stable")[: min(k, int(np.count_nonzero(turn_score)))]
        return self._memories([(int(r), float(turn_score[r])) for r in best], fact_of)

    def _fact_rankings(
        self, query: str, similarity: np.ndarray | None, user: str | None, allowed: np.ndarray | None, mode: str
    ) -> tuple[list[list[int]], dict[int, int], Callable[[int], dict | None]]:
        """The turns the facts found cite, as one ranking per way of finding facts (BM25, vectors);
        for each session they reach, the row its best fact cites; and for a row, the fact that
        found it (the best that cites it)."""
        found = self.fact_view()
        if found is None or not len(found[0]) or not self.stages.facts:
            return [], {}, lambda _: None
        view, cited, where = found
        of_row = self.sessions.of_row
        # Only the facts whose lines the search may find (a search bounded in time or to a user).
        ok = where >= 0 if allowed is None else (where >= 0) & allowed[np.maximum(where, 0)]
        rankings = []
        if mode != "dense":
            rankings.append(view.ordered([i for i in view.lexical_ranking(query, 3 * FACT_CANDIDATES, user) if ok[i]][:FACT_CANDIDATES], user))
        if similarity is not None:
            scores = self._fact_scores(view, similarity)
            if scores is not None:
                scores[~ok] = -np.inf
            rankings.append(view.ordered(view.dense_ranking(scores, FACT_CANDIDATES, user), user))
        turn_rankings = [first_seen([r for i in ranking for r in cited[i] if allowed is None or allowed[of_row[r]]]) for ranking in rankings]
        fused = fuse([(1.0, r) for r in rankings], len(view))
        hit = np.flatnonzero(fused)
        fact_of_row: dict[int, int] = {}
        session_row: dict[int, int] = {}
        for i in view.ordered([int(i) for i in hit[np.argsort(-fused[hit], kind="stable")]], user):
            for r in cited[i]:
                if allowed is None or allowed[of_row[r]]:
                    fact_of_row.setdefault(r, i)
                    session_row.setdefault(int(of_row[r]), r)
        return [r for r in turn_rankings if r], session_row, lambda row: view.shown(fact_of_row[row]) if row in fact_of_row else None

    def _time_in_query(self, query: str, before: Bound | None) -> tuple[date, date] | None:
        """The days the question names, counted back from before (a search bounded in time) or today."""
        today = before.day if before is not None else datetime.now(ZoneInfo(self.timezone)).date()
        return time_in_query(query, today)

    def _by_session(self, query, k, allowed, before, lexical, dense, embedded, turn_score, fact_turns, fact_rows, fact_of) -> list[Memory]:
        st, sessions = self.stages, self.sessions
        of_row = sessions.of_row
        rrf = SESSION_RRF_K_WITH_FACTS if fact_turns else SESSION_RRF_K
        rankings = [(1.0, first_seen(of_row[[r for r, _ in lexical]]))] if lexical else []
        rankings += [(st.facts, first_seen(of_row[rows])) for rows in fact_turns]
        if dense is not None:
            best = np.full(len(sessions), -np.inf, dtype=np.float32)
            np.maximum.at(best, of_row, dense)
            rankings.append((1.0, [s for s, _ in _best(best, SESSION_CANDIDATES)], embedded[1]))
        found = np.zeros(len(sessions), dtype=bool)
        for _, ranking, *_ in rankings:
            found[ranking] = True
        if st.time_in_query:
            when = self._time_in_query(query, before)
            if when is not None:
                dated = sessions.dated(*when)
                dated = dated[found[dated]] if allowed is None else dated[allowed[dated] & found[dated]]
                rankings.append((st.time_in_query, [int(s) for s in dated[np.argsort(-fuse(rankings, len(sessions), rrf)[dated], kind="stable")]]))
        if st.recency and lexical and dense is not None:
            # A new message most often goes on with the latest conversation on its topic: the
            # best sessions found that match its words about as well as the best one (by BM25's
            # scores, which rank fusion does not see) are ranked again, newest first. Only beside
            # two rankings by relevance: recency settles what they leave close, never lifts a
            # session that matches only faintly.
            pool = np.argsort(-fuse(rankings, len(sessions), rrf), kind="stable")[:RECENCY_POOL]
            match = np.zeros(len(sessions))
            np.maximum.at(match, of_row[[r for r, _ in lexical]], [x for _, x in lexical])
            pool = pool[found[pool] & (match[pool] >= RECENCY_MATCH * match.max())]
            rankings.append((st.recency, [int(s) for s in pool[np.argsort(-sessions.written[pool], kind="stable")]]))
        score = fuse(rankings, len(sessions), rrf)
        # A turn counts what found it and what found its session; the first lines go to the
        # best turns so counted, the rest to the best turn of each session not yet shown.
        candidates = np.flatnonzero(turn_score)
        combined = turn_score[candidates] + st.session_weight * score[of_row[candidates]]
        ranked = [int(r) for r in candidates[np.argsort(-combined, kind="stable")]]
        order = [int(s) for s in np.argsort(-score, kind="stable")[: 2 * k] if score[s] > 0]
        focus = st.focus_with_facts if fact_rows else st.focus

        def best_turn(session: int) -> int:
            return fact_rows[session] if session in fact_rows else self._best_turn(session, query, turn_score, dense)

        rows = pick_turns(ranked, order, best_turn, of_row, k, math.ceil(k * focus), self._partner)
        final = turn_score + st.session_weight * score[of_row]
        return self._memories([(r, float(final[r])) for r in rows], fact_of)

    def _partner(self, row: int) -> int | None:
        return partner(row, self.sessions.of_row, self.turns["speaker"]) if self.stages.neighbours else None

    def _best_turn(self, session: int, query: str, turn_score: np.ndarray, dense: np.ndarray | None) -> int:
        """A session's best turn: by the turn rankings, else by vector, else by the query's words it holds."""
        rows = self.sessions.rows(session)
        if dense is not None:
            second = dense[rows]
        else:
            second = np.asarray(overlap(query, self.table.take(pa.array(rows)).column("text").to_pylist()), dtype=np.float32)
        return int(rows[np.lexsort((-second, -turn_score[rows]))[0]])


def _outdated(fact: dict | None) -> int:
    return 0 if fact is None else 2 if fact["superseded_by"] else 1 if fact["stale"] else 0


def _best(scores: np.ndarray | None, k: int) -> list[tuple[int, float]]:
    """The k highest finite scores as (index, score), best first."""
    if scores is None or k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best if np.isfinite(scores[i])]


def estimate_tokens(text: str) -> int:
    """About one token per Hangul syllable or other non-ASCII character, one per 4 ASCII ones."""
    ascii_chars = len(text.encode("ascii", "ignore"))  # counted in C: this runs on every memory of every prompt
    return (len(text) - ascii_chars) + (ascii_chars + 3) // 4


def within_budget(memories: list[Memory], budget_tokens: int, max_chars_each: int = 400) -> list[Memory]:
    """The best memories that fit the budget, each cut to max_chars_each."""
    chosen, used = [], 0
    for memory in memories:
        text = memory.text if len(memory.text) <= max_chars_each else memory.text[:max_chars_each] + "…"
        cost = estimate_tokens(text) + 12  # the citation line
        if used + cost > budget_tokens:
            break
        chosen.append(replace(memory, text=text))
        used += cost
    return chosen


def memory_block(memories: list[Memory], today: date) -> str:
    """The memories as the circuits read them, each with its date, how long ago, and citation."""
    lines = ["Memories from earlier conversations (use them if they help; they may be old):"]
    for n, m in enumerate(memories, 1):
        when = shown(date.fromisoformat(m.date), today) if m.date else m.day
        lines.append(f"[{n}] {when} {m.speaker} ({m.path}:{m.line_start}-{m.line_end}): {m.text}")
    return "\n".join(lines)
