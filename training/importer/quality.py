"""What an import kept and dropped, by reason: `DIR/quality.json`. Nothing is dropped without being counted.

Touchpoint reasons count touchpoints (rows_kept + the touchpoint drops = touchpoints); attribute reasons
(`undeclared_attribute`, `bad_attribute`, ...) count attribute values removed from a profile that is kept.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXAMPLES = 3  # example rows kept per reason
UNKNOWN_VALUES = 20  # most frequent unknown values kept per field
PROFILE_REASONS = frozenset(
    {"undeclared_attribute", "bad_attribute", "bad_timezone", "bad_consent", "bad_quiet_hours", "bad_profile"}
)
FIX = {
    "unknown_channel": "map it in [values.channel] or declare it in [channels] (mapping or nbc.toml)",
    "unknown_event_type": "map it in [values.event_type] to one of the event types",
    "naive_timestamp": 'set timezone = "Area/City" in the mapping (or send offsets, e.g. ...Z)',
    "bad_timestamp": "ISO 8601 with an offset, or timestamp_format in the mapping",
    "missing_customer": "map [columns] customer_id to the column that identifies the customer",
    "duplicate_event_id": "the same event id twice: the first is kept",
    "undeclared_attribute": "declare it in [attributes] (mapping or nbc.toml)",
    "after_as_of": "after --as-of, the end of the observation window",
}


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def plain(val: Any) -> Any:
    """A source value as an example shows it: scalars as they are, anything else as JSON text."""
    return val if isinstance(val, int | float | bool | str) or val is None else json.dumps(val, default=str)


def shown(rec: dict[str, Any]) -> dict[str, Any]:
    """A source row as an example shows it."""
    return {k: plain(v) for k, v in rec.items()}


@dataclass
class Quality:
    sources: list[dict[str, Any]] = field(default_factory=list)
    mapping: str | None = None
    as_of: float | None = None
    rows_read: int = 0
    touchpoints: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unknown_values: dict[str, Counter[str]] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None
    customer_ids: set[str] = field(default_factory=set)
    by_type: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    profiles: int = 0
    profile_attributes: int = 0
    decisions: int = 0
    declared: dict[str, Any] = field(default_factory=dict)
    empty_columns: list[str] = field(default_factory=list)  # mapped columns without a value in any row

    def drop(self, reason: str, example: dict[str, Any] | None = None, n: int = 1) -> None:
        self.dropped[reason] += n
        shown = self.examples.setdefault(reason, [])
        if example is not None and len(shown) < EXAMPLES:
            shown.append(example)

    def unknown(self, fld: str, value: Any) -> None:
        self.unknown_values.setdefault(fld, Counter())[str(value)] += 1

    def kept(self, first: float, last: float, customers: list[str], types: Counter[str], chans: Counter[str]) -> None:
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)
        self.customer_ids.update(customers)
        self.by_type.update(types)
        self.by_channel.update(chans)

    @property
    def touchpoints_dropped(self) -> int:
        return sum(n for r, n in self.dropped.items() if r not in PROFILE_REASONS)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "mapping": self.mapping,
            "as_of": iso(self.as_of),
            "rows_read": self.rows_read,
            "touchpoints": self.touchpoints,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped.most_common()),
            "examples": self.examples,
            "unknown_values": {f: dict(c.most_common(UNKNOWN_VALUES)) for f, c in self.unknown_values.items() if c},
            "period": {"first": iso(self.first), "last": iso(self.last)},
            "customers": len(self.customer_ids),
            "events_by_type": dict(self.by_type.most_common()),
            "events_by_channel": dict(self.by_channel.most_common()),
            "profiles": self.profiles,
            "profile_attributes": self.profile_attributes,
            "decisions": self.decisions,
            "declared": self.declared,
            "empty_columns": self.empty_columns,
        }


def read(folder: str | Path) -> dict[str, Any] | None:
    """The quality.json of a data folder, if it has one."""
    path = Path(folder) / "quality.json"
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc
