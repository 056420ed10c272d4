"""Pydantic models of the scoring API: recommendation requests, responses, and the decision log item."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from model.domain.catalogue import catalogue, check_messages
from model.domain.manifest import Unsupported
from model.domain.schemas import ID_PATTERN, ChannelName, Id, StrictInt, channel_keys
from model.domain.settings import get_settings
from model.domain.value import ValuePrior

MAX_BATCH = 1000
MAX_MESSAGES = 20


def _message_enum(schema: dict[str, Any]) -> None:
    """OpenAPI: with a message catalogue declared, a message id lists its ids (read when the schema is generated)."""
    listed = get_settings().message_catalogue
    if listed:
        schema["enum"] = sorted(listed)


MessageId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN), Field(json_schema_extra=_message_enum)
]
NONE_CHANNEL = "none"  # "don't contact now"
EARLIEST_NOW = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(2100, 1, 1, tzinfo=UTC)


class Policy(StrEnum):
    model = "model"  # the model's best expected value
    explore = "explore"  # a uniform draw among allowed candidates (exploration)
    holdout = "holdout"  # never contacted: the arm the measured uplift is taken against
    # Older versions logged cold starts as a policy of their own; kept so their decision logs still read.
    # A cold start is now the `cold_start` flag beside the policy (model, explore or holdout alike).
    cold_start = "cold_start"
    fallback = "fallback"  # no usable model: a transparent heuristic


DEFAULT_HORIZON_HOURS = 48  # a request's default, and the horizon offline evaluation uses


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: Id
    channels: list[ChannelName] | None = Field(
        default=None, min_length=1, max_length=64, description="Candidate channels (default: the whole catalogue)."
    )
    messages: dict[str, Annotated[list[MessageId], Field(min_length=1, max_length=MAX_MESSAGES)]] | None = Field(
        default=None,
        max_length=64,
        description="Candidate message ids per channel (default: the model's messages).",
        json_schema_extra=channel_keys,
    )
    horizon_hours: StrictInt = Field(
        default=DEFAULT_HORIZON_HOURS, ge=1, le=168, description="Hourly send slots, from the next hour."
    )
    k: StrictInt = Field(default=3, ge=1, le=20, description="How many ranked recommendations to return.")
    now: AwareDatetime | None = Field(default=None, description="Decision instant (default: the clock), for replays.")

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for name in value:
            catalogue().code(name)  # ValueError names the known channels
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value

    @field_validator("messages")
    @classmethod
    def _message_channels(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for name, ids in (value or {}).items():
            catalogue().code(name)
            if len(set(ids)) != len(ids):
                raise ValueError(f"messages of {name} must not repeat")
            check_messages(name, ids)  # with a message catalogue: known ids, on their channels
        return value

    @field_validator("now")
    @classmethod
    def _now_range(cls, value: datetime | None) -> datetime | None:
        if value is not None and not EARLIEST_NOW <= value <= LATEST_NOW:
            raise ValueError("now must lie between 2000-01-01 and 2100-01-01")
        return value.astimezone(UTC) if value is not None else None

    @model_validator(mode="after")
    def _messages_within_channels(self) -> RecommendationRequest:
        if self.channels is not None and self.messages:
            extra = sorted(set(self.messages) - set(self.channels))
            if extra:
                raise ValueError(f"messages given for channels not requested: {', '.join(extra)}")
        return self


class Reason(BaseModel):
    kind: str = Field(
        default="feature",
        description="channel | hour | message: why this choice over the contrast (`versus`); "
        "rules: what the rules left; heuristic: the fallback's one signal.",
    )
    feature: str = Field(description="The model feature behind the reason ('expected_value' for the totals).")
    description: str = Field(description="The feature in plain words.")
    contribution: float = Field(
        description="Log-odds: for a contrastive reason, this feature's contribution to this recommendation's "
        "score minus its contribution to the contrast's (positive: it favours this recommendation)."
    )
    text: str = Field(default="", description="The reason in plain words, with the customer's numbers.")
    value: float | None = Field(default=None, description="The feature's value for this recommendation.")
    versus: str | None = Field(default=None, description="The contrast: the runner-up channel, hour or message.")
    versus_value: float | None = Field(default=None, description="The feature's value for the contrast.")


class Recommendation(BaseModel):
    channel: str = Field(description=f"A catalogue channel, or {NONE_CHANNEL!r}: don't contact now.")
    send_at: datetime | None = Field(default=None, description="Send instant (UTC).")
    send_at_local: str | None = Field(default=None, description="The same instant in the customer's time zone.")
    message_id: str | None = None
    p_convert: float = Field(ge=0, le=1)
    expected_value: float
    reasons: list[Reason] = Field(default_factory=list)
    why: str | None = Field(
        default=None,
        description=f"For {NONE_CHANNEL!r} only: 'holdout', 'no positive expected value', or the rules that "
        "blocked every candidate (their trace labels, e.g. 'quiet_hours: 22:00-07:00; cap: email 1/day').",
    )
    next_allowed_at: datetime | None = Field(
        default=None,
        description=f"For {NONE_CHANNEL!r} only: the first hourly send slot (UTC) at which some candidate "
        "passes the rules, searched up to 7 days ahead; null when none does (or in the holdout).",
    )


class RuleCount(BaseModel):
    rule: str = Field(description="no_consent | opted_out | quiet_hours | cap | message_window")
    label: str = Field(description="e.g. 'no_consent: sms', 'quiet_hours: 22:00-07:00', 'cap: email 3/week'.")
    excluded: int = Field(ge=0, description="Candidates this rule excluded (after the rules before it).")


class RuleTrace(BaseModel):
    candidates: int = Field(ge=0, description="channel x slot x message combinations considered")
    allowed: int = Field(ge=0, description="candidates left after the hard rules")
    positive: int = Field(ge=0, description="allowed candidates with a positive expected value")
    excluded: list[RuleCount] = Field(default_factory=list)


class RecommendationResponse(BaseModel):
    decision_id: str
    customer_id: str
    model_version: str | None = Field(description="The model version that scored, null for the heuristic.")
    policy: Policy
    cold_start: bool = Field(
        default=False, description="Little or no history: scored at population level (given the profile)."
    )
    propensity: float = Field(ge=0, le=1, description="Probability that this policy returns this first choice.")
    recommendations: list[Recommendation]
    rule_trace: RuleTrace


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[RecommendationRequest] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResponse(BaseModel):
    results: list[RecommendationResponse]


class ModelInfo(BaseModel):
    model_version: str | None
    kind: str = Field(description="compiled | lightgbm | heuristic")
    loaded_at: datetime | None
    checked_at: datetime | None
    features: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    objective: str | None = Field(
        default=None,
        description="What the model predicts: click, visit or conversion probabilities, or value; expected values "
        "are in its units (null: the heuristic, conversion).",
    )
    unsupported: Unsupported | None = Field(
        default=None, description="Channels and messages no training send tried: sent only by exploration."
    )
    value_prior: ValuePrior | None = Field(
        default=None,
        description="How a customer's conversion is valued: their own orders blended with this learned prior "
        "(null: their average, else the configured default).",
    )
    last_error: str | None = None
    config_hash: str = Field(description="Fingerprint of the served configuration (channels, costs, rules, messages).")
    config_matches: bool | None = Field(
        default=None, description="Whether the model was trained under this configuration (null: not recorded)."
    )
