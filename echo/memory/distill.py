"""The distiller: the self circuit reads the memory, a window at a time, and writes down what it
learns about the people in it, each fact citing the turns it rests on.

A window is a run of whole exchanges of one part (a question and its answers are never split),
of one conversation, at most `distill.window_turns` turns and three quarters of the circuit's context
left beside the instructions and the answer (the facts already known get the last quarter). The circuit
answers with JSON held to WINDOW_SCHEMA by llama.cpp's grammar: the turns a fact cites and the
known fact it supersedes can only be ones the window shows. Whatever still does not hold (a
turn outside the window, an unknown user, a fact already known) is dropped and counted, never
stored.

The ledger (`<facts>/distilled.jsonl`, one line a window, appended and fsynced after the
window's facts are stored) makes the job resumable: a window whose lines are unchanged is never
distilled again, and a part whose lines change gets new windows (the old facts citing changed
lines are stale, as every fact is, from their cites' hashes). The last window of a part still
of a conversation of Echo's still going on waits until it has gone quiet (conversation.idle_gap_minutes
after its last saved exchange).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from echo.config import EchoConfig
from echo.memory.facts import KINDS, Fact, FactError, FactStore, PartLines, checked_fact, prompt_tokens, similar, stale_ids
from echo.memory.lexical import overlap
from echo.memory.parsing import CARRIED, Turn, parse_part
from echo.memory.store import DAY_RE, part_number

LEDGER_FILE = "distilled.jsonl"
LOCK_FILE = ".distill.lock"
MAX_FACTS_PER_WINDOW = 6
MAX_TURNS_CITED = 4
FACT_CHARS = 240
CLIP_MARK = " [...]"

INSTRUCTIONS = (
    "You read a conversation from the owner's memory and write down what it tells about the people in it: "
    "who they are, what they like, what happened to them, what they plan. Write short facts in English, "
    "one statement each, in the third person, naming the person (about). Cite the turns each fact rests on "
    "by their numbers. If a fact changes one you already know, give that known fact's label in supersedes; "
    "otherwise leave supersedes empty. Do not repeat known facts. Write no fact the turns do not say. "
    "Answer only with JSON."
)


def window_schema(turns: int, known: int) -> dict:
    """The JSON a window's answer is held to: cites and supersedes can only name what it shows."""
    return {
        "type": "object",
        "properties": {
            "facts": {
                "type": "array",
                "maxItems": MAX_FACTS_PER_WINDOW,
                "items": {
                    "type": "object",
                    "properties": {
                        "about": {"type": "string", "minLength": 1, "maxLength": 40},
                        "kind": {"enum": list(KINDS)},
                        "text": {"type": "string", "minLength": 3, "maxLength": FACT_CHARS},
                        "date": {"type": "string", "pattern": "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"},
                        "turns": {"type": "array", "minItems": 1, "maxItems": MAX_TURNS_CITED, "items": {"enum": list(range(1, turns + 1))}},
                        "supersedes": {"enum": ["", *(f"K{i}" for i in range(1, known + 1))]},
                    },
                    "required": ["about", "kind", "text", "date", "turns", "supersedes"],
                },
            }
        },
        "required": ["facts"],
    }


@dataclass(frozen=True)
class Window:
    user: str
    path: str  # dayMMDD/<user>/partN.txt
    turns: tuple[Turn, ...]
    digest: str  # of the lines it spans, as the part holds them
    shown: tuple[str, ...]  # each turn's text as the circuit reads it (clipped to fit)

    @property
    def line_start(self) -> int:
        return self.turns[0].line_start

    @property
    def line_end(self) -> int:
        return self.turns[-1].line_end

    @property
    def key(self) -> str:
        return f"{self.path}:{self.line_start}-{self.line_end}:{self.digest}"

    def text(self) -> str:
        return "\n".join(f"[{n}] {_speaker(t.speaker)}: {shown}" for n, (t, shown) in enumerate(zip(self.turns, self.shown), 1))


def _going_on(window: Window, now: float, quiet_s: float) -> bool:
    """Whether the window ends a conversation of Echo's that may still go on: its last exchange
    was saved (stamped) less than quiet_s ago. Parts without stamps are the owner's old logs."""
    at = next((t.at for t in reversed(window.turns) if t.at), None)
    if at is None:
        return False
    try:
        return now - datetime.fromisoformat(at).timestamp() < quiet_s
    except ValueError:
        return False


def _speaker(speaker: str) -> str:
    return {"user": "user", CARRIED: "(continued)"}.get(speaker, "assistant")


def _exchanges(turns: list[Turn]) -> Iterator[list[Turn]]:
    """A user's turn and the answers after it, never split; turns before the first user turn alone."""
    current: list[Turn] = []
    for turn in turns:
        if turn.speaker == "user" and current:
            yield current
            current = []
        current.append(turn)
    if current:
        yield current


def windows_of(path: str, lines: list[str], markers: Mapping[str, str], window_turns: int, budget_tokens: int) -> list[Window]:
    """The part's windows in order: whole exchanges of one conversation, at most window_turns
    turns (an exchange longer than that alone) and budget_tokens of text; an exchange that
    alone exceeds the budget has its turns clipped, each to its share."""
    user = path.split("/")[1]
    windows: list[Window] = []
    current: list[Turn] = []

    def close() -> None:
        if current:
            windows.append(_window(user, path, current, lines, budget_tokens))
            current.clear()

    for exchange in _exchanges(parse_part(lines, markers)):
        conversation = next((t.conversation for t in exchange if t.conversation), None)
        previous = next((t.conversation for t in reversed(current) if t.conversation), None)
        cost = sum(_turn_cost(t.text) for t in exchange)
        held = sum(_turn_cost(t.text) for t in current)
        if current and (len(current) + len(exchange) > window_turns or held + cost > budget_tokens or (conversation and previous and conversation != previous)):
            close()
        current.extend(exchange)
    close()
    return windows


def _turn_cost(text: str) -> int:
    return prompt_tokens(text) + 6  # and its "[n] speaker: " and newline


def _window(user: str, path: str, turns: list[Turn], lines: list[str], budget_tokens: int) -> Window:
    shown = [t.text for t in turns]
    if sum(_turn_cost(t) for t in shown) > budget_tokens:
        share = max(budget_tokens // len(shown) - 6, 8)
        shown = [_clip(t, share) for t in shown]
    span = "\n".join(lines[turns[0].line_start - 1 : turns[-1].line_end])
    return Window(user, path, tuple(turns), hashlib.sha1(span.encode("utf-8")).hexdigest()[:16], tuple(shown))


def _clip(text: str, tokens: int) -> str:
    """The start of text within tokens (prompt_tokens' count), marked as cut."""
    if prompt_tokens(text) <= tokens:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest start that fits
        middle = (low + high + 1) // 2
        if prompt_tokens(text[:middle]) + prompt_tokens(CLIP_MARK) <= tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + CLIP_MARK


# -- one window: the prompt, and what the answer adds ----------------------------------


def known_for(window: Window, facts: Iterable[Fact], limit: int, budget_tokens: int = 1 << 30) -> list[Fact]:
    """What is already known about the window's people: the user's live facts that share the
    most words with it (the circuit may supersede only these), newest first among equals, at
    most limit of them and budget_tokens of their lines."""
    mine = [f for f in facts if f.user == window.user and f.deleted is None]
    if not mine or limit <= 0:
        return []
    held = dict(zip((f.id for f in mine), overlap(window.text(), [f"{f.about} {f.text}" for f in mine])))
    newest = sorted(mine, key=lambda f: (f.date, f.updated_at), reverse=True)
    chosen, used = [], 0
    for fact in sorted(newest, key=lambda f: -held[f.id])[:limit]:
        cost = prompt_tokens(known_line(len(chosen) + 1, fact)) + 1
        if used + cost > budget_tokens:
            break
        chosen.append(fact)
        used += cost
    return chosen


def known_line(label: int, fact: Fact) -> str:
    return f"K{label} ({fact.kind}, about {fact.about}, {fact.date or 'undated'}): {fact.text}"


def messages_for(window: Window, known: list[Fact]) -> list[dict[str, str]]:
    known_lines = [known_line(i, f) for i, f in enumerate(known, 1)]
    user = "\n".join(
        [
            f"Known facts about the people of {window.user}'s memory:",
            *(known_lines or ["(none yet)"]),
            "",
            f"Conversation ({window.path}, turns numbered):",
            window.text(),
        ]
    )
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": user}]


@dataclass
class Outcome:
    facts: list[Fact] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # reason -> facts the answer gave and Echo did not keep


def read_answer(text: str, window: Window, known: list[Fact], parts: PartLines, tz: str, users: set[str]) -> Outcome:
    """The facts of a window's answer, checked as an import is: a cite outside the window, a
    supersedes not among the known facts, a bad field: that fact is dropped and counted.
    ValueError when the answer is not the JSON asked for (cut off, or no grammar held it)."""
    outcome = Outcome()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        data = _whole_facts(text)  # cut off at max_tokens: the facts it finished still count
        if data is None:
            raise ValueError("the answer is not complete JSON and has no whole fact (cut off: raise distill.max_tokens)") from None
        outcome.dropped["cut off at distill.max_tokens"] += 1
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
        raise ValueError('the answer is not {"facts": [...]}')
    for item in data["facts"]:
        if not isinstance(item, dict):
            outcome.dropped["not an object"] += 1
            continue
        numbers = item.get("turns")
        if not isinstance(numbers, list) or not numbers or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            outcome.dropped["no turns cited"] += 1
            continue
        if any(not 1 <= n <= len(window.turns) for n in numbers):
            outcome.dropped["cites a turn outside the window"] += 1
            continue
        label = item.get("supersedes") or ""
        if label and not (isinstance(label, str) and label[:1] == "K" and label[1:].isdigit() and 1 <= int(label[1:]) <= len(known)):
            outcome.dropped["supersedes a fact it was not shown"] += 1
            continue
        cited = [window.turns[n - 1] for n in sorted(set(numbers))]
        when = item.get("date") if _is_date(item.get("date")) else next((t.at[:10] for t in cited if t.at), "")  # a made-up date: the turns' own
        fields = {
            "user": window.user,
            "text": item.get("text"),
            "about": item.get("about") or window.user,
            "kind": item.get("kind"),
            "date": when,
            "cites": [{"path": window.path, "line_start": t.line_start, "line_end": t.line_end} for t in cited],
            "supersedes": known[int(label[1:]) - 1].id if label else None,
        }
        try:
            fact = checked_fact(fields, parts, tz, users)
        except ValueError as exc:
            outcome.dropped[str(exc).split(":")[0]] += 1
            continue
        outcome.facts.append(replace(fact, source="distilled"))
    return outcome


def _is_date(value: object) -> bool:
    try:
        date.fromisoformat(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


def _whole_facts(text: str) -> dict | None:
    """The facts of an answer cut off mid-way: the list up to its last whole fact, or None."""
    end = len(text)
    while (end := text.rfind("}", 0, end)) > 0:
        try:
            data = json.loads(text[: end + 1] + "]}")
        except (json.JSONDecodeError, RecursionError):
            continue
        return data if isinstance(data, dict) and data.get("facts") else None
    return None


def new_only(facts: list[Fact], live: Iterable[Fact]) -> tuple[list[Fact], int]:
    """The facts not already known in other words (same user and person, most words shared)."""
    by_person: dict[tuple[str, str], list[str]] = {}
    for f in live:
        if f.deleted is None:
            by_person.setdefault((f.user, f.about.lower()), []).append(f.text)
    kept = []
    for fact in facts:
        same = by_person.setdefault((fact.user, fact.about.lower()), [])
        if fact.supersedes is None and any(similar(fact.text, text) for text in same):
            continue
        same.append(fact.text)
        kept.append(fact)
    return kept, len(facts) - len(kept)


# -- the ledger ------------------------------------------------------------------------


class Ledger:
    """The windows distilled so far: distilled.jsonl, one line a window, appended and fsynced."""

    def __init__(self, folder: Path):
        self.path = folder / LEDGER_FILE
        self._done: dict[str, dict] | None = None
        self._lock = threading.Lock()

    def done(self) -> dict[str, dict]:
        with self._lock:
            if self._done is None:
                self._done = {}
                if self.path.is_file():
                    for line in self.path.read_text(encoding="utf-8").split("\n"):
                        try:
                            entry = json.loads(line)
                            self._done[entry["key"]] = entry
                        except (ValueError, KeyError, TypeError):  # a line cut off by a crash: that window is done again
                            continue
            return self._done

    def record(self, entries: list[dict]) -> None:
        if not entries:
            return
        self.done()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")
        with self._lock, open(self.path, "ab") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            for entry in entries:
                self._done[entry["key"]] = entry


class WindowTooLong(ValueError):
    """The window's prompt does not fit a slot of the circuit: it is recorded as failed."""


class CircuitUnavailable(RuntimeError):
    """The circuit did not answer (restarting, unreachable): the run ends, nothing is lost."""


class DistillBusy(RuntimeError):
    """Another process distills this memory now (the server, or `echo-server distill`)."""


@contextmanager
def distilling_lock(folder: Path) -> Iterator[None]:
    """One distillation of a memory at a time, across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DistillBusy(f"another process is distilling this memory (it holds {folder / LOCK_FILE}): wait for it, or stop it first") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- the job ---------------------------------------------------------------------------

# messages, response_format, stop -> (text, prompt tokens, generated tokens); WindowTooLong for
# a prompt too long for a slot, any other error for a circuit that did not answer.
Complete = Callable[[list[dict[str, str]], dict, threading.Event], tuple[str, int, int]]
FLUSH_EVERY_S = 5.0  # facts are stored (one rewrite of the store) and windows recorded at most this often


def room(n_ctx: int, max_tokens: int) -> tuple[int, int]:
    """(tokens of conversation a window may hold, tokens of known facts beside it): the
    circuit's context less the instructions, the answer and the chat template's own, three
    quarters for the window and one for what is known."""
    left = n_ctx - max_tokens - prompt_tokens(INSTRUCTIONS) - 96
    return left - left // 4, left // 4


def window_budget(n_ctx: int, max_tokens: int) -> int:
    return room(n_ctx, max_tokens)[0]


class Distiller:
    """Distills every window not yet in the ledger, `slots` at a time through complete()."""

    def __init__(self, config: EchoConfig, store: FactStore, n_ctx: int, memory_dir: Path | None = None):
        self.config, self.store = config, store
        self.memory_dir = memory_dir or config.memory_dir
        d = config.distill
        self.budget, self.known_budget = room(n_ctx, d.max_tokens)
        if self.budget < 128:
            raise ValueError(
                f"the {d.circuit} circuit's n_ctx ({n_ctx}) leaves {self.budget} tokens for a window beside distill.max_tokens "
                f"({d.max_tokens}): raise n_ctx or lower distill.max_tokens"
            )
        self.ledger = Ledger(store.path.parent)
        self.parts = PartLines(self.memory_dir)
        self.progress: dict = {"state": "idle"}
        self.last_run: dict | None = None  # what the last run that distilled anything did, kept beside a run with nothing to do
        self._windows: dict[str, tuple[tuple, list[Window]]] = {}

    # what is left

    def pending(self, now: float | None = None) -> tuple[list[Window], dict]:
        """The windows not distilled yet, part by part, and a count of the memory's parts and
        windows (done, waiting for their conversation to go quiet)."""
        now = time.time() if now is None else now
        quiet_s = self.config.conversation.idle_gap_minutes * 60
        done, todo = self.ledger.done(), []
        counts = Counter()
        for path in part_paths(self.memory_dir):
            windows = self.windows_in(path)
            if windows is None:
                continue
            counts["parts"] += 1
            counts["windows"] += len(windows)
            left = [w for w in windows if w.key not in done]
            if not left:
                counts["parts_done"] += 1
            if left and left[-1] is windows[-1] and _going_on(windows[-1], now, quiet_s):
                left = left[:-1]
                counts["windows_open"] += 1
            todo.extend(left)
        counts["windows_done"] = counts["windows"] - len(todo) - counts["windows_open"]
        return todo, dict(counts)

    def windows_in(self, path: str) -> list[Window] | None:
        lines = self.parts.lines(path)
        if lines is None:
            return None
        stat = (self.memory_dir / path).stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self._windows.get(path)
        if cached is None or cached[0] != stamp:
            d = self.config.distill
            cached = (stamp, windows_of(path, lines, self.config.markers, d.window_turns, self.budget))
            self._windows[path] = cached
        return cached[1]

    # doing it

    def run(self, complete: Complete, slots: int, stop: threading.Event, on_progress: Callable[[dict], None] | None = None) -> dict:
        """Distill what is pending, `slots` windows in flight at once, until done or stop is set
        (windows in flight then are left for the next run). Returns the last progress."""
        todo, counts = self.pending()
        users = self.parts.known_users()
        started, tokens, facts_added = time.monotonic(), 0, 0
        dropped, failed, known_dropped = Counter(), 0, 0
        to_store: list[Fact] = []
        to_record: list[dict] = []
        last_flush = time.monotonic()
        total_left = len(todo)

        def report(state: str) -> dict:
            elapsed = time.monotonic() - started
            done_now = counts.get("windows_done", 0)
            finished = done_now - base_done
            rate = finished / elapsed if elapsed > 0 and finished else 0.0
            self.progress = {
                "state": state,
                "parts": counts.get("parts", 0),
                "parts_done": counts.get("parts_done", 0),
                "windows": counts.get("windows", 0),
                "windows_done": done_now,
                "windows_left": total_left - finished,
                "windows_open": counts.get("windows_open", 0),
                "facts_added": facts_added,
                "facts_known_already": known_dropped,
                "dropped": dict(dropped),
                "windows_failed": failed,
                "tokens": tokens,
                "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 else 0.0,
                "windows_per_s": round(rate, 3),
                "eta_s": round((total_left - finished) / rate) if rate else None,
                "seconds": round(elapsed, 1),
                **({"last_run": self.last_run} if self.last_run else {}),
            }
            if on_progress is not None:
                on_progress(self.progress)
            return self.progress

        base_done = counts.get("windows_done", 0)

        def flush() -> None:
            nonlocal to_store, to_record, facts_added, known_dropped, last_flush
            if to_store:
                stale = stale_ids(self.store.live(), self.parts)  # a fact whose lines changed is no reason to leave out its new wording
                kept, known = new_only(to_store, [f for f in self.store.live() if f.id not in stale])
                known_dropped += known
                try:
                    facts_added += len(self.store.add(kept).added)
                except FactError:  # a supersedes whose fact was deleted meanwhile: store them as new ones
                    facts_added += len(self.store.add([replace(f, supersedes=None) for f in kept]).added)
            self.ledger.record(to_record)
            to_store, to_record, last_flush = [], [], time.monotonic()

        report("distilling" if todo else "done")
        queue = iter(todo)
        stop_run, unavailable = threading.Event(), None
        in_flight: dict[Future, tuple[Window, list[Fact]]] = {}
        with ThreadPoolExecutor(max_workers=max(slots, 1), thread_name_prefix="distill") as pool:
            while True:
                while not stop.is_set() and not stop_run.is_set() and len(in_flight) < slots and (window := next(queue, None)) is not None:
                    known = known_for(window, self.store.live(), self.config.distill.known_facts, self.known_budget)
                    schema = {"type": "json_object", "schema": window_schema(len(window.turns), len(known))}
                    in_flight[pool.submit(complete, messages_for(window, known), schema, stop)] = (window, known)
                if not in_flight:
                    break
                finished, _ = wait(in_flight, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    window, known = in_flight.pop(future)
                    if stop.is_set():
                        continue  # cut short: distilled again next time
                    entry = {"key": window.key, "path": window.path, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
                    try:
                        text, prompt_n, generated_n = future.result()
                        tokens += prompt_n + generated_n
                        outcome = read_answer(text, window, known, self.parts, self.config.timezone, users)
                    except ValueError as exc:  # the window's own fault (no whole fact, too long for a slot): recorded as failed
                        failed += 1
                        entry["failed"] = f"{type(exc).__name__}: {exc}"[:300]
                    except Exception as exc:  # the circuit's (restarting, unreachable): the run ends, the window waits for the next
                        unavailable = unavailable or exc
                        stop_run.set()
                        continue
                    else:
                        to_store.extend(outcome.facts)
                        dropped.update(outcome.dropped)
                        entry.update(facts=len(outcome.facts), dropped=sum(outcome.dropped.values()))
                    if entry.get("facts"):
                        to_record.append(entry)  # recorded once its facts are stored, at the next flush
                    else:
                        self.ledger.record([entry])  # nothing to store: done now
                    counts["windows_done"] = counts.get("windows_done", 0) + 1
                if time.monotonic() - last_flush >= FLUSH_EVERY_S:
                    flush()
                    report("distilling")
        flush()
        _, counts = self.pending()
        if unavailable is not None:
            raise CircuitUnavailable(
                f"the {self.config.distill.circuit} circuit did not answer ({type(unavailable).__name__}: {unavailable}); the windows left wait for the next run"
            )
        final = report("stopped" if stop.is_set() else "done")
        if counts.get("windows_done", 0) > base_done:
            kept = ("facts_added", "facts_known_already", "dropped", "windows_failed", "tokens", "tokens_per_s", "windows_per_s", "seconds")
            self.last_run = {"windows": counts["windows_done"] - base_done, **{k: final[k] for k in kept}, "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            final = report(final["state"])
        return final


def part_paths(memory_dir: Path) -> list[str]:
    """Every part of the memory, relative, oldest day first, in part order (never through a link)."""
    found = []
    try:
        days = sorted(d for d in memory_dir.iterdir() if DAY_RE.match(d.name) and d.is_dir() and not d.is_symlink())
    except OSError:
        return []
    for day in days:
        for user in sorted(u for u in day.iterdir() if u.is_dir() and not u.is_symlink()):
            parts = [p for p in user.iterdir() if part_number(p.name) is not None and p.is_file() and not p.is_symlink()]
            found.extend(f"{day.name}/{user.name}/{p.name}" for p in sorted(parts, key=lambda p: part_number(p.name)))
    return found
