"""Sessions in recall (echo.memory.sessions): grouping turns, time bounds, fusion, exchange
partners and how the line budget is shared between sessions."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import pytest

from echo.memory.dates import Bound
from echo.memory.sessions import Sessions, first_seen, fuse, partner, pick_turns


def ns(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc).timestamp() * 1e9)


MAY1, MAY2 = date(2025, 5, 1), date(2025, 5, 2)
PATHS = ["day0501/origin/part1.txt"] * 3 + ["day0501/origin/part2.txt"] * 2 + ["day0502/minji/part1.txt"] * 2 + ["day1340/origin/part1.txt"]
USERS = ["origin"] * 5 + ["minji"] * 2 + ["origin"]
DATES = {"day0501/origin/part1.txt": MAY1, "day0501/origin/part2.txt": MAY1, "day0502/minji/part1.txt": MAY2}  # day1340 has none
WRITTEN = {"day0501/origin/part1.txt": ns(MAY1, 9), "day0501/origin/part2.txt": ns(MAY1, 15), "day0502/minji/part1.txt": ns(MAY2, 12)}


@pytest.fixture
def sessions() -> Sessions:
    return Sessions.of(PATHS, USERS, DATES, WRITTEN)


def test_turns_are_grouped_by_their_part_with_its_user_day_and_rows(sessions):
    assert sessions.paths == ["day0501/origin/part1.txt", "day0501/origin/part2.txt", "day0502/minji/part1.txt", "day1340/origin/part1.txt"]
    assert sessions.of_row.tolist() == [0, 0, 0, 1, 1, 2, 2, 3]
    assert sessions.users.tolist() == ["origin", "origin", "minji", "origin"]
    assert sessions.rows(1).tolist() == [3, 4] and sessions.rows(3).tolist() == [7]
    assert sessions.dated(MAY1, MAY2).tolist() == [0, 1]
    shuffled = Sessions.of(PATHS[::-1], USERS[::-1], DATES, WRITTEN)  # rows need not come sorted
    assert shuffled.rows(shuffled.paths.index("day0501/origin/part1.txt")).tolist() == [5, 6, 7]


def test_time_bounds_keep_what_existed_before_or_from_them_and_a_users_own(sessions):
    assert sessions.allowed(None, None, None) is None  # nothing left out
    assert sessions.allowed("minji", None, None).tolist() == [False, False, True, False]
    assert sessions.allowed(None, None, Bound(MAY2)).tolist() == [True, True, False, False]  # undated parts: never in a bounded search
    # On the bound's own day the write time orders the parts: at noon only the morning's part existed.
    assert sessions.allowed(None, None, Bound(MAY1, ns(MAY1, 12))).tolist() == [True, False, False, False]
    assert sessions.allowed(None, Bound(MAY1, ns(MAY1, 12)), None).tolist() == [False, True, True, False]
    assert sessions.allowed("origin", Bound(MAY2), None).tolist() == [False, False, False, False]


def test_fusion_adds_each_rankings_reciprocal_ranks_so_what_several_find_comes_first():
    scores = fuse([(1.0, [2, 0]), (1.0, [0, 1]), (0.5, [1])], 3)
    assert scores.tolist() == pytest.approx([1 / 62 + 1 / 61, 1 / 62 + 0.5 / 61, 1 / 61])
    assert list(np.argsort(-scores)) == [0, 1, 2]
    assert fuse([], 2).tolist() == [0, 0]
    assert first_seen([4, 4, 1, 4, 2, 1]) == [4, 1, 2]


def test_an_item_a_ranking_cannot_see_counts_as_the_others_ranked_it():
    # Item 2 has no vector yet: the dense ranking (second) cannot see it, so its first place in
    # the lexical ranking counts for both, and it stays ahead of what both rankings found lower.
    sees = np.array([True, True, False])
    scores = fuse([(1.0, [2, 0, 1]), (1.0, [0, 1], sees)], 3)
    assert scores.tolist() == pytest.approx([1 / 62 + 1 / 61, 1 / 63 + 1 / 62, 2 / 61])
    assert list(np.argsort(-scores)) == [2, 0, 1]
    assert fuse([(1.0, [1]), (1.0, [], np.zeros(2, dtype=bool))], 2).tolist() == pytest.approx([0, 2 / 61])


def test_an_exchange_partner_is_the_answer_after_a_question_or_else_the_question_before():
    of_row = np.array([0, 0, 0, 0, 1, 1])
    speakers = ["user", "assistant", "user", "user", "assistant", "user"]
    assert partner(0, of_row, speakers) == 1  # the answer
    assert partner(1, of_row, speakers) == 2  # an answer's next turn is the next question...
    assert partner(3, of_row, speakers) is None  # two questions in a row, then another session
    assert partner(4, of_row, speakers) == 5
    assert partner(5, of_row, speakers) == 4  # the last turn of its session: the one before


def test_the_budget_goes_to_the_best_turns_with_their_partners_then_to_more_sessions():
    of_row = np.array([0, 0, 0, 0, 1, 1, 2, 3])  # rows 0-3 one session, 4-5 another, then two of one turn each
    ranked = [1, 2, 4, 0]  # the best turns, wherever they are
    sessions = [0, 1, 2, 3]
    best_turn = {0: 1, 1: 4, 2: 6, 3: 7}.get
    partners = {1: 0, 2: 3, 4: 5}.get  # 1 answers 0; 2 is answered by 3; 4 is answered by 5
    no_partner = {}.get
    assert pick_turns(ranked, sessions, best_turn, of_row, 5, focus=0, partner=partners) == [1, 4, 6, 7, 2]  # a session each, then more
    assert pick_turns(ranked, sessions, best_turn, of_row, 5, focus=2, partner=no_partner) == [1, 2, 4, 6, 7]
    assert pick_turns(ranked, sessions, best_turn, of_row, 5, focus=3, partner=partners) == [1, 0, 2, 4, 6]  # a question with its answer
    assert pick_turns(ranked, sessions, best_turn, of_row, 3, focus=10, partner=partners) == [1, 0, 2]
    assert pick_turns([], [], best_turn, of_row, 5, focus=3, partner=partners) == []


def test_a_long_message_reaches_several_conversations_and_a_bound_keeps_to_its_time(tmp_path):
    import os

    from echo.memory.replay import replay
    from echo.memory.search import MemorySearch

    memory = tmp_path / "memory"
    for n, day in enumerate((date(2025, 5, 1), date(2025, 5, 8), date(2025, 5, 15))):
        part = memory / f"day{day:%m%d}" / "origin" / "part1.txt"
        part.parent.mkdir(parents=True)
        talk = [f"나의 말:\nthe tomato seedlings in my garden plot need water, week {n}\nChatGPT의 말:\nwater them early\n"] * (4 - n)
        part.write_text("".join(f"{t.rstrip()} ({i})\n" for i, t in enumerate(talk)) + "나의 말:\nsomething else entirely\n", encoding="utf-8")
        os.utime(part, ns=(ns(day, 12), ns(day, 12)))
    replay(memory, tmp_path / "index")
    search = MemorySearch(tmp_path / "index", None, "UTC")
    message = "I was out in my garden plot again this morning and I keep wondering how often the tomato seedlings need water now"
    found = search.search(message, 4, mode="lexical")
    assert len({m.path for m in found}) == 3  # the first session alone has four such turns
    assert {m.date for m in found} == {"2025-05-01", "2025-05-08", "2025-05-15"}
    assert {m.date for m in search.search(message, 4, mode="lexical", before=Bound(date(2025, 5, 8)))} == {"2025-05-01"}
    assert search.search("tomato seedlings water", 10, mode="lexical", since=Bound(date(2025, 6, 1))) == []
