"""Recall: hybrid search over the replayed memory, and the memories a prompt carries.

Lexical (BM25) and dense (embedding) rankings are fused by reciprocal rank fusion: each
turn scores the sum of 1/(60 + rank) over the rankings it appears in, so a turn both find
comes first and neither score scale has to be tuned against the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from echo.memory.dates import infer_date, shown
from echo.memory.dense import Embedder, VectorStore
from echo.memory.lexical import LexicalIndex

RRF_K = 60
# Candidates from each ranking before fusion. Bigram BM25's long tail is mostly turns that
# share a common syllable pair with the query ("였지", "내가"): beyond its top 10 it adds
# noise to the fusion rather than answers.
LEXICAL_CANDIDATES = 10
DENSE_CANDIDATES = 50
MODES = ("hybrid", "lexical", "dense")
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

    def as_dict(self) -> dict:
        return asdict(self)


class MemorySearch:
    """Search over an index folder made by echo.memory.replay; refresh() after each replay."""

    def __init__(self, index_dir: Path, embedder: Embedder | None = None, timezone: str = "UTC"):
        self.index_dir = index_dir
        self.embedder = embedder
        self.timezone = timezone  # the day folders' time zone: it dates the turns
        self.vectors = VectorStore(index_dir / "dense" / embedder.name) if embedder else None
        self._lock = threading.Lock()
        self._dense: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # turn rows, their rows in vectors.all, users
        self.refresh()

    def refresh(self) -> None:
        """Load the turns that are not duplicates, and the lexical index, as the last replay left them."""
        folder = self.index_dir / "lexical"  # reopened: a full replay makes a new one
        lexical = LexicalIndex(folder) if LexicalIndex.exists(folder) else None
        path = self.index_dir / "turns.parquet"
        columns = ["id", "day", "user", "speaker", "text", "hash", "path", "line_start", "line_end"]
        table = pq.read_table(path) if path.is_file() else None
        if table is not None:
            table = table.filter(pc.is_null(table.column("duplicate_of"))).select(columns)
        if table is None:
            table = pa.schema([(c, pa.string()) for c in columns]).empty_table()
        parts = self.index_dir / "parts.parquet"
        written = pq.read_table(parts, columns=["path", "day", "mtime_ns"]).to_pylist() if parts.is_file() else []
        dates = {p["path"]: infer_date(p["day"], p["mtime_ns"], self.timezone) for p in written}
        with self._lock:
            self.lexical = lexical
            self.date_of_part = {path: d.isoformat() for path, d in dates.items() if d is not None}
            self.table = table  # the rest of each turn is read only for the turns found
            self.turns = {c: table.column(c).to_pylist() for c in ("id", "user", "hash")}
            self.row_of = {turn_id: row for row, turn_id in enumerate(self.turns["id"])}
            self._dense = None

    def vectors_changed(self) -> None:
        with self._lock:
            self._dense = None

    def embedded(self) -> int:
        """How many of the turns have a vector."""
        return sum(1 for h in self.turns["hash"] if self.vectors and h in self.vectors)

    def embed_pending(self, batch: int = 32, chunk: int = 512, stop: threading.Event | None = None, on_chunk: Callable[[int], object] | None = None) -> int:
        """Embed the turns that have no vector yet, saving every chunk; returns how many.

        Runs in the background: a restart loses at most the chunk being filled.
        """
        if self.embedder is None or self.vectors is None:
            return 0
        with self._lock:
            text_of = dict(zip(self.turns["hash"], self.table.column("text").to_pylist()))
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

    def _memory(self, row: int, score: float) -> Memory:
        t = self.table.slice(row, 1).to_pylist()[0]
        text = t["text"] if len(t["text"]) <= TEXT_CHARS else t["text"][:TEXT_CHARS] + " …"
        return Memory(t["path"], t["line_start"], t["line_end"], t["day"], t["user"], t["speaker"], text, round(score, 6), self.date_of_part.get(t["path"]))

    def lexical_ranking(self, query: str, k: int, user: str | None) -> list[tuple[int, float]]:
        if self.lexical is None:
            return []
        return [(self.row_of[i], s) for i, s in self.lexical.search(query, k, user) if i in self.row_of]

    def dense_ranking(self, query: str, k: int, user: str | None) -> list[tuple[int, float]]:
        if self.embedder is None or self.vectors is None:
            return []
        with self._lock:
            if self._dense is None:
                rows, positions = self.vectors.positions(self.turns["hash"])
                users = np.array(self.turns["user"], dtype=object)[rows] if len(rows) else np.zeros(0, dtype=object)
                self._dense = rows, positions, users
            rows, positions, users = self._dense
        if not len(rows):
            return []
        # Vectorized throughout: at 300,000 turns a Python loop over the rows, or a full sort,
        # would cost more than the question's embedding.
        scores = (self.vectors.all @ self.embedder.query(query))[positions]
        if user is not None:
            scores = np.where(users == user, scores, -np.inf)
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(rows[i]), float(scores[i])) for i in best if np.isfinite(scores[i])]

    def search(self, query: str, k: int = 10, user: str | None = None, mode: str = "hybrid") -> list[Memory]:
        """The k turns that best answer query, best first; only user's when user is given."""
        if mode not in MODES:
            raise ValueError(f"mode = {mode!r}: use one of {', '.join(MODES)}")
        if not query.strip() or k <= 0:
            return []
        if mode == "lexical":
            return [self._memory(r, s) for r, s in self.lexical_ranking(query, k, user)]
        if mode == "dense":
            return [self._memory(r, s) for r, s in self.dense_ranking(query, k, user)]
        fused: dict[int, float] = {}
        for ranking in (self.lexical_ranking(query, LEXICAL_CANDIDATES, user), self.dense_ranking(query, DENSE_CANDIDATES, user)):
            for rank, (row, _) in enumerate(ranking):
                fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return [self._memory(r, s) for r, s in best]


def estimate_tokens(text: str) -> int:
    """About one token per Hangul syllable or other non-ASCII character, one per 4 ASCII ones."""
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return (len(text) - ascii_chars) + (ascii_chars + 3) // 4


def within_budget(memories: list[Memory], budget_tokens: int, max_chars_each: int = 400) -> list[Memory]:
    """The best memories that fit the budget, each cut to max_chars_each."""
    chosen, used = [], 0
    for memory in memories:
        text = memory.text if len(memory.text) <= max_chars_each else memory.text[:max_chars_each] + "…"
        cost = estimate_tokens(text) + 12  # the citation line
        if used + cost > budget_tokens:
            break
        chosen.append(Memory(**{**asdict(memory), "text": text}))
        used += cost
    return chosen


def memory_block(memories: list[Memory], today: date) -> str:
    """The memories as the circuits read them, each with its date, how long ago, and citation."""
    lines = ["Memories from earlier conversations (use them if they help; they may be old):"]
    for n, m in enumerate(memories, 1):
        when = shown(date.fromisoformat(m.date), today) if m.date else m.day
        lines.append(f"[{n}] {when} {m.speaker} ({m.path}:{m.line_start}-{m.line_end}): {m.text}")
    return "\n".join(lines)
