"""The MemoryActor's background embedding thread yields every core to the answers."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from actors.memory import _run_when_idle


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")
def test_the_embedding_thread_runs_only_when_a_core_is_idle_and_the_others_keep_their_priority():
    seen = {}

    def embedding():
        _run_when_idle()
        seen["policy"] = os.sched_getscheduler(threading.get_native_id())

    thread = threading.Thread(target=embedding)
    thread.start()
    thread.join()
    assert seen["policy"] == os.SCHED_IDLE
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER  # the caller's thread is untouched
