"""What the watchdog reacts to, and how bursts of file events become few index updates."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

log = logging.getLogger("echo.watch")

# A part, or a folder that may hold parts (a day or a user folder moved in or deleted).
_MEMORY_PATH = re.compile(r"^day[0-9]{4}(/[^/]+(/part[1-9][0-9]*\.txt)?)?$")
IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})  # reading changes nothing


def is_memory_path(path: str, memory_dir: Path) -> bool:
    """True for memory/dayMMDD, memory/dayMMDD/<user> and memory/dayMMDD/<user>/partN.txt."""
    try:
        relative = Path(path).relative_to(memory_dir).as_posix()
    except ValueError:
        return False
    return bool(_MEMORY_PATH.match(relative))


def is_manifest_path(path: str, manifest_dir: Path) -> bool:
    return Path(path).parent == manifest_dir and path.endswith(".txt") or Path(path) == manifest_dir


class Coalescer:
    """Calls fn soon after poke(), at most once every interval however many pokes arrive.

    A storm of events (1,000 parts dropped at once) becomes a handful of calls; a poke that
    arrives while fn runs leads to one more call after it, so no change is left unseen.
    """

    def __init__(self, fn: Callable[[], object], interval: float = 0.05, name: str = "coalescer", delay: float = 0.0):
        self.fn, self.interval, self.delay = fn, interval, delay  # delay: after a poke, before the call
        self.calls = 0
        self._poked = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._poked.set()

    def stop(self) -> None:
        self._stopped.set()
        self._poked.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._poked.wait()
            if self._stopped.is_set():
                return
            if self.delay and self._stopped.wait(self.delay):
                return
            self._poked.clear()
            try:
                self.fn()
                self.calls += 1
            except Exception:  # the next poke tries again
                log.exception("%s: call failed", self._thread.name)
            self._stopped.wait(self.interval)


class OwnWrites:
    """Parts as Echo's own saves left them, so that the watchdog tells them from changes made
    by others: the MemoryActor, which wrote them, needs no nudge for its own lines."""

    def __init__(self, memory_dir: Path):
        self.memory_dir = memory_dir
        self.expected: dict[str, tuple[int, int]] = {}  # part path (relative) -> (size, mtime_ns)
        self._lock = threading.Lock()

    def expect(self, path: str, size: int, mtime_ns: int) -> None:
        with self._lock:
            self.expected[path] = (size, mtime_ns)

    def foreign(self, paths: set[str]) -> bool:
        with self._lock:
            expected = dict(self.expected)
        return changed_by_others(paths, self.memory_dir, expected)


def changed_by_others(paths: Iterable[str], memory_dir: Path, saved: Mapping[str, tuple[int, int]]) -> bool:
    """True when any changed path (absolute) is not exactly as one of Echo's saves left it;
    saved: part path (relative) -> (size, mtime_ns). A folder counts as Echo's when a part
    Echo saved is inside it."""
    for path in paths:
        try:
            relative = Path(path).relative_to(memory_dir).as_posix()
            stat = Path(path).stat()
        except (ValueError, OSError):
            return True  # outside memory/, or gone: a deletion is news
        if Path(path).is_dir():
            if not any(p.startswith(f"{relative}/") for p in saved):
                return True
        elif saved.get(relative) != (stat.st_size, stat.st_mtime_ns):
            return True
    return False


def wait_for_quiet(
    last_activity: Callable[[], float],
    quiet_s: float,
    max_wait_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> float:
    """Wait until nothing happened for quiet_s (last_activity() is a clock() time), but not
    longer than max_wait_s; returns the time waited.

    Background work started this way yields to the requests being served (their answers are
    not slowed by it) and still runs soon under a steady stream of them.
    """
    start = clock()
    deadline = start + max_wait_s
    sleep(quiet_s)  # what comes in a burst is taken in together
    while (now := clock()) < deadline and now - last_activity() < quiet_s:
        sleep(min(quiet_s, deadline - now))
    return clock() - start
