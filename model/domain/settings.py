"""Settings from the environment (prefix ``NBC_``) and TOML files: names, endpoints and business rules.

Configuration files (``NBC_CONFIG``: TOML paths separated by ``os.pathsep``; default ``./nbc.toml`` when present)
declare what the environment would otherwise have to spell as JSON, and environment variables override them::

    [channels]              # channels added to the catalogue (or re-priced), with the cost of one contact
    mobile_call = 2.5
    [attributes]            # customer attributes the model may use: "numeric", "categorical" or a table
    age = "numeric"
    job = { kind = "categorical", levels = ["admin", "technician"] }
    attribution_window_days = 14    # any other top-level key is a setting of the same name

A data folder written by ``nbc import`` carries such a file (``DIR/nbc.toml``); ``nbc train`` reads it.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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


def _attribute(name: str, spec: Any) -> AttributeSpec:
    doc = {"kind": spec} if isinstance(spec, str) else dict(spec)
    return AttributeSpec.model_validate({"name": name, **doc})


def read_config(paths: list[Path]) -> dict[str, Any]:
    """Settings values declared by TOML files, in order: [channels] and [attributes] add to the defaults (a later
    declaration of the same name wins), other top-level keys are settings of that name."""
    out: dict[str, Any] = {}
    channels, costs = list(DEFAULT_CHANNELS), dict(DEFAULT_COSTS)
    attributes = {a.name: a for a in DEFAULT_ATTRIBUTES}
    declared = False
    for path in paths:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"configuration file {path}: {err}") from None
        for name, cost in (doc.pop("channels", None) or {}).items():
            channels += [] if name in channels else [name]
            costs[name] = float(cost)
            declared = True
        for name, spec in (doc.pop("attributes", None) or {}).items():
            attributes[name] = _attribute(name, spec)
            declared = True
        out.update(doc)
    if declared:
        out.update(channels=tuple(channels), channel_costs=costs, profile_attributes=list(attributes.values()))
    return out


class _ConfigFiles(PydanticBaseSettingsSource):
    """The TOML files of `config_files()` as a settings source (below the environment)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_config(config_files())


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

    # Domain configuration.
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    channel_costs: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_COSTS))
    consent_required: tuple[str, ...] = ("sms", "call_center")  # channels that need an explicit opt-in
    profile_attributes: list[AttributeSpec] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))
    default_quiet_start: str = "21:00"
    default_quiet_end: str = "08:00"
    caps: Caps = Field(default_factory=Caps)

    # Retention and learning.
    touchpoint_ttl_days: int = Field(default=400, ge=1)
    attribution_window_days: float = Field(default=7.0, gt=0)
    exploration_rate: float = Field(default=0.05, ge=0, le=1)
    holdout_share: float = Field(default=0.05, ge=0, le=1)
    model_refresh_seconds: float = Field(default=300.0, ge=0)
    default_conversion_value: float = Field(default=50.0, ge=0)

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

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("channels must be a non-empty list of unique names")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
