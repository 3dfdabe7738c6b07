"""Saving exchanges: the owner's format, 395-line parts, never splitting an exchange."""

from datetime import datetime, timezone

from core.memory_store import append_exchange, day_folder, exchange_lines

NOW = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)  # 05:00 on Nov 25 in Seoul


def test_day_folder_follows_the_configured_time_zone():
    assert day_folder(NOW, "Asia/Seoul") == "day1125"
    assert day_folder(NOW, "UTC") == "day1124"


def test_an_exchange_is_saved_in_the_owner_format(tmp_path):
    receipt = append_exchange(tmp_path, "minji", exchange_lines("안녕?\n잘 지내?", "응, 잘 지내."), NOW, "Asia/Seoul")
    path = tmp_path / "day1125" / "minji" / "part1.txt"
    assert path.read_text(encoding="utf-8") == "나의 말:\n안녕?\n잘 지내?\n에코의 말:\n응, 잘 지내.\n"
    assert receipt.as_dict() == {"path": "day1125/minji/part1.txt", "line_start": 1, "line_end": 5}
    second = append_exchange(tmp_path, "minji", exchange_lines("또", "그래"), NOW, "Asia/Seoul")
    assert (second.line_start, second.line_end) == (6, 9)


def test_a_part_rotates_before_it_would_pass_395_lines_without_splitting_an_exchange(tmp_path):
    lines = exchange_lines("q", "a")  # 4 lines
    receipts = [append_exchange(tmp_path, "u", lines, NOW, "UTC") for _ in range(100)]
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
