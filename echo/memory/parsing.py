"""The owner's conversation parts as turns: one parser for replay, the watcher and search.

A turn starts with a speaker marker at the start of a line ("나의 말:", "ChatGPT의 말:",
"에코의 말:"); the text may follow on the same line or on the next ones. Lines before the
first marker continue a turn carried over from the previous part.

Echo writes one stamp line before each exchange it saves, `[echo <time> conversation <id>]`:
when it was said and in which conversation (a hash of the conversation's id, never the id).
A stamp belongs to no turn; it dates the turns after it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from echo.config import DEFAULT_MARKERS, ECHO_MARKER, OLD_ASSISTANT_MARKER, USER_MARKER  # noqa: F401 (the format's markers)

CARRIED = "carried"  # text before a part's first marker: the end of the previous part's last turn

# Chat-page residue in the copied logs: a code block's language label followed by the
# buttons "복사" (copy) and "편집" (edit), and notices such as "메모리 업데이트됨".
_BUTTONS = ("복사", "편집")
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9+#.\- ]{0,24}$")
_NOTICES = frozenset({"메모리 업데이트됨"})
# Control characters have no place in a text memory (a NUL would make a part look binary);
# tabs and line breaks are handled by the callers.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]")


# The stamp Echo writes before each saved exchange: ISO 8601 time, 16 hex digits of conversation.
STAMP = re.compile(r"^\[echo (\S+) conversation ([0-9a-f]{16})\]$")
STAMP_START = "[echo "


@dataclass(frozen=True)
class Turn:
    speaker: str  # a DEFAULT_MARKERS value, or CARRIED
    text: str
    line_start: int  # 1-based, inclusive, in the part file
    line_end: int
    at: str | None = None  # when it was said, from the stamp before it (Echo's own saves only)
    conversation: str | None = None  # the stamp's conversation key


def stamp_line(at: str, conversation_key: str) -> str:
    return f"[echo {at} conversation {conversation_key}]"


def clean_line(line: str) -> str | None:
    """One line as memory keeps it, or None for a line that is only chat-page residue.

    Unicode is NFC, control characters and odd spaces are gone, the end is trimmed; the
    indentation stays, so code keeps its shape.
    """
    text = _SPACES.sub(" ", CONTROL_CHARS.sub("", unicodedata.normalize("NFC", line.replace("\t", "    ")))).rstrip()
    if text.strip() in _NOTICES:
        return None
    return text


def _residue(lines: list[str]) -> set[int]:
    """Indexes of copy-button lines: a language label, then "복사", then "편집"."""
    drop: set[int] = set()
    for i in range(len(lines) - 1):
        if lines[i].strip() == _BUTTONS[0] and lines[i + 1].strip() == _BUTTONS[1]:
            drop.update((i, i + 1))
            if i > 0 and _LABEL.match(lines[i - 1].strip()):
                drop.add(i - 1)
    return drop


def marker_of(line: str, markers: Mapping[str, str] = DEFAULT_MARKERS) -> tuple[str, str] | None:
    """(speaker, text after the marker) when the line starts a turn, else None.

    The one test of "starts a turn": the parser reads with it, and the saver escapes every
    line it would match, so a prompt can never read back as a turn (NFC, as the parser sees it).
    """
    normalized = unicodedata.normalize("NFC", line)
    for marker, speaker in markers.items():
        if normalized.startswith(marker):
            return speaker, normalized[len(marker) :].strip()
    return None


def parse_part(lines: Iterable[str], markers: Mapping[str, str] = DEFAULT_MARKERS) -> list[Turn]:
    """The turns of one part, each with the line range it came from, cleaned.

    lines are the part's lines as split at "\n" only (not str.splitlines, which also splits
    at U+2028 and other separators, so its line numbers would not match the file's).
    """
    raw = [line.rstrip("\r\n") for line in lines]
    residue = _residue(raw)
    turns: list[Turn] = []
    speaker, body, start = None, [], 0
    stamp: tuple[str | None, str | None] = (None, None)

    def close(end: int) -> None:
        text = "\n".join(body).strip("\n")
        if speaker is not None and text.strip():
            turns.append(Turn(speaker, text, start, end, *stamp))

    for index, line in enumerate(raw):
        number = index + 1
        if line.startswith(STAMP_START) and (stamped := STAMP.match(line)):
            close(number - 1)
            speaker, body, stamp = None, [], (stamped.group(1), stamped.group(2))
            continue
        found = marker_of(line, markers)
        if found is not None:
            close(number - 1)
            speaker, first = found
            body, start = ([first] if first else []), number
            continue
        if speaker is None:  # before the first marker: the previous part's turn goes on
            speaker, body, start = CARRIED, [], number
        if index in residue:
            continue
        cleaned = clean_line(line)
        if cleaned is not None:
            body.append(cleaned)
    close(len(raw))
    return turns
