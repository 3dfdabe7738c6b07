"""When the memory's index is brought up to date, and when embedding runs.

Ray-free: the MemoryActor runs IndexScheduler.run in a thread of its own and tells it of
saves and outside changes; the unit tests drive step() with a fake clock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

from echo.memory.watch import wait_for_quiet

QUIET_S = 0.15  # index updates take in bursts of saves together
# An index update costs a core for tens of milliseconds (a second at 300,000 lines): while
# answers are being saved one after another it waits for a pause between them, so that it
# does not slow the answers, but never longer than this, so that what was said is soon
# searchable. Parts that others drop into memory/ (no saves) are taken in at once.
MAX_DEFER_S = 1.0

# update(first, paths) brings the index up to date, looking only at paths (relative to memory/)
# unless they are None (then at the whole memory), and returns the seconds until parts still
# being written settle (None: none pending); embed(stop) embeds until done or until stop is set.
Update = Callable[[bool, "set[str] | None"], "float | None"]
# Where memory/ changed is known from the saves and the watchdog's events; a scan of the whole
# memory now and then still finds what no event told of (a watchdog restarted, an event lost).
FULL_SCAN_S = 300.0
Embed = Callable[[threading.Event], None]


class IndexScheduler:
    def __init__(
        self,
        update: Update,
        embed: Embed | None = None,
        quiet_s: float = QUIET_S,
        max_defer_s: float = MAX_DEFER_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ):
        self.update, self.embed = update, embed
        self.quiet_s, self.max_defer_s, self.clock, self.sleep = quiet_s, max_defer_s, clock, sleep
        self.changed = threading.Event()  # memory/ has lines the index has not seen
        self.last_save = float("-inf")
        self.rounds = 0
        self._paths: set[str] | None = set()  # where it changed since the last update (None: it may be anywhere)
        self._paths_lock = threading.Lock()
        self._scanned_at = float("-inf")

    def saved(self, path: str | None = None) -> None:
        """An exchange was just written (to path): update soon, at the first pause between saves."""
        self.last_save = self.clock()
        self._note([path] if path is not None else None)
        self.changed.set()

    def notify(self, paths: Iterable[str] | None = None) -> None:
        """memory/ changed on disk (not by a save), at paths if known: update at once."""
        self._note(paths)
        self.changed.set()

    def _note(self, paths: Iterable[str] | None) -> None:
        with self._paths_lock:
            self._paths = None if paths is None or self._paths is None else self._paths | set(paths)

    def step(self) -> None:
        """One round: update, look again once pending parts settle, embed while nothing changed."""
        with self._paths_lock:
            paths, self._paths = self._paths, set()
        if self.rounds == 0 or self.clock() - self._scanned_at > FULL_SCAN_S:
            paths = None
        if paths is None:
            self._scanned_at = self.clock()
        settles_in = self.update(self.rounds == 0, paths)
        self.rounds += 1
        if settles_in is not None:
            timer = threading.Timer(settles_in + 0.01, self.changed.set)
            timer.daemon = True
            timer.start()
        if self.embed is not None and not self.changed.is_set():
            # In a thread of its own at the lowest CPU priority: the background work yields
            # to the circuits answering; index updates (this thread) keep their priority.
            embedding = threading.Thread(target=self._embed_when_idle, name="memory-embed", daemon=True)
            embedding.start()
            embedding.join()

    def _embed_when_idle(self) -> None:
        run_when_idle()
        self.embed(self.changed)

    def wait(self) -> float:
        """Until something changed, then (after saves) for a quiet moment; the time waited."""
        self.changed.wait()
        waited = wait_for_quiet(lambda: self.last_save, self.quiet_s, self.max_defer_s, self.clock, self.sleep)
        self.changed.clear()
        return waited

    def run(self) -> None:
        while True:
            self.step()
            self.wait()


def run_when_idle() -> None:
    """Lower this thread (Linux: not the process) to SCHED_IDLE: it runs only on a core that
    nothing else wants. Nice 19 is not enough: Ray starts its workers at nice 15, so a nice-19
    thread would still take a third of a core from a circuit or the brain."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        except (AttributeError, OSError):
            pass
