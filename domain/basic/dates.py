"""Dates as text: `2024-05-17` and `2024-05-17 14:30:00`.

Dialog values must stay plain JSON, so a date is text in ISO order (which also sorts and
compares correctly). These helpers read the forms people and platforms write and compute
with them; the current time always comes from the platform's clock.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta

from domain.basic.errors import BasicRuntimeError

_ISO = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?"
)
_DMY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")

UNITS = {
    "d": "day", "day": "day", "days": "day", "dd": "day", "y": "day",
    "w": "week", "ww": "week", "week": "week", "weeks": "week",
    "m": "month", "mm": "month", "month": "month", "months": "month",
    "q": "quarter", "quarter": "quarter",
    "yyyy": "year", "yy": "year", "year": "year", "years": "year",
    "h": "hour", "hh": "hour", "hour": "hour", "hours": "hour",
    "n": "minute", "mi": "minute", "minute": "minute", "minutes": "minute",
    "s": "second", "ss": "second", "second": "second", "seconds": "second",
}  # fmt: skip

_SECONDS = {"week": 604800, "day": 86400, "hour": 3600, "minute": 60, "second": 1}


def parse_when(text: str) -> tuple[datetime, bool] | None:
    """A date or date-time written as text, and whether it carries a time of day."""
    cleaned = text.strip()
    try:
        match = _ISO.fullmatch(cleaned)
        if match:
            y, mo, d, h, mi, s = match.groups()
            moment = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
            return moment, h is not None
        match = _DMY.fullmatch(cleaned)
        if match:
            d, mo, y, h, mi, s = match.groups()
            moment = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
            return moment, h is not None
        match = _TIME.fullmatch(cleaned)
        if match:
            h, mi, s = match.groups()
            return datetime(1900, 1, 1, int(h), int(mi), int(s or 0)), True
    except ValueError:
        return None
    return None


def require_when(value: object, what: str = "a date") -> tuple[datetime, bool]:
    parsed = parse_when(value) if isinstance(value, str) else None
    if parsed is None:
        raise BasicRuntimeError(f"expected {what}, got {value!r}")
    return parsed


def render(moment: datetime, with_time: bool) -> str:
    if with_time:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%d")


def local_now(now: datetime) -> datetime:
    """The platform's aware time as the wall-clock time of its own zone."""
    return now.replace(tzinfo=None, microsecond=0)


def unit_of(text: str) -> str | None:
    return UNITS.get(text.strip().lower())


def add(moment: datetime, amount: int | float, unit: str) -> datetime:
    try:
        if unit in ("month", "quarter", "year"):
            months = int(amount) * {"month": 1, "quarter": 3, "year": 12}[unit]
            return _add_months(moment, months)
        return moment + timedelta(seconds=float(amount) * _SECONDS[unit])
    except (OverflowError, ValueError):
        raise BasicRuntimeError("date out of range") from None


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(total, 12)
    if not 1 <= year <= 9999:
        raise BasicRuntimeError("date out of range")
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def diff(start: datetime, end: datetime, unit: str) -> int:
    """Whole units from start to end (negative when end is earlier)."""
    if unit in ("month", "quarter", "year"):
        months = (end.year - start.year) * 12 + end.month - start.month
        return int(months / {"month": 1, "quarter": 3, "year": 12}[unit])
    if unit == "day":
        return (end.date() - start.date()).days
    seconds = (end - start).total_seconds()
    whole = int(abs(seconds) // _SECONDS[unit])
    return whole if seconds >= 0 else -whole


def weekday(moment: datetime) -> int:
    """1 = Sunday ... 7 = Saturday, as in VB."""
    return (moment.weekday() + 1) % 7 + 1


_TOKENS = re.compile(r"yyyy|YYYY|yy|YY|MMMM|MMM|MM|M|dddd|ddd|dd|DD|d|HH|H|hh|h|mm|ss|SS|tt")
_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def has_date_tokens(pattern: str) -> bool:
    return bool(re.search(r"yy|YY|MM|dd|DD|HH|hh|mm|ss", pattern))


def format_when(moment: datetime, pattern: str) -> str:
    """FORMAT with a date pattern: YYYY-MM-DD, dd/MM/yyyy, HH:mm, YYYYMMDD..."""

    def token(match: re.Match[str]) -> str:
        t = match.group()
        hour12 = moment.hour % 12 or 12
        table = {
            "yyyy": f"{moment.year:04d}",
            "yy": f"{moment.year % 100:02d}",
            "MMMM": _MONTHS[moment.month - 1],
            "MMM": _MONTHS[moment.month - 1][:3],
            "MM": f"{moment.month:02d}",
            "M": str(moment.month),
            "dddd": _DAYS[moment.weekday()],
            "ddd": _DAYS[moment.weekday()][:3],
            "dd": f"{moment.day:02d}",
            "d": str(moment.day),
            "HH": f"{moment.hour:02d}",
            "H": str(moment.hour),
            "hh": f"{hour12:02d}",
            "h": str(hour12),
            "mm": f"{moment.minute:02d}",
            "ss": f"{moment.second:02d}",
            "tt": "AM" if moment.hour < 12 else "PM",
        }
        return table.get(t, table.get(t.lower(), t))

    return _TOKENS.sub(token, pattern)


def today_text(now: datetime) -> str:
    return local_now(now).strftime("%Y-%m-%d")
