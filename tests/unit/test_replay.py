"""Replay without Ray: the state file, incremental updates, bad parts, duplicates, insight."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from echo.memory.lexical import LexicalIndex, hangul_terms
from echo.memory.replay import load_index, replay, text_hash
from echo.memory.store import scan_parts
from tests.samples import CAT, CODE, TRIP, write


@pytest.fixture
def memory(tmp_path) -> Path:
    root = tmp_path / "memory"
    write(root, "day0901/origin/part1.txt", CAT)
    write(root, "day0901/origin/part2.txt", "그래서 오늘은 사료를 샀어\n" + TRIP)  # starts mid-turn
    write(root, "day0901/origin/part10.txt", CODE)
    write(root, "day0902/minji/part1.txt", "나의 말:\n내일 시험이라 너무 불안해\n")
    return root


def turns(index: Path) -> list[dict]:
    return load_index(index)[0].to_pylist()


def ids(index: Path) -> set[str]:
    return {t["id"] for t in turns(index) if t["duplicate_of"] is None}


def searchable(index: Path, query: str) -> list[str]:
    return [turn_id for turn_id, _ in LexicalIndex(index / "lexical").search(query, 10)]


def test_parts_are_listed_by_day_user_and_number(memory):
    found, unreadable = scan_parts(memory)
    assert [p.path for p in found] == [
        "day0901/origin/part1.txt",
        "day0901/origin/part2.txt",
        "day0901/origin/part10.txt",
        "day0902/minji/part1.txt",
    ]
    assert unreadable == []


def test_replay_makes_the_turns_table_with_citations_and_cleaned_text(memory, tmp_path):
    index = tmp_path / "index"
    insight = replay(memory, index)
    rows = {t["id"]: t for t in turns(index)}
    cat = rows["day0901/origin/part1.txt:1"]
    assert (cat["speaker"], cat["line_start"], cat["line_end"], cat["day"], cat["user"], cat["part"]) == ("user", 1, 2, "day0901", "origin", 1)
    assert cat["hash"] == text_hash(cat["text"]) and "모카" in cat["text"]
    # The carried-over start of part2 continues the assistant's turn that ended part1.
    assert rows["day0901/origin/part2.txt:1"]["speaker"] == "assistant"
    code = rows["day0901/origin/part10.txt:1"]["text"]
    assert "print('안녕')" in code and "복사" not in code and "메모리 업데이트됨" not in code
    assert insight["parts"] == 4 and insight["first_day"] == "day0901" and insight["last_day"] == "day0902"
    assert insight["by_day"]["day0901"]["lines"] == 4 + 4 + 7
    assert insight["turns_by_speaker"] == {"assistant": 4, "user": 3}
    assert insight["lines_by_speaker"] == {"assistant": 2 + 1 + 2 + 7, "user": 2 + 1 + 2}
    assert insight["emotions"]["fear"] == 1 and insight["emotions"]["joy"] >= 1
    assert "모카" in insight["by_day"]["day0901"]["top_terms"]
    assert json.loads((index / "insight.json").read_text(encoding="utf-8")) == insight


def test_korean_is_found_whatever_the_ending_and_english_by_its_stem(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    assert searchable(index, "고양이가")[0] == "day0901/origin/part1.txt:1"  # the text has 고양이를
    assert searchable(index, "입양하다")[0] == "day0901/origin/part1.txt:1"
    assert searchable(index, "Lisbon trips")[0] == "day0901/origin/part2.txt:2"
    assert hangul_terms("고양이를 밥") == ["고양", "양이", "이를", "밥"]


def test_a_second_replay_reads_nothing_and_a_touched_part_only_itself(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    assert replay(memory, index)["last_replay"]["parts_read"] == 0
    path = memory / "day0901/origin/part2.txt"
    path.write_text(path.read_text(encoding="utf-8") + "나의 말:\n다음 주에 부산으로 출장을 가\n", encoding="utf-8")
    insight = replay(memory, index)
    # part2 grew in place: read from its last turn (line 3) on, not from the start.
    assert insight["last_replay"]["parts_read"] == 1 and insight["last_replay"]["parts_resumed"] == 1
    assert insight["last_replay"]["lines_read"] == 4
    assert searchable(index, "부산 출장")[0] == "day0901/origin/part2.txt:5"
    assert "day0901/origin/part1.txt:1" in ids(index)  # untouched parts keep their turns


def test_a_deleted_part_leaves_the_table_and_the_index(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    (memory / "day0902/minji/part1.txt").unlink()
    insight = replay(memory, index)
    assert insight["last_replay"]["parts_removed"] == 1 and insight["parts"] == 3
    assert not any(i.startswith("day0902/") for i in ids(index))
    assert searchable(index, "시험 불안") == []


def test_an_edited_part_is_searched_by_its_new_text_only(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    write(memory, "day0902/minji/part1.txt", "나의 말:\n오늘 수영장에 다녀왔어\n")
    os.utime(memory / "day0902/minji/part1.txt", ns=(1, 1))  # a different mtime even on a coarse clock
    replay(memory, index)
    assert searchable(index, "시험") == [] and searchable(index, "수영장") == ["day0902/minji/part1.txt:1"]
    assert LexicalIndex(index / "lexical").count() == len(ids(index))


def test_bad_parts_are_skipped_and_reported_while_the_rest_completes(memory, tmp_path, monkeypatch):
    write(memory, "day0903/origin/part1.txt", b"\xed\xa0\x80 broken \xff")
    write(memory, "day0903/origin/part2.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    write(memory, "day0903/origin/part3.txt", "나의 말:\n읽을 수 없는 파일\n")
    real = Path.open

    def open_(self, *args, **kwargs):
        if self.name == "part3.txt" and self.parent.parent.name == "day0903":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    index = tmp_path / "index"
    insight = replay(memory, index)
    reasons = {s["path"]: s["reason"] for s in insight["skipped"]}
    assert reasons["day0903/origin/part1.txt"].startswith("invalid UTF-8 at byte 0")
    assert reasons["day0903/origin/part2.txt"].startswith("binary data")
    assert reasons["day0903/origin/part3.txt"].startswith("unreadable: Permission denied")
    assert "fix:" in reasons["day0903/origin/part1.txt"]
    assert searchable(index, "고양이")  # the good parts are all there
    assert insight["turns"] == 7


def test_duplicates_are_kept_in_the_table_but_indexed_once_until_the_first_goes(memory, tmp_path):
    write(memory, "day0902/origin/part1.txt", CAT)  # the owner pasted the same exchange again
    index = tmp_path / "index"
    insight = replay(memory, index)
    assert insight["duplicates_dropped"] == 2
    rows = {t["id"]: t for t in turns(index)}
    assert rows["day0902/origin/part1.txt:1"]["duplicate_of"] == "day0901/origin/part1.txt:1"
    found = searchable(index, "모카 입양")
    assert found[0] == "day0901/origin/part1.txt:1" and not any(i.startswith("day0902/") for i in found)
    (memory / "day0901/origin/part1.txt").unlink()
    replay(memory, index)
    assert searchable(index, "모카 입양")[0] == "day0902/origin/part1.txt:1"  # nothing lost


def test_force_rebuilds_and_a_broken_state_file_means_a_full_replay(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    assert replay(memory, index, force=True)["last_replay"]["parts_read"] == 4
    (index / "parts" / "base.parquet").write_bytes(b"not parquet")
    assert replay(memory, index)["last_replay"]["parts_read"] == 4
    assert LexicalIndex(index / "lexical").count() == len(ids(index)) == 7


def test_replay_only_reads_the_memory_folder(memory, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in memory.rglob("*")}
    replay(memory, tmp_path / "index")
    assert {p: p.stat().st_mtime_ns for p in memory.rglob("*")} == before


def test_the_markers_are_configurable(tmp_path):
    memory = tmp_path / "memory"
    write(memory, "day0101/origin/part1.txt", "Q:\nwhere did I park\nA:\nlevel three\n")
    replay(memory, tmp_path / "index", markers={"Q:": "user", "A:": "echo"})
    assert [(t["speaker"], t["text"]) for t in turns(tmp_path / "index")] == [("user", "where did I park"), ("echo", "level three")]


def test_a_part_still_being_written_waits_for_the_next_replay(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    part = memory / "day0902/minji/part1.txt"
    part.write_text("나의 말:\n쓰는 중인 문장", encoding="utf-8")  # just written: it may not be whole yet
    insight = replay(memory, index, settle_s=60)
    assert insight["pending"] == ["day0902/minji/part1.txt"] and insight["last_replay"]["parts_read"] == 0
    assert searchable(index, "시험 불안") == ["day0902/minji/part1.txt:1"]  # the old text until it settles
    old = time.time() - 120
    os.utime(part, (old, old))
    insight = replay(memory, index, settle_s=60)
    assert insight["pending"] == [] and searchable(index, "쓰는 중인 문장") == ["day0902/minji/part1.txt:1"]


def test_a_part_appended_to_again_and_again_is_read_from_where_it_was_left(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    path = memory / "day0902/minji/part1.txt"  # 나의 말: / 내일 시험이라 너무 불안해
    with path.open("a", encoding="utf-8") as handle:
        handle.write("시험 범위는 3단원까지야\n")  # the open turn goes on
    insight = replay(memory, index)
    assert insight["last_replay"]["lines_read"] == 3  # its only turn starts at line 1: all of it
    with path.open("a", encoding="utf-8") as handle:
        handle.write("에코의 말:\n잘 될 거예요, 응원해요!\n")
    insight = replay(memory, index)
    assert insight["last_replay"]["lines_read"] == 5  # from the last turn (line 1) on: it may have gone on
    rows = [t for t in turns(index) if t["path"] == "day0902/minji/part1.txt"]
    assert [(t["line_start"], t["line_end"], t["speaker"], t["text"]) for t in rows] == [
        (1, 3, "user", "내일 시험이라 너무 불안해\n시험 범위는 3단원까지야"),
        (4, 5, "echo", "잘 될 거예요, 응원해요!"),
    ]
    assert insight["by_day"]["day0902"]["lines"] == 5 and searchable(index, "3단원") == ["day0902/minji/part1.txt:1"]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("나의 말:\n고마워\n")
    insight = replay(memory, index)
    assert insight["last_replay"]["parts_resumed"] == 1 and insight["last_replay"]["lines_read"] == 4  # from line 4, Echo's turn
    assert [t["line_start"] for t in turns(index) if t["path"] == "day0902/minji/part1.txt"] == [1, 4, 6]
    assert insight["turns"] == replay(memory, tmp_path / "fresh")["turns"]  # the same as reading it whole


def test_a_part_rewritten_in_place_is_read_whole(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    path = memory / "day0902/minji/part1.txt"
    with path.open("r+", encoding="utf-8") as handle:  # same file, its old text changed, and longer
        handle.write("나의 말:\n내일 면접이라 조금 떨려\n더 길어진 글\n")
    insight = replay(memory, index)
    assert insight["last_replay"]["parts_resumed"] == 0 and insight["last_replay"]["parts_read"] == 1
    assert searchable(index, "면접") == ["day0902/minji/part1.txt:1"] and searchable(index, "시험") == []


def test_a_part_known_to_be_whole_needs_no_waiting(memory, tmp_path):
    index = tmp_path / "index"
    replay(memory, index)
    part = memory / "day0902/minji/part1.txt"
    part.write_text("나의 말:\n방금 저장한 대화\n", encoding="utf-8")
    stat = part.stat()
    insight = replay(memory, index, settle_s=60, whole={"day0902/minji/part1.txt": (stat.st_size, stat.st_mtime_ns)})
    assert insight["pending"] == [] and searchable(index, "방금 저장한") == ["day0902/minji/part1.txt:1"]
    part.write_text("나의 말:\n남이 쓰는 중인 대화\n", encoding="utf-8")  # changed since: it waits again
    insight = replay(memory, index, settle_s=60, whole={"day0902/minji/part1.txt": (stat.st_size, stat.st_mtime_ns)})
    assert insight["pending"] == ["day0902/minji/part1.txt"] and 59 < insight["settles_in_s"] <= 60


@pytest.mark.parametrize("fold_rows", [10, 100_000])  # deltas folded into the base often, and never
def test_one_change_after_another_leaves_what_a_full_replay_makes(tmp_path, monkeypatch, fold_rows):
    """A held Replayer takes in each change by difference: appends, rewrites, removals, parts
    that start mid-turn, repeated texts. After each, what it holds (and what it wrote, read
    back) is what a full replay of the same memory makes."""
    import random

    from echo.memory import tablelog
    from echo.memory.replay import Replayer

    monkeypatch.setattr(tablelog, "FOLD_MIN_ROWS", fold_rows)
    texts = ["고양이 모카가 아파", "Lisbon in May", "시험이 불안해", "응", "고양이 모카가 아파"]
    rng = random.Random(7)
    memory, index, full = tmp_path / "memory", tmp_path / "index", tmp_path / "full"
    held = Replayer(index)
    stamp = [time.time_ns() - 10**12]

    def turn() -> str:
        marker = rng.choice(["나의 말:", "ChatGPT의 말:", None])  # None: goes on from the turn before
        return (f"{marker}\n" if marker else "") + rng.choice(texts) + "\n"

    def put(path: Path, text: str, mode: str = "w") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open(mode, encoding="utf-8") as handle:
            handle.write(text)
        stamp[0] += 10**9
        os.utime(path, ns=(stamp[0], stamp[0]))

    for step in range(80):
        existing = sorted(memory.glob("day*/*/part*.txt"))
        action = rng.choice(["new", "new", "new", "append", "append", "rewrite", "remove"] if existing else ["new"])
        if action == "new":
            path = memory / f"day090{rng.randint(1, 3)}" / rng.choice(["origin", "minji"]) / f"part{rng.randint(1, 12)}.txt"
            put(path, "".join(turn() for _ in range(rng.randint(0, 3))))
        elif action in ("append", "rewrite"):
            path = rng.choice(existing)
            put(path, turn() if action == "append" else "".join(turn() for _ in range(rng.randint(1, 3))), "a" if action == "append" else "w")
        else:
            path = rng.choice(existing)
            path.unlink()
        # Told where it changed (as after a save or the watchdog's event), or left to scan.
        got = held.update(memory, paths=[path.relative_to(memory).as_posix()] if step % 2 else None)
        want = replay(memory, full, force=True)
        assert held.all_turns().to_pylist() == load_index(full)[0].to_pylist(), (step, action)
        assert load_index(index)[0].to_pylist() == load_index(full)[0].to_pylist(), (step, action)  # what it wrote, read back
        for insight in (got, want):
            for day in insight["by_day"].values():
                day.pop("top_terms")  # ranked when their day changes (against the days then)
            del insight["last_replay"]
        assert got == want, (step, action)
        assert LexicalIndex(index / "lexical").count() == LexicalIndex(full / "lexical").count() == got["turns"]
        for query in ("고양이", "Lisbon", "불안"):
            found = [{i for i, _ in LexicalIndex(folder / "lexical").search(query, 1000)} for folder in (index, full)]
            assert found[0] == found[1], (step, query)


def test_told_where_memory_changed_it_looks_only_there_and_scans_for_anything_else(memory, tmp_path):
    from echo.memory.replay import Replayer

    held = Replayer(tmp_path / "index")
    held.update(memory)
    for path, line in (("day0901/origin/part1.txt", "하나 더"), ("day0902/minji/part1.txt", "둘 더")):
        with (memory / path).open("a", encoding="utf-8") as handle:
            handle.write(f"나의 말:\n{line}\n")
    assert held.update(memory, paths=["day0901/origin/part1.txt"])["last_replay"]["parts_read"] == 1  # only where it was told
    # A name that is not a part's: only a scan tells what it is, and the scan finds the change nobody told of.
    write(memory, "day0902/minji/part01.txt", "나의 말:\n이름이 틀린 파트\n")
    scanned = held.update(memory, paths=["day0902/minji/part01.txt"])
    assert scanned["last_replay"]["parts_read"] == 1 and "둘 더" in searchable_texts(tmp_path / "index", "둘")
    assert any(s["path"] == "day0902/minji/part01.txt" and "not a part name" in s["reason"] for s in scanned["skipped"])
    (memory / "day0901/origin/part10.txt").unlink()
    gone = held.update(memory, paths=["day0901/origin/part10.txt"])
    assert gone["last_replay"]["parts_removed"] == 1 and gone["parts"] == 3
    assert any(s["path"] == "day0902/minji/part01.txt" for s in gone["skipped"])  # still reported, though not scanned


def searchable_texts(index: Path, query: str) -> list[str]:
    by_id = {t["id"]: t["text"] for t in turns(index)}
    return [by_id[i] for i in searchable(index, query)]


def test_a_hint_through_a_link_or_at_a_folder_is_not_followed_but_scanned(memory, tmp_path):
    from echo.memory.replay import Replayer

    held = Replayer(tmp_path / "index")
    held.update(memory)
    outside = tmp_path / "outside"
    write(outside, "part1.txt", "나의 말:\n밖에 있는 비밀\n")
    (memory / "day0902" / "eve").symlink_to(outside, target_is_directory=True)
    linked = held.update(memory, paths=["day0902/eve/part1.txt"])
    assert linked["last_replay"]["parts_read"] == 0 and linked["parts"] == 4  # never read through the link
    assert any(s["path"] == "day0902/eve" and "symbolic link" in s["reason"] for s in linked["skipped"])
    write(memory, "day0903/minji/part1.txt", "나의 말:\n새 폴더\n")
    folder = held.update(memory, paths=["day0903", "", "../etc/passwd"])  # not parts: only a scan tells
    assert folder["last_replay"]["parts_read"] == 1 and folder["parts"] == 5
