"""A table kept as a base and deltas (echo.memory.tablelog): what was written is what is read
back, folding loses nothing, and a crash anywhere leaves a complete state."""

from __future__ import annotations

import pyarrow as pa

from echo.memory import tablelog
from echo.memory.tablelog import TableLog

SCHEMA = pa.schema([("path", pa.string()), ("n", pa.int32())])


def rows(path: str, *numbers: int) -> pa.Table:
    return pa.table({"path": [path] * len(numbers), "n": list(numbers)}, schema=SCHEMA)


def as_lists(loaded: dict[str, pa.Table] | None) -> dict[str, list[int]] | None:
    return None if loaded is None else {p: t.column("n").to_pylist() for p, t in loaded.items()}


def test_changes_are_written_as_deltas_and_read_back_in_order(tmp_path):
    log = TableLog(tmp_path / "t", SCHEMA, b"1")
    state = {"a": rows("a", 1, 2), "b": rows("b", 3)}
    log.replace(pa.concat_tables(state.values()))
    log.write({"a": rows("a", 1, 2, 4)}, lambda: None)
    log.write({"b": None, "c": rows("c", 5)}, lambda: None)
    assert len(list((tmp_path / "t").glob("delta-*.parquet"))) == 2
    assert as_lists(TableLog(tmp_path / "t", SCHEMA, b"1").load()) == {"a": [1, 2, 4], "c": [5]}


def test_deltas_are_folded_into_the_base_once_they_hold_enough_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(tablelog, "FOLD_MIN_ROWS", 2)
    log = TableLog(tmp_path / "t", SCHEMA, b"1")
    log.replace(rows("a", 1))
    log.write({"b": rows("b", 2)}, lambda: None)
    log.write({"c": rows("c", 3, 4)}, lambda: pa.concat_tables([rows("a", 1), rows("b", 2), rows("c", 3, 4)]))
    assert not list((tmp_path / "t").glob("delta-*.parquet"))
    assert as_lists(TableLog(tmp_path / "t", SCHEMA, b"1").load()) == {"a": [1], "b": [2], "c": [3, 4]}


def test_a_delta_left_by_a_crash_after_folding_is_not_applied_again(tmp_path):
    log = TableLog(tmp_path / "t", SCHEMA, b"1")
    log.replace(rows("a", 1))
    log.write({"a": rows("a", 1, 2)}, lambda: None)
    delta = next((tmp_path / "t").glob("delta-*.parquet"))
    kept = delta.read_bytes()
    log.replace(rows("a", 7))  # a new base; then the crash came before its deltas were removed
    delta.write_bytes(kept)
    assert as_lists(TableLog(tmp_path / "t", SCHEMA, b"1").load()) == {"a": [7]}


def test_a_broken_or_older_state_is_none_and_its_files_go_with_the_next_base(tmp_path):
    log = TableLog(tmp_path / "t", SCHEMA, b"1")
    log.replace(rows("a", 1))
    log.write({"b": rows("b", 2)}, lambda: None)
    assert TableLog(tmp_path / "t", SCHEMA, b"2").load() is None  # written by another version
    (tmp_path / "t" / "base.parquet").write_bytes(b"not parquet")
    assert TableLog(tmp_path / "t", SCHEMA, b"1").load() is None
    rebuilt = TableLog(tmp_path / "t", SCHEMA, b"1")
    rebuilt.replace(rows("c", 3))
    assert as_lists(TableLog(tmp_path / "t", SCHEMA, b"1").load()) == {"c": [3]}  # the old delta is not applied to it
