"""Hostile files dropped into a running Echo's memory/: named and skipped, the rest still found."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.e2e.harness import Echo, owner, search, wait_for

pytestmark = pytest.mark.e2e


def test_hostile_parts_dropped_in_are_named_while_the_good_ones_are_found(instant: Echo, tmp_path):
    memory = instant.home / "memory"
    day = memory / "day0915"
    word, last_word = f"등대지기{uuid.uuid4().hex[:6]}", f"수평선{uuid.uuid4().hex[:6]}"
    files = {
        "ghost/part1.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00binary",  # binary
        "ghost/part2.txt": f"나의 말:\n{'the sea and the lighthouse ' * 370_000}{last_word}\n".encode(),  # one line of 10 MB
        "ghost/part3.txt": "".join(f"나의 말:\n짧은 줄 {i}\n" for i in range(50_000)).encode(),  # 100,000 short lines
        "ghost/part0.txt": "나의 말:\n번호가 0인 파트\n".encode(),
        "ghost/part-1.txt": "나의 말:\n번호가 음수인 파트\n".encode(),
        "ghost/part01.txt": "나의 말:\n0으로 시작하는 번호\n".encode(),
        "good/part1.txt": f"나의 말:\n바다 옆 {word} 이야기를 들려줘\n".encode(),
    }
    outside = tmp_path / "secret.txt"
    outside.write_text("나의 말:\n밖에 있는 비밀 이야기\n", encoding="utf-8")
    for relative, data in files.items():
        (day / relative).parent.mkdir(parents=True, exist_ok=True)
        (day / relative).write_bytes(data)
    os.symlink(outside, day / "ghost" / "part4.txt")  # a link out of memory/
    (memory / "part1.txt").write_text("나의 말:\n폴더 밖 파트\n", encoding="utf-8")  # ../part1.txt, seen from a user folder

    def paths(query: str) -> list[str]:  # lexical: dense search always has some nearest turn to offer
        return [h["path"] for h in search(instant, query, mode="lexical")]

    def every_file_seen() -> dict | None:  # the files settle one by one: wait for the last
        insight = httpx.get(f"{instant.url}/api/insights", headers=owner(instant), timeout=30).json()
        skipped = {s["path"]: s["reason"] for s in insight.get("skipped", [])}  # none before the first replay
        read = paths(word) and paths("짧은 줄 49999") and paths(last_word)
        return skipped if read and all(f"day0915/{bad}" in skipped for bad in bad_files) else None

    bad_files = ("ghost/part1.txt", "ghost/part0.txt", "ghost/part-1.txt", "ghost/part01.txt", "ghost/part4.txt")
    skipped = wait_for(every_file_seen, timeout=120, what="every file dropped in")
    assert all("fix" in skipped[f"day0915/{bad}"] for bad in bad_files), skipped
    assert paths(word)[0] == "day0915/good/part1.txt"
    for outsider in ("밖에 있는 비밀", "폴더 밖 파트"):  # nothing read through the link or outside a user folder
        assert not [h for h in search(instant, outsider, mode="lexical") if outsider in h["text"]]
    assert paths("짧은 줄 49999")[0] == "day0915/ghost/part3.txt"  # 100,000 lines, every one read
    long_line = [h for h in search(instant, last_word, mode="lexical") if h["path"] == "day0915/ghost/part2.txt"]
    assert long_line and len(long_line[0]["text"]) <= 2002  # found by its last word; shown by its start
    health = httpx.get(f"{instant.url}/health", timeout=30).json()
    assert health["memory"]["state"] == "ready" and instant.ask({"prompt": "아직 괜찮아?", "user": "ghost"}).json()["saved"] is True
