"""When the memory's index updates and when embedding runs (echo.memory.scheduler), with a
fake clock: saves wait for a pause, other changes go at once, embedding yields."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from echo.memory.scheduler import IndexScheduler, run_when_idle
from tests.fakes import FakeClock


def scheduler(clock: FakeClock, update=None, embed=None) -> IndexScheduler:
    return IndexScheduler(update or (lambda first, paths: None), embed, quiet_s=0.15, max_defer_s=1.0, clock=clock, sleep=clock.sleep)


def test_a_change_made_by_others_is_taken_in_after_one_short_pause():
    clock = FakeClock()
    index = scheduler(clock)
    index.notify()
    assert index.wait() == pytest.approx(0.15)
    assert not index.changed.is_set()


def test_a_save_waits_for_a_pause_between_saves():
    clock = FakeClock()
    index = scheduler(clock)
    index.saved()
    clock.sleep(0.1)
    index.saved()  # another answer saved 0.1 s later: the update waits for quiet after it
    started = clock()
    index.wait()
    assert clock() - index.last_save >= 0.15
    assert clock() - started < 1.0


def test_saves_that_never_pause_still_get_their_update_within_the_limit():
    clock = FakeClock()
    index = scheduler(clock)
    saving = IndexScheduler.saved

    def sleep_and_save(seconds: float) -> None:
        clock.now += seconds
        saving(index)  # a save at every moment the scheduler looks

    index.sleep = sleep_and_save
    index.saved()
    assert index.wait() == pytest.approx(1.0)


def test_the_first_round_is_the_boot_replay_and_later_ones_are_updates():
    rounds = []
    index = scheduler(FakeClock(), update=lambda first, paths: rounds.append(first))
    index.step()
    index.step()
    assert rounds == [True, False]


def test_an_update_looks_where_saves_and_events_said_and_now_and_then_everywhere():
    clock = FakeClock()
    asked = []
    index = scheduler(clock, update=lambda first, paths: asked.append(paths))
    index.step()  # the boot replay: everywhere
    index.saved("day0901/origin/part1.txt")
    index.notify(["day0901/minji/part2.txt"])
    index.step()
    index.step()  # nothing said since: nothing to look at
    index.notify()  # somewhere in memory/
    index.saved("day0901/origin/part1.txt")
    index.step()
    clock.now += 301
    index.saved("day0901/origin/part1.txt")
    index.step()  # five minutes since the last scan: everywhere again
    assert asked == [None, {"day0901/origin/part1.txt", "day0901/minji/part2.txt"}, set(), None, None]


def test_parts_still_being_written_are_looked_at_again_once_they_settle():
    index = scheduler(FakeClock(), update=lambda first, paths: 0.05 if first else None)
    index.step()
    assert not index.changed.is_set()
    assert index.changed.wait(2)  # a timer sets it when the pending parts should have settled


def test_embedding_runs_only_when_nothing_changed_and_stops_when_something_does():
    embedded = []

    def embed(stop: threading.Event) -> None:
        embedded.append(stop.is_set())
        stop.wait(5)  # works until something changes

    index = scheduler(FakeClock(), embed=embed)
    index.notify()
    index.step()  # a change is pending: the update comes first, no embedding
    assert embedded == []
    index.changed.clear()
    threading.Timer(0.05, index.notify).start()
    started = time.monotonic()
    index.step()
    assert embedded == [False] and time.monotonic() - started < 2  # the change stopped it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")
def test_the_embedding_thread_runs_only_when_a_core_is_idle_and_the_others_keep_their_priority():
    seen = {}

    def embedding():
        run_when_idle()
        seen["policy"] = os.sched_getscheduler(threading.get_native_id())

    thread = threading.Thread(target=embedding)
    thread.start()
    thread.join()
    assert seen["policy"] == os.SCHED_IDLE
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER  # the caller's thread is untouched


def test_embedding_runs_in_an_idle_thread_of_its_own():
    seen = {}

    def embed(stop: threading.Event) -> None:
        seen["thread"] = threading.current_thread().name
        if sys.platform.startswith("linux"):
            seen["policy"] = os.sched_getscheduler(threading.get_native_id())

    scheduler(FakeClock(), embed=embed).step()
    assert seen["thread"] == "memory-embed"
    if sys.platform.startswith("linux"):
        assert seen["policy"] == os.SCHED_IDLE
