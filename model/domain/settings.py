"""Settings from the environment (prefix ``NBC_``): names, endpoints and business rules, never hard-coded."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NBC_", env_nested_delimiter="__", extra="ignore")

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

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("channels must be a non-empty list of unique names")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
