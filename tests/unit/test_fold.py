"""Semantics of the ONE fold: counts, recency, cap window, opt-out/in, de-duplication, order tolerance."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from model.domain.aggregate import (
    CAP_WINDOW,
    CLICKED,
    COMPLAINED,
    CONVERTED,
    DAY,
    DEDUPE_WINDOW,
    OPENED,
    SENT,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Aggregate,
    FoldEvent,
    fold,
    hour_of_week,
    normalise,
    replay,
)
from model.domain.catalogue import catalogue
from model.domain.schemas import EVENT_TYPES

T0 = 1_795_000_000.0  # 2026-11-18
EMAIL, SMS = catalogue().index["email"], catalogue().index["sms"]


def ev(i: int, channel: int, etype: int, ts: float, value: float = 0.0) -> FoldEvent:
    return FoldEvent(f"e{i}", channel, etype, ts, value)


def test_counts_value_and_recency() -> None:
    agg = replay(
        [
            ev(1, EMAIL, SENT, T0),
            ev(2, EMAIL, OPENED, T0 + 60),
            ev(3, EMAIL, OPENED, T0 + 30),
            ev(4, EMAIL, CONVERTED, T0 + 120, 40.0),
            ev(5, SMS, SENT, T0 + 10),
        ]
    )
    assert agg.counts[EMAIL][SENT] == 1
    assert agg.counts[EMAIL][OPENED] == 2
    assert agg.counts[SMS][SENT] == 1
    assert agg.n_events == 5
    assert agg.last[EMAIL][OPENED] == T0 + 60  # recency is the max, not the latest arrival
    assert agg.value[EMAIL] == 40.0
    assert agg.value[SMS] == 0.0
    assert (agg.first_ts, agg.last_ts) == (T0, T0 + 120)


def test_engagement_histogram_by_hour_of_week() -> None:
    agg = replay([ev(1, EMAIL, CLICKED, T0), ev(2, EMAIL, SENT, T0 + 1), ev(3, SMS, OPENED, T0 + 7 * DAY)])
    assert sum(agg.how) == 2  # sends are not engagement
    assert agg.how[hour_of_week(T0)] == 2  # same hour one week apart
    assert hour_of_week(1_795_392_000.0) == 0  # 2026-11-23 00:00 UTC is a Monday


def test_cap_window_keeps_only_recent_sends() -> None:
    events = [ev(i, EMAIL, SENT, T0 + i * DAY) for i in range(10)]
    agg = replay(events)
    newest = T0 + 9 * DAY
    assert agg.recent_sends[EMAIL] == [t.ts for t in events if t.ts >= newest - CAP_WINDOW]
    assert agg.counts[EMAIL][SENT] == 10  # lifetime count is not windowed
    assert agg.sends_since(EMAIL, newest - DAY) == 2


def test_opt_out_then_opt_in() -> None:
    agg = replay([ev(1, SMS, UNSUBSCRIBED, T0)])
    assert agg.opted_out(SMS)
    assert not agg.opted_out(EMAIL)
    fold(agg, ev(2, SMS, SUBSCRIBED, T0 + 10))
    assert not agg.opted_out(SMS)
    fold(agg, ev(3, SMS, COMPLAINED, T0 + 20))
    assert agg.opted_out(SMS)
    # a late, older subscribe does not reopen a channel closed after it
    fold(agg, ev(4, SMS, SUBSCRIBED, T0 + 15))
    assert agg.opted_out(SMS)


def test_duplicate_event_ids_count_once() -> None:
    once = replay([ev(1, EMAIL, OPENED, T0), ev(2, EMAIL, CONVERTED, T0 + 5, 10.0)])
    twice = replay([ev(1, EMAIL, OPENED, T0), ev(2, EMAIL, CONVERTED, T0 + 5, 10.0)] * 3)
    assert once == twice
    assert twice.counts[EMAIL][OPENED] == 1
    assert twice.value[EMAIL] == 10.0


def test_dedupe_memory_is_bounded_by_the_window() -> None:
    agg = replay([ev(i, EMAIL, OPENED, T0 + i * 3600.0) for i in range(24 * 10)])
    newest = T0 + (24 * 10 - 1) * 3600.0
    assert all(t >= newest - DEDUPE_WINDOW for t in agg.seen.values())
    assert len(agg.seen) == int(DEDUPE_WINDOW // 3600) + 1


def test_serialisation_round_trip() -> None:
    rng = random.Random(7)
    n = len(catalogue())
    agg = replay(
        [
            ev(i, rng.randrange(n), rng.randrange(len(EVENT_TYPES)), T0 + rng.uniform(0, 9 * DAY), 3.5)
            for i in range(400)
        ]
    )
    text = agg.to_json()
    back = Aggregate.from_json(text)
    assert back == agg
    assert back.to_json() == text


def test_serialisation_survives_a_catalogue_change() -> None:
    agg = replay([ev(1, SMS, SENT, T0), ev(2, EMAIL, OPENED, T0)])
    data = agg.to_dict()
    data["channels"]["fax"] = data["channels"]["sms"]  # a channel no longer in the catalogue is dropped
    back = Aggregate.from_dict(data)
    assert back.counts[SMS][SENT] == 1
    assert back.counts[EMAIL][OPENED] == 1


# Order tolerance: within the de-duplication window, any permutation with any duplicates gives the same
# normalised aggregate as the sorted replay.
events_strategy = st.lists(
    st.tuples(
        st.integers(0, len(catalogue()) - 1),
        st.integers(0, len(EVENT_TYPES) - 1),
        st.floats(0, DEDUPE_WINDOW, allow_nan=False),
        st.sampled_from([0.0, 1.0, 25.5]),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(raw=events_strategy, data=st.data())
def test_any_order_with_duplicates_gives_the_same_aggregate(
    raw: list[tuple[int, int, float, float]], data: st.DataObject
) -> None:
    events = [FoldEvent(f"id{i}", c, e, T0 + dt, v) for i, (c, e, dt, v) in enumerate(raw)]
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=40))
    arrival = data.draw(st.permutations(events + dupes))
    expected = replay(sorted(events, key=lambda x: (x.ts, x.event_id)))
    online = Aggregate.empty()
    for chunk_start in range(0, len(arrival), 7):  # folded in batches, normalised after each, like the aggregator
        for e in arrival[chunk_start : chunk_start + 7]:
            fold(online, e)
        online = Aggregate.from_json(normalise(online).to_json())
    assert online == expected


def test_sends_by_hour_of_day() -> None:
    agg = replay(
        [
            ev(1, EMAIL, SENT, T0),
            ev(2, SMS, SENT, T0 + DAY),  # same UTC hour of day, another day and channel
            ev(3, EMAIL, SENT, T0 + 3600),
            ev(4, EMAIL, OPENED, T0 + 2 * 3600),  # engagement is not a send
        ]
    )
    hour = int(T0 // 3600) % 24
    assert agg.sent_hod[hour] == 2
    assert agg.sent_hod[(hour + 1) % 24] == 1
    assert sum(agg.sent_hod) == 3


def test_an_aggregate_stored_before_sends_by_hour_still_loads() -> None:
    agg = replay([ev(1, EMAIL, SENT, T0), ev(2, EMAIL, OPENED, T0 + 60)])
    data = agg.to_dict()
    assert Aggregate.from_dict(data).sent_hod == agg.sent_hod  # the new state survives the round trip
    del data["sent_hod"]
    old = Aggregate.from_dict(data)
    assert old.sent_hod == [0] * 24
    assert old.counts == agg.counts
    assert old.how == agg.how
