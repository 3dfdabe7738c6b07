"""Saving exchanges: the owner's format, 395-line parts, never splitting an exchange."""

import unicodedata

import pytest

from echo.memory.store import append_exchange, day_folder, exchange_lines, repair_torn_parts, restore, scan_parts
from tests.samples import NOW


def test_day_folder_follows_the_configured_time_zone():
    assert day_folder(NOW, "Asia/Seoul") == "day1125"
    assert day_folder(NOW, "UTC") == "day1124"


def test_an_exchange_is_saved_in_the_owner_format(tmp_path):
    receipt = append_exchange(tmp_path, "minji", exchange_lines("안녕?\n잘 지내?", "응, 잘 지내."), NOW, "Asia/Seoul")
    path = tmp_path / "day1125" / "minji" / "part1.txt"
    assert path.read_text(encoding="utf-8") == "나의 말:\n안녕?\n잘 지내?\n에코의 말:\n응, 잘 지내.\n"
    assert receipt.as_dict() == {"path": "day1125/minji/part1.txt", "line_start": 1, "line_end": 5, "duplicate": False, "backup_error": None}
    second = append_exchange(tmp_path, "minji", exchange_lines("또", "그래"), NOW, "Asia/Seoul")
    assert (second.line_start, second.line_end) == (6, 9)


def test_a_part_rotates_before_it_would_pass_395_lines_without_splitting_an_exchange(tmp_path):
    receipts = [append_exchange(tmp_path, "u", exchange_lines(f"q{i}", "a"), NOW, "UTC") for i in range(100)]  # 4 lines each
    folder = tmp_path / "day1124" / "u"
    assert (folder / "part1.txt").read_text().count("\n") == 392  # 98 exchanges; a 99th would make 396
    assert receipts[98].path == "day1124/u/part2.txt" and receipts[98].line_start == 1
    assert sum(p.read_text().count("나의 말:") for p in folder.iterdir()) == 100


def test_an_exchange_longer_than_a_part_starts_a_part_of_its_own(tmp_path):
    append_exchange(tmp_path, "u", exchange_lines("q", "a"), NOW, "UTC")
    long = exchange_lines("q", "\n".join(f"line {i}" for i in range(500)))
    receipt = append_exchange(tmp_path, "u", long, NOW, "UTC")
    assert receipt.path == "day1124/u/part2.txt" and receipt.line_end == len(long)
    after = append_exchange(tmp_path, "u", exchange_lines("q", "a"), NOW, "UTC")
    assert after.path == "day1124/u/part3.txt"


def test_a_torn_last_line_is_not_glued_to_the_next_exchange(tmp_path):
    folder = tmp_path / "day1124" / "u"
    folder.mkdir(parents=True)
    (folder / "part1.txt").write_text("나의 말:\n반쯤 쓰인 줄", encoding="utf-8")
    receipt = append_exchange(tmp_path, "u", exchange_lines("q", "a"), NOW, "UTC")
    text = (folder / "part1.txt").read_text(encoding="utf-8")
    assert text == "나의 말:\n반쯤 쓰인 줄\n나의 말:\nq\n에코의 말:\na\n"
    assert receipt.line_start == 3


def test_parts_are_numbered_by_value_not_by_name(tmp_path):
    folder = tmp_path / "day1124" / "u"
    folder.mkdir(parents=True)
    (folder / "part2.txt").write_text("x\n" * 395)
    (folder / "part10.txt").write_text("x\n")
    receipt = append_exchange(tmp_path, "u", exchange_lines("q", "a"), NOW, "UTC")
    assert receipt.path == "day1124/u/part10.txt"


def test_control_characters_are_not_written_but_the_text_is(tmp_path):
    append_exchange(tmp_path, "u", exchange_lines("a\x00b\x07c\x1b[31md\te", "ok\x7f"), NOW, "UTC")
    assert (tmp_path / "day1124" / "u" / "part1.txt").read_text() == "나의 말:\nabc[31md\te\n에코의 말:\nok\n"


def test_carriage_returns_become_line_breaks(tmp_path):
    append_exchange(tmp_path, "u", exchange_lines("a\r\nb\rc", "d"), NOW, "UTC")
    assert (tmp_path / "day1124" / "u" / "part1.txt").read_text() == "나의 말:\na\nb\nc\n에코의 말:\nd\n"


def test_the_same_exchange_twice_is_written_once_even_after_a_restart(tmp_path):
    first = append_exchange(tmp_path, "u", exchange_lines("안녕", "반가워"), NOW, "UTC")
    decomposed = unicodedata.normalize("NFD", "안녕") + "  "  # the same after cleaning
    again = append_exchange(tmp_path, "u", exchange_lines(decomposed, "반가워"), NOW, "UTC")
    assert again.duplicate is True and (again.path, again.line_start, again.line_end) == (first.path, 1, 4)
    assert (tmp_path / first.path).read_text(encoding="utf-8").count("나의 말:") == 1
    append_exchange(tmp_path, "u", exchange_lines("다른 말", "응"), NOW, "UTC")
    third = append_exchange(tmp_path, "u", exchange_lines("안녕", "반가워"), NOW, "UTC")
    assert third.duplicate is False and third.line_start == 9  # only the last one counts


def test_every_write_is_mirrored_in_the_backup(tmp_path):
    memory, backup = tmp_path / "memory", tmp_path / "memory_backup"
    for i in range(120):
        append_exchange(memory, "u", exchange_lines(f"q{i}", "a"), NOW, "UTC", backup_dir=backup)
    paths = [p.path for p in scan_parts(memory)[0]]
    assert paths == [p.path for p in scan_parts(backup)[0]] and len(paths) == 2
    for relative in paths:
        assert (memory / relative).read_bytes() == (backup / relative).read_bytes()


def test_a_cut_off_line_of_text_is_ended_and_kept(tmp_path):
    part = tmp_path / "memory" / "day1124" / "u" / "part1.txt"
    part.parent.mkdir(parents=True)
    part.write_text("나의 말:\n반쯤 쓰인", encoding="utf-8")
    reports = repair_torn_parts(tmp_path / "memory", tmp_path / "quarantine")
    assert part.read_text(encoding="utf-8") == "나의 말:\n반쯤 쓰인\n"
    assert list(reports) == ["day1124/u/part1.txt"] and "kept" in reports["day1124/u/part1.txt"]
    assert repair_torn_parts(tmp_path / "memory", tmp_path / "quarantine") == {}  # once is enough


def test_a_line_cut_inside_a_character_is_quarantined_not_dropped(tmp_path):
    part = tmp_path / "memory" / "day1124" / "u" / "part1.txt"
    part.parent.mkdir(parents=True)
    torn = "가나".encode()[:4]  # the write stopped inside "나"
    part.write_bytes("나의 말:\n온전한 줄\n".encode() + torn)
    reports = repair_torn_parts(tmp_path / "memory", tmp_path / "quarantine")
    assert part.read_text(encoding="utf-8") == "나의 말:\n온전한 줄\n"
    assert (tmp_path / "quarantine" / "day1124" / "u" / "part1.txt").read_bytes() == torn + b"\n"
    assert "quarantine" in reports["day1124/u/part1.txt"] and "not valid UTF-8" in reports["day1124/u/part1.txt"]


def test_restore_brings_back_lost_and_cut_parts_and_never_removes_a_line(tmp_path):
    memory, backup = tmp_path / "memory", tmp_path / "memory_backup"
    for user in ("a", "b", "c", "d"):
        append_exchange(memory, user, exchange_lines("q", "a"), NOW, "UTC", backup_dir=backup)
    (memory / "day1124" / "a" / "part1.txt").unlink()  # lost
    (memory / "day1124" / "b" / "part1.txt").write_text("나의 말:\n")  # cut short
    with (memory / "day1124" / "c" / "part1.txt").open("a") as handle:
        handle.write("나의 말:\nwritten by hand\n")  # more than the backup has
    (memory / "day1124" / "d" / "part1.txt").write_text("something else\n")  # diverged
    report = restore(memory, backup)
    assert report.restored == ["day1124/a/part1.txt", "day1124/b/part1.txt"]
    assert report.unchanged == ["day1124/c/part1.txt"] and report.conflicts == ["day1124/d/part1.txt"]
    for user in ("a", "b"):
        assert (memory / "day1124" / user / "part1.txt").read_bytes() == (backup / "day1124" / user / "part1.txt").read_bytes()
    assert "written by hand" in (memory / "day1124" / "c" / "part1.txt").read_text()
    assert (memory / "day1124" / "d" / "part1.txt").read_text() == "something else\n"


def test_line_numbers_count_only_newlines_whatever_the_text_holds(tmp_path):
    first = append_exchange(tmp_path, "u", exchange_lines("a\u2028b\x85c\u2029d", "e"), NOW, "UTC")
    second = append_exchange(tmp_path, "u", exchange_lines("next", "f"), NOW, "UTC")
    assert (first.line_start, first.line_end) == (1, 4)
    assert (second.line_start, second.line_end) == (5, 8)
    assert (tmp_path / second.path).read_bytes().count(b"\n") == 8


def test_a_binary_file_among_the_parts_is_left_untouched_by_the_repair(tmp_path):
    binary = b"\x89PNG\r\n\x1a\n\x00\x00 not a conversation"
    path = tmp_path / "memory" / "day0101" / "origin" / "part1.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(binary)
    assert repair_torn_parts(tmp_path / "memory", tmp_path / "quarantine") == {}
    assert path.read_bytes() == binary


def test_a_write_cut_short_by_a_full_disk_leaves_the_part_as_it_was(tmp_path, monkeypatch):
    import errno
    import os

    append_exchange(tmp_path, "u", exchange_lines("first", "one"), NOW, "UTC")
    part = tmp_path / "day1124" / "u" / "part1.txt"
    before = part.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):  # as a disk does when it fills up mid-write
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        append_exchange(tmp_path, "u", exchange_lines("second", "two"), NOW, "UTC")
    monkeypatch.undo()
    assert part.read_bytes() == before  # no half exchange left behind
    receipt = append_exchange(tmp_path, "u", exchange_lines("third", "three"), NOW, "UTC")
    assert part.read_text(encoding="utf-8").endswith("나의 말:\nthird\n에코의 말:\nthree\n") and receipt.line_start == 5


def test_a_failed_backup_does_not_unsave_the_exchange(tmp_path):
    (tmp_path / "backup").write_text("a file where the backup folder should be")
    receipt = append_exchange(tmp_path / "memory", "u", exchange_lines("q", "a"), NOW, "UTC", backup_dir=tmp_path / "backup")
    assert (tmp_path / "memory" / receipt.path).read_text(encoding="utf-8") == "나의 말:\nq\n에코의 말:\na\n"
    assert receipt.backup_error and "backup" in receipt.backup_error


WRITER = """
import sys
from datetime import datetime, timezone
from pathlib import Path
sys.path.insert(0, {root!r})
from echo.memory.store import append_exchange, exchange_lines
now = datetime(2026, 11, 24, tzinfo=timezone.utc)
append_exchange(Path({memory!r}), "u", exchange_lines("first", "one"), now, "UTC")
print("first saved", flush=True)
append_exchange(Path({memory!r}), "u", exchange_lines("a long answer", "가" * 40_000_000), now, "UTC")
"""


def test_a_writer_killed_mid_write_leaves_a_torn_line_that_the_next_start_sets_aside(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from echo.config import REPO_ROOT

    memory, part = tmp_path / "memory", tmp_path / "memory" / "day1124" / "u" / "part1.txt"
    for _ in range(5):  # the kill must land while the 120 MB write is under way
        if memory.exists():
            __import__("shutil").rmtree(memory)
        writer = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(REPO_ROOT), memory=str(memory))], stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"first saved\n"
        whole = part.stat().st_size
        while part.stat().st_size == whole and writer.poll() is None:
            time.sleep(0.0005)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if not part.read_bytes().endswith(b"\n"):
            break
    torn = part.read_bytes()
    assert not torn.endswith(b"\n") and len(torn) > whole  # killed mid-write, as a crash leaves it
    reports = repair_torn_parts(memory, tmp_path / "quarantine")  # what the MemoryActor does at its next start
    assert list(reports) == ["day1124/u/part1.txt"]
    repaired = part.read_bytes()
    assert repaired.decode("utf-8").startswith("나의 말:\nfirst\n에코의 말:\none\n") and repaired.endswith(b"\n")
    kept_aside = tmp_path / "quarantine" / "day1124" / "u" / "part1.txt"
    if kept_aside.exists():  # cut inside a character: the whole lines stay, the cut-off bytes are set aside
        assert repaired + kept_aside.read_bytes()[:-1] == torn
    else:  # cut between characters: the text stays, ended with a newline
        assert repaired == torn + b"\n"
