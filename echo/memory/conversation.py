"""A conversation's exchanges, read back from the memory files, which stay the one source of
truth: every exchange Echo saves is stamped with when it was said and its conversation's key
(echo.memory.parsing.STAMP), so a restart forgets nothing.

A conversation's id is a capability: whoever holds it continues the conversation. The files
keep only its key, a hash, so that reading memory/ never hands out a live id; the list of
conversations (ConversationIndex) names them by key, for those who may see them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from echo.config import DEFAULT_MARKERS
from echo.memory.parsing import STAMP_START, Turn, parse_part
from echo.memory.store import PartFile, lines_of, part_number

ID_BYTES = 18  # 144 bits: unguessable, and 24 URL-safe characters
KEY_PATTERN = r"^[0-9a-f]{16}$"  # a conversation's key, as the list gives it (never a handed-out id: those are 24 characters)
TITLE_CHARS = 80


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


def is_key(reference: str) -> bool:
    """Whether a conversation reference is a key (as the list shows) rather than a handed-out id."""
    return re.match(KEY_PATTERN, reference) is not None


def exchanges_in(turns: list[Turn], path: str, key: str) -> list[Exchange]:
    """The exchanges of conversation key among a part's turns: a user turn, then Echo's reply."""
    found = []
    for asked, answered in zip(turns, turns[1:]):
        if asked.conversation == key == answered.conversation and asked.speaker == "user" and answered.speaker == "echo" and asked.at:
            found.append(Exchange(asked.text, answered.text, asked.at, path, asked.line_start, answered.line_end))
    return found


def read_conversation(memory_dir: Path, paths: Iterable[str], key: str, markers: Mapping[str, str] = DEFAULT_MARKERS) -> list[Exchange]:
    """Conversation key's exchanges in the parts at paths (one user's: the ConversationIndex
    knows which), oldest first. A part gone or unreadable gives none."""
    found: list[Exchange] = []
    for relative in sorted(set(paths)):
        path = memory_dir / relative
        if path.is_symlink() or not path.is_file():
            continue
        try:
            lines = lines_of(path.read_bytes())
        except OSError:
            continue
        found += exchanges_in(parse_part(lines, markers), relative, key)
    return sorted(found, key=lambda e: datetime.fromisoformat(e.at))


@dataclass(frozen=True)
class Said:
    """What the conversation list keeps of one saved exchange (the texts stay in the part)."""

    key: str
    at: str
    title: str  # the prompt's first line, shortened
    line: int  # the prompt's first line in its part: saved in the same second, the later one is further on


@dataclass(frozen=True)
class ConversationSummary:
    """One conversation as the list shows it: id is its key, as the files keep it."""

    id: str
    user: str
    title: str
    started: str
    last: str
    exchanges: int
    parts: tuple[str, ...]
    order: tuple = ()  # when the last exchange was said, then where it is written: newest first sorts by it

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("parts", "order")}


def title_of(prompt: str) -> str:
    first = next((line.strip() for line in prompt.split("\n") if line.strip()), "")
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1].rstrip() + "…"


def said_in(turns: list[Turn]) -> list[Said]:
    """The stamped exchanges among a part's turns, for the list."""
    return [
        Said(asked.conversation, asked.at, title_of(asked.text), asked.line_start)
        for asked, answered in zip(turns, turns[1:])
        if asked.conversation and asked.conversation == answered.conversation and asked.speaker == "user" and answered.speaker == "echo" and asked.at
    ]


class ConversationIndex:
    """Every conversation in Echo's saved exchanges, by user, kept as exchanges are saved and
    as parts change on disk: listing them and finding one's parts never scan the memory.
    Only the parts holding a stamp are parsed, so the owner's old history costs a read."""

    def __init__(self, memory_dir: Path, markers: Mapping[str, str] = DEFAULT_MARKERS):
        self.memory_dir, self.markers = memory_dir, markers
        self._parts: dict[str, tuple[int, int, str, list[Said]]] = {}  # path -> (size, mtime_ns, user, exchanges)
        self._conversations: dict[tuple[str, str], ConversationSummary] = {}
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()  # set once the first refresh has read every part

    def refresh(self, parts: Iterable[PartFile]) -> int:
        """Take in the parts whose size or mtime changed (every part at first), drop the
        ones gone; parts is the whole memory as scan_parts finds it. Returns parts read."""
        current = {p.path: p for p in parts}
        read = self.update(current.values(), set(self._parts) - set(current))
        self.ready.set()
        return read

    def update(self, parts: Iterable[PartFile], gone: Iterable[str]) -> int:
        """Take in those of parts whose size or mtime changed and drop the paths gone: where
        memory/ changed, as a replay found it. Returns parts read."""
        changed = [p for p in parts if self._parts.get(p.path, (None, None))[:2] != (p.size, p.mtime_ns)]
        read = {}
        for part in changed:
            try:
                data = (self.memory_dir / part.path).read_bytes()
            except OSError:
                continue  # gone meanwhile: the next refresh drops it
            said = said_in(parse_part(lines_of(data), self.markers)) if STAMP_START.encode() in data else []
            read[part.path] = (part.size, part.mtime_ns, part.user, said)
        with self._lock:
            touched: set[tuple[str, str]] = set()
            for path in set(gone) | set(read):
                old = self._parts.pop(path, None)
                touched |= {(old[2], s.key) for s in old[3]} if old else set()
            for path, entry in read.items():
                self._parts[path] = entry
                touched |= {(entry[2], s.key) for s in entry[3]}
            self._summarize(touched, set(read))
        return len(read)

    def saved(self, user: str, path: str, said: Said) -> None:
        """One exchange Echo just appended to path: listed at once. The part keeps the size
        and mtime it was read at, so the next refresh reads it whole again (and with it
        anything else written there meanwhile)."""
        with self._lock:
            old = self._parts.get(path, (0, 0, user, []))
            self._parts[path] = (old[0], old[1], user, [*old[3], said])
            self._summarize({(user, said.key)}, {path})

    def _summarize(self, touched: set[tuple[str, str]], new_paths: set[str]) -> None:
        for user, key in touched:
            known = self._conversations.get((user, key))
            paths = (set(known.parts) if known else set()) | {p for p in new_paths if self._parts.get(p, (0, 0, ""))[2] == user}
            said = sorted(
                ((path, s) for path in paths if path in self._parts for s in self._parts[path][3] if s.key == key),
                key=lambda ps: _order(ps[0], ps[1]),
            )
            if not said:
                self._conversations.pop((user, key), None)
                self._by_user.get(user, set()).discard(key)
                continue
            parts = tuple(sorted({path for path, _ in said}))
            first, last = said[0][1], said[-1][1]
            order = _order(*said[-1])
            self._conversations[(user, key)] = ConversationSummary(key, user, first.title, first.at, last.at, len(said), parts, order)
            self._by_user.setdefault(user, set()).add(key)

    def exchanges(self, conversation: ConversationSummary) -> list[Exchange]:
        """A listed conversation's exchanges, oldest first, read from the parts it is written in."""
        return read_conversation(self.memory_dir, conversation.parts, conversation.id, self.markers)

    def find(self, key: str, user: str | None = None) -> list[ConversationSummary]:
        """The conversations with this key: user's, or (user None) anyone's."""
        with self._lock:
            if user is not None:
                found = self._conversations.get((user, key))
                return [found] if found else []
            return [c for (_, k), c in self._conversations.items() if k == key]

    def listing(self, user: str | None, limit: int, offset: int) -> tuple[int, list[ConversationSummary]]:
        """(how many, one page of them newest first): user's, or everyone's with user None."""
        with self._lock:
            if user is None:
                chosen = list(self._conversations.values())
            else:
                chosen = [self._conversations[(user, key)] for key in self._by_user.get(user, ())]
        chosen.sort(key=lambda c: c.order, reverse=True)
        return len(chosen), chosen[offset : offset + limit]


def _order(path: str, said: Said) -> tuple:
    """When an exchange was said, to the second, then where it is written (day, part, line)."""
    day, _, name = path.split("/")
    return (datetime.fromisoformat(said.at), day, part_number(name) or 0, said.line)


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
