"""The point-in-time training set: no future leakage, censoring, attribution labels, splits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from model.domain.aggregate import Aggregate, FoldEvent, fold
from model.domain.catalogue import catalogue
from model.domain.decide import scoring_history
from model.domain.features import row
from model.domain.schemas import EVENT_INDEX
from training import dataset, train
from training.ope.contexts import candidate_matrix
from training.simulate import SimConfig, simulate

T0 = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def _tp(eid: str, cust: str, channel: str, kind: str, at: datetime, **extra: object) -> dict[str, object]:
    return {
        "event_id": eid,
        "customer_id": cust,
        "channel": channel,
        "event_type": kind,
        "occurred_at": at,
        "message_id": extra.get("message_id"),
        "decision_id": extra.get("decision_id"),
        "value": float(extra.get("value", 0.0)),  # type: ignore[arg-type]
    }


def _tiny_log() -> list[dict[str, object]]:
    """Customer a: e1 converts twice (the second time after e2 was sent: last click keeps it on e1), e4 gets
    nothing, e3 is too recent."""
    return [
        _tp("e1", "a", "email", "sent", T0, message_id="m1"),
        _tp("e1o", "a", "email", "opened", T0 + H),
        _tp("e1c", "a", "email", "clicked", T0 + 2 * H),
        _tp("e1v", "a", "web", "converted", T0 + 2 * D, value=30),
        # A visit logged at the very instant of the next send: it must not show in that send's features.
        _tp("v2", "a", "web", "visited", T0 + 3 * D),
        _tp("e2", "a", "sms", "sent", T0 + 3 * D, message_id="m2"),
        _tp("c2", "a", "web", "converted", T0 + 3 * D + H, value=20),
        _tp("e4", "a", "push", "sent", T0 + 10 * D, message_id="m1"),
        _tp("e3", "a", "email", "sent", T0 + 20 * D, message_id="m1"),
        # Customer b: a conversion 8 days after its only send is outside the 7-day window.
        _tp("b1", "b", "email", "sent", T0 + D, message_id="m1"),
        _tp("b1x", "b", "web", "converted", T0 + 9 * D + H, value=10),
    ]


def _build(log: list[dict[str, object]], **kw: object) -> dataset.TrainingSet:
    table = pa.Table.from_pylist(log)
    return dataset.build(table, window_days=7, as_of=(T0 + 21 * D).timestamp(), split="customer", **kw)  # type: ignore[arg-type]


def test_labels_censoring_and_attribution() -> None:
    ts = _build(_tiny_log(), eval_fraction=0.0, valid_fraction=0.0)
    got = dict(zip(ts.meta["send_id"].to_list(), ts.y.tolist(), strict=True))
    assert got == {"e1": 1.0, "e2": 0.0, "e4": 0.0, "b1": 0.0}  # e3 censored: its window is not over
    assert ts.stats["censored"] == 1
    values = dict(zip(ts.meta["send_id"].to_list(), ts.meta["conv_value"].to_list(), strict=True))
    assert values["e1"] == 50  # c2 follows v2, a visit that e1 brought (e2 was sent at that very instant)
    assert values["e2"] == 0


def test_conversions_go_to_the_last_click_else_to_the_last_touch() -> None:
    log = [
        # x1's click leads to a conversion a day later, after x2 was sent: x1 gets it, not x2
        _tp("x1", "x", "email", "sent", T0, message_id="m1"),
        _tp("x1c", "x", "email", "clicked", T0 + H),
        _tp("x2", "x", "sms", "sent", T0 + 12 * H, message_id="m1"),
        _tp("x2v", "x", "web", "converted", T0 + D + H, value=10),
        # no click before the conversion: the latest send takes it (last touch)
        _tp("y1", "y", "email", "sent", T0, message_id="m1"),
        _tp("y1v", "y", "web", "converted", T0 + H, value=20),
        # the click's send is outside the window when the conversion comes: last touch (z2) instead
        _tp("z1", "z", "email", "sent", T0, message_id="m1"),
        _tp("z1c", "z", "email", "clicked", T0 + H),
        _tp("z2", "z", "push", "sent", T0 + 5 * D, message_id="m1"),
        _tp("z2v", "z", "web", "converted", T0 + 8 * D, value=30),
    ]
    ts = _build(log, eval_fraction=0.0, valid_fraction=0.0)
    got = dict(zip(ts.meta["send_id"].to_list(), ts.meta["conv_value"].to_list(), strict=True))
    assert got == {"x1": 10.0, "x2": 0.0, "y1": 20.0, "z1": 0.0, "z2": 30.0}
    clicks = dict(zip(ts.meta["send_id"].to_list(), ts.meta["clicks"].to_list(), strict=True))
    assert clicks == {"x1": 1, "x2": 0, "y1": 0, "z1": 1, "z2": 0}
    # The funnel's stage labels: a conversion without an attributed click still reached the click stage, so
    # P(click stage) x P(conversion | click stage) is P(conversion).
    reached, converted = train.funnel_labels(ts, ("clicks",))
    ids = ts.meta["send_id"].to_list()
    assert dict(zip(ids, reached.tolist(), strict=True)) == {"x1": 1, "x2": 0, "y1": 1, "z1": 1, "z2": 1}
    assert dict(zip(ids, converted.tolist(), strict=True)) == {"x1": 1, "x2": 0, "y1": 1, "z1": 0, "z2": 1}


def test_an_engagement_that_quotes_its_send_goes_to_that_send() -> None:
    log = [
        # Two sends the same morning: q1's click comes after q2 was sent, but it quotes q1's decision.
        _tp("q1", "q", "email", "sent", T0, message_id="m1", decision_id="d-q1"),
        _tp("q2", "q", "sms", "sent", T0 + H, message_id="m1", decision_id="d-q2"),
        _tp("q1c", "q", "email", "clicked", T0 + 2 * H, decision_id="d-q1"),
        _tp("q1v", "q", "web", "converted", T0 + D, value=10),
        # Without a decision id the click goes to the latest send before it (last touch), as before.
        _tp("r1", "r", "email", "sent", T0, message_id="m1", decision_id="d-r1"),
        _tp("r2", "r", "sms", "sent", T0 + H, message_id="m1", decision_id="d-r2"),
        _tp("r1c", "r", "email", "clicked", T0 + 2 * H),
        # A quoted decision whose send came after the click (or is unknown) cannot have caused it: last touch.
        _tp("s1", "s", "email", "sent", T0, message_id="m1", decision_id="d-s1"),
        _tp("s1c", "s", "email", "clicked", T0 + H, decision_id="d-s2"),
        _tp("s2", "s", "sms", "sent", T0 + 2 * H, message_id="m1", decision_id="d-s2"),
    ]
    ts = _build(log, eval_fraction=0.0, valid_fraction=0.0)
    clicks = dict(zip(ts.meta["send_id"].to_list(), ts.meta["clicks"].to_list(), strict=True))
    assert clicks == {"q1": 1, "q2": 0, "r1": 0, "r2": 1, "s1": 1, "s2": 0}
    value = dict(zip(ts.meta["send_id"].to_list(), ts.meta["conv_value"].to_list(), strict=True))
    assert (value["q1"], value["q2"]) == (10.0, 0.0)  # the conversion follows the click (last click)


def test_value_objective_and_click_objective() -> None:
    ts = _build(_tiny_log(), objective="value", eval_fraction=0.0, valid_fraction=0.0)
    assert dict(zip(ts.meta["send_id"].to_list(), ts.y.tolist(), strict=True))["e1"] == 50.0
    ts = _build(_tiny_log(), objective="click", eval_fraction=0.0, valid_fraction=0.0)
    assert dict(zip(ts.meta["send_id"].to_list(), ts.y.tolist(), strict=True)) == {
        "e1": 1.0,
        "e2": 0.0,
        "e4": 0.0,
        "b1": 0.0,
    }


def test_rows_see_only_the_strict_past() -> None:
    ts = _build(_tiny_log(), eval_fraction=0.0, valid_fraction=0.0)
    names = ts.names
    rows = {sid: ts.X[i] for i, sid in enumerate(ts.meta["send_id"].to_list())}
    assert rows["e1"][names.index("sent_total")] == 0  # nothing before the first send, not even itself
    assert rows["e2"][names.index("visited_total")] == 0  # same-instant visit excluded
    assert rows["e2"][names.index("converted_total")] == 1  # e1's conversion happened before
    assert rows["e2"][names.index("sent_total")] == 1
    assert rows["e4"][names.index("visited_total")] == 1  # ... and is seen by the next send


def _brute_force_row(
    events: list[dict[str, Any]], send: dict[str, Any], ts: dataset.TrainingSet, decided: float
) -> list[float]:
    """The definition: fold only the customer's events strictly before the send's DECISION instant (what serving
    knew when it scored the action), then take the row of the send's channel, time and message, at that instant,
    of the history serving scores (none for a cold start), for the grid slot the send fell in."""
    cat = catalogue()
    agg = Aggregate.empty()
    for ev in sorted(events, key=lambda e: e["occurred_at"]):
        t = ev["occurred_at"].timestamp()
        if ev["customer_id"] == send["customer_id"] and t < decided:
            kind = EVENT_INDEX[ev["event_type"]]
            fold(agg, FoldEvent(ev["event_id"], cat.index[ev["channel"]], kind, t, ev["value"]))
    channel = cat.index[send["channel"]]
    at = send["occurred_at"].timestamp() // 3600 * 3600  # the grid's slot: the send's full UTC hour
    zone = ZoneInfo("UTC")
    history = scoring_history(agg)
    return row(history, {}, ts.layout, channel, at, zone, send["message_id"], ts.levels["message"], now=decided)


def test_every_row_equals_a_replay_of_the_past_of_its_decision_on_simulated_data() -> None:
    sim = simulate(SimConfig(customers=60, days=25, seed=3))
    tps = sim["touchpoints"].to_pylist()
    decided = {d["decision_id"]: d["decided_at"].timestamp() for d in sim["decisions"].to_pylist()}
    ts = dataset.build(sim["touchpoints"], None, sim["decisions"], split="customer", eval_fraction=0.0)
    by_id = {t["event_id"]: t for t in tps}
    sample = ts.meta["send_id"].to_list()[::7]
    assert len(sample) > 20
    index = {sid: i for i, sid in enumerate(ts.meta["send_id"].to_list())}
    moved = 0
    for sid in sample:
        send = by_id[sid]
        expected = np.array(_brute_force_row(tps, send, ts, decided[send["decision_id"]]), dtype=np.float32)
        np.testing.assert_allclose(ts.X[index[sid]], expected, rtol=1e-6, err_msg=sid)
        at_send = np.array(_brute_force_row(tps, send, ts, send["occurred_at"].timestamp()), dtype=np.float32)
        moved += not np.allclose(expected, at_send, rtol=1e-6)
    assert moved > len(sample) // 2  # the decision instant is not the send instant: rows differ (days since ...)


def test_temporal_split_purges_the_window_and_customer_split_separates_customers() -> None:
    sim = simulate(SimConfig(customers=200, days=40, seed=4))
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], window_days=7, max_contexts=50)
    send_ts = ts.meta["send_ts"].to_numpy()
    train, evaluation = send_ts[ts.split == "train"], send_ts[ts.split == "eval"]
    valid = send_ts[ts.split == "valid"]
    assert len(train)
    assert len(evaluation)
    assert len(valid)
    assert train.max() + 7 * 86400 <= evaluation.min()  # no training label peeks into the evaluation period
    assert train.max() <= valid.min()
    assert ts.contexts is not None
    assert 0 < len(ts.contexts) <= 50
    ts2 = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], split="customer", max_contexts=10)
    cust = np.array(ts2.meta["customer_id"].to_list())
    assert not set(cust[ts2.split == "eval"]) & set(cust[ts2.split == "train"])


@pytest.mark.parametrize(("zone", "late"), [("Europe/Paris", 0), ("Asia/Kolkata", 34)])
def test_candidate_grid_uses_the_same_features_as_training_rows(zone: str, late: int) -> None:
    """A decision's candidate row for the action it logged has that send's slot, channel and message. In a
    half-hour zone the grid's slots (full UTC hours) start at :30 local: a send at 16:04 local is the 15:30 slot's."""
    log = [
        _tp("x1", "a", "email", "sent", T0, message_id="m1"),
        _tp("x1o", "a", "email", "opened", T0 + H),
        _tp("x1c", "a", "email", "clicked", T0 + 2 * H),  # three events: not a cold start
        _tp("x2", "a", "sms", "sent", T0 + 2 * D + timedelta(minutes=late), message_id="m2", decision_id="d2"),
    ]
    decisions = pa.Table.from_pylist(
        [
            {
                "decision_id": "d2",
                "customer_id": "a",
                "decided_at": T0 + 2 * D - 3 * H,
                "channel": "sms",
                "send_at": T0 + 2 * D,
                "message_id": "m2",
                "propensity": 0.5,
                "policy": "model",
            }
        ]
    )
    profiles = pa.Table.from_pylist(
        [{"customer_id": "a", "timezone": zone, "consent": '{"sms": true}', "attributes": "{}"}]
    )
    ts = dataset.build(
        pa.Table.from_pylist(log),
        profiles,
        decisions,
        window_days=1,
        as_of=(T0 + 5 * D).timestamp(),
        split="customer",
        eval_fraction=1.0,
    )
    ctx = ts.contexts
    assert ctx is not None
    assert len(ctx) == 2  # d2, and x1 (no logged decision: decided an hour before its send)
    k = ctx.decision_id.index("d2")
    assert ctx.propensity[k] == 0.5
    c, s, m = ctx.logged_channel[k], ctx.logged_slot[k], ctx.logged_message[k]
    assert s >= 0
    assert m >= 0
    assert ctx.allowed[k, c, s, m]
    grid = candidate_matrix(ctx, k, ts.levels["message"], ts.layout)
    i = ts.meta["send_id"].to_list().index("x2")
    # The training row of the logged send IS serving's candidate for that action: history features at the decision
    # instant, the action's channel, slot and message (the rules parity test holds the grid equal to serving's).
    np.testing.assert_array_equal(grid[c, s, m].astype(np.float32), ts.X[i])
    assert ts.X[i][ts.names.index("days_since_first")] == pytest.approx(2 - 3 / 24)  # decided 3 h before the send


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="objective"):
        _build(_tiny_log(), objective="likes")
    with pytest.raises(ValueError, match="complete attribution window"):
        dataset.build(pa.Table.from_pylist(_tiny_log()[:3]), window_days=30)


def test_sends_without_logged_decisions_still_get_a_grid() -> None:
    """No decisions table: held-out sends are evaluated as decided half an hour before, propensity unknown."""
    sim = simulate(SimConfig(customers=150, days=30, seed=6))
    ts = dataset.build(sim["touchpoints"], sim["profiles"], None, max_contexts=40)
    ctx = ts.contexts
    assert ctx is not None
    assert len(ctx) == 40
    assert np.isnan(ctx.propensity).all()
    assert (ctx.logged_slot == 0).all()  # the send hour is the first slot after the decision


def test_parallel_replay_equals_serial_replay() -> None:
    sim = simulate(SimConfig(customers=120, days=30, seed=8))
    args = (sim["touchpoints"], sim["profiles"], sim["decisions"])
    serial = dataset.build(*args, max_contexts=30, workers=1)
    parallel = dataset.build(*args, max_contexts=30, workers=2)
    np.testing.assert_array_equal(serial.X, parallel.X)
    assert serial.contexts is not None
    assert parallel.contexts is not None
    assert serial.contexts.decision_id == parallel.contexts.decision_id
    np.testing.assert_array_equal(serial.contexts.chan, parallel.contexts.chan)
    np.testing.assert_array_equal(serial.contexts.ch_sends_7d, parallel.contexts.ch_sends_7d)


def test_hour_of_day_slot_features_see_only_earlier_sends() -> None:
    ts = _build(_tiny_log(), eval_fraction=0.0, valid_fraction=0.0)
    names = ts.names
    rows = {sid: ts.X[i] for i, sid in enumerate(ts.meta["send_id"].to_list())}
    # e1, e2 and e4 all go out at 10:00 UTC: each row sees only the engagements before it. Share at 10:00 with the
    # prior 1/24 at strength 4: none yet; e1's conversion of 3 engagements; then v2's visit too, of 5.
    share = [float(rows[s][names.index("hour_engagement_share")]) for s in ("e1", "e2", "e4")]
    assert share == pytest.approx([1 / 24, (1 + 1 / 6) / 7, (2 + 1 / 6) / 9], rel=1e-6)
    assert rows["e1"][names.index("hour_response_lift")] == 1.0  # no history: neutral
