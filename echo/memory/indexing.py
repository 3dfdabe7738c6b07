"""The lexical indexes replay keeps beside the turns table: turns, and whole sessions (a part
each), both in tantivy (echo.memory.lexical). Only what changed is written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from echo.memory.lexical import LexicalIndex

TURNS_DIR, SESSIONS_DIR = "lexical", "sessions"


def update_indexes(index_dir: Path, turns: pa.Table, old_turns: pa.Table, read_ids: set[str], changed_paths: set[str], force: bool) -> None:
    """Bring both indexes up to turns (with duplicate_of): the turns that are not duplicates,
    and the sessions of changed_paths (read again, or gone) whole."""
    duplicate_of = turns.column("duplicate_of")
    index = LexicalIndex(index_dir / TURNS_DIR, fresh=force or old_turns.num_rows == 0)
    fresh = index.created
    was = set() if fresh else {i for i, d in zip(old_turns.column("id").to_pylist(), old_turns.column("duplicate_of").to_pylist()) if d is None}
    now_rows = pc.indices_nonzero(pc.is_null(duplicate_of)).to_pylist()
    ids = turns.column("id").to_pylist()
    add_rows = [r for r in now_rows if ids[r] in read_ids or ids[r] not in was]
    now_ids = {ids[r] for r in now_rows}
    adding = turns.take(pa.array(add_rows, pa.int64())).select(["id", "user", "text", "path"])
    index.update(adding.to_pylist(), delete=sorted(was - now_ids), upsert=not fresh, threads=2 if len(add_rows) > 1000 else 1)

    sessions = LexicalIndex(index_dir / SESSIONS_DIR, fresh=fresh)
    redo = set(turns.column("path").unique().to_pylist()) if sessions.created else changed_paths
    texts: dict[str, list[str]] = {}
    users: dict[str, str] = {}
    mine = turns.filter(pc.is_in(turns.column("path"), pa.array(sorted(redo), pa.string()))).select(["path", "user", "text"])
    for path, user, text in zip(*(mine.column(c).to_pylist() for c in ("path", "user", "text"))):
        texts.setdefault(path, []).append(text)
        users[path] = user
    whole = [{"id": p, "user": users[p], "path": p, "text": "\n".join(t)} for p, t in texts.items()]
    sessions.update(whole, delete=sorted(redo - set(texts)), upsert=not sessions.created, threads=2 if len(whole) > 100 else 1)
