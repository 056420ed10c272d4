"""Pydantic models of the domain: what crosses every boundary (HTTP, SQS, DynamoDB, files)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from model.domain.catalogue import catalogue
from model.domain.config_file import TimeWindow
from model.domain.settings import get_settings

# Ids: safe characters, never padded with whitespace (rejected, not stripped), and at least one character that is
# not a dot, so that `.` and `..` (path segments in URLs) are never ids.
ID_PATTERN = r"^[A-Za-z0-9._:@+\-]*[A-Za-z0-9_:@+\-][A-Za-z0-9._:@+\-]*$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
AttrKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


def storable(value: float) -> float:
    """The one range check of every client-supplied number that reaches DynamoDB (touchpoint values and
    attributes, profile attributes): finite, and 0 or a magnitude in 1e-100..1e100, well inside DynamoDB's
    1e-130..1e125 with 38 digits."""
    if not math.isfinite(value):
        raise ValueError("number must be finite (no NaN or Infinity)")
    if value != 0 and not 1e-100 <= abs(value) <= 1e100:
        raise ValueError("number out of range: use 0 or a magnitude between 1e-100 and 1e100")
    return value


def json_number(value: Any) -> Any:
    """Strict numbers: `true`/`false` and strings are not numbers (pydantic's lax mode would take them)."""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON number (true, false and strings are not numbers)")
    return value


StrictNumber = Annotated[float, BeforeValidator(json_number)]
StrictInt = Annotated[int, BeforeValidator(json_number)]
StorableNumber = Annotated[float, BeforeValidator(json_number), AfterValidator(storable)]

AttrValue = (
    Annotated[str, StringConstraints(max_length=256)]
    | StorableNumber
    | Annotated[int, Field(ge=-(10**18), le=10**18), BeforeValidator(json_number)]
    | bool
)

MAX_FUTURE_SKEW = timedelta(days=1)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


class EventType(StrEnum):
    sent = "sent"
    delivered = "delivered"
    opened = "opened"
    clicked = "clicked"
    visited = "visited"
    converted = "converted"
    bounced = "bounced"
    complained = "complained"
    unsubscribed = "unsubscribed"
    subscribed = "subscribed"


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)
EVENT_INDEX: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES)}


def _check_channel(value: str) -> str:
    catalogue().code(value)  # raises ValueError with the list of known channels
    return value


def _channel_enum(schema: dict[str, Any]) -> None:
    """OpenAPI: a channel field lists the configured catalogue (read when the schema is generated)."""
    schema["enum"] = list(catalogue().names)


def channel_keys(schema: dict[str, Any]) -> None:
    """OpenAPI: an object keyed by channel (consent, messages) lists the catalogue as its property names."""
    schema["propertyNames"] = {"enum": list(catalogue().names)}
    for variant in schema.get("anyOf", []):  # `... | None`: the object variant
        if variant.get("type") == "object":
            variant["propertyNames"] = schema.pop("propertyNames")


# A channel name: the OpenAPI schema lists the catalogue; validation names the known channels on a miss.
ChannelName = Annotated[str, Field(max_length=32, json_schema_extra=_channel_enum), AfterValidator(_check_channel)]


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must include a timezone offset, e.g. 2026-11-23T09:30:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 or 0001-01-01T00:00+14:00: no UTC instant exists
        raise ValueError("timestamp out of range once converted to UTC") from None


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    """The IANA time zone keys (from the tzdata package, a dependency), minus `Factory`. System-only names such as
    `localtime` or `posixrules` are files of /usr/share/zoneinfo, not zones: ZoneInfo loads them, this refuses them."""
    try:
        names = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - tzdata is a dependency
        names = sorted(available_timezones() - {"localtime", "posixrules", "posix", "right"})
    return frozenset(names) - {"Factory"}


class Touchpoint(BaseModel):
    """One customer touchpoint sent by a marketing system (ESP, SMS gateway, tracker, store)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id = Field(description="Client-supplied idempotency key: the same id twice stores one item.")
    customer_id: Id
    channel: ChannelName
    event_type: EventType
    occurred_at: datetime = Field(description="ISO-8601 with a timezone offset; naive timestamps are rejected.")
    campaign_id: Id | None = None
    message_id: Id | None = None
    decision_id: Id | None = Field(default=None, description="The recommendation that chose this send.")
    value: StrictNumber = Field(default=0.0, ge=0, le=1e9, description="Revenue of a conversion (>= 0).")
    attributes: dict[AttrKey, AttrValue] = Field(default_factory=dict, max_length=20)

    @field_validator("occurred_at", mode="after")
    @classmethod
    def _occurred_at(cls, value: datetime) -> datetime:
        value = _aware_utc(value)
        if value < EARLIEST:
            raise ValueError("occurred_at is before 2000-01-01")
        if value > datetime.now(UTC) + MAX_FUTURE_SKEW:
            raise ValueError("occurred_at is more than one day in the future")
        return value

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        return storable(value)


# The configuration's window (parsing, `contains`, `label`), with the API's descriptions.
class QuietHours(TimeWindow):
    """A daily window in the customer's local time during which nobody is contacted (may wrap midnight)."""

    start: time = Field(description="Local wall-clock time HH:MM, without a timezone suffix.")
    end: time = Field(description="Local wall-clock time HH:MM, without a timezone suffix.")


def default_quiet_hours() -> QuietHours:
    s = get_settings()
    return QuietHours(start=time.fromisoformat(s.default_quiet_start), end=time.fromisoformat(s.default_quiet_end))


class Profile(BaseModel):
    """What the marketer declares about a customer: time zone, consent, quiet hours, attributes."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone, e.g. Europe/Paris.")
    consent: dict[str, bool] = Field(
        default_factory=dict, description="Per-channel consent.", json_schema_extra=channel_keys
    )
    quiet_hours: QuietHours | None = Field(default=None, description="Defaults to the configured window.")
    attributes: dict[str, Annotated[str, StringConstraints(max_length=256)] | StorableNumber] = Field(
        default_factory=dict, max_length=64
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value not in iana_zones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("consent")
    @classmethod
    def _consent_channels(cls, value: dict[str, bool]) -> dict[str, bool]:
        for name in value:
            _check_channel(name)
        return value

    @model_validator(mode="after")
    def _declared_attributes(self) -> Profile:
        specs = {a.name: a for a in get_settings().profile_attributes}
        for name, val in self.attributes.items():
            spec = specs.get(name)
            if spec is None:
                raise ValueError(f"attribute {name!r} is not declared; declared: {', '.join(specs) or 'none'}")
            if spec.kind == "numeric":
                if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val):
                    raise ValueError(f"attribute {name!r} must be a finite number")
            elif not isinstance(val, str):
                raise ValueError(f"attribute {name!r} must be a string (one of {spec.levels})")
            elif spec.levels and val not in spec.levels:
                raise ValueError(f"attribute {name!r} must be one of {', '.join(spec.levels)}; got {val!r}")
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def quiet(self) -> QuietHours:
        return self.quiet_hours or default_quiet_hours()

    def has_consent(self, channel: str) -> bool:
        """Explicit consent wins; otherwise channels that need an opt-in are closed, the rest open."""
        if channel in self.consent:
            return self.consent[channel]
        return channel not in get_settings().consent_required


def error_list(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "a.b", "reason": "..."}`` for client-facing responses."""
    out = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(body)"
        out.append({"field": loc, "reason": str(err.get("msg", "invalid"))})
    return out
