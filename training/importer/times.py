"""Timestamps of an import: a source row's time (ISO 8601, strptime format or epoch, with the mapping's time
zone) and `--as-of`, the end of the observation window."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from training.sources import SourceError


class BadTimeError(ValueError):
    """A source value that is not a timestamp in the mapping's format (the row is dropped as bad_timestamp)."""


def parse_time(raw: Any, zone: ZoneInfo | None, fmt: str | None) -> datetime:
    """A source timestamp as a datetime: aware when it says its offset or the mapping gives a time zone."""
    try:
        if fmt is None and type(raw) is str:  # the common case first: ISO 8601 text
            dt = datetime.fromisoformat(raw.strip())
        elif isinstance(raw, datetime):
            dt = raw
        elif isinstance(raw, date):
            dt = datetime(raw.year, raw.month, raw.day)
        elif fmt in ("epoch_s", "epoch_ms"):
            dt = datetime.fromtimestamp(float(raw) / (1000.0 if fmt == "epoch_ms" else 1.0), UTC)
        elif isinstance(raw, int | float):
            raise BadTimeError(f"{raw!r} is a number: set timestamp_format = 'epoch_s' or 'epoch_ms' in the mapping")
        elif fmt:
            dt = datetime.strptime(str(raw).strip(), fmt)
        else:
            dt = datetime.fromisoformat(str(raw).strip())
    except (ValueError, OverflowError, OSError) as err:
        if isinstance(err, BadTimeError):
            raise
        raise BadTimeError(f"{str(raw)[:40]!r} is not a timestamp ({fmt or 'ISO 8601'})") from None
    if dt.tzinfo is None and zone is not None:
        dt = dt.replace(tzinfo=zone)
    return dt


def parse_as_of(text: str, timezone: str | None = None) -> datetime:
    """--as-of: an ISO 8601 date or time; without an offset, in `timezone` (the mapping's) or UTC."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SourceError(
            f"--as-of {text!r}: use an ISO 8601 date or time, e.g. 2026-05-31 or 2026-05-31T23:59:59Z"
        ) from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=ZoneInfo(timezone or "UTC"))
