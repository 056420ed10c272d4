"""The configuration file's shape: channels, consent, quiet hours, caps, messages and attributes as pydantic models.

One TOML document (a file, or in AWS the text of an S3 object or SSM parameter) is parsed here into settings
values; `model.domain.settings` merges them into the defaults and lets environment variables override them.
Errors name the key: an unknown key, a bad time, an unknown channel, overlapping message dates.
"""

from __future__ import annotations

import difflib
import itertools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

ChannelKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
MessageKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@+\-]+$")]


class TimeWindow(BaseModel):
    """A daily local wall-clock window ``start``-``end`` (HH:MM, may wrap midnight; equal ends: empty)."""

    model_config = ConfigDict(extra="forbid")

    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hh_mm(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = time.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a time of day HH:MM") from None
            value = parsed
        if isinstance(value, time) and value.tzinfo is not None:
            raise ValueError("quiet hours are local times (HH:MM) in the customer's time zone: no 'Z' or offset")
        return value

    def contains(self, local: time) -> bool:
        local = local.replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class ChannelSpec(BaseModel):
    """One ``[channels.NAME]`` table. Every field is optional: what is left out keeps its default."""

    model_config = ConfigDict(extra="forbid")

    cost: float | None = Field(default=None, ge=0, description="Cost of one contact (currency of conversion value).")
    opt_in: bool | None = Field(default=None, description="True: contact only with the customer's explicit consent.")
    quiet_hours: TimeWindow | None = Field(default=None, description="This channel's quiet hours (local time).")
    enabled: bool = Field(default=True, description="False removes a default channel from the catalogue.")

    @model_validator(mode="after")
    def _disabled_alone(self) -> ChannelSpec:
        if not self.enabled and (self.cost is not None or self.opt_in is not None or self.quiet_hours is not None):
            raise ValueError("a channel with enabled = false takes no other key")
        return self


def _instant(value: Any, end_of_day: bool) -> Any:
    """A TOML date is a whole UTC day: ``valid_from`` its first instant, ``valid_until`` the next day's."""
    if isinstance(value, date) and not isinstance(value, datetime):
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("a date-time needs a time zone offset (e.g. 2026-12-01T00:00:00Z), or give a date")
    return value


class MessageSpec(BaseModel):
    """One ``[[messages]]`` entry: a message, the channels it may go out on, its cost and its dates."""

    model_config = ConfigDict(extra="forbid")

    id: MessageKey
    channels: list[ChannelKey] = Field(min_length=1)
    cost: float = Field(default=0.0, ge=0, description="Cost added to the channel's cost of each contact.")
    valid_from: datetime | None = Field(default=None, description="First instant (a date: that day 00:00 UTC).")
    valid_until: datetime | None = Field(default=None, description="End, exclusive (a date: through that day, UTC).")
    tags: list[str] = Field(default_factory=list, max_length=32)

    @field_validator("valid_from", mode="before")
    @classmethod
    def _from(cls, value: Any) -> Any:
        return _instant(value, end_of_day=False)

    @field_validator("valid_until", mode="before")
    @classmethod
    def _until(cls, value: Any) -> Any:
        return _instant(value, end_of_day=True)

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> MessageSpec:
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError(f"message {self.id!r}: valid_from must be before valid_until")
        return self

    def covers(self, ts: float) -> bool:
        """Whether the message may be sent at epoch second `ts`."""
        lo = self.valid_from.timestamp() if self.valid_from else float("-inf")
        hi = self.valid_until.timestamp() if self.valid_until else float("inf")
        return lo <= ts < hi


@dataclass(frozen=True)
class CatalogueMessage:
    """A message id with every declared entry (the same id may return in disjoint windows)."""

    id: str
    channels: tuple[str, ...]
    cost: float
    entries: tuple[MessageSpec, ...]

    def covers(self, ts: float) -> bool:
        return any(e.covers(ts) for e in self.entries)


def message_catalogue(messages: Iterable[MessageSpec], channels: Iterable[str]) -> dict[str, CatalogueMessage]:
    """Messages by id, checked: known channels; one id's entries share channels and cost, and their windows
    do not overlap. Raises ValueError naming the message."""
    known = set(channels)
    by_id: dict[str, list[MessageSpec]] = {}
    for msg in messages:
        unknown = [c for c in msg.channels if c not in known]
        if unknown:
            raise ValueError(
                f"message {msg.id!r}: unknown channel {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        by_id.setdefault(msg.id, []).append(msg)
    out = {}
    for mid, entries in by_id.items():
        first = entries[0]
        for other in entries[1:]:
            if set(other.channels) != set(first.channels) or other.cost != first.cost:
                raise ValueError(f"message {mid!r} is declared twice with different channels or cost")
        spans = sorted(
            (e.valid_from or datetime.min.replace(tzinfo=UTC), e.valid_until or datetime.max.replace(tzinfo=UTC))
            for e in entries
        )
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start < end:
                raise ValueError(
                    f"message {mid!r}: its declared dates overlap (from {start:%Y-%m-%d} before {end:%Y-%m-%d})"
                )
        out[mid] = CatalogueMessage(mid, tuple(first.channels), first.cost, tuple(entries))
    return out


# The file's own sections; any other top-level key must be a setting's name.
SECTIONS = ("channels", "attributes", "quiet_hours", "caps", "messages")


class ConfigFile(BaseModel):
    """A parsed configuration document (sections only; other top-level keys are kept as settings)."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[ChannelKey, ChannelSpec] = Field(default_factory=dict)
    attributes: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    quiet_hours: TimeWindow | None = None
    caps: dict[Literal["per_channel_day", "per_channel_week", "total_day", "total_week"], int] = Field(
        default_factory=dict
    )
    messages: list[MessageSpec] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)  # every other top-level key

    @field_validator("channels", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """``name = cost`` (the short form ``nbc import`` writes) is ``[channels.name] cost = ...``."""
        if isinstance(value, dict):
            return {
                k: {"cost": v} if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return value


def format_errors(exc: ValidationError) -> str:
    """Pydantic errors as one line each, ``key.path: message`` (an unknown key says so by name)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(dict.fromkeys(lines))


def parse_config(text: str, origin: str, setting_names: Iterable[str]) -> ConfigFile:
    """Parse and check one TOML document; raises ValueError ``origin: key: what is wrong``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{origin}: not valid TOML: {err}") from None
    names = set(setting_names) - set(SECTIONS)
    sections = {k: doc.pop(k) for k in SECTIONS if k in doc}
    unknown = [k for k in doc if k not in names]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(names | set(SECTIONS)), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{origin}: unknown key {', '.join(hints)}")
    try:
        return ConfigFile.model_validate({**sections, "settings": doc})
    except ValidationError as exc:
        raise ValueError(f"{origin}: {format_errors(exc)}") from None
