"""The memory end to end: the sample memory replayed by Ray Data at boot, searched over HTTP,
recalled into answers, and every new exchange taken in."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from echo.brain.users import user_key
from tests.e2e.harness import BAD_PART, CAT_FACT, GUEST_FACT, SISTER_FACT, memory_ready, owner, search


def cites(results: list[dict], fact: tuple[str, str]) -> bool:
    return any(r["path"] == fact[0] and fact[1] in r["text"] for r in results)


def test_the_sample_memory_is_replayed_by_ray_data_at_boot_and_bad_parts_reported(echo):
    memory_ready(echo)
    response = httpx.get(f"{echo.url}/api/insights", headers=owner(echo), timeout=10)
    assert response.status_code == 200
    insight = response.json()
    assert insight["parts"] >= 14 and insight["first_day"] == "day0101"  # 12 sample + torn + bad (+ saves)
    boot = [s for s in insight["skipped"] if s["path"] == BAD_PART]
    assert boot and boot[0]["reason"].startswith("binary data")
    assert (echo.home / "memory" / BAD_PART).read_bytes().endswith(b"not a conversation")  # left as it was
    assert insight["by_day"]["day0910"]["parts"] == 6 and insight["turns_by_speaker"]["user"] >= 7
    assert insight["duplicates_dropped"] > 0  # the filler repeats itself, as real logs do


def test_the_first_replay_ran_as_a_ray_data_pipeline(echo):
    boot = memory_ready(echo)["replay"]["boot"]
    assert boot["reader"] == "ray-data" and boot["parts_read"] >= 14
    index = echo.home / "memory_index"
    assert all((index / name).exists() for name in ("turns/base.parquet", "parts/base.parquet", "insight.json", "lexical"))


@pytest.mark.parametrize(
    ("query", "fact"),
    [("고양이 입양", CAT_FACT), ("모카라는 이름", CAT_FACT), ("Hana Vancouver", SISTER_FACT), ("marine biology", SISTER_FACT)],
)
def test_search_finds_korean_and_english_memories_with_their_citation(echo, query, fact):
    memory_ready(echo)
    results = search(echo, query, k=5)
    assert cites(results, fact), results
    best = next(r for r in results if fact[1] in r["text"])
    assert best["speaker"] == "user" and best["line_end"] >= best["line_start"] >= 1


def test_a_paraphrase_is_found_once_the_vectors_are_in(echo):
    memory_ready(echo, embedded=True)
    # Only the planted days: what earlier tests of the session saved today is not this test's memory.
    today = datetime.now(ZoneInfo("Asia/Seoul")).date().isoformat()  # the config's time zone
    assert cites(search(echo, "what does my sibling do for a living?", k=5, mode="dense", before=today), SISTER_FACT)
    assert cites(search(echo, "what does my sibling do for a living?", k=5, before=today), SISTER_FACT)


def test_memories_are_private(echo):
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = httpx.get(f"{echo.url}/api/memory/search", params={"q": "고양이"}, headers=headers, timeout=10)
        assert response.status_code in (401, 403) and "owner" in response.json()["error"]["message"]
        assert "모카" not in response.text
    assert httpx.get(f"{echo.url}/api/insights", timeout=10).status_code == 401


def test_asking_what_only_the_memory_knows_brings_the_memory_with_its_citation(echo):
    memory_ready(echo)
    response = echo.ask({"prompt": "내가 입양한 고양이 이름이 뭐였지?"}, token=echo.token)
    assert response.status_code == 200, response.text
    assert cites(response.json()["memories"], CAT_FACT)
    # A user with the key the owner gave them recalls their own memories, none of the owner's.
    minji = user_key(echo.token, "minji")
    guest = echo.ask({"prompt": "내가 입양한 고양이 이름이 뭐였지?", "user": "minji"}, token=minji).json()
    assert all(m["user"] == "minji" for m in guest["memories"])
    assert cites(echo.ask({"prompt": "서핑 배우는 곳이 어디였지?", "user": "minji"}, token=minji).json()["memories"], GUEST_FACT)


def test_a_new_exchange_is_searchable_moments_after_it_is_saved(echo):
    memory_ready(echo)
    response = echo.ask({"prompt": "My new bicycle is a teal Brompton called Pebble"}, token=echo.token)
    saved = response.json()["memory"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = search(echo, "teal Brompton Pebble", k=3, mode="lexical")
        if any(r["path"] == saved["path"] and r["line_start"] == saved["line_start"] for r in found):
            return
        time.sleep(0.5)
    pytest.fail(f"the saved exchange {saved} never became searchable")
