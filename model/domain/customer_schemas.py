"""Pydantic models of the customer read path (GET /v1/customers/{id}) and the aggregate's readable summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator

from model.domain.aggregate import CAP_WINDOW, Aggregate
from model.domain.catalogue import Catalogue, catalogue
from model.domain.schemas import EVENT_TYPES, Profile

MAX_PAGE = 100  # items per page of touchpoints and of decisions
DEFAULT_PAGE = 20


class ChannelActivity(BaseModel):
    """What the customer's folded touchpoints say about one channel."""

    channel: str
    events: dict[str, int] = Field(description="Folded touchpoints by event type (sent, opened, clicked, ...).")
    last_event_at: dict[str, datetime] = Field(description="Latest folded touchpoint of each event type (UTC).")
    conversion_value: float = Field(description="Sum of the values of the folded conversions.")
    sends_last_7_days: int = Field(ge=0, description="Sends in the 7 days before the read (what caps count).")
    opted_out: bool = Field(description="An unsubscribe or complaint later than any subscribe.")


class AggregateSummary(BaseModel):
    """The feature aggregate in readable form (the stored state also keeps hour-of-week histograms and ids)."""

    version: int = Field(ge=0, description="How many times the aggregate was written (each write folds a batch).")
    updated_at: datetime | None = Field(description="When the aggregate was last written (UTC).")
    events_folded: int = Field(ge=0, description="Touchpoints counted in the aggregate, all channels.")
    first_event_at: datetime | None
    last_event_at: datetime | None
    opted_out_channels: list[str]
    channels: list[ChannelActivity] = Field(description="Channels with at least one folded touchpoint.")


class TouchpointView(BaseModel):
    """A stored touchpoint as the customer's read path shows it."""

    event_id: str
    channel: str
    event_type: str
    occurred_at: datetime
    campaign_id: str | None = None
    message_id: str | None = None
    decision_id: str | None = None
    value: float = 0.0
    attributes: dict[str, Any] = Field(default_factory=dict)
    folded: bool = Field(description="Whether the aggregate counts it already (false for a moment after ingest).")


class DecisionView(BaseModel):
    """A served decision from the decision log: its first choice, policy and propensity."""

    decision_id: str
    decided_at: datetime
    policy: str = Field(description="model, explore, holdout, cold_start, fallback; `logging` for imported logs.")
    propensity: float | None = Field(default=None, description="null for imported logs without propensities.")
    model_version: str | None = None
    channel: str | None = None
    send_at: datetime | None = None
    message_id: str | None = None
    p_convert: float | None = None
    expected_value: float | None = None

    @field_validator("decided_at", "send_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Instants in UTC; an imported log's naive time is read as UTC (so that decisions sort)."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TouchpointPage(BaseModel):
    items: list[TouchpointView] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `touchpoints_cursor` for the next page; null at the end.")


class DecisionPage(BaseModel):
    items: list[DecisionView] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `decisions_cursor` for the next page; null at the end.")


class CustomerView(BaseModel):
    """Everything stored about one customer: for "why did we send this?" and data-access requests."""

    customer_id: str
    profile: Profile | None = Field(description="The declared profile; null when none was set.")
    aggregate: AggregateSummary | None = Field(description="null until a first touchpoint has been folded.")
    decisions: DecisionPage
    touchpoints: TouchpointPage


def _instant(ts: float) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts > 0 else None


def summarise(
    agg: Aggregate, version: int, updated_at: datetime | None, now: datetime, cat: Catalogue | None = None
) -> AggregateSummary:
    """The readable summary of an aggregate as read at `now` (for the 7-day send count)."""
    cat = cat or catalogue()
    since = (now - timedelta(seconds=CAP_WINDOW)).timestamp()
    channels = []
    for i, name in enumerate(cat.names):
        counts = agg.counts[i]
        if not any(counts) and not agg.opt_out[i] and not agg.opt_in[i]:
            continue
        channels.append(
            ChannelActivity(
                channel=name,
                events={EVENT_TYPES[e]: n for e, n in enumerate(counts) if n},
                last_event_at={EVENT_TYPES[e]: at for e, t in enumerate(agg.last[i]) if (at := _instant(t))},
                conversion_value=agg.value[i],
                sends_last_7_days=agg.sends_since(i, since),
                opted_out=agg.opted_out(i),
            )
        )
    return AggregateSummary(
        version=version,
        updated_at=updated_at,
        events_folded=agg.n_events,
        first_event_at=_instant(agg.first_ts),
        last_event_at=_instant(agg.last_ts),
        opted_out_channels=[name for i, name in enumerate(cat.names) if agg.opted_out(i)],
        channels=channels,
    )
