"""Replay: the owner's memory/ folder taken in as a turns table, a search index and insight.json.

Plain functions, so the same code runs inline (tests, a handful of changed parts) and in the
Ray Data pipeline (pipelines/ray_data_replay.py), which only spreads read_part over the cluster.
Replay reads memory/ and writes only under the index folder:

    parts.parquet   the state: every part's size, mtime, sha1, lines, error, words, feelings
    turns.parquet   every turn (id, day, user, part, line_start, line_end, speaker, text,
                    hash, path, duplicate_of)
    lexical/        the tantivy index of the turns that are not duplicates
    insight.json    what the memory holds, per day and speaker, and what was skipped and why
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from echo.memory.indexing import update_indexes
from echo.memory.insight import describe, top_terms_by_day
from echo.memory.parsing import CARRIED, DEFAULT_MARKERS, parse_part
from echo.memory.store import PartFile, scan_parts

# Bump when what replay derives from a part changes (parsing, cleaning, hashing): tables
# written by another version are rebuilt by a full replay.
REPLAY_VERSION = b"2"
TOP_WORDS_PER_PART = 50

TURN_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("day", pa.string()),
        ("user", pa.string()),
        ("part", pa.int32()),
        ("line_start", pa.int32()),
        ("line_end", pa.int32()),
        ("speaker", pa.string()),
        ("text", pa.string()),
        ("hash", pa.string()),
        ("path", pa.string()),
    ]
)
_READ_TURN = pa.struct(list(TURN_SCHEMA))
_COUNT = pa.list_(pa.struct([("key", pa.string()), ("count", pa.int32())]))
PART_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("day", pa.string()),
        ("user", pa.string()),
        ("part", pa.int32()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha1", pa.string()),
        ("lines", pa.int32()),
        ("error", pa.string()),
        ("words", _COUNT),
        ("emotions", _COUNT),
        # Where a read can resume when the part grows in place: the byte offset and line of
        # its last turn, and the sha1 of the bytes from there to the end.
        ("inode", pa.int64()),
        ("resume_offset", pa.int64()),
        ("resume_line", pa.int32()),
        ("resume_sha1", pa.string()),
        ("resumed_from", pa.int32()),  # this read began at that line (0: the whole part)
    ]
)
READ_SCHEMA = pa.schema([*PART_SCHEMA, ("turns", pa.list_(_READ_TURN))])
TURNS_FILE_SCHEMA = TURN_SCHEMA.append(pa.field("duplicate_of", pa.string()))


def text_hash(text: str) -> str:
    """Duplicates and vectors key on this; the text is already cleaned (NFC, spaces, residue)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _counts(counter: Mapping[str, int]) -> list[dict]:
    return [{"key": k, "count": int(v)} for k, v in counter.items()]


def _refusal(data: bytes) -> str | None:
    """Why a part's bytes are not a text memory, with what to do; None when they are."""
    if b"\x00" in data:
        return "binary data (NUL bytes), not a text part (fix: move it out of memory/)"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start} (fix: re-save the file as UTF-8)"
    return None


def _resumable(part: PartFile, handle) -> bytes | None:
    """The part's bytes from its old last turn on, when it only grew since: the old tail is
    still there byte for byte. None when it was rewritten (then it is read whole)."""
    if part.resume_offset < 0 or part.size <= part.resume_size:
        return None
    handle.seek(part.resume_offset)
    data = handle.read()
    old_tail = part.resume_size - part.resume_offset
    return data if hashlib.sha1(data[:old_tail]).hexdigest() == part.resume_sha1 else None


def read_part(memory_dir: Path, part: PartFile, markers: Mapping[str, str] = DEFAULT_MARKERS) -> tuple[dict, dict[str, list]]:
    """One part parsed and cleaned: (its PART_SCHEMA row, its turns as columns).

    A part read before that has only grown is read from its last turn on, not again from
    the start: that turn may go on in the new lines, and the turns before it are kept.
    """
    row = {**asdict(part), "sha1": "", "lines": 0, "error": None, "words": [], "emotions": [], "resumed_from": 0}
    columns: dict[str, list] = {name: [] for name in _READ_TURN.names}
    try:
        with (memory_dir / part.path).open("rb") as handle:
            data = _resumable(part, handle)
            start_offset, first_line = (part.resume_offset, part.resume_line) if data is not None else (0, 1)
            if data is None:
                handle.seek(0)
                data = handle.read()
    except OSError as exc:
        return {**row, "error": f"unreadable: {exc.strerror} (fix: check the file's permissions)"}, columns
    if first_line > 1:  # a content digest chained over appends, as the whole file would be read only once
        appended = data[part.resume_size - part.resume_offset :]
        row.update(sha1=hashlib.sha1(bytes.fromhex(part.resume_digest) + appended).hexdigest(), resumed_from=first_line)
    else:
        row.update(sha1=hashlib.sha1(data).hexdigest())
    row["size"] = start_offset + len(data)
    if (refusal := _refusal(data)) is not None:
        return {**row, "error": refusal, "resumed_from": 0}, columns
    lines = data.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    turns = [replace(t, line_start=t.line_start + first_line - 1, line_end=t.line_end + first_line - 1) for t in parse_part(lines, markers)]
    texts = [t.text for t in turns]
    columns.update(
        id=[f"{part.path}:{t.line_start}" for t in turns],
        day=[part.day] * len(turns),
        user=[part.user] * len(turns),
        part=[part.part] * len(turns),
        line_start=[t.line_start for t in turns],
        line_end=[t.line_end for t in turns],
        speaker=[t.speaker for t in turns],
        text=texts,
        hash=[text_hash(t) for t in texts],
        path=[part.path] * len(turns),
    )
    last = turns[-1].line_start - first_line if turns else 0  # the last turn, in this read's lines
    offset = len("\n".join(lines[:last]).encode("utf-8")) + (1 if last else 0)
    row.update(resume_offset=start_offset + offset, resume_line=first_line + last, resume_sha1=hashlib.sha1(data[offset:]).hexdigest())
    words, feelings = describe("\n".join(texts))
    row.update(lines=first_line - 1 + len(lines), words=_counts(dict(words.most_common(TOP_WORDS_PER_PART))), emotions=_counts(feelings))
    return row, columns


def read_parts(memory_dir: Path, parts: Sequence[PartFile], markers: Mapping[str, str] = DEFAULT_MARKERS) -> pa.Table:
    """Parts read one after another in this process, as a READ_SCHEMA table (turns nested per part)."""
    rows, offsets = [], [0]
    columns: dict[str, list] = {name: [] for name in _READ_TURN.names}
    for part in parts:
        row, turns = read_part(memory_dir, part, markers)
        rows.append(row)
        for name, values in turns.items():
            columns[name].extend(values)
        offsets.append(offsets[-1] + len(turns["id"]))
    # Built column by column: Arrow from a list of nested dicts costs more than the parsing.
    turns = pa.StructArray.from_arrays([pa.array(columns[f.name], f.type) for f in _READ_TURN], fields=list(_READ_TURN))
    table = pa.Table.from_pylist(rows, schema=PART_SCHEMA)
    return table.append_column(READ_SCHEMA.field("turns"), pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), turns))


Reader = Callable[[Path, Sequence[PartFile], Mapping[str, str]], pa.Table]


def _stage_parquet(table: pa.Table, path: Path) -> tuple[Path, Path]:
    """Write table beside path under a temporary name: (temporary, path), for os.replace."""
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table.replace_schema_metadata({"replay_version": REPLAY_VERSION}), temporary)
    return temporary, path


def _atomic_json(data: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def _load(path: Path, schema: pa.Schema) -> pa.Table:
    if path.is_file():
        try:
            table = pq.read_table(path)
            if table.schema.equals(schema) and (table.schema.metadata or {}).get(b"replay_version") == REPLAY_VERSION:
                return table
        except (OSError, pa.ArrowInvalid):
            pass  # a broken state file means a full replay, never a failed one
    return schema.empty_table()


def _with_resume(part: PartFile, previous: dict | None) -> PartFile:
    """part, told where its last read ended when it may only have grown in place since."""
    if previous is None or previous["error"] or previous["inode"] != part.inode or part.size <= previous["size"] or previous["resume_offset"] < 0:
        return part
    return replace(
        part,
        resume_offset=previous["resume_offset"],
        resume_line=previous["resume_line"],
        resume_sha1=previous["resume_sha1"],
        resume_size=previous["size"],
        resume_digest=previous["sha1"],
    )


def _describe_again(parts: pa.Table, turns: pa.Table, paths: set[str]) -> pa.Table:
    """Words and feelings of parts read in pieces, from all their turns."""
    texts: dict[str, list[str]] = {}
    theirs = turns.filter(pc.is_in(turns.column("path"), pa.array(sorted(paths), pa.string())))  # the parts', not the memory's
    for path, text in zip(theirs.column("path").to_pylist(), theirs.column("text").to_pylist()):
        texts.setdefault(path, []).append(text)
    rows = parts.to_pylist()
    for row in rows:
        if row["path"] in paths:
            words, feelings = describe("\n".join(texts.get(row["path"], [])))
            row.update(words=_counts(dict(words.most_common(TOP_WORDS_PER_PART))), emotions=_counts(feelings))
    return pa.Table.from_pylist(rows, schema=PART_SCHEMA)


def _fill_carried(turns: pa.Table) -> pa.Array:
    """A part that starts mid-turn goes on with the speaker of the previous part's last turn
    (turns in order). Only the carried turns are looked at: a part's update costs the part."""
    speakers = turns.column("speaker").combine_chunks()
    filled: dict[int, str] = {}
    for i in pc.indices_nonzero(pc.equal(speakers, CARRIED)).to_pylist():  # in order: a run of carried parts takes the speaker along
        if i > 0:
            before, here = (tuple(turns.column(c)[j].as_py() for c in ("day", "user", "part")) for j in (i - 1, i))
            if before[:2] == here[:2] and before[2] < here[2]:
                filled[i] = filled.get(i - 1, speakers[i - 1].as_py())
    if not filled:
        return speakers
    rows = sorted(filled)
    mask = np.zeros(turns.num_rows, dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(speakers, pa.array(mask), pa.array([filled[i] for i in rows], pa.string()))


def _kept(old_turns: pa.Table, stale: set[str], resumed: Mapping[str, int]) -> pa.Array:
    """Which old turns stay: those of parts not read again, and of a part read from where it
    was left, those before that line."""
    paths = old_turns.column("path")
    keep = pc.invert(pc.is_in(paths, pa.array(sorted(stale), pa.string())))
    for path, line in resumed.items():
        keep = pc.or_(keep, pc.and_(pc.equal(paths, path), pc.less(old_turns.column("line_start"), line)))
    return keep


def _mark_duplicates(table: pa.Table) -> pa.Array:
    """For every turn (in table order), the id of the first identical turn (same user,
    speaker, text), or null for that first one."""
    numbered = table.select(["id", "user", "speaker", "hash"]).append_column("row", pa.array(range(table.num_rows), pa.int64()))
    firsts = numbered.group_by(["user", "speaker", "hash"], use_threads=False).aggregate([("row", "min")])
    owners = numbered.join(firsts, ["user", "speaker", "hash"]).sort_by("row")  # each turn with its group's first row
    first_rows = owners.column("row_min")
    first_ids = pc.take(table.column("id"), first_rows)
    return pc.if_else(pc.equal(owners.column("row"), first_rows), pa.nulls(table.num_rows, pa.string()), first_ids)


def replay(
    memory_dir: Path,
    index_dir: Path,
    *,
    force: bool = False,
    reader: Reader = read_parts,
    markers: Mapping[str, str] = DEFAULT_MARKERS,
    settle_s: float = 0.0,
    whole: Mapping[str, tuple[int, int]] | None = None,
    on_read: Callable[[list[PartFile]], object] | None = None,
    facts: Mapping | None = None,
) -> dict:
    """Bring index_dir up to date with memory_dir; returns the insight (also in insight.json).

    Only parts whose size or mtime changed since the last replay are read (all with force);
    parts that are gone are removed. A part that cannot be read is skipped and reported.
    A part written less than settle_s ago may still be being written: it is left for a
    later replay and listed under "pending" (with "settles_in_s"), so nothing is read
    half-written; whole maps the paths of parts known to be complete (Echo's own saves) to
    their (size, mtime_ns): those need no waiting. on_read is told which parts were read
    once they are searchable. facts: what is known of the people in it (echo.memory.facts.summary), kept in the insight.
    """
    started = time.perf_counter()
    index_dir.mkdir(parents=True, exist_ok=True)
    found, unreadable_folders = scan_parts(memory_dir)
    old_parts = PART_SCHEMA.empty_table() if force else _load(index_dir / "parts.parquet", PART_SCHEMA)
    old_turns = TURNS_FILE_SCHEMA.empty_table() if force else _load(index_dir / "turns.parquet", TURNS_FILE_SCHEMA)
    known = {p["path"]: (p["size"], p["mtime_ns"]) for p in old_parts.select(["path", "size", "mtime_ns"]).to_pylist()}
    current = {p.path for p in found}
    changed = [p for p in found if known.get(p.path) != (p.size, p.mtime_ns)]
    settled_before = time.time_ns() - int(settle_s * 1e9)
    whole = whole or {}
    to_read, waiting = [], []
    for p in changed:
        (to_read if p.mtime_ns <= settled_before or whole.get(p.path) == (p.size, p.mtime_ns) else waiting).append(p)
    pending = sorted(p.path for p in waiting)
    stale = {p.path for p in to_read} | (set(known) - current)
    previous = {row["path"]: row for row in old_parts.filter(pc.is_in(old_parts.column("path"), pa.array([p.path for p in to_read], pa.string()))).to_pylist()}
    to_read = [_with_resume(p, previous.get(p.path)) for p in to_read]

    read = reader(memory_dir, to_read, markers) if to_read else READ_SCHEMA.empty_table()
    new_turns_rows = pa.Table.from_struct_array(read.column("turns").combine_chunks().flatten()) if read.num_rows else None
    parts = pa.concat_tables(
        [
            old_parts.filter(pa.array([p not in stale for p in old_parts.column("path").to_pylist()], pa.bool_())),
            read.select(PART_SCHEMA.names).cast(PART_SCHEMA),
        ]
    )
    parts = parts.sort_by([("day", "ascending"), ("user", "ascending"), ("part", "ascending")])

    # A part read from where it was left keeps its turns from before that line.
    resumed = {p: line for p, line in zip(read.column("path").to_pylist(), read.column("resumed_from").to_pylist()) if line}
    kept_old = old_turns.filter(_kept(old_turns, stale, resumed)).select(TURN_SCHEMA.names)
    pieces = [kept_old] + ([new_turns_rows.select(TURN_SCHEMA.names).cast(TURN_SCHEMA)] if new_turns_rows is not None else [])
    turns = pa.concat_tables(pieces).sort_by([("day", "ascending"), ("user", "ascending"), ("part", "ascending"), ("line_start", "ascending")])
    turns = turns.set_column(turns.schema.get_field_index("speaker"), "speaker", _fill_carried(turns))
    duplicate_of = _mark_duplicates(turns)
    turns = turns.append_column("duplicate_of", duplicate_of)
    if resumed:
        parts = _describe_again(parts, turns, set(resumed))

    # The lexical index holds the turns that are not duplicates; only the difference is written.
    read_ids = set(new_turns_rows.column("id").to_pylist()) if new_turns_rows is not None else set()
    update_indexes(index_dir, turns, old_turns, read_ids, force)
    # The state goes last: a crash before it means these parts are simply read again.
    staged = [_stage_parquet(turns, index_dir / "turns.parquet"), _stage_parquet(parts, index_dir / "parts.parquet")]
    insight = build_insight(parts, turns, unreadable_folders)
    for temporary, final in staged:
        os.replace(temporary, final)
    lines_read = sum(n - max(start - 1, 0) for n, start in zip(read.column("lines").to_pylist(), read.column("resumed_from").to_pylist()))
    seconds = time.perf_counter() - started
    if facts is not None:
        insight["facts"] = dict(facts)
    insight["pending"] = pending
    insight["settles_in_s"] = round(max((p.mtime_ns - settled_before) / 1e9 for p in waiting), 3) if waiting else 0.0
    insight["last_replay"] = {
        "parts_read": len(to_read),
        "parts_removed": len(set(known) - current),
        "parts_resumed": len(resumed),  # grown in place: read from their last turn on
        "lines_read": lines_read,
        "seconds": round(seconds, 3),
        "lines_per_second": round(lines_read / seconds) if seconds > 0 else None,
        "reader": (read.schema.metadata or {}).get(b"reader", b"inline").decode(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_json(insight, index_dir / "insight.json")
    if on_read is not None and to_read:
        on_read(to_read)
    return insight


def build_insight(parts: pa.Table, turns: pa.Table, unreadable_folders: list[dict]) -> dict:
    by_day: dict[str, dict] = {}
    words_by_day: dict[str, Counter] = {}
    feelings: Counter = Counter()
    feelings_by_day: dict[str, Counter] = {}
    skipped = list(unreadable_folders)
    for p in parts.to_pylist():
        day = by_day.setdefault(p["day"], {"lines": 0, "turns": 0, "parts": 0})
        day["parts"] += 1
        day["lines"] += p["lines"]
        if p["error"]:
            skipped.append({"path": p["path"], "reason": p["error"]})
        words_by_day.setdefault(p["day"], Counter()).update({w["key"]: w["count"] for w in p["words"]})
        for e in p["emotions"]:
            feelings[e["key"]] += e["count"]
            feelings_by_day.setdefault(p["day"], Counter())[e["key"]] += e["count"]
    # Counted in Arrow: a part's update must not walk every turn of the memory in Python.
    unique = turns.filter(pc.is_null(turns.column("duplicate_of")))
    duplicates = turns.num_rows - unique.num_rows
    for row in unique.group_by("day").aggregate([("day", "count")]).to_pylist():
        by_day[row["day"]]["turns"] += row["day_count"]
    lines = pc.add(pc.subtract(unique.column("line_end"), unique.column("line_start")), 1)
    spoken = pa.table({"speaker": unique.column("speaker"), "lines": lines}).group_by("speaker").aggregate([("lines", "count"), ("lines", "sum")])
    by_speaker = spoken.to_pylist()
    speakers = Counter({r["speaker"]: r["lines_count"] for r in by_speaker})
    speaker_lines = Counter({r["speaker"]: r["lines_sum"] for r in by_speaker})
    top = top_terms_by_day(words_by_day)
    for day, figures in by_day.items():
        figures["top_terms"] = top.get(day, [])
        figures["emotions"] = dict(feelings_by_day.get(day, Counter()).most_common())
    days = sorted(by_day)
    return {
        "days": len(days),
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "parts": parts.num_rows,
        "lines": sum(d["lines"] for d in by_day.values()),
        "turns": sum(speakers.values()),
        "duplicates_dropped": duplicates,
        "turns_by_speaker": dict(speakers.most_common()),
        "lines_by_speaker": dict(speaker_lines.most_common()),  # marker lines included
        "emotions": dict(feelings.most_common()),
        "skipped": skipped,
        "by_day": {d: by_day[d] for d in days},
    }
