"""Under load Echo answers or says "come back later", and memory/ holds exactly what it answered."""

from __future__ import annotations

import asyncio
import collections

import pytest

from bench.load import audit, fire, prompts
from tests.e2e.harness import Echo

pytestmark = pytest.mark.e2e


def test_200_asks_at_once_get_a_reply_or_a_503_with_retry_after_and_nothing_is_lost(instant: Echo):
    results = asyncio.run(fire(instant.url, prompts("load", 200), concurrency=200, user="load", timeout=120, token=instant.key("load")))
    statuses = collections.Counter(r.status for r in results)
    assert set(statuses) <= {200, 503}, statuses  # never a timeout, a reset or a 500
    assert statuses[200] >= 8 and statuses[503] >= 1, statuses  # both paths taken: served and turned away
    assert all(r.retry_after == "1" for r in results if r.status == 503)
    assert audit(results, instant.home / "memory", "load") == []  # each answer saved once, no torn line


def test_the_real_circuits_drain_a_queue_and_save_every_answer(echo: Echo):
    results = asyncio.run(fire(echo.url, prompts("drain", 6), concurrency=3, user="drain", timeout=300, token=echo.key("drain")))
    assert [r.status for r in results] == [200] * 6, [(r.status, str(r.body)[:200]) for r in results]
    assert all(not r.body["degraded"] for r in results)
    assert audit(results, echo.home / "memory", "drain") == []
