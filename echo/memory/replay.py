"""Replay: the owner's memory/ folder taken in as a turns table, a search index and insight.json.

Reading is plain functions, so the same code runs inline (tests, a handful of changed parts)
and in the Ray Data pipeline (pipelines/ray_data_replay.py), which only spreads read_part over
the cluster. The Replayer keeps what was read (its folders are listed there) and takes in each
change by difference. Replay reads memory/ and writes only under the index folder.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from echo.memory.insight import describe, top_terms
from echo.memory.lexical import TURNS_DIR, LexicalIndex
from echo.memory.parsing import CARRIED, DEFAULT_MARKERS, parse_part
from echo.memory.store import PartFile, scan_parts, stat_parts
from echo.memory.tablelog import TableLog, by_path

# Bump when what replay derives from a part changes (parsing, cleaning, hashing): tables
# written by another version are rebuilt by a full replay.
REPLAY_VERSION = b"3"
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
        ("starts_carried", pa.bool_()),  # its first turn goes on from the previous part's last
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
    row = {**asdict(part), "sha1": "", "lines": 0, "error": None, "words": [], "emotions": [], "resumed_from": 0, "starts_carried": False}
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
    row["starts_carried"] = first_line == 1 and bool(turns) and turns[0].speaker == CARRIED
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
Entry = tuple  # (day, user, part, line_start, id, path): a turn in memory order, with where it is
LEGACY_FILES = ("turns.parquet", "parts.parquet")  # one table each, rewritten whole: before REPLAY_VERSION 3


def _atomic_json(data: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, path)


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


def _order_of(row: Mapping) -> tuple:
    return (row["day"], row["user"], row["part"])


def _entries(table: pa.Table) -> list[tuple[tuple[str, str, str], Entry]]:
    """Each turn's duplicate key (user, speaker, text hash) and its entry."""
    c = {name: table.column(name).to_pylist() for name in ("day", "user", "part", "line_start", "id", "path", "speaker", "hash")}
    return [
        ((u, s, h), (d, u, p, line, i, path))
        for d, u, p, line, i, path, s, h in zip(c["day"], c["user"], c["part"], c["line_start"], c["id"], c["path"], c["speaker"], c["hash"])
    ]


class _Spoken:
    """What a part adds to the insight's turn counts: its turns that are not duplicates, by
    speaker, and their lines (marker lines included)."""

    def __init__(self, table: pa.Table):
        self.rows = table.num_rows
        self.turns: Counter = Counter()
        self.lines: Counter = Counter()
        c = {name: table.column(name).to_pylist() for name in ("speaker", "line_start", "line_end", "duplicate_of")}
        for speaker, start, end, duplicate in zip(c["speaker"], c["line_start"], c["line_end"], c["duplicate_of"]):
            if duplicate is None:
                self.turns[speaker] += 1
                self.lines[speaker] += end - start + 1

    def unique(self) -> int:
        return sum(self.turns.values())


class Replayer:
    """The memory as replay last left it: every part's row and turns, the groups of identical
    turns, and the insight's sums, kept between updates so that taking in one part costs what
    that part costs, however large the memory. The MemoryActor holds one for its life; one-shot
    callers use replay(). Its state is loaded from index_dir at the first update:

        parts/      every part's size, mtime, sha1, lines, error, words, feelings (a TableLog)
        turns/      every turn (id, day, user, part, line_start, line_end, speaker, text, hash,
                    path, duplicate_of), the speaker of a turn carried over filled in (a TableLog)
        lexical/    the tantivy index of the turns that are not duplicates
        insight.json what the memory holds, per day and speaker, and what was skipped and why
    """

    def __init__(self, index_dir: Path, *, reader: Reader = read_parts, markers: Mapping[str, str] = DEFAULT_MARKERS):
        self.index_dir, self.reader, self.markers = index_dir, reader, markers
        self.parts_log = TableLog(index_dir / "parts", PART_SCHEMA, REPLAY_VERSION)
        self.turns_log = TableLog(index_dir / "turns", TURNS_FILE_SCHEMA, REPLAY_VERSION)
        self.loaded = False  # load() was called
        self.built = False  # there is a state to build on (not a first or forced replay)
        self._clear()

    def _clear(self) -> None:
        self.parts: dict[str, dict] = {}  # path: its PART_SCHEMA row
        self.turns: dict[str, pa.Table] = {}  # path: its turns (TURNS_FILE_SCHEMA), in line order
        self.order: list[str] = []  # the paths in memory order (day, user, number)
        self._keys: list[tuple] = []  # their _order_of, for bisect
        self._groups: dict[tuple[str, str, str], list[Entry]] | None = {}  # identical turns, first first; built when first needed
        self._spoken: dict[str, _Spoken] = {}
        self._speakers, self._speaker_lines, self._rows = Counter(), Counter(), 0  # the sums of _spoken
        self._errors: set[str] = set()  # parts that could not be read
        self._skipped: list[dict] = []  # what the last scan of memory/ did not read, and why
        self._pending: set[str] = set()  # parts left to settle: looked at again at every update
        self.last_seen: tuple[list[PartFile], list[str]] = ([], [])  # the last update's parts looked at, and those gone
        self._days: dict[str, dict] = {}  # day: its insight figures
        self._words: dict[str, Counter] = {}  # day: its content words, for its top terms
        self._spread: Counter = Counter()  # word: on how many days

    # -- the state ---------------------------------------------------------------------

    def load(self) -> bool:
        """The state as the last replay wrote it; False when there is none to build on."""
        if self.loaded:
            return self.built
        self.loaded = True
        parts, turns = self.parts_log.load(), self.turns_log.load()
        if parts is None or turns is None:
            return False
        rows = pa.concat_tables(list(parts.values())).to_pylist() if parts else []
        for row in sorted(rows, key=_order_of):
            self._put_part(row)
        self.turns = {path: table for path, table in turns.items() if path in self.parts}  # a part's turns written just before a crash
        for path in self.order:
            self._count(path)
        self._groups = None
        self._refigure({row["day"] for row in rows}, rank_all=True)
        self.built = True
        return True

    def turn_table(self, path: str) -> pa.Table:
        turns = self.turns.get(path)
        return turns if turns is not None else TURNS_FILE_SCHEMA.empty_table()

    def _count(self, path: str) -> None:
        """path's turns into the insight's sums, in place of what they were."""
        old = self._spoken.pop(path, None)
        if old is not None:
            self._speakers.subtract(old.turns)
            self._speaker_lines.subtract(old.lines)
            self._rows -= old.rows
        if path in self.parts:
            new = self._spoken[path] = _Spoken(self.turn_table(path))
            self._speakers.update(new.turns)
            self._speaker_lines.update(new.lines)
            self._rows += new.rows

    def all_turns(self) -> pa.Table:
        """Every turn in memory order (chunks shared with the state: nothing is copied)."""
        tables = [self.turns[p] for p in self.order if p in self.turns]
        return pa.concat_tables(tables) if tables else TURNS_FILE_SCHEMA.empty_table()

    def all_parts(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every part's row in memory order (only these columns, when named: quicker)."""
        if columns is None:
            return pa.Table.from_pylist([self.parts[p] for p in self.order], schema=PART_SCHEMA)
        return pa.table({c: pa.array([self.parts[p][c] for p in self.order], PART_SCHEMA.field(c).type) for c in columns})

    def _put_part(self, row: dict) -> None:
        path, key = row["path"], _order_of(row)
        if path not in self.parts:
            at = bisect.bisect_left(self._keys, key)
            self.order.insert(at, path)
            self._keys.insert(at, key)
        self.parts[path] = row
        (self._errors.add if row["error"] else self._errors.discard)(path)

    def _drop_part(self, path: str) -> None:
        at = bisect.bisect_left(self._keys, _order_of(self.parts[path]))
        del self.order[at], self._keys[at]
        del self.parts[path]
        self.turns.pop(path, None)
        self._errors.discard(path)

    def _parts_before(self, path: str):
        """The parts of the same day and user before path, nearest first."""
        row = self.parts[path]
        at = bisect.bisect_left(self._keys, _order_of(row)) - 1
        while at >= 0 and self._keys[at][:2] == (row["day"], row["user"]):
            yield self.order[at]
            at -= 1

    def duplicate_groups(self) -> dict[tuple[str, str, str], list[Entry]]:
        if self._groups is None:  # after a load: built once, then kept up to date
            self._groups = {}
            for path in self.order:
                for key, entry in _entries(self.turn_table(path)):
                    self._groups.setdefault(key, []).append(entry)
            for entries in self._groups.values():
                entries.sort()
        return self._groups

    # -- an update ---------------------------------------------------------------------

    def update(
        self,
        memory_dir: Path,
        *,
        force: bool = False,
        settle_s: float = 0.0,
        whole: Mapping[str, tuple[int, int]] | None = None,
        on_read: Callable[[list[PartFile]], object] | None = None,
        facts: Mapping | None = None,
        paths: Iterable[str] | None = None,
    ) -> dict:
        """Bring the index up to date with memory_dir; returns the insight (also in insight.json).

        paths: where memory/ changed (relative), when the caller knows (its saves, the watchdog's
        events): only those are looked at, not the whole memory. None scans it all.

        Only parts whose size or mtime changed since the last update are read (all with force);
        parts that are gone are removed. A part that cannot be read is skipped and reported.
        A part written less than settle_s ago may still be being written: it is left for a
        later update and listed under "pending" (with "settles_in_s"), so nothing is read
        half-written; whole maps the paths of parts known to be complete (Echo's own saves) to
        their (size, mtime_ns): those need no waiting. on_read is told which parts were read
        once they are searchable. facts: what is known of the people in it
        (echo.memory.facts.summary), kept in the insight.
        """
        started = time.perf_counter()
        self.index_dir.mkdir(parents=True, exist_ok=True)
        if force:
            self._clear()
            self.loaded, self.built = True, False
        built = self.load()
        self.duplicate_groups()  # before anything is dropped: the groups are built from the state as loaded
        looked = stat_parts(memory_dir, {*paths, *self._pending}) if paths is not None and built else None
        if looked is None:
            found, self._skipped = scan_parts(memory_dir)
            gone = set(self.parts) - {p.path for p in found}
        else:
            found, gone = looked[0], set(looked[1]) & set(self.parts)
            hinted = {p.path for p in found} | set(looked[1])
            self._skipped = [s for s in self._skipped if s["path"] not in hinted]  # now a part
        changed = [p for p in found if (row := self.parts.get(p.path)) is None or (row["size"], row["mtime_ns"]) != (p.size, p.mtime_ns)]
        settled_before = time.time_ns() - int(settle_s * 1e9)
        whole = whole or {}
        to_read, waiting = [], []
        for p in changed:
            (to_read if p.mtime_ns <= settled_before or whole.get(p.path) == (p.size, p.mtime_ns) else waiting).append(p)
        removed = sorted(gone)
        self._pending = {p.path for p in waiting}
        self.last_seen = (found, removed)
        to_read = [_with_resume(p, self.parts.get(p.path)) for p in to_read]
        read = self.reader(memory_dir, to_read, self.markers) if to_read else READ_SCHEMA.empty_table()

        # What changes: the parts read, those removed, the parts after either whose first
        # turn goes on from them, and the parts whose duplicates' first turn moved.
        before = {p: self.turns[p] for p in removed if p in self.turns}
        removed_at = [_order_of(self.parts[p]) for p in removed]
        for path in removed:
            self._drop_part(path)
        fresh = self._take_in(read, before)
        renewed = self._fill_carried(fresh, removed_at, before)
        patched = self._mark_duplicates(renewed, before) if built else self._mark_all_duplicates(renewed)
        before.update({p: self.turns[p] for p in patched})
        touched = {**renewed, **patched}
        self.turns.update(touched)
        self._update_lexical(touched, before, set(fresh), rebuild=not built)
        for path in {*removed, *touched}:
            self._count(path)
        self._refigure({self.parts[p]["day"] for p in touched} | {day for day, _, _ in removed_at})
        resumed = sum(1 for n in read.column("resumed_from").to_pylist() if n) if read.num_rows else 0

        # The state goes last, turns before parts: a crash before it means these parts are simply read again.
        if built:
            self.turns_log.write({**{p: None for p in removed}, **touched}, self.all_turns)
            parts_changed = {**{p: None for p in removed}, **{p: pa.Table.from_pylist([self.parts[p]], schema=PART_SCHEMA) for p in fresh}}
            self.parts_log.write(parts_changed, self.all_parts)
        else:  # a first replay, a forced one, or one over a state of another version
            self.turns_log.replace(self.all_turns())
            self.parts_log.replace(self.all_parts())
            for name in LEGACY_FILES:
                (self.index_dir / name).unlink(missing_ok=True)
            self.built = True

        insight = self.insight()
        lines_read = sum(n - max(start - 1, 0) for n, start in zip(read.column("lines").to_pylist(), read.column("resumed_from").to_pylist()))
        seconds = time.perf_counter() - started
        if facts is not None:
            insight["facts"] = dict(facts)
        insight["pending"] = sorted(p.path for p in waiting)
        insight["settles_in_s"] = round(max((p.mtime_ns - settled_before) / 1e9 for p in waiting), 3) if waiting else 0.0
        insight["last_replay"] = {
            "parts_read": len(to_read),
            "parts_removed": len(removed),
            "parts_resumed": resumed,  # grown in place: read from their last turn on
            "lines_read": lines_read,
            "seconds": round(seconds, 3),
            "lines_per_second": round(lines_read / seconds) if seconds > 0 else None,
            "reader": (read.schema.metadata or {}).get(b"reader", b"inline").decode(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _atomic_json(insight, self.index_dir / "insight.json")
        if on_read is not None and to_read:
            on_read(to_read)
        return insight

    def _take_in(self, read: pa.Table, before: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """The parts just read into the state (their old turns into before); their turns
        (TURN_SCHEMA, raw speakers) by path. A part read from where it was left keeps its
        turns from before that line."""
        if not read.num_rows:
            return {}
        flat = pa.Table.from_struct_array(read.column("turns").combine_chunks().flatten())
        by_part = by_path(flat.select(TURN_SCHEMA.names).cast(TURN_SCHEMA))
        fresh = {}
        for row in read.select(PART_SCHEMA.names).cast(PART_SCHEMA).to_pylist():
            path = row["path"]
            turns = by_part.get(path, TURN_SCHEMA.empty_table())
            if path in self.turns:
                before[path] = self.turns[path]
            if row["resumed_from"] and path in self.parts:
                old = self.turn_table(path)
                kept = old.filter(pc.less(old.column("line_start"), row["resumed_from"])).select(TURN_SCHEMA.names)
                turns = pa.concat_tables([kept, turns])
                words, feelings = describe("\n".join(turns.column("text").to_pylist()))  # of the whole part, not this read's piece
                row.update(
                    starts_carried=self.parts[path]["starts_carried"],
                    words=_counts(dict(words.most_common(TOP_WORDS_PER_PART))),
                    emotions=_counts(feelings),
                )
            self._put_part(row)
            fresh[path] = turns
        return fresh

    def _fill_carried(self, fresh: dict[str, pa.Table], removed_at: list[tuple], before: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """A part that starts mid-turn goes on with the speaker of the last turn before it (the
        same day and user). The parts after a part read or removed are looked at again: they
        may now go on from another turn (their old turns into before). Returns every part
        whose turns are new, filled in."""
        renewed = dict(fresh)
        for at in [*(_order_of(self.parts[p]) for p in fresh), *removed_at]:
            for later in self._carried_after(at, fresh):
                if later not in renewed:
                    before[later] = self.turns[later]
                    renewed[later] = self.turns[later].select(TURN_SCHEMA.names)
        for path in sorted(renewed, key=lambda p: _order_of(self.parts[p])):  # in order: a run of carried parts takes the speaker along
            turns = renewed[path]
            if self.parts[path]["starts_carried"] and turns.num_rows:
                speakers = turns.column("speaker").to_pylist()
                speakers[0] = self._last_speaker_before(path, renewed)
                turns = turns.set_column(turns.schema.get_field_index("speaker"), "speaker", pa.array(speakers, pa.string()))
            renewed[path] = turns
        return renewed

    def _carried_after(self, at: tuple, fresh: Mapping[str, pa.Table]):
        """The parts after position at (day, user, number), of that day and user, whose first
        turn goes on from a turn that may have changed: up to the first that has a turn of its own."""
        i = bisect.bisect_right(self._keys, at)
        while i < len(self.order) and self._keys[i][:2] == at[:2]:
            path = self.order[i]
            turns = fresh[path] if path in fresh else self.turn_table(path)
            carried = self.parts[path]["starts_carried"]
            if carried:
                yield path
            if turns.num_rows > (1 if carried else 0):
                return  # its last turn is its own: what follows goes on from it
            i += 1

    def _last_speaker_before(self, path: str, renewed: Mapping[str, pa.Table]) -> str:
        for earlier in self._parts_before(path):
            turns = renewed.get(earlier)
            turns = turns if turns is not None else self.turn_table(earlier)
            if turns.num_rows:
                return turns.column("speaker")[-1].as_py()
        return CARRIED

    def _mark_duplicates(self, renewed: dict[str, pa.Table], before: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """Give renewed parts' turns their duplicate_of (the id of the first identical turn: the
        same user, speaker and text, in memory order; null for that first one), and the turns of
        other parts whose first changed theirs: those parts are returned."""
        groups = self.duplicate_groups()
        firsts_before: dict[tuple, Entry | None] = {}
        for old in before.values():
            for key, entry in _entries(old):
                entries = groups[key]
                firsts_before.setdefault(key, entries[0])
                del entries[bisect.bisect_left(entries, entry)]  # a common text has many
        for turns in renewed.values():
            for key, entry in _entries(turns):
                entries = groups.setdefault(key, [])
                firsts_before.setdefault(key, entries[0] if entries else None)
                bisect.insort(entries, entry)
        moved = set()
        for key, first in firsts_before.items():
            entries = groups.get(key)
            if not entries:
                groups.pop(key, None)
            elif entries[0] != first:
                moved.update(entry[5] for entry in entries)
        patched = {p: self.turn_table(p).select(TURN_SCHEMA.names) for p in moved if p not in renewed}
        for tables in (renewed, patched):
            for path, turns in tables.items():
                tables[path] = self._with_duplicates(turns, groups)
        return patched

    def _mark_all_duplicates(self, renewed: dict[str, pa.Table]) -> dict:
        """_mark_duplicates for a first or forced replay, where every part is new: in Arrow over
        the whole table, and the groups built only when an update first needs them."""
        whole = pa.concat_tables([renewed[p] for p in self.order]) if self.order else TURN_SCHEMA.empty_table()
        marked = by_path(whole.append_column(TURNS_FILE_SCHEMA.field("duplicate_of"), _first_identical(whole)))
        for path in renewed:
            renewed[path] = marked.get(path, TURNS_FILE_SCHEMA.empty_table())
        self._groups = None
        return {}

    @staticmethod
    def _with_duplicates(turns: pa.Table, groups: Mapping[tuple, list[Entry]]) -> pa.Table:
        turns = turns.select(TURN_SCHEMA.names)
        c = {name: turns.column(name).to_pylist() for name in ("id", "user", "speaker", "hash")}
        firsts = [groups[(u, s, h)][0][4] for u, s, h in zip(c["user"], c["speaker"], c["hash"])]
        duplicate_of = [None if first == own else first for first, own in zip(firsts, c["id"])]
        return turns.append_column(TURNS_FILE_SCHEMA.field("duplicate_of"), pa.array(duplicate_of, pa.string()))

    def _update_lexical(self, touched: dict[str, pa.Table], before: dict[str, pa.Table], read: set[str], rebuild: bool) -> None:
        """The lexical index holds the turns that are not duplicates; only the difference is written."""
        index = LexicalIndex(self.index_dir / TURNS_DIR, fresh=rebuild)
        adding, deleting = [], []
        if index.created:  # a new index: every turn of the memory goes in
            adding = _unique_rows(self.all_turns().combine_chunks())
        else:
            for path in set(touched) | set(before):
                was = {row["id"] for row in _unique_rows(before[path])} if path in before else set()
                now = _unique_rows(touched[path]) if path in touched and path in self.parts else []
                deleting.extend(was - {row["id"] for row in now})
                adding.extend(row for row in now if path in read or row["id"] not in was)
        index.update(adding, delete=sorted(deleting), upsert=not index.created, threads=2 if len(adding) > 1000 else 1)

    # -- the insight -------------------------------------------------------------------

    def _refigure(self, days: set[str], rank_all: bool = False) -> None:
        """The insight's figures of these days again, from their parts. A day's top terms are
        ranked when the day changes, against the other days as they are then (every day's
        with rank_all)."""
        paths_of = {day: self._paths_of_day(day) for day in days}
        for day, paths in paths_of.items():
            for word in self._words.pop(day, Counter()):
                self._spread[word] -= 1
                if not self._spread[word]:
                    del self._spread[word]
            if not paths:
                self._days.pop(day, None)
                continue
            words, feelings = Counter(), Counter()
            for path in paths:
                row = self.parts[path]
                words.update({w["key"]: w["count"] for w in row["words"]})
                feelings.update({e["key"]: e["count"] for e in row["emotions"]})
            self._words[day] = words
            self._spread.update(words.keys())
            self._days[day] = {
                "lines": sum(self.parts[p]["lines"] for p in paths),
                "turns": sum(self._spoken[p].unique() for p in paths),
                "parts": len(paths),
                "emotions": dict(feelings.most_common()),
            }
        for day in self._days if rank_all else paths_of:
            if day in self._days:
                self._days[day]["top_terms"] = top_terms(self._words[day], self._spread, len(self._days))

    def _paths_of_day(self, day: str) -> list[str]:
        at = bisect.bisect_left(self._keys, (day,))
        paths = []
        while at < len(self._keys) and self._keys[at][0] == day:
            paths.append(self.order[at])
            at += 1
        return paths

    def insight(self) -> dict:
        days = sorted(self._days)
        speakers, speaker_lines = +self._speakers, +self._speaker_lines
        feelings = Counter()
        for figures in self._days.values():
            feelings.update(figures["emotions"])
        errors = sorted(self._errors, key=lambda p: _order_of(self.parts[p]))
        skipped = list(self._skipped) + [{"path": p, "reason": self.parts[p]["error"]} for p in errors]
        return {
            "days": len(days),
            "first_day": days[0] if days else None,
            "last_day": days[-1] if days else None,
            "parts": len(self.parts),
            "lines": sum(d["lines"] for d in self._days.values()),
            "turns": sum(speakers.values()),
            "duplicates_dropped": self._rows - sum(speakers.values()),
            "turns_by_speaker": dict(speakers.most_common()),
            "lines_by_speaker": dict(speaker_lines.most_common()),  # marker lines included
            "emotions": dict(feelings.most_common()),
            "skipped": skipped,
            "by_day": {d: {k: self._days[d][k] for k in ("lines", "turns", "parts", "top_terms", "emotions")} for d in days},
        }


def _first_identical(table: pa.Table) -> pa.Array:
    """For every turn (in table order), the id of the first identical turn (same user,
    speaker, text), or null for that first one."""
    numbered = table.select(["id", "user", "speaker", "hash"]).append_column("row", pa.array(range(table.num_rows), pa.int64()))
    firsts = numbered.group_by(["user", "speaker", "hash"], use_threads=False).aggregate([("row", "min")])
    owners = numbered.join(firsts, ["user", "speaker", "hash"]).sort_by("row")  # each turn with its group's first row
    first_rows = owners.column("row_min")
    first_ids = pc.take(table.column("id"), first_rows)
    return pc.if_else(pc.equal(owners.column("row"), first_rows), pa.nulls(table.num_rows, pa.string()), first_ids)


def _unique_rows(turns: pa.Table) -> list[dict]:
    """The turns that are not duplicates, as the lexical index takes them."""
    unique = turns.filter(pc.is_null(turns.column("duplicate_of")))
    return unique.select(["id", "user", "text", "path"]).to_pylist()


def replay(
    memory_dir: Path,
    index_dir: Path,
    *,
    force: bool = False,
    reader: Reader = read_parts,
    markers: Mapping[str, str] = DEFAULT_MARKERS,
    **options,
) -> dict:
    """One update of index_dir from memory_dir by a Replayer loaded for it (Replayer.update:
    options are settle_s, whole, on_read, facts); the insight."""
    return Replayer(index_dir, reader=reader, markers=markers).update(memory_dir, force=force, **options)


def load_index(index_dir: Path) -> tuple[pa.Table, pa.Table]:
    """(every turn, every part) as the last replay wrote them; empty tables before any."""
    state = Replayer(index_dir)
    state.load()
    return state.all_turns(), state.all_parts()
