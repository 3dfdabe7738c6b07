"""Recall through the server: sessions found on their dates, searches bounded in time, a time
named in a question, answers that recall from several conversations, and a folder almost
named as a day reported instead of skipped in silence."""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest

from tests.e2e.harness import memory_ready, owner, search

pytestmark = pytest.mark.e2e
TODAY = date.today()
DAYS = [TODAY - timedelta(days=d) for d in (135, 90, 45)]  # three months apart: one month name each
PLANTED = ["garlic", "tomatoes", "basil"]


def write_session(memory, day: date, text: str) -> str:
    relative = f"day{day:%m%d}/origin/part1.txt"
    path = memory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"나의 말:\n{text}\nChatGPT의 말:\n좋아요, 기억해 둘게요.\n", encoding="utf-8")
    written = int(datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).timestamp() * 1e9)
    os.utime(path, ns=(written, written))  # written on its day: the folder's date and its year
    return relative


@pytest.fixture(scope="module")
def garden(echo) -> list[str]:
    memory_ready(echo)
    memory = echo.home / "memory"
    (memory / "day0106b" / "origin").mkdir(parents=True, exist_ok=True)
    (memory / "day0106b" / "origin" / "part1.txt").write_text("나의 말:\n이 폴더는 읽히지 않아\n", encoding="utf-8")
    paths = [write_session(memory, day, f"In the community garden plot I planted {plant} today") for day, plant in zip(DAYS, PLANTED)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if {r["path"] for r in search(echo, "community garden plot planted", k=10, mode="lexical")} >= set(paths):
            return paths
        time.sleep(0.5)
    pytest.fail("the garden sessions never became searchable")


def test_every_turn_found_carries_its_date_and_a_search_can_be_bounded_in_time(echo, garden):
    found = search(echo, "community garden plot planted", k=10)
    dates = {r["path"]: r["date"] for r in found}
    assert [dates[p] for p in garden] == [d.isoformat() for d in DAYS]
    before = search(echo, "community garden plot planted", k=10, before=DAYS[1].isoformat())
    assert garden[0] in {r["path"] for r in before} and not {garden[1], garden[2]} & {r["path"] for r in before}
    since = search(echo, "community garden plot planted", k=10, since=DAYS[1].isoformat())
    assert {garden[1], garden[2]} <= {r["path"] for r in since} and garden[0] not in {r["path"] for r in since}
    response = httpx.get(f"{echo.url}/api/memory/search", params={"q": "garden", "since": "last May"}, headers=owner(echo), timeout=10)
    assert response.status_code == 422 and "use a date (2025-05-01)" in response.json()["error"]["message"]


def test_a_time_named_in_the_question_brings_that_times_conversation_first(echo, garden):
    month = DAYS[1].strftime("%B")
    found = search(echo, f"what did I plant in the community garden in {month}?", k=5, mode="lexical")
    assert found[0]["path"] == garden[1], found


def test_an_answer_recalls_from_several_conversations_not_several_lines_of_one(echo, garden):
    # A message of several sentences sets a topic: recall reaches across the conversations about it.
    prompt = "I keep thinking about my community garden plot these days. Remind me, what have I planted there so far this year?"
    response = echo.ask({"prompt": prompt}, token=echo.token)
    assert response.status_code == 200, response.text
    recalled = [m["path"] for m in response.json()["memories"]]
    assert len(set(recalled) & set(garden)) >= 2, recalled


def test_a_folder_almost_named_as_a_day_is_named_with_what_to_do(echo, garden):
    skipped = memory_ready(echo)["replay"]["skipped_entries"]
    near = [s for s in skipped if s["path"] == "day0106b"]
    assert near and "rename it to day0106" in near[0]["reason"], skipped
    insight = httpx.get(f"{echo.url}/api/insights", headers=owner(echo), timeout=10).json()
    assert any(s["path"] == "day0106b" for s in insight["skipped"])
    assert "이 폴더는 읽히지 않아" not in str(search(echo, "이 폴더는 읽히지 않아", k=10))
