"""A table of rows grouped by part, kept on disk so that changing one part writes that part only.

The folder holds base.parquet and, after it, small delta files, one per change: a delta names
the parts it replaces (rewritten or removed) and holds their new rows. Loading reads the base
and applies the deltas in order. When the deltas hold a quarter as many rows as the base (or
there are many of them), they are folded into a new base: each change is written once more
at most, so a change costs what its parts cost, however large the table.

Every file is written under a temporary name and renamed: a crash leaves the last complete
state, and a delta left beside a newer base is one it already holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

KEY = "path"
FOLD_SHARE = 0.25  # deltas holding this share of the base's rows are folded into it
FOLD_MIN_ROWS = 4096  # a small table is simply rewritten now and then
FOLD_FILES = 256  # or this many deltas: each costs a file open at load


def by_path(table: pa.Table) -> dict[str, pa.Table]:
    """table's rows by path, each path's rows in table order (rows of a path are contiguous)."""
    if not table.num_rows:
        return {}
    keys = table.column(KEY).combine_chunks().dictionary_encode()
    codes = keys.indices.to_numpy(zero_copy_only=False)
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    ends = np.append(starts[1:], len(codes))
    names = keys.dictionary.to_pylist()
    return {names[codes[s]]: table.slice(s, e - s) for s, e in zip(starts.tolist(), ends.tolist())}


class TableLog:
    def __init__(self, folder: Path, schema: pa.Schema, version: bytes):
        self.folder, self.schema, self.version = folder, schema, version
        self.base_rows = 0
        self.delta_rows = 0
        self.deltas: list[tuple[int, Path]] = []
        self.through = 0  # the last delta folded into the base

    def load(self) -> dict[str, pa.Table] | None:
        """Every path's rows as the last write left them; None when there is no complete state
        of this schema and version (then the caller rebuilds it, and replace()s it whole)."""
        base = self.folder / "base.parquet"
        try:
            table = pq.read_table(base)
        except (OSError, pa.ArrowInvalid):
            return None
        meta = table.schema.metadata or {}
        if not table.schema.equals(self.schema) or meta.get(b"version") != self.version:
            return None
        self.through = int(meta.get(b"through", b"0"))
        self.base_rows = table.num_rows
        rows = by_path(table)
        self.deltas, self.delta_rows = [], 0
        for seq, path in self._delta_files():
            if seq <= self.through:
                continue  # folded before a crash took it away
            try:
                delta = pq.read_table(path)
            except (OSError, pa.ArrowInvalid):
                return None  # renamed complete, so this is a broken disk: rebuild
            for gone in json.loads((delta.schema.metadata or {}).get(b"replaces", b"[]")):
                rows.pop(gone, None)
            rows.update(by_path(delta.replace_schema_metadata(None)))
            self.deltas.append((seq, path))
            self.delta_rows += delta.num_rows
        return rows

    def write(self, changed: Mapping[str, pa.Table | None], whole: Callable[[], pa.Table]) -> None:
        """Record changed (path: its rows now, or None when gone). whole gives the entire
        table after the change, in order, for when the deltas are folded into a new base."""
        if not changed:
            return
        kept = [changed[p] for p in sorted(changed) if changed[p] is not None]
        delta = pa.concat_tables(kept).cast(self.schema) if kept else self.schema.empty_table()
        if self.delta_rows + delta.num_rows > max(FOLD_SHARE * self.base_rows, FOLD_MIN_ROWS) or len(self.deltas) >= FOLD_FILES:
            self.replace(whole())
            return
        seq = (self.deltas[-1][0] if self.deltas else self.through) + 1
        path = self.folder / f"delta-{seq:09d}.parquet"
        self._write(delta, path, {b"replaces": json.dumps(sorted(changed)).encode()})
        self.deltas.append((seq, path))
        self.delta_rows += delta.num_rows

    def replace(self, table: pa.Table) -> None:
        """Write table (rows of a path together) as the new base and drop the deltas."""
        # Past every delta on disk, also those of a state that was not loaded (another version).
        through = max([self.through] + [seq for seq, _ in self._delta_files()])
        self._write(table.cast(self.schema), self.folder / "base.parquet", {b"through": str(through).encode()})
        for _, path in self._delta_files():  # all of them: the new base holds what they did
            path.unlink(missing_ok=True)
        self.through, self.base_rows, self.deltas, self.delta_rows = through, table.num_rows, [], 0

    def _write(self, table: pa.Table, path: Path, meta: dict[bytes, bytes]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        pq.write_table(table.replace_schema_metadata({b"version": self.version, **meta}), temporary)
        os.replace(temporary, path)

    def _delta_files(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for entry in self.folder.iterdir():
            if entry.name.startswith("delta-") and entry.name.endswith(".parquet"):
                try:
                    found.append((int(entry.name[6:-8]), entry))
                except ValueError:
                    continue
        return sorted(found)
