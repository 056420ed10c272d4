"""Feature vectors: ONE definition, used by training rows and by serving candidates alike.

A candidate is (customer state, channel, send slot, message). Its feature vector is the concatenation of
four groups, each computed once per distinct value it depends on:

    customer  (depends on the aggregate, the profile and `now`)   -> shared by every candidate
    channel   (depends on the aggregate and the candidate channel) -> one per channel
    slot      (depends on the send instant and the customer's time zone) -> one per send slot
    message   (the message code)                                   -> one per message

Training builds one row per send from the same four functions; serving broadcasts the groups over the
candidate grid, so the two can never drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from model.domain.aggregate import (
    BOUNCED,
    CLICKED,
    CONVERTED,
    DAY,
    ENGAGEMENT,
    OPENED,
    SENT,
    VISITED,
    Aggregate,
)
from model.domain.settings import AttributeSpec

NEVER = 9999.0  # "days since" for something that never happened (LightGBM sees a plain number)
UNKNOWN = -1.0  # categorical code for a value outside the known levels (LightGBM: missing)

CUSTOMER_FEATURES: tuple[str, ...] = (
    "sent_total",
    "opened_total",
    "clicked_total",
    "visited_total",
    "converted_total",
    "value_total",
    "conversion_rate",
    "engagement_rate",
    "days_since_first",
    "days_since_engaged",
    "days_since_converted",
    "sends_7d",
    "opted_out_channels",
    "decision_day",
)
CHANNEL_FEATURES: tuple[str, ...] = (
    "channel",
    "ch_sent",
    "ch_open_rate",
    "ch_click_rate",
    "ch_conversion_rate",
    "ch_engagement_share",
    "ch_days_since_engaged",
    "ch_days_since_sent",
    "ch_sends_1d",
    "ch_sends_7d",
    "ch_bounced",
)
SLOT_FEATURES: tuple[str, ...] = (
    "local_hour",
    "local_dow",
    "hour_engagement_share",
    "dow_engagement_share",
    "hour_response_lift",
)
# Not a feature: how often the customer was contacted at the slot's hour. It describes the logging policy (a
# business-as-usual hour), not the customer; with it the model learnt the logger's habit and its send times leaned
# to that hour (without it: +2.3 to +3.4 points of the oracle on three seeds at 3,000 customers, no measurable
# change at 20,000; bench/RESULTS.md). hour_response_lift already conditions engagement on when the sends went out.
MESSAGE_FEATURES: tuple[str, ...] = ("message",)
CATEGORICAL_BASE: tuple[str, ...] = ("channel", "message")

# Plain words for the reasons a recommendation gives.
DESCRIPTIONS: dict[str, str] = {
    "sent_total": "how many messages the customer has received",
    "opened_total": "how often the customer opens",
    "clicked_total": "how often the customer clicks",
    "visited_total": "how often the customer visits",
    "converted_total": "the customer's past conversions",
    "value_total": "the customer's past revenue",
    "conversion_rate": "the customer's conversion rate",
    "engagement_rate": "the customer's engagement rate",
    "days_since_first": "how long we have known the customer",
    "days_since_engaged": "time since the customer last engaged",
    "days_since_converted": "time since the customer last converted",
    "sends_7d": "contacts in the last 7 days (fatigue)",
    "opted_out_channels": "channels the customer opted out of",
    "decision_day": "the day of the decision (lets the model follow behaviour that drifts)",
    "channel": "the channel itself",
    "ch_sent": "messages already sent on this channel",
    "ch_open_rate": "open rate on this channel",
    "ch_click_rate": "click rate on this channel",
    "ch_conversion_rate": "conversion rate on this channel",
    "ch_engagement_share": "share of the customer's engagement on this channel",
    "ch_days_since_engaged": "time since the customer last engaged on this channel",
    "ch_days_since_sent": "time since the last send on this channel",
    "ch_sends_1d": "sends on this channel in the last day",
    "ch_sends_7d": "sends on this channel in the last 7 days",
    "ch_bounced": "bounces on this channel",
    "local_hour": "the local hour of the send",
    "local_dow": "the local day of the week of the send",
    "hour_engagement_share": "how much the customer engages at this hour",
    "dow_engagement_share": "how much the customer engages on this weekday",
    "hour_response_lift": "how well the customer responds to messages sent at this hour",
    "message": "the message itself",
}


@dataclass(frozen=True)
class FeatureLayout:
    """Feature names in model order, the categorical ones, and the levels of categorical attributes."""

    attributes: tuple[AttributeSpec, ...]

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(f"attr_{a.name}" for a in self.attributes)

    @property
    def customer(self) -> tuple[str, ...]:
        return CUSTOMER_FEATURES + self.attribute_names

    @property
    def names(self) -> tuple[str, ...]:
        return self.customer + CHANNEL_FEATURES + SLOT_FEATURES + MESSAGE_FEATURES

    @property
    def categorical(self) -> tuple[str, ...]:
        cats = tuple(f"attr_{a.name}" for a in self.attributes if a.kind == "categorical")
        return cats + CATEGORICAL_BASE

    def describe(self, name: str) -> str:
        if name.startswith("attr_"):
            return f"the customer's {name[5:].replace('_', ' ')}"
        return DESCRIPTIONS.get(name, name)


def _days(now: float, ts: float) -> float:
    return (now - ts) / DAY if ts > 0.0 else NEVER


def _rate(num: float, den: float, prior: float = 0.05, strength: float = 2.0) -> float:
    """Smoothed rate: shrinks towards `prior` when there is little evidence."""
    return (num + prior * strength) / (den + strength)


def encode_level(value: object, levels: Sequence[str]) -> float:
    try:
        return float(levels.index(str(value)))
    except ValueError:
        return UNKNOWN


def customer_features(
    agg: Aggregate, attributes: Mapping[str, str | float], layout: FeatureLayout, now: float
) -> list[float]:
    """Customer-level features at instant `now` (epoch seconds)."""
    counts = agg.counts
    sent = sum(c[SENT] for c in counts)
    opened = sum(c[OPENED] for c in counts)
    clicked = sum(c[CLICKED] for c in counts)
    visited = sum(c[VISITED] for c in counts)
    converted = sum(c[CONVERTED] for c in counts)
    engaged = opened + clicked + visited + converted
    last_engaged = max((max(row[e] for e in ENGAGEMENT) for row in agg.last), default=0.0)
    last_converted = max((row[CONVERTED] for row in agg.last), default=0.0)
    week = now - 7 * DAY
    sends_7d = sum(1 for sends in agg.recent_sends for t in sends if week <= t <= now)
    opted_out = sum(1 for i in range(len(counts)) if agg.opted_out(i))
    out = [
        float(sent),
        float(opened),
        float(clicked),
        float(visited),
        float(converted),
        sum(agg.value),
        _rate(converted, sent, 0.01),
        _rate(engaged, sent, 0.1),
        _days(now, agg.first_ts),
        _days(now, last_engaged),
        _days(now, last_converted),
        float(sends_7d),
        float(opted_out),
        # Absolute time (epoch days). Serving and held-out decisions lie past every training day, so the trees
        # answer with their newest regime: with --drift 76.2% -> 78.6% of the oracle on the simulator, without
        # it no measurable change, where recency weights did nothing (bench/RESULTS.md, docs/decisions.md 15).
        now / DAY,
    ]
    for spec in layout.attributes:
        raw = attributes.get(spec.name)
        if spec.kind == "numeric":
            out.append(float(raw) if isinstance(raw, int | float) and math.isfinite(raw) else math.nan)
        else:
            out.append(encode_level(raw, spec.levels) if raw is not None else UNKNOWN)
    return out


def channel_features(agg: Aggregate, channel: int, now: float) -> list[float]:
    """Features of candidate channel `channel` (catalogue index) for this customer at `now`."""
    row = agg.counts[channel]
    last = agg.last[channel]
    sent = row[SENT]
    engaged = row[OPENED] + row[CLICKED] + row[VISITED] + row[CONVERTED]
    total_engaged = sum(c[OPENED] + c[CLICKED] + c[VISITED] + c[CONVERTED] for c in agg.counts)
    sends = agg.recent_sends[channel]
    day, week = now - DAY, now - 7 * DAY
    return [
        float(channel),
        float(sent),
        _rate(row[OPENED], sent, 0.2),
        _rate(row[CLICKED], sent, 0.05),
        _rate(row[CONVERTED], sent, 0.01),
        _rate(engaged, total_engaged, 1.0 / len(agg.counts)),
        _days(now, max(last[OPENED], last[CLICKED], last[VISITED], last[CONVERTED])),
        _days(now, last[SENT]),
        float(sum(1 for t in sends if day <= t <= now)),
        float(sum(1 for t in sends if week <= t <= now)),
        float(row[BOUNCED]),
    ]


def no_contact_channel_features(n_channels: int) -> list[float]:
    """The channel group of "don't contact": its own code (one past the catalogue's), nothing else is known."""
    return [float(n_channels)] + [math.nan] * (len(CHANNEL_FEATURES) - 1)


def local_time(send_ts: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(send_ts, UTC).astimezone(zone)


# Share of a send's engagements (opens, clicks, ...) that land 0, 1, 2, 3 hours after the send's hour.
RESPONSE_LAG: tuple[float, ...] = (0.4, 0.25, 0.15, 0.1)
RESPONSE_WINDOW = 3  # hours of engagement credited to a send hour
RESPONSE_STRENGTH = 2.0  # pseudo-engagements at the customer's own average rate (little evidence -> lift 1)


def _hour_part(how: list[int], total: int, sent_hod: list[int], hour: int) -> tuple[float, float]:
    """(engagement share, response lift) at UTC hour of day `hour`.

    The engagement histogram alone mostly shows when messages went out (business as usual sends at one
    hour); dividing the engagements in the few hours after `hour` by what the customer's send times predict
    for those hours at the customer's average rate gives a lift that is ~1 wherever response is flat.
    """
    share = _rate(sum(how[d * 24 + hour] for d in range(7)), total, 1 / 24, 4.0)
    total_sent = sum(sent_hod)
    if total_sent == 0:
        return share, 1.0
    eng = 0
    exposure = 0.0
    for k in range(RESPONSE_WINDOW):
        h = (hour + k) % 24
        eng += how[h] + how[h + 24] + how[h + 48] + how[h + 72] + how[h + 96] + how[h + 120] + how[h + 144]
        for j, w in enumerate(RESPONSE_LAG):
            exposure += sent_hod[(h - j) % 24] * w
    expected = exposure * total / (total_sent * sum(RESPONSE_LAG))
    return share, (eng + RESPONSE_STRENGTH) / (expected + RESPONSE_STRENGTH)


def slot_feature_rows(agg: Aggregate, send_ts: Sequence[float], zone: ZoneInfo) -> list[list[float]]:
    """Features of sending at each instant of `send_ts` to a customer living in `zone` (DST-aware).

    The hour- and weekday-dependent parts are computed once per distinct UTC hour of day and weekday: a
    48-hour candidate horizon has 24 of each at most.
    """
    how = agg.how
    total = sum(how)
    by_hour: dict[int, tuple[float, float]] = {}
    by_dow: dict[int, float] = {}
    rows = []
    for ts in send_ts:
        local = local_time(ts, zone)
        utc_hour = int(ts // 3600)
        hour = utc_hour % 24
        dow = (utc_hour // 24 + 3) % 7  # UTC weekday, Monday = 0
        hour_part = by_hour.get(hour)
        if hour_part is None:
            hour_part = by_hour[hour] = _hour_part(how, total, agg.sent_hod, hour)
        dow_share = by_dow.get(dow)
        if dow_share is None:
            dow_share = by_dow[dow] = _rate(sum(how[dow * 24 : dow * 24 + 24]), total, 1 / 7, 4.0)
        share, lift = hour_part
        rows.append([float(local.hour), float(local.weekday()), share, dow_share, lift])
    return rows


def slot_features(agg: Aggregate, send_ts: float, zone: ZoneInfo) -> list[float]:
    """Features of sending at instant `send_ts` (one row of `slot_feature_rows`)."""
    return slot_feature_rows(agg, (send_ts,), zone)[0]


def message_features(message_id: str | None, levels: Sequence[str]) -> list[float]:
    return [encode_level(message_id, levels) if message_id is not None else UNKNOWN]


def row(
    agg: Aggregate,
    attributes: Mapping[str, str | float],
    layout: FeatureLayout,
    channel: int,
    send_ts: float,
    zone: ZoneInfo,
    message_id: str | None,
    message_levels: Sequence[str],
    now: float | None = None,
) -> list[float]:
    """One full feature row (the training path; serving broadcasts the same groups): sending on `channel` at
    `send_ts`, decided at `now` (default: the send instant), whose history the customer and channel features
    describe, as serving takes them at request time."""
    at = send_ts if now is None else now
    return (
        customer_features(agg, attributes, layout, at)
        + channel_features(agg, channel, at)
        + slot_features(agg, send_ts, zone)
        + message_features(message_id, message_levels)
    )


def no_contact_row(
    agg: Aggregate, attributes: Mapping[str, str | float], layout: FeatureLayout, now: float, zone: ZoneInfo
) -> list[float]:
    """The "don't contact" candidate's row at decision instant `now`: the customer's features, the no-contact
    channel code, the first send slot's features (the next full hour, as serving's grid starts) and no message."""
    first = math.ceil(now / 3600.0) * 3600.0
    return (
        customer_features(agg, attributes, layout, now)
        + no_contact_channel_features(len(agg.counts))
        + slot_features(agg, first, zone)
        + message_features(None, ())
    )
