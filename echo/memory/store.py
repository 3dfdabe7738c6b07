"""The owner's format, memory/dayMMDD/<user>/partN.txt with 395 lines a part: listing the
parts (one listing for replay, repair and restore), saving exchanges, repairing, restoring."""

from __future__ import annotations

import os
import re
import stat as stat_module
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from echo.memory.parsing import CONTROL_CHARS, DEFAULT_MARKERS, STAMP_START, marker_of, parse_part

PART_RE = re.compile(r"^part([1-9][0-9]*)\.txt$")
DAY_RE = re.compile(r"^day[0-9]{4}$")


@dataclass(frozen=True)
class SaveReceipt:
    path: str  # relative to the memory folder, e.g. day1124/origin/part3.txt
    line_start: int  # 1-based, inclusive
    line_end: int
    duplicate: bool = False  # the same exchange was already the last one saved
    backup_error: str | None = None  # saved in memory/, but its mirror in backup_dir failed

    def as_dict(self) -> dict:
        return asdict(self)


def part_number(name: str) -> int | None:
    """partN.txt -> N (from 1, no leading zeros); None for any other name. Parts sort by N."""
    match = PART_RE.match(name)
    return int(match.group(1)) if match else None


def day_folder(now: datetime, timezone: str) -> str:
    return now.astimezone(ZoneInfo(timezone)).strftime("day%m%d")


def exchange_lines(prompt: str, reply: str, markers: Mapping[str, str] = DEFAULT_MARKERS, stamp: str | None = None) -> list[str]:
    """The lines of one exchange: its stamp (parsing.stamp_line), the owner's marker, the
    prompt, Echo's marker, the reply."""

    def body(text: str) -> list[str]:
        lines = CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
        # A line that starts like a marker or a stamp would read back as a turn or a stamp of
        # its own (a guest could put words in Echo's mouth, or join another's conversation):
        # one leading space keeps the text and stops the match.
        return [f" {line}" if marker_of(line, markers) or line.startswith(STAMP_START) else line for line in lines]

    first = {speaker: marker for marker, speaker in reversed(markers.items())}
    return [*([stamp] if stamp else []), first["user"], *body(prompt), first["echo"], *body(reply)]


def lines_of(data: bytes) -> list[str]:
    """A part's lines as the parser numbers them. Only "\n" ends a line: str.splitlines would
    also split at U+2028, form feeds and the like."""
    lines = data.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last line starts no line of its own
        lines.pop()
    return lines


def _last_part(folder: Path) -> tuple[int, list[str]]:
    """(number, lines) of the highest partN.txt in folder; (1, []) when there is none."""
    numbers = [n for p in folder.iterdir() if (n := part_number(p.name))] if folder.is_dir() else []
    if not numbers:
        return 1, []
    number = max(numbers)
    return number, lines_of((folder / f"part{number}.txt").read_bytes())


def _append(path: Path, data: bytes) -> None:
    """Append and fsync, all or nothing; a torn last line is ended first, never glued to new text.

    A write that fails part-way (a full disk) is cut back off, so the part ends where it
    did before: no half exchange is left for the next save to build on.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # a read-only file system took nothing in the first place
            raise
    finally:
        os.close(fd)


def append_exchange(
    memory_dir: Path,
    user: str,
    lines: list[str],
    now: datetime,
    timezone: str,
    part_lines: int = 395,
    backup_dir: Path | None = None,
    markers: Mapping[str, str] = DEFAULT_MARKERS,
) -> SaveReceipt:
    """Append lines to the user's current part for today, starting part N+1 when they would not fit.

    An exchange is split across parts only when it alone is longer than a part: it then
    starts a part of its own. An exchange identical (after cleaning) to the last one saved
    there is not written again: the receipt points at the first and says duplicate. The
    write is flushed and fsynced, and mirrored under backup_dir, before the receipt returns.
    """
    folder = Path(day_folder(now, timezone)) / user
    number, existing = _last_part(memory_dir / folder)
    parsed = parse_part(lines, markers)
    new_turns = [(t.speaker, t.text, t.conversation) for t in parsed]  # the same words in another conversation are new
    old_turns = parse_part(existing, markers)[-len(new_turns) :] if existing and new_turns else []
    if [(t.speaker, t.text, t.conversation) for t in old_turns] == new_turns and old_turns:
        where = str(folder / f"part{number}.txt")
        return SaveReceipt(path=where, line_start=old_turns[0].line_start, line_end=old_turns[-1].line_end, duplicate=True)
    used = len(existing)
    if used and used + len(lines) > part_lines:
        number, used = number + 1, 0
    relative = folder / f"part{number}.txt"
    data = ("\n".join(lines) + "\n").encode("utf-8")
    _append(memory_dir / relative, data)
    backup_error = None
    if backup_dir is not None:
        try:
            _append(backup_dir / relative, data)
        except OSError as exc:  # the exchange is saved; only its spare copy is missing
            backup_error = f"{type(exc).__name__}: {exc}"
    first_turn = parsed[0].line_start if parsed else 1  # the citation starts at the first turn, after the stamp
    return SaveReceipt(path=str(relative), line_start=used + first_turn, line_end=used + len(lines), backup_error=backup_error)


@dataclass(frozen=True)
class PartFile:
    path: str  # relative to the memory folder: dayMMDD/<user>/partN.txt
    day: str
    user: str
    part: int
    size: int
    mtime_ns: int
    inode: int = 0
    # Set by replay when the part grew in place since its last read (see read_part).
    resume_offset: int = -1
    resume_line: int = 0
    resume_sha1: str = ""
    resume_size: int = 0
    resume_digest: str = ""


PART_LIKE = re.compile(r"^part.*\.txt$", re.IGNORECASE)  # meant as a part, whether or not the name is right
LINK_REASON = "a symbolic link: Echo reads only what is inside memory/ (fix: move or copy the real file or folder into memory/)"
_NEAR_DAY = re.compile(r"^day\D{0,2}(\d{4})", re.IGNORECASE)  # day0106b, Day0106, day0106-2, day_0106


def _not_a_day(name: str) -> str:
    """Why an entry of memory/ that is not a day folder is not read, and what to do."""
    near = _NEAR_DAY.match(name)
    if near:
        right = f"day{near.group(1)}"
        return (
            f"not a day folder name: day folders are named dayMMDD, exactly (fix: rename it to {right}, "
            f"or move its user folders into {right} if that folder exists)"
        )
    return "not read: memory/ holds only dayMMDD folders (fix: none if it is not a conversation; else move it into memory/dayMMDD/<user>/partN.txt)"


def scan_parts(memory_dir: Path) -> tuple[list[PartFile], list[dict]]:
    """Every part in order (days by name, users by name, parts by number), and what was
    skipped ({path, reason}): every entry that is not read, with what to do: folders that
    could not be read, links (never followed, so nothing outside memory/ is read), folders
    almost named as days, files meant as parts that cannot be one, and anything else."""
    found: list[PartFile] = []
    skipped: list[dict] = []

    def entries(relative: str) -> list[os.DirEntry]:
        try:
            with os.scandir(memory_dir / relative) as listing:
                return sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            skipped.append({"path": relative, "reason": f"unreadable folder: {exc.strerror} (fix: check its permissions)"})
            return []

    for day in entries("."):
        if not DAY_RE.match(day.name):
            skipped.append({"path": day.name, "reason": _not_a_day(day.name)})
        elif day.is_symlink():
            skipped.append({"path": day.name, "reason": LINK_REASON})
        elif not day.is_dir():
            skipped.append({"path": day.name, "reason": "a file where a day folder belongs (fix: move it out of memory/)"})
        else:
            for user in entries(day.name):
                where = f"{day.name}/{user.name}"
                if user.is_symlink():
                    skipped.append({"path": where, "reason": LINK_REASON})
                elif user.is_dir():
                    for entry in entries(where):
                        _scan_part(entry, day.name, user.name, found, skipped)
                elif PART_LIKE.match(user.name):
                    skipped.append({"path": where, "reason": "a part outside a user folder (fix: move it into memory/dayMMDD/<user>/)"})
                else:
                    skipped.append(
                        {"path": where, "reason": "not read: a day folder holds only user folders (fix: move it out, or into a user folder as partN.txt)"}
                    )
    found.sort(key=lambda p: (p.day, p.user, p.part))
    return found, skipped


def stat_parts(memory_dir: Path, paths: Iterable[str]) -> tuple[list[PartFile], list[str]] | None:
    """The parts at these paths (relative to memory_dir) as scan_parts would find them, and the
    paths with no part any more: what changed when a save or the watchdog says where, without
    a scan of the whole memory. None when one of them is anything else (a folder, a link, a
    name scan_parts would skip): then only a scan tells what it is."""
    found, gone = [], []
    for relative in sorted(set(paths)):
        names = relative.split("/")
        if len(names) != 3 or not DAY_RE.match(names[0]) or not (number := part_number(names[2])):
            return None
        try:
            for folder in (names[0], f"{names[0]}/{names[1]}"):
                if not stat_module.S_ISDIR(os.lstat(memory_dir / folder).st_mode):
                    return None  # a link or a file where a folder belongs: scan_parts reports it
            stat = os.lstat(memory_dir / relative)
        except FileNotFoundError:
            gone.append(relative)
            continue
        except OSError:
            return None
        if not stat_module.S_ISREG(stat.st_mode):
            return None
        found.append(PartFile(relative, names[0], names[1], number, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return found, gone


def _scan_part(entry: os.DirEntry, day: str, user: str, found: list[PartFile], skipped: list[dict]) -> None:
    path = f"{day}/{user}/{entry.name}"
    number = part_number(entry.name)
    if entry.is_symlink():
        skipped.append({"path": path, "reason": LINK_REASON})
    elif number and entry.is_file(follow_symlinks=False):
        stat = entry.stat(follow_symlinks=False)
        found.append(PartFile(path, day, user, number, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    elif number:
        skipped.append({"path": path, "reason": "not a regular file (fix: move it out of memory/)"})
    elif PART_LIKE.match(entry.name):
        skipped.append(
            {
                "path": path,
                "reason": "not a part name: parts are part1.txt, part2.txt, ... counting from 1, without "
                "leading zeros (fix: rename it to the next free partN.txt)",
            }
        )
    else:
        skipped.append(
            {"path": path, "reason": "not read: a user folder holds only part1.txt, part2.txt, ... (fix: move it out, or rename it to the next free partN.txt)"}
        )


def repair_torn_parts(memory_dir: Path, quarantine_dir: Path) -> dict[str, str]:
    """At start: end every part whose last line was cut off by a crash, losing nothing.

    A cut-off line that is still valid UTF-8 is kept in place and ended with a newline; one
    cut inside a character is moved to quarantine_dir (same layout) and the part ends at its
    last whole line. Returns a report line for each part touched, by its path in memory_dir.
    """
    reports = {}
    for part in scan_parts(memory_dir)[0]:
        relative, path = part.path, memory_dir / part.path
        data = path.read_bytes()
        if not data or data.endswith(b"\n") or b"\x00" in data:
            continue  # whole, or not text at all (replay reports a binary part; repair must not touch it)
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        try:
            tail.decode("utf-8")
        except UnicodeDecodeError:
            _append(quarantine_dir / relative, tail + b"\n")
            atomic_write(path, data[:cut])
            reports[relative] = f"{relative}: a cut-off last line ({len(tail)} bytes, not valid UTF-8) moved to {quarantine_dir / relative}"
            continue
        _append(path, b"")  # ends the line: the text stays where it was
        reports[relative] = f"{relative}: a cut-off last line was ended with a newline, its text kept"
    return reports


def atomic_write(path: Path, data: bytes) -> None:
    """Replace path's bytes all at once: a temporary file, fsync, rename, fsync of the folder
    (so that the rename itself survives a crash)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass(frozen=True)
class RestoreReport:
    restored: list[str]
    unchanged: list[str]
    conflicts: list[str]


def restore(memory_dir: Path, backup_dir: Path) -> RestoreReport:
    """Rebuild memory/ from memory_backup/ without ever removing a line memory/ has.

    A part missing from memory/, or holding only the start of its backup, is copied back
    (atomically). A part with lines the backup lacks is left alone; one that differs from
    its backup some other way is left alone and reported as a conflict.
    """
    restored, unchanged, conflicts = [], [], []
    for part in scan_parts(backup_dir)[0]:
        relative = part.path
        saved, target = (backup_dir / relative).read_bytes(), memory_dir / relative
        current = target.read_bytes() if target.exists() else b""
        if current == saved or current.startswith(saved):
            unchanged.append(str(relative))
        elif saved.startswith(current):
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, saved)
            restored.append(str(relative))
        else:
            conflicts.append(str(relative))
    return RestoreReport(restored=restored, unchanged=unchanged, conflicts=conflicts)
