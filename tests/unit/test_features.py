"""Slot features from sends and engagements by hour of day: a de-biased response rate by send hour."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from model.domain.aggregate import CLICKED, DAY, OPENED, SENT, Aggregate, FoldEvent, replay
from model.domain.catalogue import catalogue
from model.domain.features import SLOT_FEATURES, slot_features

T0 = 1_795_392_000.0  # 2026-11-23 00:00 UTC
EMAIL = catalogue().index["email"]
UTC = ZoneInfo("UTC")
LIFT = SLOT_FEATURES.index("hour_response_lift")


def _history(responsive_hour: int, dull_hour: int, days: int = 20) -> Aggregate:
    """Daily sends at both hours; only the sends at `responsive_hour` get opened and clicked (1-2 h later)."""
    events: list[FoldEvent] = []
    for d in range(days):
        for hour in (responsive_hour, dull_hour):
            t = T0 + d * DAY + hour * 3600 + 60
            events.append(FoldEvent(f"s{d}-{hour}", EMAIL, SENT, t))
            if hour == responsive_hour:
                events.append(FoldEvent(f"o{d}-{hour}", EMAIL, OPENED, t + 3600))
                events.append(FoldEvent(f"c{d}-{hour}", EMAIL, CLICKED, t + 5400))
    return replay(events)


def _slot(agg: Aggregate, hour: int) -> list[float]:
    return slot_features(agg, T0 + 30 * DAY + hour * 3600, UTC)


def test_response_lift_finds_the_hour_that_responds_not_the_hour_most_sent() -> None:
    agg = _history(responsive_hour=18, dull_hour=10)
    assert _slot(agg, 18)[LIFT] > 1.5
    assert _slot(agg, 10)[LIFT] < 0.5
    assert _slot(agg, 3)[LIFT] == 1.0  # no sends and no engagement near 03:00: no evidence, no lift


def test_without_history_the_lift_is_neutral() -> None:
    empty = Aggregate.empty()
    assert all(slot_features(empty, T0 + h * 3600, UTC)[LIFT] == 1.0 for h in range(24))
    # an aggregate stored before sends were counted by hour (sent_hod all zero) is treated the same way
    agg = _history(18, 10)
    data = agg.to_dict()
    del data["sent_hod"]
    old = Aggregate.from_dict(data)
    assert old.sent_hod == [0] * 24
    assert _slot(old, 18)[LIFT] == 1.0
