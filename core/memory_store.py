"""Saving exchanges in the owner's format: memory/dayMMDD/<user>/partN.txt, 395 lines a part."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

USER_MARKER = "나의 말:"
ECHO_MARKER = "에코의 말:"
OLD_ASSISTANT_MARKER = "ChatGPT의 말:"  # the assistant of the owner's older logs
MARKERS = (USER_MARKER, OLD_ASSISTANT_MARKER, ECHO_MARKER)
PART_RE = re.compile(r"^part([1-9][0-9]*)\.txt$")


@dataclass(frozen=True)
class SaveReceipt:
    path: str  # relative to the memory folder, e.g. day1124/origin/part3.txt
    line_start: int  # 1-based, inclusive
    line_end: int

    def as_dict(self) -> dict:
        return asdict(self)


def part_number(name: str) -> int | None:
    """partN.txt -> N (from 1, no leading zeros); None for any other name. Parts sort by N."""
    match = PART_RE.match(name)
    return int(match.group(1)) if match else None


def day_folder(now: datetime, timezone: str) -> str:
    return now.astimezone(ZoneInfo(timezone)).strftime("day%m%d")


# Control characters have no place in a text memory (a NUL would make the part look binary
# to a reader); tabs and line breaks stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def exchange_lines(prompt: str, reply: str) -> list[str]:
    """The lines of one exchange: the owner's marker, the prompt, Echo's marker, the reply."""

    def body(text: str) -> list[str]:
        lines = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
        # A line that starts like a marker would read back as a turn of its own (a guest could
        # put words in Echo's mouth): one leading space keeps the text and stops the match.
        return [f" {line}" if line.startswith(MARKERS) else line for line in lines]

    return [USER_MARKER, *body(prompt), ECHO_MARKER, *body(reply)]


def _last_part(folder: Path) -> tuple[int, int]:
    """(number, line count) of the highest partN.txt in folder; (1, 0) when there is none."""
    numbers = [n for p in folder.iterdir() if (n := part_number(p.name))] if folder.is_dir() else []
    if not numbers:
        return 1, 0
    number = max(numbers)
    with (folder / f"part{number}.txt").open("rb") as handle:
        data = handle.read()
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return number, lines


def append_exchange(
    memory_dir: Path, user: str, lines: list[str], now: datetime, timezone: str, part_lines: int = 395
) -> SaveReceipt:
    """Append lines to the user's current part for today, starting part N+1 when they would not fit.

    An exchange is split across parts only when it alone is longer than a part: it then
    starts a part of its own. The write is flushed and fsynced before the receipt returns.
    """
    folder = memory_dir / day_folder(now, timezone) / user
    folder.mkdir(parents=True, exist_ok=True)
    number, used = _last_part(folder)
    if used and used + len(lines) > part_lines:
        number, used = number + 1, 0
    path = folder / f"part{number}.txt"
    start = used + 1
    with path.open("ab") as handle:
        if used and handle.tell() and not _ends_with_newline(path):
            handle.write(b"\n")  # never glue our first line onto a torn last line
        handle.write(("\n".join(lines) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    return SaveReceipt(path=str(path.relative_to(memory_dir)), line_start=start, line_end=start + len(lines) - 1)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
