"""The lexical index replay keeps beside the turns table (tantivy, echo.memory.lexical): the
turns that are not duplicates. Only what changed is written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from echo.memory.lexical import LexicalIndex

TURNS_DIR = "lexical"


def update_indexes(index_dir: Path, turns: pa.Table, old_turns: pa.Table, read_ids: set[str], force: bool) -> None:
    """Bring the index up to turns (with duplicate_of): the turns that are not duplicates, those
    read again (read_ids) written anew."""
    index = LexicalIndex(index_dir / TURNS_DIR, fresh=force or old_turns.num_rows == 0)
    fresh = index.created
    # Sets of ids compared in Arrow: a part's update must not walk every turn in Python.
    now = turns.filter(pc.is_null(turns.column("duplicate_of")))
    was = pa.array([], pa.string()) if fresh else old_turns.filter(pc.is_null(old_turns.column("duplicate_of"))).column("id").combine_chunks()
    read = pa.array(sorted(read_ids), pa.string())
    adding = now.filter(pc.or_(pc.is_in(now.column("id"), read), pc.invert(pc.is_in(now.column("id"), was)))).select(["id", "user", "text", "path"])
    gone = was.filter(pc.invert(pc.is_in(was, now.column("id").combine_chunks()))).to_pylist()
    index.update(adding.to_pylist(), delete=sorted(gone), upsert=not fresh, threads=2 if adding.num_rows > 1000 else 1)
