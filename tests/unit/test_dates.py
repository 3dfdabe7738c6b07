"""Dates of memories: the year a `dayMMDD` folder means, and how long ago it was."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from echo.memory.dates import Bound, ago, infer_date, parse_bound, shown, time_in_query


def ns(year: int, month: int, day: int, hour: int = 12) -> int:
    return int(datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp() * 1e9)


def test_the_year_is_the_latest_one_not_after_the_parts_last_write():
    assert infer_date("day0508", ns(2025, 5, 29), "UTC") == date(2025, 5, 8)
    assert infer_date("day0508", ns(2025, 5, 8), "UTC") == date(2025, 5, 8)  # written that same day
    assert infer_date("day1231", ns(2026, 1, 2), "UTC") == date(2025, 12, 31)  # across New Year
    assert infer_date("day0102", ns(2026, 1, 2), "UTC") == date(2026, 1, 2)
    assert infer_date("day1231", ns(2025, 12, 30), "UTC") == date(2024, 12, 31)  # not yet this year: last year's


def test_the_time_zone_decides_which_day_the_write_fell_on():
    # 2025-12-31 20:00 UTC is already 1 January in Seoul: a day0101 folder written then is this New Year's.
    written = ns(2025, 12, 31, hour=20)
    assert infer_date("day0101", written, "Asia/Seoul") == date(2026, 1, 1)
    assert infer_date("day0101", written, "UTC") == date(2025, 1, 1)


def test_29_february_goes_back_to_a_leap_year_and_impossible_days_have_no_date():
    assert infer_date("day0229", ns(2027, 3, 1), "UTC") == date(2024, 2, 29)
    assert infer_date("day1340", ns(2025, 1, 1), "UTC") is None
    assert infer_date("day0230", ns(2025, 1, 1), "UTC") is None
    assert infer_date("Day0101", ns(2025, 1, 1), "UTC") is None


def test_how_long_ago_reads_as_a_person_would_say_it():
    today = date(2025, 5, 29)
    assert [ago(date(2025, 5, d), today) for d in (29, 28, 26)] == ["today", "yesterday", "3 days ago"]
    assert ago(date(2025, 5, 8), today) == "3 weeks ago"
    assert ago(date(2025, 1, 2), today) == "4 months ago"
    assert ago(date(2024, 5, 1), today) == "a year ago" and ago(date(2022, 5, 1), today) == "3 years ago"
    assert shown(date(2025, 5, 8), today) == "2025-05-08, 3 weeks ago" and shown(None, today) == "date unknown"


TODAY = date(2025, 12, 10)  # a Wednesday


def test_time_said_in_english_is_the_days_it_means():
    assert time_in_query("what did I say yesterday?", TODAY) == (date(2025, 12, 9), date(2025, 12, 10))
    assert time_in_query("the movie we talked about last week", TODAY) == (date(2025, 12, 1), date(2025, 12, 8))
    assert time_in_query("my plans in May", TODAY) == (date(2025, 5, 1), date(2025, 6, 1))
    assert time_in_query("back in March 2024", TODAY) == (date(2024, 3, 1), date(2024, 4, 1))
    assert time_in_query("3 days ago", TODAY) == (date(2025, 12, 7), date(2025, 12, 8))
    assert time_in_query("last month", TODAY) == (date(2025, 11, 1), date(2025, 12, 1))
    assert time_in_query("last summer", TODAY) == (date(2025, 6, 1), date(2025, 9, 1))
    assert time_in_query("last summer", date(2025, 7, 15)) == (date(2024, 6, 1), date(2024, 9, 1))  # this one is not over yet
    assert time_in_query("this year", TODAY) == (date(2025, 1, 1), date(2026, 1, 1))


def test_time_said_in_korean_is_the_days_it_means():
    assert time_in_query("어제 뭐라고 했지?", TODAY) == (date(2025, 12, 9), date(2025, 12, 10))
    assert time_in_query("지난주에 본 영화", TODAY) == (date(2025, 12, 1), date(2025, 12, 8))
    assert time_in_query("작년 여름에 간 바다", TODAY) == (date(2024, 6, 1), date(2024, 9, 1))
    assert time_in_query("5월에 만난 사람", TODAY) == (date(2025, 5, 1), date(2025, 6, 1))
    assert time_in_query("작년 3월", TODAY) == (date(2024, 3, 1), date(2024, 4, 1))
    assert time_in_query("2주 전에 한 얘기", TODAY) == (date(2025, 11, 23), date(2025, 11, 30))
    assert time_in_query("지난달 일정", TODAY) == (date(2025, 11, 1), date(2025, 12, 1))
    assert time_in_query("그저께 먹은 거", TODAY) == (date(2025, 12, 8), date(2025, 12, 9))


def test_a_month_not_yet_come_this_year_is_last_years_and_no_time_is_none():
    assert time_in_query("in December", date(2025, 11, 2)) == (date(2024, 12, 1), date(2025, 1, 1))
    assert time_in_query("12월에", date(2025, 11, 2)) == (date(2024, 12, 1), date(2025, 1, 1))
    for words in ("고양이 이름이 뭐였지?", "may I ask about my cat", "월요일마다 뭐 하지", "the 5 parts"):
        assert time_in_query(words, TODAY) is None, words


def test_search_bounds_are_dates_or_instants_and_a_wrong_one_says_how_to_write_it():
    assert parse_bound("since", "2025-05-01", "Asia/Seoul") == Bound(date(2025, 5, 1))
    at = parse_bound("before", "2025-05-01T09:00", "Asia/Seoul")  # no offset: the configured zone's
    assert at == Bound(date(2025, 5, 1), ns(2025, 5, 1, hour=0))
    assert parse_bound("before", "2025-05-01T23:30:00+00:00", "Asia/Seoul").day == date(2025, 5, 2)  # already the 2nd in Seoul
    assert parse_bound("since", None, "UTC") is None and parse_bound("since", " ", "UTC") is None
    with pytest.raises(ValueError, match=r"since = 'May 1st': use a date \(2025-05-01\) or a date and time"):
        parse_bound("since", "May 1st", "UTC")
