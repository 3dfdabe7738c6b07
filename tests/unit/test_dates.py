"""Dates of memories: the year a `dayMMDD` folder means, and how long ago it was."""

from __future__ import annotations

from datetime import date, datetime, timezone

from echo.memory.dates import ago, infer_date, shown


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
