"""A model version's manifest: what the model expects (features, encoding, channels) and how it scored."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from model.domain.value import ValuePrior


def schema_hash(features: list[str], categorical: list[str], levels: dict[str, list[str]]) -> str:
    """Fingerprint of the feature encoding: two models with the same hash take the same input rows."""
    blob = json.dumps(
        {"features": features, "categorical": categorical, "levels": {k: levels[k] for k in sorted(levels)}},
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def new_version(now: datetime | None = None) -> str:
    """Sortable, unique version name, e.g. 20261123T184000Z-3fa1."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


class Unsupported(BaseModel):
    """Channels and messages that no training send tried: the decision gives them no lift over not contacting,
    so they are sent only by exploration until the log has data for them."""

    model_config = ConfigDict(extra="ignore")

    channels: list[str] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)


class Manifest(BaseModel):
    """Everything needed to rebuild the model's input rows and to judge the model."""

    model_config = ConfigDict(extra="ignore")

    version: str
    created_at: datetime
    training_window: tuple[datetime, datetime]
    features: list[str]
    categorical: list[str]
    schema_hash: str
    levels: dict[str, list[str]] = Field(default_factory=dict)  # "message" + categorical attribute levels
    channels: list[str]
    objective: str = "conversion"  # click | visit | conversion | value: what predictions mean at serving
    unsupported: Unsupported = Field(default_factory=Unsupported)  # empty for a model trained before it was recorded
    attribution_window_days: float = 7.0
    value_prior: ValuePrior | None = None  # a customer's order value (model.domain.value); None: older models
    metrics: dict[str, float] = Field(default_factory=dict)
    policy_value: dict[str, float] = Field(default_factory=dict)  # e.g. {"model_snips": ...}
    code_version: str = "unknown"
    source: str | None = None  # the training data (URI): the promotion gate's default held-out source
    files: dict[str, str] = Field(default_factory=dict)  # logical name -> file name, e.g. lightgbm -> model.txt
    # Settings.config_hash() at training: channels, costs, consent, quiet hours, caps, messages, attributes,
    # exploration, holdout, value. None for a model trained before it was recorded.
    config_hash: str | None = None

    def check_hash(self) -> bool:
        return self.schema_hash == schema_hash(self.features, self.categorical, self.levels)

    def config_matches(self, served_hash: str) -> bool | None:
        """Whether the model was trained under the configuration now served (None: not recorded)."""
        return None if self.config_hash is None else self.config_hash == served_hash
