"""The watchdog's logic without Ray: which paths matter, and bursts turned into few calls."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from echo.memory.watch import Coalescer, is_manifest_path, is_memory_path, wait_for_quiet
from tests.fakes import FakeClock

MEMORY = Path("/data/memory")


def test_only_parts_and_the_folders_that_hold_them_matter():
    assert is_memory_path("/data/memory/day0913/origin/part12.txt", MEMORY)
    assert is_memory_path("/data/memory/day0913", MEMORY)  # a day folder moved in or deleted
    assert is_memory_path("/data/memory/day0913/minji", MEMORY)
    assert not is_memory_path("/data/memory/day0913/origin/.part12.txt.swp", MEMORY)
    assert not is_memory_path("/data/memory/day0913/origin/part0.txt", MEMORY)
    assert not is_memory_path("/data/memory/README.md", MEMORY)
    assert not is_memory_path("/data/other/day0913/origin/part1.txt", MEMORY)
    assert is_manifest_path("/data/manifest/00_echo.txt", Path("/data/manifest"))
    assert not is_manifest_path("/data/manifest/.00_echo.txt.swp", Path("/data/manifest"))


def test_a_storm_of_pokes_becomes_a_few_calls_and_the_last_one_is_never_lost():
    seen = []
    gate = threading.Event()

    def slow():
        seen.append(time.monotonic())
        gate.wait(1)

    coalescer = Coalescer(slow, interval=0.01)
    try:
        for _ in range(1000):
            coalescer.poke()
        time.sleep(0.1)
        coalescer.poke()  # arrives while the first call still runs
        gate.set()
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert len(seen) == 2  # one for the storm, one for the poke that came during it
    finally:
        coalescer.stop()


def test_a_failing_call_is_tried_again_at_the_next_poke():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("memory actor restarting")

    coalescer = Coalescer(flaky, interval=0.01)
    try:
        coalescer.poke()
        time.sleep(0.1)
        coalescer.poke()
        time.sleep(0.1)
        assert len(calls) == 2 and coalescer.calls == 1
    finally:
        coalescer.stop()


def test_wait_for_quiet_returns_after_the_burst_when_nothing_else_comes():
    clock = FakeClock()
    last = clock.now  # a save just now
    waited = wait_for_quiet(lambda: last, 0.15, 1.0, clock=clock, sleep=clock.sleep)
    assert waited == pytest.approx(0.15)


def test_wait_for_quiet_waits_while_requests_keep_coming_but_not_past_the_limit():
    clock = FakeClock()
    # A request every 30 ms, as a busy server sees: never quiet for 0.15 s.
    waited = wait_for_quiet(lambda: clock.now - (clock.now % 0.03), 0.15, 1.0, clock=clock, sleep=clock.sleep)
    assert waited == pytest.approx(1.0)


def test_wait_for_quiet_goes_at_the_first_quiet_moment():
    clock = FakeClock()
    start = clock.now
    # Requests for 0.4 s, then none.
    waited = wait_for_quiet(lambda: min(clock.now, start + 0.4), 0.15, 1.0, clock=clock, sleep=clock.sleep)
    assert 0.55 <= waited < 0.75


def test_echos_own_saves_are_told_from_changes_made_by_others(tmp_path):
    from echo.memory.watch import OwnWrites

    memory = tmp_path / "memory"
    part = memory / "day0101" / "minji" / "part1.txt"
    part.parent.mkdir(parents=True)
    part.write_text("나의 말:\n안녕\n", encoding="utf-8")
    own = OwnWrites(memory)
    stat = part.stat()
    own.expect("day0101/minji/part1.txt", stat.st_size, stat.st_mtime_ns)
    assert not own.foreign({str(part), str(part.parent), str(part.parent.parent)})  # the save, and the folders it made
    with part.open("a", encoding="utf-8") as handle:
        handle.write("에코의 말:\n누가 덧붙였어\n")  # someone else wrote after Echo's save
    assert own.foreign({str(part)})
    other = memory / "day0101" / "sora" / "part1.txt"
    other.parent.mkdir()
    other.write_text("나의 말:\n새 파트\n", encoding="utf-8")
    assert own.foreign({str(other)}) and own.foreign({str(other.parent)})  # a part nobody told it of
    part.unlink()
    assert own.foreign({str(part)})  # a deletion is always news


def test_a_coalescer_with_a_delay_calls_once_after_it(tmp_path):
    calls = []
    coalescer = Coalescer(lambda: calls.append(time.monotonic()), interval=0.01, delay=0.2)
    try:
        started = time.monotonic()
        coalescer.poke()
        time.sleep(0.05)
        coalescer.poke()  # inside the delay: the same call
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(calls) == 1 and calls[0] - started >= 0.2
    finally:
        coalescer.stop()
