"""The column mapping of `nbc import --mapping FILE`: a TOML file read with the standard library.

    timezone = "Europe/Lisbon"          # for naive timestamps; without it naive timestamps are rejected
    timestamp_format = "%d/%m/%Y %H:%M" # optional: strptime pattern, "epoch_s" or "epoch_ms" (default ISO 8601)
    [columns]                           # project field = source column
    customer_id = "cust"
    occurred_at = "ts"
    channel = "medium"
    event_type = "outcome"
    value = "amount"
    [constants]                         # project field = the same value on every row
    campaign_id = "spring-2026"
    [values.channel]                    # source value = project value (values not listed pass unchanged)
    telephone = "call_center"
    [values.event_type]
    yes = "converted"
    [attributes]                        # profile attributes taken from columns, with their kind
    age = "numeric"
    job = "categorical"                 # or { kind = "categorical", column = "Job", levels = [...] }
    [channels]                          # channels added to the catalogue for this data, with their cost
    mobile_call = 2.5
    [[derive]]                          # rows that produce several touchpoints: one rule per touchpoint
    event_type = "sent"                 #   every row is a send ...
    [[derive]]
    event_type = "converted"            #   ... and rows whose y is "yes" also a conversion one day later
    when = { column = "y", in = ["yes"] }
    offset = "1d"
    value = "amount"                    #   a column, or a number

Without a mapping the source uses the project's own field names (see `default_mapping`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from model.domain.schemas import EVENT_TYPES
from model.domain.settings import AttributeSpec
from training.sources import SourceError

TOUCHPOINT_COLUMNS = (
    "event_id",
    "customer_id",
    "channel",
    "event_type",
    "occurred_at",
    "campaign_id",
    "message_id",
    "decision_id",
    "value",
    "attributes",
)
# Fields a mapping may fill: the touchpoint's, plus the customer's time zone (a profile field).
FIELDS = (*TOUCHPOINT_COLUMNS, "timezone")
REQUIRED = ("customer_id", "occurred_at", "channel", "event_type")
TOP_LEVEL = ("timezone", "timestamp_format", "columns", "constants", "values", "attributes", "channels", "derive")
_OFFSET = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class MappingError(SourceError):
    """The mapping file is missing, not TOML, or declares something the importer cannot use."""


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: str  # numeric | categorical
    column: str
    levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Derive:
    """One touchpoint made from each source row that meets `when` (all rows when `when_column` is None)."""

    event_type: str
    when_column: str | None = None
    when_in: tuple[str, ...] = ()
    when_not_in: tuple[str, ...] = ()
    offset_seconds: float = 0.0
    value: str | float | None = None  # a source column or a number; None: the mapped value column (conversions)
    channel: str | None = None  # a project channel instead of the row's


@dataclass(frozen=True)
class Mapping:
    columns: dict[str, str]  # project field -> source column
    constants: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    attributes: tuple[Attribute, ...] = ()
    channels: dict[str, float] = field(default_factory=dict)
    derive: tuple[Derive, ...] = ()
    timezone: str | None = None
    timestamp_format: str | None = None
    path: str | None = None

    def source_columns(self) -> list[str]:
        """Every source column the mapping reads (each once, in a stable order)."""
        cols = list(self.columns.values()) + [a.column for a in self.attributes]
        for rule in self.derive:
            if rule.when_column:
                cols.append(rule.when_column)
            if isinstance(rule.value, str):
                cols.append(rule.value)
        return list(dict.fromkeys(cols))

    def uses(self) -> dict[str, str]:
        """source column -> what the mapping takes from it (for messages)."""
        out: dict[str, str] = {}
        for fld, col in self.columns.items():
            out.setdefault(col, fld)
        for a in self.attributes:
            out.setdefault(a.column, f"attribute {a.name}")
        for i, rule in enumerate(self.derive):
            if rule.when_column:
                out.setdefault(rule.when_column, f"[[derive]] rule {i + 1}")
            if isinstance(rule.value, str):
                out.setdefault(rule.value, f"[[derive]] rule {i + 1} value")
        return out

    def required_columns(self) -> dict[str, str]:
        """source column -> the project field it fills, for the fields a touchpoint cannot do without."""
        return {self.columns[f]: f for f in REQUIRED if f in self.columns}

    def declarations(self) -> dict[str, Any]:
        """The [channels] and [attributes] this mapping adds to the configuration."""
        return {
            "channels": dict(self.channels),
            "attributes": {a.name: {"kind": a.kind, "levels": list(a.levels)} for a in self.attributes},
        }


def default_mapping() -> Mapping:
    """The project's own field names (what `nbc import` uses without --mapping)."""
    return Mapping(columns={f: f for f in TOUCHPOINT_COLUMNS})


def _fail(path: str, message: str) -> MappingError:
    return MappingError(f"mapping {path}: {message}")


def _table(doc: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    val = doc.get(key, {})
    if not isinstance(val, dict):
        raise _fail(path, f"[{key}] must be a table")
    return val


def _fields(table: dict[str, Any], section: str, path: str) -> None:
    bad = [k for k in table if k not in FIELDS]
    if bad:
        raise _fail(path, f"[{section}] has unknown field(s) {', '.join(bad)}; fields: {', '.join(FIELDS)}")


def parse_offset(raw: Any, path: str = "") -> float:
    """'1d', '36h', '30m', '15s' or a number of seconds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    m = _OFFSET.match(str(raw))
    if not m:
        raise _fail(path, f"offset {raw!r}: use a number of seconds or e.g. '15m', '36h', '1d'")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _derive(i: int, rule: Any, path: str) -> Derive:
    if not isinstance(rule, dict):
        raise _fail(path, f"[[derive]] rule {i + 1} must be a table")
    unknown = set(rule) - {"event_type", "when", "offset", "value", "channel"}
    if unknown:
        raise _fail(path, f"[[derive]] rule {i + 1}: unknown key(s) {', '.join(sorted(unknown))}")
    event_type = rule.get("event_type")
    if event_type not in EVENT_TYPES:
        raise _fail(path, f"[[derive]] rule {i + 1}: event_type must be one of {', '.join(EVENT_TYPES)}")
    when = rule.get("when")
    col: str | None = None
    inside: tuple[str, ...] = ()
    outside: tuple[str, ...] = ()
    if when is not None:
        if not isinstance(when, dict) or not isinstance(when.get("column"), str):
            raise _fail(path, f'[[derive]] rule {i + 1}: when = {{ column = "...", in = [...] }}')
        col = when["column"]
        extra = set(when) - {"column", "in", "not_in", "equals"}
        if extra:
            raise _fail(path, f"[[derive]] rule {i + 1}: when takes column with in, not_in or equals")
        listed = [when["equals"]] if "equals" in when else when.get("in", [])
        inside = tuple(str(v) for v in listed)
        outside = tuple(str(v) for v in when.get("not_in", []))
    value = rule.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
        raise _fail(path, f"[[derive]] rule {i + 1}: value is a source column name or a number")
    return Derive(
        event_type=event_type,
        when_column=col,
        when_in=inside,
        when_not_in=outside,
        offset_seconds=parse_offset(rule.get("offset", 0), path),
        value=float(value) if isinstance(value, int | float) else value,
        channel=rule.get("channel"),
    )


def _attributes(table: dict[str, Any], path: str) -> tuple[Attribute, ...]:
    out = []
    for name, spec in table.items():
        doc: dict[str, Any] = {"kind": spec} if isinstance(spec, str) else dict(spec) if isinstance(spec, dict) else {}
        column = doc.pop("column", name)
        try:
            checked = AttributeSpec.model_validate({"name": name, **doc})
        except ValueError as err:
            first = err.errors()[0] if hasattr(err, "errors") else {"msg": str(err)}
            raise _fail(
                path,
                f'[attributes] {name}: {first.get("msg")} (a lower-case name, kind = "numeric" or "categorical")',
            ) from None
        out.append(Attribute(name, checked.kind, str(column), tuple(checked.levels)))
    return tuple(out)


def parse(doc: dict[str, Any], path: str = "<mapping>") -> Mapping:
    unknown = [k for k in doc if k not in TOP_LEVEL]
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}; a mapping has {', '.join(TOP_LEVEL)}")
    tz = doc.get("timezone")
    if tz is not None:
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise _fail(path, f"unknown IANA time zone {tz!r} (e.g. Europe/Lisbon, UTC)") from None
    columns = {k: str(v) for k, v in _table(doc, "columns", path).items()}
    constants = dict(_table(doc, "constants", path))
    _fields(columns, "columns", path)
    _fields(constants, "constants", path)
    values: dict[str, dict[str, str]] = {}
    for fld, table in _table(doc, "values", path).items():
        if fld not in FIELDS or not isinstance(table, dict):
            raise _fail(path, f"[values.{fld}]: a table of source value = project value for one of the fields")
        values[fld] = {str(k): str(v) for k, v in table.items()}
    channels = {}
    for name, cost in _table(doc, "channels", path).items():
        if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
            raise _fail(path, f"[channels] {name} = cost of one contact (a number >= 0)")
        channels[str(name)] = float(cost)
    rules = doc.get("derive", [])
    if not isinstance(rules, list):
        raise _fail(path, "derive rules are written [[derive]] (an array of tables)")
    derive = tuple(_derive(i, r, path) for i, r in enumerate(rules))
    for fld in REQUIRED:
        if fld == "event_type" and derive:
            continue
        if fld not in columns and fld not in constants:
            hint = " or [[derive]] rules" if fld == "event_type" else ""
            raise _fail(path, f"{fld} is needed: map a column ([columns] {fld} = ...), a [constants] value{hint}")
    fmt = doc.get("timestamp_format")
    return Mapping(
        columns=columns,
        constants=constants,
        values=values,
        attributes=_attributes(_table(doc, "attributes", path), path),
        channels=channels,
        derive=derive,
        timezone=str(tz) if tz is not None else None,
        timestamp_format=str(fmt) if fmt is not None else None,
        path=path,
    )


def load(path: str | Path) -> Mapping:
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise MappingError(f"mapping {p}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise MappingError(f"mapping {p}: not valid TOML ({err})") from None
    return parse(doc, str(p))
