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
