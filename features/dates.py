"""One reader of date columns, for the importer and for validation.

A column of text dates is read value by value, each as a calendar day:

- ISO dates (``2024-04-03``, with or without a time) as they are;
- year first with slashes or dots (``2024/04/03``);
- day and month as numbers (``03/04/2024``, ``3.4.24``, ``03-04-2024 10:15``): whether the day or
  the month comes first is decided once for the whole column, from the rows that tell
  (``25/04/2024`` can only be day first, ``04/25/2024`` only month first) or from the user's
  setting; a column where no row tells, or where rows tell both ways, is refused;
- a few spelled-out forms (``03-Apr-2024``, ``3 April 2024``, ``April 3, 2024``, ``20240403``).

A time of day is ignored, and so is a time zone after it: the day is the day as written (an order
entered at 23:30 in Shanghai is on that day, whatever the offset). A value none of these read is
missing (NaT), for the caller to report.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pandas as pd

from features.errors import DataError

# day and month as numbers with one separator used twice, then a 2- or 4-digit year
_DAY_MONTH = re.compile(r"^(?P<first>\d{1,2})(?P<sep>[/.\-])(?P<second>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})(?!\d)")
_YEAR_FIRST = re.compile(r"^(?P<year>\d{4})[/.](?P<month>\d{1,2})[/.](?P<day>\d{1,2})(?!\d)")
# a time zone after a time of day: Z, UTC/GMT or an offset such as +08:00, -0500, +01
_TIME_ZONE = re.compile(r"(?<=\d)\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_HAS_TIME = re.compile(r"\d{1,2}:\d{2}")
_SPELLED = ("%d-%b-%Y", "%d-%b-%y", "%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%Y%m%d")


def read_dates(values: pd.Series, *, label: str, setting: str, dayfirst: bool | None = None, notes: list[str] | None = None) -> pd.Series:
    """Calendar days from a column of dates stored as text, dates or timestamps.

    Args:
        values: the column as read.
        label: what the column is, for messages ("table invoices, column issued_at").
        setting: how the user says the day/month order ("--dayfirst or --monthfirst").
        dayfirst: the user's setting for dates like 03/04/2024; None: decided from the rows.
        notes: what was decided for the column is appended here (day/month order, time zones).

    Returns:
        ``datetime64[us]`` days at midnight, NaT where a value is empty or cannot be read.

    Raises:
        DataError: day and month cannot be told apart in the column (no row tells, or rows tell both ways).
    """
    said = notes if notes is not None else []
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) is not None else values
        return out.dt.normalize().astype("datetime64[us]")
    text = values.map(_as_text, na_action="ignore").astype("string").str.strip()
    text = text.mask(text == "", pd.NA)
    distinct = pd.Series(text.dropna().unique(), dtype="string")
    if distinct.empty:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    zoned = distinct.str.contains(_HAS_TIME) & distinct.str.contains(_TIME_ZONE)
    if zoned.any():
        said.append(f"{label}: time zones dropped (e.g. {distinct[zoned].iloc[0]!r}): each date is the day as written")
        distinct = distinct.where(~zoned, distinct.str.replace(_TIME_ZONE, "", regex=True))
    days = _read_distinct(distinct, label=label, setting=setting, dayfirst=dayfirst, notes=said)
    lookup = dict(zip(pd.Series(text.dropna().unique(), dtype="string"), days, strict=True))
    return pd.to_datetime(text.map(lookup), errors="coerce").astype("datetime64[us]")


def _as_text(value: object) -> object:
    """A date or datetime object as ISO text (its own wall-clock day, time zone or not)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _read_distinct(text: pd.Series, *, label: str, setting: str, dayfirst: bool | None, notes: list[str]) -> pd.Series:
    """Each distinct value of a column as a day (NaT where unreadable), in ``text``'s order."""
    days = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
    numeric = text.str.extract(_DAY_MONTH)
    is_numeric = numeric["first"].notna()
    if is_numeric.any():
        first, second = numeric["first"].astype(float), numeric["second"].astype(float)
        order = _day_first(text, first, second, is_numeric, label=label, setting=setting, dayfirst=dayfirst, notes=notes)
        day, month = (first, second) if order else (second, first)
        days = days.where(~is_numeric, _from_parts(_full_year(numeric["year"]), month, day))
    year_first = text.str.extract(_YEAR_FIRST)
    is_year_first = year_first["year"].notna() & ~is_numeric
    if is_year_first.any():
        parts = year_first.astype(float)
        days = days.where(~is_year_first, _from_parts(parts["year"], parts["month"], parts["day"]))
    rest = ~is_numeric & ~is_year_first
    if rest.any():
        days = days.where(~rest, _iso_or_spelled(text[rest]))
    return days.dt.normalize()


def _day_first(
    text: pd.Series, first: pd.Series, second: pd.Series, numeric: pd.Series, *, label: str, setting: str, dayfirst: bool | None, notes: list[str]
) -> bool:
    """Whether dates like 03/04/2024 are day first in this column: the setting, else what the rows tell."""
    if dayfirst is not None:
        return dayfirst
    only_day_first = numeric & (first > 12) & (second <= 12)
    only_month_first = numeric & (second > 12) & (first <= 12)
    if only_day_first.any() and only_month_first.any():
        raise DataError(
            f"{label}: the dates mix day first (e.g. {text[only_day_first].iloc[0]!r}) and month first "
            f"(e.g. {text[only_month_first].iloc[0]!r}): write them as YYYY-MM-DD, or say which with {setting} "
            "(the others are then reported as dates that cannot be parsed)"
        )
    if only_day_first.any() or only_month_first.any():
        day_first = bool(only_day_first.any())
        example = text[only_day_first if day_first else only_month_first].iloc[0]
        notes.append(f"{label}: dates read {'day' if day_first else 'month'} first, as {example!r} shows ({setting} to say otherwise)")
        return day_first
    example = text[numeric].iloc[0]
    raise DataError(
        f"{label}: dates like {example!r} could be day or month first and no row tells which: "
        f"say {setting}, or write the dates as YYYY-MM-DD"
    )


def _full_year(year: pd.Series) -> pd.Series:
    """Two-digit years as strptime's %y reads them (69-99: 1900s, 00-68: 2000s)."""
    number = year.astype(float)
    short = year.str.len() == 2
    return number.where(~short, number + 1900 + 100 * (number < 69))


def _from_parts(year: pd.Series, month: pd.Series, day: pd.Series) -> pd.Series:
    """Days from numeric parts; NaT where they make no calendar day (31/02, month 13)."""
    parts = pd.DataFrame({"year": year, "month": month, "day": day})
    valid = parts.notna().all(axis=1)
    out = pd.Series(pd.NaT, index=year.index, dtype="datetime64[us]")
    if valid.any():
        out[valid] = pd.to_datetime(parts[valid].astype(int), errors="coerce")
    return out


def _iso_or_spelled(text: pd.Series) -> pd.Series:
    """ISO dates and times, else the first spelled-out form that reads the value."""
    out = pd.to_datetime(text, format="ISO8601", errors="coerce").astype("datetime64[us]")
    for fmt in _SPELLED:
        missing = out.isna()
        if not missing.any():
            break
        out = out.where(~missing, pd.to_datetime(text[missing], format=fmt, exact=False, errors="coerce"))
    return out
