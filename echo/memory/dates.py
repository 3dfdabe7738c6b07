"""Dates of memories. The owner's day folders say `dayMMDD` with no year: a turn's date is
the latest such date not after its part was last written, in the config's time zone. Shown
to a circuit with how long ago it was ("2025-05-08, 3 weeks ago")."""

from __future__ import annotations

import re
from datetime import date, datetime
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
