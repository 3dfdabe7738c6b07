"""What Echo knows: facts about the people in the memory, each citing the lines it rests on.

The store is the owner's data, kept as durably as the parts: one JSON object a line in
`<memory>_facts/facts.jsonl` (readable with a text editor), rewritten whole on every change
(temporary file, fsync, rename) under a file lock, so the server and the CLI can both write
it, and mirrored into `<memory>_backup/facts/facts.jsonl`. A deleted fact stays in the file,
marked `deleted`: it can be undone for a while, and is never written again from the same
lines. Whether a fact is stale (its cited lines changed) and whether it is superseded (a
newer fact replaces it) are derived when read, never stored: the part files stay the truth.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from echo.memory.dates import infer_date
from echo.memory.lexical import overlap
from echo.memory.store import DAY_RE, atomic_write, lines_of, part_number

KINDS = ("profile", "preference", "event", "plan", "other")
STANDING = ("profile", "preference")  # what a person is and likes: in every prompt of theirs
FACTS_FILE = "facts.jsonl"
MAX_LINE_BYTES = 64 * 1024  # one fact a line: a longer line is not a fact, and is refused before it is parsed
MAX_TEXT_CHARS = 4000  # RealMem's own extracted memories reach 2,833 characters
MAX_CITES = 32
USER_NAME = re.compile(r"^[A-Za-z0-9가-힣_][A-Za-z0-9가-힣_.-]{0,63}$")  # as echo.brain.users.USER_PATTERN
_FIELDS = {"id", "user", "text", "date", "about", "kind", "cites", "supersedes"}
_CITE_FIELDS = {"path", "line_start", "line_end"}
_WORD = re.compile(r"\w+")


class FactError(ValueError):
    """Facts refused, each problem worded for the person who has to fix it: the store is unchanged."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        super().__init__("; ".join(shown))


@dataclass(frozen=True)
class Cite:
    path: str  # relative to the memory folder: dayMMDD/<user>/partN.txt
    line_start: int  # 1-based, inclusive
    line_end: int
    sha1: str = ""  # of the cited lines when the fact was written: they changed if it differs


@dataclass(frozen=True)
class Fact:
    id: str
    user: str  # whose memory it comes from (the folder under dayMMDD/)
    text: str
    about: str  # whom it is about: the user, or someone they talk about
    kind: str
    date: str  # ISO
    cites: tuple[Cite, ...]
    supersedes: str | None = None
    source: str = "import"
    created_at: str = ""
    updated_at: str = ""
    deleted: dict | None = None  # {at, by, batch}: forgotten, undoable for a while

    def as_dict(self) -> dict:
        data = asdict(self)
        data["cites"] = [asdict(c) for c in self.cites]
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Fact:
        cites = tuple(Cite(**c) for c in data["cites"])
        return cls(**{**data, "cites": cites})

    def public(self, stale: bool = False, superseded_by: str | None = None) -> dict:
        """As the API shows it: without the cites' hashes, with what is derived."""
        data = self.as_dict()
        data["cites"] = [{k: c[k] for k in ("path", "line_start", "line_end")} for c in data["cites"]]
        data.update(stale=stale, superseded_by=superseded_by)
        return data


def fact_id(user: str, text: str, cites: Iterable[Cite]) -> str:
    """The same fact from the same lines gets the same id: importing a file twice adds nothing."""
    key = json.dumps([user, " ".join(text.split()), sorted((c.path, c.line_start, c.line_end) for c in cites)], ensure_ascii=False)
    return "f" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:15]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the lines a fact cites ------------------------------------------------------------


class PartLines:
    """The lines of the memory's parts, read once per part and kept while the part is unchanged."""

    def __init__(self, memory_dir: Path):
        self.memory_dir = memory_dir
        self._cache: dict[str, tuple[tuple[int, int, int], list[str]]] = {}
        self._lock = threading.Lock()

    def lines(self, relative: str) -> list[str] | None:
        """The part's lines, or None when it is not a part of this memory (absent, a link, not a file)."""
        path = self.memory_dir / relative
        try:
            stat = path.lstat()
        except OSError:
            return None
        # Never through a link: a cited line is always inside memory/ (as replay reads it).
        if not path.is_file() or any((self.memory_dir / p).is_symlink() for p in [Path(relative), *Path(relative).parents] if str(p) != "."):
            return None
        stamp = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            cached = self._cache.get(relative)
            if cached and cached[0] == stamp:
                return cached[1]
        lines = lines_of(path.read_bytes())
        with self._lock:
            self._cache[relative] = (stamp, lines)
        return lines

    def date_of(self, relative: str, tz: str) -> str | None:
        stat = (self.memory_dir / relative).stat()
        found = infer_date(relative.split("/")[0], stat.st_mtime_ns, tz)
        return found.isoformat() if found else None

    def digest(self, cite: Cite) -> str | None:
        """The sha1 of the cited lines as they are now; None when they are gone."""
        lines = self.lines(cite.path)
        if lines is None or cite.line_end > len(lines):
            return None
        return hashlib.sha1("\n".join(lines[cite.line_start - 1 : cite.line_end]).encode("utf-8")).hexdigest()[:20]

    def known_users(self) -> set[str]:
        try:
            return {u.name for d in self.memory_dir.iterdir() if DAY_RE.match(d.name) and d.is_dir() for u in d.iterdir() if u.is_dir()}
        except OSError:
            return set()


def check_path(path: object, user: str) -> str | None:
    """Why a cited path cannot be one of user's parts, or None."""
    if not isinstance(path, str) or not path:
        return "path must be a part's path relative to the memory folder, such as day0508/user/part1.txt"
    pieces = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in pieces):
        return f"path {path!r} leaves the memory folder or is not a plain relative path: cite dayMMDD/<user>/partN.txt"
    if len(pieces) != 3 or not DAY_RE.match(pieces[0]) or part_number(pieces[2]) is None:
        return f"path {path!r} is not a part: cite dayMMDD/<user>/partN.txt"
    if pieces[1] != user:
        return f"path {path!r} is in {pieces[1]!r}'s memory, not {user!r}'s: a fact cites the memory it belongs to"
    return None


# -- reading facts to import -----------------------------------------------------------


def parse_import(lines: Iterable[str | bytes], parts: PartLines, tz: str, users: set[str] | None = None) -> list[Fact]:
    """The facts of a JSON Lines file, one a line (blank lines skipped); FactError naming every
    bad line with what is wrong, so that a file imports whole or not at all."""
    users = parts.known_users() if users is None else users
    facts, problems = [], []
    for number, raw in enumerate(lines, 1):
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        if len(data) > MAX_LINE_BYTES:
            problems.append(
                f"line {number}: {len(data)} bytes, over the {MAX_LINE_BYTES} a fact may take: one fact a line, its text at most {MAX_TEXT_CHARS} characters"
            )
            continue
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            problems.append(f"line {number}: not UTF-8: save the file as UTF-8")
            continue
        if not text:
            continue
        try:
            item = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            problems.append(f'line {number}: not JSON{where}: each line is one object such as {{"user": "...", "text": "...", "cites": [...]}}')
            continue
        try:
            facts.append(checked_fact(item, parts, tz, users))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        raise FactError(problems)
    return facts


def checked_fact(item: object, parts: PartLines, tz: str, users: set[str]) -> Fact:
    if not isinstance(item, dict):
        raise ValueError("not a JSON object: each line is one fact, an object with user, text and cites")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {', '.join(unknown)}: a fact has {', '.join(sorted(_FIELDS))}")
    for name in ("user", "text", "cites"):
        if name not in item:
            raise ValueError(f"missing field {name!r}: a fact needs user, text and cites")
    user, text = item["user"], item["text"]
    if not isinstance(user, str) or not USER_NAME.match(user):
        raise ValueError(f"user {user!r} is not a user name (a folder under memory/dayMMDD/)")
    if user not in users:
        raise ValueError(f"unknown user {user!r}: the memory has no parts of theirs (known: {', '.join(sorted(users)[:10]) or 'none'})")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty: a fact says something")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text has {len(text)} characters, over {MAX_TEXT_CHARS}: a fact is a short statement")
    cites = _cites_of(item["cites"], user, parts)
    kind = item.get("kind") or "other"
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    about = item.get("about") or user
    if not isinstance(about, str) or len(about) > 200:
        raise ValueError("about must be a name, at most 200 characters")
    when = item.get("date") or parts.date_of(cites[0].path, tz) or ""
    try:
        when = date.fromisoformat(when).isoformat() if when else ""
    except (TypeError, ValueError):
        raise ValueError(f"date {item.get('date')!r} is not an ISO date such as 2023-05-08") from None
    supersedes = item.get("supersedes")
    if supersedes is not None and not isinstance(supersedes, str):
        raise ValueError("supersedes must be the id of the fact this one replaces")
    given = item.get("id")
    if given is not None and (not isinstance(given, str) or not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", given)):
        raise ValueError("id must be 1-64 letters, digits, '_', '.', ':' or '-'")
    now = _now()
    return Fact(
        given or fact_id(user, text, cites), user, " ".join(text.split()), about.strip(), kind, when, cites, supersedes or None, created_at=now, updated_at=now
    )


def _cites_of(value: object, user: str, parts: PartLines) -> tuple[Cite, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("cites is empty: a fact without lines it rests on is not a fact (cite path, line_start, line_end)")
    if len(value) > MAX_CITES:
        raise ValueError(f"{len(value)} cites, over {MAX_CITES}")
    cites = []
    for n, cite in enumerate(value, 1):
        if not isinstance(cite, dict) or set(cite) - _CITE_FIELDS or not set(cite) >= _CITE_FIELDS:
            raise ValueError(f"cite {n} must be {{path, line_start, line_end}}")
        problem = check_path(cite["path"], user)
        if problem:
            raise ValueError(f"cite {n}: {problem}")
        start, end = cite["line_start"], cite["line_end"]
        if not (isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool) and not isinstance(end, bool) and 1 <= start <= end):
            raise ValueError(f"cite {n}: line_start and line_end are line numbers from 1, line_start <= line_end")
        lines = parts.lines(cite["path"])
        if lines is None:
            raise ValueError(f"cite {n}: {cite['path']} is not in the memory folder")
        if end > len(lines):
            raise ValueError(f"cite {n}: {cite['path']} has {len(lines)} lines, so lines {start}-{end} do not exist")
        found = Cite(cite["path"], start, end)
        cites.append(replace(found, sha1=parts.digest(found) or ""))
    return tuple(cites)


def similar(a: str, b: str) -> bool:
    """Two wordings of the same thing: most of their words shared."""
    x, y = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return bool(x and y) and len(x & y) / len(x | y) >= 0.6


# -- the store ---------------------------------------------------------------------------


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # already there: importing twice adds nothing
    forgotten: list[str] = field(default_factory=list)  # deleted before, from the same lines: not written again

    def as_dict(self) -> dict:
        return {"added": len(self.added), "unchanged": len(self.unchanged), "forgotten": len(self.forgotten), "ids": self.added}


class FactStore:
    """facts.jsonl in folder, mirrored into backup; every change rewrites it atomically under a lock."""

    def __init__(self, folder: Path, backup: Path | None = None, undo_minutes: float = 1440.0):
        self.path = folder / FACTS_FILE
        self.backup = backup / FACTS_FILE if backup is not None else None
        self.undo_window = timedelta(minutes=undo_minutes)
        self._cache: tuple[tuple, dict[str, Fact]] | None = None
        self._lock = threading.RLock()
        self.counters: Counter = Counter()  # imported, deleted, edited, restored: since this process started

    # reading

    def stamp(self) -> tuple:
        try:
            s = self.path.stat()
            return (s.st_size, s.st_mtime_ns, s.st_ino)
        except OSError:
            return ()

    def facts(self) -> dict[str, Fact]:
        """Every fact by id, deleted ones too, as the file says now."""
        with self._lock:
            stamp = self.stamp()
            if self._cache is None or self._cache[0] != stamp:
                self._cache = (stamp, self._read())
            return self._cache[1]

    def live(self) -> list[Fact]:
        return [f for f in self.facts().values() if f.deleted is None]

    def get(self, fact_id: str) -> Fact | None:
        return self.facts().get(fact_id)

    def _read(self) -> dict[str, Fact]:
        if not self.path.is_file():
            return {}
        found = {}
        for number, line in enumerate(self.path.read_text(encoding="utf-8").split("\n"), 1):
            if line.strip():
                try:
                    fact = Fact.from_dict(json.loads(line))
                except (ValueError, TypeError, KeyError) as exc:
                    raise FactError([f"{self.path} line {number} is not a fact ({type(exc).__name__}: {exc}): fix or remove that line by hand"]) from None
                found[fact.id] = fact
        return found

    # writing

    @contextmanager
    def _changing(self) -> Iterator[dict[str, Fact]]:
        """The facts to change, under the lock the CLI and the server share; written when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_name(f".{FACTS_FILE}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            facts = dict(self.facts())
            before = dict(facts)
            yield facts
            if facts != before:
                data = "".join(json.dumps(f.as_dict(), ensure_ascii=False) + "\n" for f in facts.values()).encode("utf-8")
                atomic_write(self.path, data)
                if self.backup is not None:
                    try:
                        self.backup.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write(self.backup, data)
                    except OSError:
                        self.counters["backup_failed"] += 1
                self._cache = (self.stamp(), facts)

    def add(self, new: list[Fact]) -> ImportReport:
        """Add facts, all or none: FactError when one supersedes a fact that is not there."""
        report = ImportReport()
        with self._changing() as facts:
            ids = set(facts) | {f.id for f in new}
            missing = [
                f"fact {f.id} ({f.text[:60]!r}) supersedes {f.supersedes!r}, which is not a fact" for f in new if f.supersedes and f.supersedes not in ids
            ]
            clashes = [
                f"id {f.id!r} already names another fact ({facts[f.id].text[:60]!r}): leave id out, or change that fact with PATCH"
                for f in new
                if f.id in facts and (facts[f.id].text, facts[f.id].cites, facts[f.id].user) != (f.text, f.cites, f.user)
            ]
            if missing or clashes:
                raise FactError(missing + clashes)
            forgotten = [f for f in facts.values() if f.deleted is not None]
            for fact in new:
                if fact.id in facts:
                    (report.forgotten if facts[fact.id].deleted else report.unchanged).append(fact.id)
                elif any(g.user == fact.user and set(_spans(g)) == set(_spans(fact)) and similar(g.text, fact.text) for g in forgotten):
                    report.forgotten.append(fact.id)
                else:
                    facts[fact.id] = fact
                    report.added.append(fact.id)
        self.counters["imported"] += len(report.added)
        return report

    def edit(self, fact_id: str, changes: Mapping, by: str) -> Fact:
        """Correct a fact's text, about, kind or date; KeyError when there is no such fact."""
        allowed = {"text", "about", "kind", "date"}
        wrong = sorted(set(changes) - allowed)
        if wrong:
            raise FactError([f"{', '.join(wrong)} cannot be changed: change text, about, kind or date"])
        problems = []
        if "text" in changes and (not isinstance(changes["text"], str) or not changes["text"].strip() or len(changes["text"]) > MAX_TEXT_CHARS):
            problems.append(f"text must be 1 to {MAX_TEXT_CHARS} characters")
        if "kind" in changes and changes["kind"] not in KINDS:
            problems.append(f"kind {changes['kind']!r} is not one of {', '.join(KINDS)}")
        if "about" in changes and (not isinstance(changes["about"], str) or not changes["about"].strip() or len(changes["about"]) > 200):
            problems.append("about must be a name, at most 200 characters")
        if "date" in changes:
            try:
                date.fromisoformat(changes["date"])
            except (TypeError, ValueError):
                problems.append(f"date {changes['date']!r} is not an ISO date such as 2023-05-08")
        if problems:
            raise FactError(problems)
        with self._changing() as facts:
            fact = facts.get(fact_id)
            if fact is None or fact.deleted is not None:
                raise KeyError(fact_id)
            clean = {k: " ".join(v.split()) if k == "text" else v.strip() for k, v in changes.items()}
            facts[fact_id] = replace(fact, **clean, source=f"edited by {by}" if clean else fact.source, updated_at=_now())
        self.counters["edited"] += 1
        return facts[fact_id]

    def delete(self, ids: list[str], by: str) -> list[Fact]:
        """Forget these facts (they stay in the file, marked, undoable); returns those deleted."""
        batch = hashlib.sha1(f"{by}{_now()}{ids}".encode()).hexdigest()[:10]
        done = []
        with self._changing() as facts:
            for fact_id in ids:
                fact = facts.get(fact_id)
                if fact is not None and fact.deleted is None:
                    facts[fact_id] = replace(fact, deleted={"at": _now(), "by": by, "batch": batch})
                    done.append(facts[fact_id])
        self.counters["deleted"] += len(done)
        return done

    def undo(self, user: str | None, now: datetime | None = None) -> list[Fact]:
        """Bring back the last facts forgotten at once (user's own, or anyone's for None), if
        it was within the undo window; returns them."""
        now = now or datetime.now(timezone.utc)
        with self._changing() as facts:
            recent = [
                f
                for f in facts.values()
                if f.deleted and (user is None or f.user == user) and now - datetime.fromisoformat(f.deleted["at"]) <= self.undo_window
            ]
            if not recent:
                return []
            last = max(recent, key=lambda f: f.deleted["at"]).deleted["batch"]
            back = [replace(f, deleted=None, updated_at=_now()) for f in recent if f.deleted["batch"] == last]
            for fact in back:
                facts[fact.id] = fact
        self.counters["restored"] += len(back)
        return back

    def restore_from_backup(self) -> tuple[int, int]:
        """Bring back every fact the backup has and the store lacks (by id), never removing
        one: (brought back, already there)."""
        if self.backup is None or not self.backup.is_file():
            return 0, 0
        saved = FactStore(self.backup.parent).facts()
        with self._changing() as facts:
            missing = [f for i, f in saved.items() if i not in facts]
            for fact in missing:
                facts[fact.id] = fact
        return len(missing), len(saved) - len(missing)


PROFILE_HEADING = "What you know about {user} (from earlier conversations; use it, do not recite it):"


def profile_line(text: str, when: str, stale: bool) -> str:
    return f"- {text} ({when or 'undated'}{', may be outdated' if stale else ''})"


def profile_text(user: str, facts: list[dict]) -> str:
    """The asker's standing facts as the circuits read them, at the end of the system prompt."""
    if not facts:
        return ""
    return "\n".join([PROFILE_HEADING.format(user=user), *(profile_line(f["text"], f.get("date", ""), f.get("stale", False)) for f in facts)])


def prompt_tokens(text: str) -> int:
    """Tokens a text can take in a circuit's prompt, counted so as never to fall short: a word's
    letters a token per 4, but every digit and every other ASCII sign one (SmolLM2 reads
    "2025-12-24" as 10 tokens), and every byte of other scripts one (a byte-level vocabulary's
    worst case, which an English-only model such as SmolLM2 meets for Hangul)."""
    letters = sum(1 for c in text if c.isascii() and (c.isalpha() or c == " "))
    other_ascii = sum(1 for c in text if c.isascii()) - letters
    return (letters + 3) // 4 + other_ascii + len(text.encode("utf-8", "surrogatepass")) - len(text.encode("ascii", "ignore"))


def _spans(fact: Fact) -> list[tuple[str, int, int]]:
    return [(c.path, c.line_start, c.line_end) for c in fact.cites]


# -- what is derived ----------------------------------------------------------------------


def superseded_by(facts: Iterable[Fact]) -> dict[str, str]:
    """Each superseded fact's id -> the id of the newest live fact that replaces it (following chains)."""
    live = [f for f in facts if f.deleted is None]
    direct = {f.supersedes: f.id for f in sorted(live, key=lambda f: (f.date, f.created_at)) if f.supersedes}
    newest = {}
    for old in direct:
        seen, current = {old}, direct[old]
        while current in direct and direct[current] not in seen:
            seen.add(current)
            current = direct[current]
        newest[old] = current
    return newest


def stale_ids(facts: Iterable[Fact], parts: PartLines) -> set[str]:
    """The facts whose cited lines changed or are gone since they were written."""
    return {f.id for f in facts if any(c.sha1 and parts.digest(c) != c.sha1 for c in f.cites)}


def standing(facts: Iterable[Fact], user: str, replaced: Mapping[str, str], stale: set[str]) -> list[Fact]:
    """user's profile and preferences, current ones, newest first (fresh before stale)."""
    mine = [f for f in facts if f.user == user and f.deleted is None and f.kind in STANDING and f.id not in replaced]
    newest = sorted(mine, key=lambda f: (f.date, f.updated_at), reverse=True)
    return sorted(newest, key=lambda f: f.id in stale)  # stable: newest first within fresh, then stale


def summary(facts: Iterable[Fact], stale: set[str], recent_days: int = 7, today: date | None = None) -> dict:
    """For insight and /api/insights: how many facts per person and kind, and what changed recently."""
    facts = list(facts)
    live = [f for f in facts if f.deleted is None]
    by_person: dict[str, Counter] = {}
    for f in live:
        by_person.setdefault(f.about, Counter())[f.kind] += 1
    since = ((today or datetime.now(timezone.utc).date()) - timedelta(days=recent_days)).isoformat()
    changed = sorted((f for f in facts if (f.updated_at or "")[:10] >= since), key=lambda f: f.updated_at, reverse=True)[:20]
    return {
        "facts": len(live),
        "stale": len(stale & {f.id for f in live}),
        "deleted": len(facts) - len(live),
        "by_kind": dict(Counter(f.kind for f in live).most_common()),
        "by_person": {p: dict(c.most_common()) for p, c in sorted(by_person.items(), key=lambda kv: -sum(kv[1].values()))[:50]},
        "recently_changed": [
            {"id": f.id, "about": f.about, "kind": f.kind, "text": f.text[:120], "at": f.updated_at, "deleted": f.deleted is not None} for f in changed
        ],
    }


def import_facts(store: FactStore, lines: Iterable[str | bytes], memory_dir: Path, tz: str) -> ImportReport:
    """`facts import`: a JSON Lines file into the store, whole or not at all (FactError)."""
    return store.add(parse_import(lines, PartLines(memory_dir), tz))


# -- the operations: the MemoryActor and the CLI both call these -----------------------

FORGET_SHARE = 0.6  # a fact is forgotten only when it holds this share of the named words


class FactDesk:
    """What people do with facts: import, list, show, correct, forget, undo, and the profile
    every prompt carries. whose=None means the owner (everyone's facts); a user name, only theirs."""

    def __init__(self, store: FactStore, memory_dir: Path, tz: str):
        self.store, self.tz = store, tz
        self.parts = PartLines(memory_dir)
        # What is derived from the store, kept until it or the parts change: the profile is
        # read at every prompt, and at 30,000 facts deriving it anew took 67 ms.
        self._derived: tuple[tuple, set[str], dict[str, str], dict[str, list[Fact]]] | None = None

    def _current(self) -> tuple[set[str], dict[str, str], dict[str, list[Fact]]]:
        """(stale ids, superseded id -> its newest replacement, each user's standing facts so far)."""
        key = self.store.stamp()
        if self._derived is None or self._derived[0] != key:
            facts = self.store.facts().values()
            self._derived = (key, stale_ids(self.store.live(), self.parts), superseded_by(facts), {})
        return self._derived[1:]

    def stale(self) -> set[str]:
        """Stale facts: checked again when the store changed, or after parts_changed()."""
        return self._current()[0]

    def parts_changed(self) -> None:
        """The memory's parts changed (a replay took them in): staleness is checked again."""
        self._derived = None

    def _shown(self, facts: Iterable[Fact]) -> list[dict]:
        stale, replaced, _ = self._current()
        return [f.public(f.id in stale, replaced.get(f.id)) for f in facts]

    def import_lines(self, lines: Iterable[str | bytes]) -> dict:
        return self.store.add(parse_import(lines, self.parts, self.tz)).as_dict()

    def list(self, whose: str | None, query: str = "", kind: str | None = None, deleted: bool = False, limit: int = 100, offset: int = 0) -> dict:
        """Facts newest first, whose's only when given; query keeps those holding its words."""
        facts = [f for f in self.store.facts().values() if (whose is None or f.user == whose) and (f.deleted is not None) == deleted]
        if kind:
            facts = [f for f in facts if f.kind == kind]
        if query.strip():
            held = overlap(query, [f"{f.about} {f.text}" for f in facts])
            facts = [f for f, n in sorted(zip(facts, held), key=lambda x: -x[1]) if n]
        else:
            facts.sort(key=lambda f: (f.date, f.updated_at), reverse=True)
        return {"total": len(facts), "offset": offset, "limit": limit, "facts": self._shown(facts[offset : offset + limit])}

    def show(self, whose: str | None, fact_id: str) -> dict | None:
        fact = self.store.get(fact_id)
        if fact is None or (whose is not None and fact.user != whose):
            return None  # another user's fact is not there for them: ids do not leak
        return self._shown([fact])[0]

    def edit(self, whose: str | None, fact_id: str, changes: Mapping, by: str) -> dict | None:
        if self.show(whose, fact_id) is None:
            return None
        try:
            fact = self.store.edit(fact_id, changes, by)
        except KeyError:
            return None
        return self._shown([fact])[0]

    def delete(self, whose: str | None, ids: list[str], by: str) -> list[dict]:
        mine = [i for i in ids if self.show(whose, i) is not None]
        return self._shown(self.store.delete(mine, by))

    def undo(self, whose: str | None) -> list[dict]:
        return self._shown(self.store.undo(whose))

    def forget(self, user: str, named: str, by: str) -> list[dict]:
        """Delete user's facts that hold most of the words named ("forget that ..."), only those."""
        facts = [f for f in self.store.live() if f.user == user]
        wanted = overlap(named, [named])[0]
        if not facts or not wanted:
            return []
        shares = [n / wanted for n in overlap(named, [f"{f.about} {f.text}" for f in facts])]
        best = max(shares)
        chosen = [f.id for f, s in zip(facts, shares) if s >= FORGET_SHARE and s >= best - 0.15]
        return self.delete(user, chosen, by)

    def profile(self, user: str, budget_tokens: int) -> dict:
        """user's standing facts (profile, preferences; current, newest first) as profile_text
        writes them, within the budget: the heading and every line counted (prompt_tokens)."""
        stale, replaced, by_user = self._current()
        if user not in by_user:
            by_user[user] = standing(self.store.facts().values(), user, replaced, stale)
        chosen, used = [], prompt_tokens(PROFILE_HEADING.format(user=user)) + 2  # and the blank line before it
        for fact in by_user[user]:
            cost = prompt_tokens(profile_line(fact.text, fact.date, fact.id in stale)) + 1  # and its newline
            if used + cost > budget_tokens:
                break
            chosen.append(fact)
            used += cost
        return {"facts": self._shown(chosen), "tokens": used if chosen else 0}

    def status(self) -> dict:
        facts = list(self.store.facts().values())
        live = [f for f in facts if f.deleted is None]
        counters = self.store.counters
        return {
            "stored": len(live),
            "stale": len(self.stale()),
            "deleted": len(facts) - len(live),
            "imported": counters["imported"],
            "deleted_here": counters["deleted"],
            "file": str(self.store.path),
        }

    def summary(self) -> dict:
        return summary(self.store.facts().values(), self.stale())

    def run(self, operation: str, **arguments) -> dict:
        """One operation by name, as the brain asks the memory for it: {"result": ...}, or
        {"problems": [...]} when facts were refused and nothing changed."""
        method = OPERATIONS.get(operation)
        if method is None:
            raise ValueError(f"no facts operation {operation!r}: one of {', '.join(OPERATIONS)}")
        try:
            return {"result": getattr(self, method)(**arguments)}
        except FactError as exc:
            return {"problems": exc.problems}


OPERATIONS = {
    "import": "import_lines",
    "list": "list",
    "show": "show",
    "edit": "edit",
    "delete": "delete",
    "undo": "undo",
    "forget": "forget",
    "profile": "profile",
}
CHANGING = ("import", "edit", "delete", "undo", "forget")
