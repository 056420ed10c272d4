"""Settings from the environment (prefix ``NBC_``) and configuration files: names, endpoints and business rules.

Precedence, lowest first: the defaults below; the TOML configuration files (``NBC_CONFIG``: paths separated
by ``os.pathsep``; default ``./nbc.toml`` when present), in order; the document named by ``NBC_CONFIG_LOCATION``
in AWS (an S3 object or SSM parameter, handed over as text by ``model.adapters.config_source``); then single
environment variables (``NBC_CHANNELS=email,sms``, ``NBC_CHANNEL_COSTS='{"sms": 0.02}'``, ``NBC_CAPS__TOTAL_DAY=3``).
Tables merge into what is below them (a partial cost table re-prices only the channels it names); a channel
that ends up without a cost is an error that names it. The file's shape: `model.domain.config_file`::

    exploration_rate = 0.05          # any top-level key is the setting of that name
    [quiet_hours]                    # the default window, local time of the customer
    start = "21:00"
    end = "08:00"
    [channels]
    mobile_call = 2.5                # short form (what ``nbc import`` writes): the cost of one contact
    [channels.push]
    cost = 0.001
    opt_in = false                   # true: only with the customer's explicit consent
    quiet_hours = { start = "20:00", end = "09:00" }
    [caps]
    total_week = 5
    [[messages]]
    id = "xmas-2026"
    channels = ["email", "push"]
    cost = 0.01
    valid_from = 2026-12-01
    valid_until = 2026-12-24
    [attributes]                     # customer attributes the model may use
    job = { kind = "categorical", levels = ["admin", "technician"] }
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from model.domain.config_file import (
    CatalogueMessage,
    MessageSpec,
    TimeWindow,
    format_errors,
    message_catalogue,
    parse_config,
)

DEFAULT_CHANNELS = ("email", "sms", "push", "in_app", "web", "direct_mail", "call_center", "paid_social")
# Cost of one contact, in the same currency as conversion value.
DEFAULT_COSTS = {
    "email": 0.002,
    "sms": 0.01,
    "push": 0.001,
    "in_app": 0.0,
    "web": 0.0,
    "direct_mail": 0.6,
    "call_center": 2.5,
    "paid_social": 0.05,
}
DEFAULT_CONSENT_REQUIRED = ("sms", "call_center")


class AttributeSpec(BaseModel):
    """A declared customer attribute that the model may use as a feature."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    kind: Literal["numeric", "categorical"]
    levels: list[str] = Field(default_factory=list, max_length=64)


DEFAULT_ATTRIBUTES = [
    AttributeSpec(name="segment", kind="categorical", levels=["new", "regular", "vip", "lapsed"]),
    AttributeSpec(name="tenure_days", kind="numeric"),
    AttributeSpec(name="age_band", kind="categorical", levels=["18-24", "25-34", "35-44", "45-54", "55+"]),
]


class Caps(BaseModel):
    """Frequency caps: maximum sends per rolling window, per channel and over all channels."""

    model_config = ConfigDict(extra="forbid")

    per_channel_day: int = Field(default=1, ge=0)
    per_channel_week: int = Field(default=3, ge=0)
    total_day: int = Field(default=2, ge=0)
    total_week: int = Field(default=6, ge=0)


CONFIG_ENV = "NBC_CONFIG"


def config_files() -> list[Path]:
    """The TOML configuration files in force: ``NBC_CONFIG`` (``os.pathsep``-separated), else ./nbc.toml if any."""
    raw = os.environ.get(CONFIG_ENV)
    if raw is None:
        return [Path("nbc.toml")] if Path("nbc.toml").is_file() else []
    return [Path(p) for p in raw.split(os.pathsep) if p]


# Settings a configuration file may not set as plain keys: its sections set them, and secrets stay out of files.
_NOT_IN_FILES = {
    "channels",
    "channel_costs",
    "consent_required",
    "channel_quiet_hours",
    "profile_attributes",
    "default_quiet_start",
    "default_quiet_end",
    "api_key",
    "pseudonym_key",
}
_REMOTE: dict[str, str] = {}  # origin -> text of configuration documents handed over by an adapter (AWS)


def _attribute(name: str, spec: Any) -> AttributeSpec:
    doc = {"kind": spec} if isinstance(spec, str) else dict(spec)
    return AttributeSpec.model_validate({"name": name, **doc})


def read_config(paths: list[Path], texts: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings values declared by configuration documents, in order: the files at `paths`, then `texts`
    (origin -> TOML; default: the documents handed over by `use_config_text`). Sections merge into the
    defaults (a later declaration of the same name wins); other top-level keys are settings of that name.
    Raises ValueError naming the document and the key."""
    docs: list[tuple[str, str]] = []
    for path in paths:
        try:
            docs.append((str(path), path.read_text()))
        except OSError as err:
            raise ValueError(f"configuration file {path}: {err}") from None
    docs += list((_REMOTE if texts is None else texts).items())
    names = set(Settings.model_fields) - _NOT_IN_FILES
    out: dict[str, Any] = {}
    channels, costs = list(DEFAULT_CHANNELS), dict(DEFAULT_COSTS)
    consent = set(DEFAULT_CONSENT_REQUIRED)
    quiet: dict[str, TimeWindow] = {}
    attributes = {a.name: a for a in DEFAULT_ATTRIBUTES}
    caps: dict[str, int] = {}
    messages: dict[str, list[MessageSpec]] = {}
    declared = False
    for origin, text in docs:
        cfg = parse_config(text, origin, names)
        for name, spec in cfg.channels.items():
            declared = True
            if not spec.enabled:
                channels = [c for c in channels if c != name]
                continue
            channels += [] if name in channels else [name]
            if spec.cost is not None:
                costs[name] = spec.cost
            if spec.opt_in is not None:
                (consent.add if spec.opt_in else consent.discard)(name)
            if spec.quiet_hours is not None:
                quiet[name] = spec.quiet_hours
        for name, attr in cfg.attributes.items():
            try:
                attributes[name] = _attribute(name, attr)
            except ValueError as err:
                raise ValueError(f"{origin}: attributes.{name}: {err}") from None
            declared = True
        if cfg.quiet_hours is not None:
            out.update(default_quiet_start=cfg.quiet_hours.label()[:5], default_quiet_end=cfg.quiet_hours.label()[6:])
        caps.update({str(k): v for k, v in cfg.caps.items()})
        fresh: dict[str, list[MessageSpec]] = {}
        for msg in cfg.messages:  # a later document's entries for an id replace the earlier ones
            fresh.setdefault(msg.id, []).append(msg)
        messages.update(fresh)
        out.update(cfg.settings)
    if declared:
        out.update(
            channels=tuple(channels),
            channel_costs=costs,
            consent_required=tuple(sorted(consent)),
            channel_quiet_hours={k: v.model_dump(mode="json") for k, v in quiet.items()},
            profile_attributes=list(attributes.values()),
        )
    if caps:
        out["caps"] = caps
    if messages:
        out["messages"] = [m.model_dump(mode="json") for ms in messages.values() for m in ms]
    return out


class _ConfigFiles(PydanticBaseSettingsSource):
    """The TOML files of `config_files()` as a settings source (below the environment)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_config(config_files())


def use_config_text(text: str, origin: str) -> None:
    """Use a configuration document given as text (fetched by an adapter, e.g. from S3 or SSM) for this
    process, above the files, and re-read settings and catalogue. Raises ValueError when it does not parse."""
    parse_config(text, origin, set(Settings.model_fields) - _NOT_IN_FILES)
    previous = _REMOTE.get(origin)
    _REMOTE[origin] = text
    reload_settings()
    try:
        get_settings()  # checks the merged whole (costs of every channel, messages' channels, ...)
    except ValueError as exc:
        if previous is None:
            del _REMOTE[origin]
        else:
            _REMOTE[origin] = previous
        reload_settings()
        raise ValueError(f"{origin}: {format_errors(exc) if isinstance(exc, ValidationError) else exc}") from None


def use_config(path: str | Path) -> None:
    """Add a configuration file for this process (after those in force) and re-read settings and catalogue."""
    files = [str(p) for p in config_files() if str(p) != str(path)] + [str(path)]
    os.environ[CONFIG_ENV] = os.pathsep.join(files)
    reload_settings()


def reload_settings() -> None:
    """Forget cached settings and the channel catalogue built from them."""
    from model.domain.catalogue import catalogue  # the catalogue imports this module

    get_settings.cache_clear()
    catalogue.cache_clear()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NBC_", env_nested_delimiter="__", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, _ConfigFiles(settings_cls), file_secret_settings

    # AWS wiring: the same code talks to moto on 127.0.0.1 locally and to AWS in the cloud.
    table_name: str = "nbc"
    model_store: str = ".nbc/models"  # a local folder or s3://bucket/prefix
    aws_endpoint_url: str | None = None
    region: str = "us-east-1"
    touchpoint_queue_url: str | None = None

    # Domain configuration (what `config_hash` covers, with exploration, holdout and value below).
    channels: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CHANNELS  # env: "email,sms" or a JSON list
    channel_costs: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_COSTS))  # merged into defaults
    # Channels that need an explicit opt-in (env: "sms,call_center" or a JSON list).
    consent_required: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CONSENT_REQUIRED
    profile_attributes: list[AttributeSpec] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))
    default_quiet_start: str = "21:00"
    default_quiet_end: str = "08:00"
    channel_quiet_hours: dict[str, TimeWindow] = Field(default_factory=dict)  # replace the default per channel
    caps: Caps = Field(default_factory=Caps)
    messages: list[MessageSpec] = Field(default_factory=list)  # the message catalogue; empty: none declared

    # Retention and learning.
    touchpoint_ttl_days: int = Field(default=400, ge=1)
    attribution_window_days: float = Field(default=7.0, gt=0)
    exploration_rate: float = Field(default=0.05, ge=0, le=1)
    holdout_share: float = Field(default=0.05, ge=0, le=1)
    # Width (sd, hours) of the send-time smoothing of the model's predictions (model.domain.send_time); 0: off.
    send_time_smoothing_hours: float = Field(default=1.0, ge=0, le=12)
    model_refresh_seconds: float = Field(default=300.0, ge=0)
    default_conversion_value: float = Field(default=50.0, ge=0)
    # What one click / visit is worth (currency): click and visit models weigh a contact's cost against the
    # outcomes it adds at this rate (model.domain.objective).
    click_value: float = Field(default=1.0, gt=0)
    visit_value: float = Field(default=2.0, gt=0)

    # Local server auth: requests must carry it in x-api-key when set.
    api_key: SecretStr | None = None

    # Keyed pseudonyms of customer ids in logs (HMAC-SHA256): the key itself, or (in AWS) the name of the SSM
    # SecureString parameter that holds it. Neither: a random key per process, with a warning.
    pseudonym_key: SecretStr | None = None
    pseudonym_key_parameter: str | None = None

    # Time budget of every AWS call (model/adapters/aws.py): short, so that a frozen store fails fast. The embedded
    # local AWS (moto in this process, sharing its GIL) raises the read timeout: see nbc/local/aws.py.
    aws_connect_timeout: float = Field(default=1.0, gt=0, le=10)
    aws_read_timeout: float = Field(default=2.0, gt=0, le=60)

    _catalogue: dict[str, CatalogueMessage] = PrivateAttr(default_factory=dict)

    @field_validator("channels", "consent_required", mode="before")
    @classmethod
    def _name_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # the environment: a JSON list or comma-separated names
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [n.strip() for n in text.split(",") if n.strip()]
        return value

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("channels must be a non-empty list of unique names")
        return value

    @field_validator("channel_costs", mode="before")
    @classmethod
    def _merge_costs(cls, value: Any) -> Any:
        return {**DEFAULT_COSTS, **value} if isinstance(value, dict) else value

    @field_validator("channel_costs")
    @classmethod
    def _costs_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not v >= 0]
        if bad:
            raise ValueError(f"the cost of a contact must be >= 0: {', '.join(bad)}")
        return value

    @field_validator("default_quiet_start", "default_quiet_end")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        TimeWindow.model_validate({"start": value, "end": value})  # raises naming the bad time
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        missing = [c for c in self.channels if c not in self.channel_costs]
        if missing:
            raise ValueError(
                f"no cost for channel {', '.join(missing)}: declare [channels.{missing[0]}] cost = ... in the "
                "configuration file or add it to NBC_CHANNEL_COSTS"
            )
        unknown = [c for c in self.channel_quiet_hours if c not in self.channels]
        if unknown:
            raise ValueError(f"quiet hours for unknown channel {', '.join(unknown)}")
        self._catalogue = message_catalogue(self.messages, self.channels)
        return self

    def cost_of(self, channel: str) -> float:
        """The cost of one contact on `channel` (every catalogue channel has one: checked at load)."""
        try:
            return self.channel_costs[channel]
        except KeyError:
            raise ValueError(f"no cost configured for channel {channel!r}") from None

    def quiet_window(self, channel: str) -> TimeWindow | None:
        """The channel's own quiet hours, or None: the default (or the customer's) applies."""
        return self.channel_quiet_hours.get(channel)

    @property
    def default_quiet(self) -> TimeWindow:
        return TimeWindow.model_validate({"start": self.default_quiet_start, "end": self.default_quiet_end})

    @property
    def message_catalogue(self) -> dict[str, CatalogueMessage]:
        """Declared messages by id (empty: no catalogue, any message id is accepted)."""
        return self._catalogue

    def domain_config(self) -> dict[str, Any]:
        """What decides which contact is made and what it costs: the part of the settings a model's manifest
        fingerprints (endpoints, timeouts and secrets are not in it)."""
        return {
            "channels": list(self.channels),
            "costs": {c: self.channel_costs[c] for c in self.channels},
            "consent_required": sorted(c for c in self.consent_required if c in self.channels),
            "quiet_hours": self.default_quiet.label(),
            "channel_quiet_hours": {c: w.label() for c, w in sorted(self.channel_quiet_hours.items())},
            "caps": self.caps.model_dump(),
            "messages": [m.model_dump(mode="json") for m in self.messages],
            "attributes": [a.model_dump() for a in self.profile_attributes],
            "exploration_rate": self.exploration_rate,
            "holdout_share": self.holdout_share,
            "send_time_smoothing_hours": self.send_time_smoothing_hours,
            "default_conversion_value": self.default_conversion_value,
            "click_value": self.click_value,
            "visit_value": self.visit_value,
            "attribution_window_days": self.attribution_window_days,
        }

    def config_hash(self) -> str:
        """Fingerprint of `domain_config` (16 hex digits): equal hashes, same rules and costs."""
        blob = json.dumps(self.domain_config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
