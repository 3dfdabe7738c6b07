"""Dates of memories. The owner's day folders say `dayMMDD` with no year: a turn's date is
the latest such date not after its part was last written, in the config's time zone. Shown
to a circuit with how long ago it was ("2025-05-08, 3 weeks ago")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

_DAY = re.compile(r"^day(\d{2})(\d{2})$")
YEARS_BACK = 8  # a 29 February needs up to 8 years back to find a leap year (1900-style gaps included)


def infer_date(day: str, written_ns: int, timezone: str) -> date | None:
    """The date of day folder `dayMMDD` whose part was last written at written_ns (ns since
    the epoch): the latest date with that month and day not after the write. None when the
    folder names no real day (day1340)."""
    found = _DAY.match(day)
    if found is None:
        return None
    month, dom = int(found.group(1)), int(found.group(2))
    written = datetime.fromtimestamp(written_ns / 1e9, ZoneInfo(timezone)).date()
    for year in range(written.year, written.year - YEARS_BACK, -1):
        try:
            candidate = date(year, month, dom)
        except ValueError:  # no such day (0230), or 0229 in a common year
            continue
        if candidate <= written:
            return candidate
    return None


def ago(then: date, today: date) -> str:
    """How long before today: "today", "yesterday", "3 days ago", "2 weeks ago", "5 months ago", "2 years ago"."""
    days = (today - then).days
    if days < 0:
        return "in the future"
    if days == 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    if days < 60:
        return f"{days // 7} weeks ago"
    if days < 365:
        return f"{days // 30} months ago"
    years = days // 365
    return "a year ago" if years == 1 else f"{years} years ago"


def shown(then: date | None, today: date) -> str:
    """A date as a circuit reads it: "2025-05-08, 3 weeks ago"."""
    return f"{then.isoformat()}, {ago(then, today)}" if then else "date unknown"


def said_at(at: datetime, now: datetime) -> str:
    """When an exchange was said, as a person would put it: "yesterday, 21:40"."""
    local = at.astimezone(now.tzinfo)
    return f"{ago(local.date(), now.date())}, {local:%H:%M}"


# -- time in a search: bounds asked for, and time said in a question -------------------------


@dataclass(frozen=True)
class Bound:
    """A point in time a search is bounded by: a day, and on that day, when a time was given, an
    instant (ns since the epoch) that orders the parts written that day."""

    day: date
    ns: int | None = None


def parse_bound(name: str, value: str | None, timezone: str) -> Bound | None:
    """`since` or `before` as a user gives it: a date (2025-05-01) or a date and time
    (2025-05-01T14:30, with or without an offset; without one, in timezone)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return Bound(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} = {value!r}: use a date (2025-05-01) or a date and time (2025-05-01T14:30:00+09:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return Bound(moment.astimezone(ZoneInfo(timezone)).date(), int(moment.timestamp() * 1e9))


MONTHS = {
    name: number
    for number, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"), ("july", "jul")]
        + [("august", "aug"), ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"), ("december", "dec")],
        1,
    )
    for name in names
}
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12, "봄": 3, "여름": 6, "가을": 9, "겨울": 12}
_UNIT_DAYS = {"day": 1, "days": 1, "일": 1, "week": 7, "weeks": 7, "주": 7, "주일": 7}
_EN_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_PATTERNS = [
    # (pattern, kind); the first that matches decides
    (re.compile(r"\b(\d+)\s+(days?|weeks?)\s+ago\b", re.I), "units_ago"),
    (re.compile(r"(\d+)\s*(일|주일|주)\s*전"), "units_ago"),
    (re.compile(r"\b(\d+)\s+months?\s+ago\b", re.I), "months_ago"),
    (re.compile(r"(\d+)\s*(?:달|개월)\s*전"), "months_ago"),
    (re.compile(r"\b(last|this)\s+(spring|summer|autumn|fall|winter)\b", re.I), "season"),
    (re.compile(r"(작년|지난해|올해|지난|이번)\s*(봄|여름|가을|겨울)"), "season"),
    (re.compile(rf"\b(?:in|on|during|since|from|by|of|last)\s+({_EN_MONTH})\b\.?(?:\s+(\d{{4}}))?", re.I), "month"),
    (re.compile(r"(?:(\d{4})\s*년\s*|(작년|지난해|올해)\s*)?(1[0-2]|[1-9])\s*월"), "month_ko"),
    (re.compile(r"\b(the\s+)?day\s+before\s+yesterday\b|그저께|그제", re.I), "day_before_yesterday"),
    (re.compile(r"\byesterday\b|어제", re.I), "yesterday"),
    (re.compile(r"\btoday\b|오늘", re.I), "today"),
    (re.compile(r"\blast\s+week\b|지난\s*주|저번\s*주", re.I), "last_week"),
    (re.compile(r"\bthis\s+week\b|이번\s*주", re.I), "this_week"),
    (re.compile(r"\blast\s+month\b|지난\s*달|저번\s*달", re.I), "last_month"),
    (re.compile(r"\bthis\s+month\b|이번\s*달", re.I), "this_month"),
    (re.compile(r"\blast\s+year\b|작년|지난해", re.I), "last_year"),
    (re.compile(r"\bthis\s+year\b|올해|금년", re.I), "this_year"),
]


def _month_start(year: int, month: int) -> date:
    while month < 1:
        year, month = year - 1, month + 12
    while month > 12:
        year, month = year + 1, month - 12
    return date(year, month, 1)


def _latest_month(month: int, today: date) -> int:
    """The year of the latest such month not after today ("in May", said in March, is last May)."""
    return today.year if month <= today.month else today.year - 1


def time_in_query(query: str, today: date) -> tuple[date, date] | None:
    """The days a question speaks of, [start, end), from what it says ("last week", "in May",
    "3 days ago", "작년 여름", "지난달", "5월에"), counted back from today; None when it names no time."""
    for pattern, kind in _PATTERNS:
        found = pattern.search(query)
        if found is None:
            continue
        if kind == "units_ago":
            unit = _UNIT_DAYS[found.group(2).lower()]
            then = today - timedelta(days=int(found.group(1)) * unit)
            return (then, then + timedelta(days=1)) if unit == 1 else (then - timedelta(days=3), then + timedelta(days=4))
        if kind == "months_ago":
            start = _month_start(today.year, today.month - int(found.group(1)))
            return start, _month_start(start.year, start.month + 1)
        if kind == "season":
            which, month = found.group(1).lower(), SEASONS[found.group(2).lower()]
            if which in ("작년", "지난해"):  # last year's
                year = today.year - 1
            elif which in ("this", "올해", "이번"):  # this year's (a winter in January began last December)
                year = today.year - 1 if month == 12 and today.month < 3 else today.year
            else:  # "last summer", "지난 여름": the latest one over by today
                year = today.year
                while _month_start(year, month + 3) > today:
                    year -= 1
            start = _month_start(year, month)
            return start, _month_start(year, month + 3)
        if kind == "month":
            month = MONTHS[found.group(1).lower()]
            year = int(found.group(2)) if found.group(2) else _latest_month(month, today)
            return date(year, month, 1), _month_start(year, month + 1)
        if kind == "month_ko":
            month = int(found.group(3))
            if found.group(1):
                year = int(found.group(1))
            elif found.group(2):
                year = today.year - 1 if found.group(2) in ("작년", "지난해") else today.year
            else:
                year = _latest_month(month, today)
            return date(year, month, 1), _month_start(year, month + 1)
        if kind in ("today", "yesterday", "day_before_yesterday"):
            then = today - timedelta(days={"today": 0, "yesterday": 1, "day_before_yesterday": 2}[kind])
            return then, then + timedelta(days=1)
        if kind in ("last_week", "this_week"):
            monday = today - timedelta(days=today.weekday()) - timedelta(days=7 if kind == "last_week" else 0)
            return monday, monday + timedelta(days=7)
        if kind in ("last_month", "this_month"):
            start = _month_start(today.year, today.month - (1 if kind == "last_month" else 0))
            return start, _month_start(start.year, start.month + 1)
        year = today.year - (1 if kind == "last_year" else 0)
        return date(year, 1, 1), date(year + 1, 1, 1)
    return None
