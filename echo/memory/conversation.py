"""A conversation's exchanges, read back from the memory files, which stay the one source of
truth: every exchange Echo saves is stamped with when it was said and its conversation's key
(echo.memory.parsing.STAMP), so a restart forgets nothing.

A conversation's id is a capability: whoever holds it continues the conversation. The files
keep only its key, a hash, so that reading memory/ never hands out a live id.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from echo.config import DEFAULT_MARKERS
from echo.memory.parsing import Turn, parse_part

ID_BYTES = 18  # 144 bits: unguessable, and 24 URL-safe characters


@dataclass(frozen=True)
class Exchange:
    """One prompt and Echo's reply, where they are written and when they were said."""

    prompt: str
    reply: str
    at: str  # ISO 8601 with the offset, from the stamp
    path: str  # relative to the memory folder
    line_start: int  # the prompt's marker line
    line_end: int  # the reply's last line

    def as_dict(self) -> dict:
        return asdict(self)


def new_conversation_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def conversation_key(conversation_id: str) -> str:
    """What the files keep of a conversation id: 16 hex digits of its SHA-256."""
    return hashlib.sha256(f"echo-conversation:{conversation_id}".encode()).hexdigest()[:16]


def exchanges_in(turns: list[Turn], path: str, key: str) -> list[Exchange]:
    """The exchanges of conversation key among a part's turns: a user turn, then Echo's reply."""
    found = []
    for asked, answered in zip(turns, turns[1:]):
        if asked.conversation == key == answered.conversation and asked.speaker == "user" and answered.speaker == "echo" and asked.at:
            found.append(Exchange(asked.text, answered.text, asked.at, path, asked.line_start, answered.line_end))
    return found


def read_conversation(memory_dir: Path, user: str, key: str, newer_than_s: float, markers: Mapping[str, str] = DEFAULT_MARKERS) -> list[Exchange]:
    """Conversation key's exchanges in user's parts written in the last newer_than_s seconds,
    oldest first. A conversation lives in the parts its user wrote while it went on, so only
    those are read, however large the memory."""
    since = time.time() - newer_than_s
    parts = []
    for path in memory_dir.glob(f"day*/{user}/part*.txt"):  # user names hold no glob characters (USER_PATTERN)
        try:
            written = path.stat().st_mtime
        except OSError:
            continue
        if written >= since and path.is_file() and not path.is_symlink():
            parts.append((written, path))
    found: list[Exchange] = []
    for _, path in sorted(parts):
        lines = path.read_bytes().decode("utf-8", "replace").split("\n")
        if lines[-1] == "":  # the newline that ends the last line starts no line of its own
            lines.pop()
        found += exchanges_in(parse_part(lines, markers), path.relative_to(memory_dir).as_posix(), key)
    return sorted(found, key=lambda e: datetime.fromisoformat(e.at))


class RecentConversations:
    """The exchanges of conversations seen since start, by (user, key), kept so that a
    conversation's context is not read from the files at every prompt. Bounded: the least
    recently used conversations go first, and are read back from the files if they return."""

    def __init__(self, conversations: int = 10_000, exchanges: int = 50):
        self.limit, self.exchanges = conversations, exchanges
        self._known: OrderedDict[tuple[str, str], list[Exchange]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, user: str, key: str, exchange: Exchange) -> None:
        with self._lock:
            known = self._known.get((user, key))
            if known is None or any((e.path, e.line_start) == (exchange.path, exchange.line_start) for e in known):
                return  # not read back yet (the next get reads the files), or read with it
            known.append(exchange)
            del known[: -self.exchanges]
            self._known.move_to_end((user, key))

    def get(self, user: str, key: str, read: Callable[[], list[Exchange]], last: int | None = None) -> list[Exchange]:
        """The conversation's exchanges, oldest first; with last, only that many of the newest
        (all the prompt can take: a long conversation is not copied whole at every prompt)."""
        # The files are read under the lock, so that an exchange saved meanwhile is either in
        # what was read or added after it, never lost between the two.
        with self._lock:
            if (user, key) not in self._known:
                self._known[(user, key)] = read()[-self.exchanges :]
                while len(self._known) > self.limit:
                    self._known.popitem(last=False)
            self._known.move_to_end((user, key))
            known = self._known[(user, key)]
            return known[-last:] if last else list(known)
