"""Decision logic: hard rules are never broken, ranking, don't-contact, exploration/holdout propensities, cold start."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pytest

from model.domain.aggregate import EVENT_INDEX, Aggregate, FoldEvent, fold
from model.domain.catalogue import catalogue
from model.domain.decide import build_grid, decide
from model.domain.features import channel_features, customer_features, message_features, slot_features
from model.domain.policy import action_probabilities, greedy_cell, holdout_bucket
from model.domain.recommend_schemas import Policy, RecommendationRequest
from model.domain.schemas import Profile, QuietHours
from model.domain.settings import get_settings
from model.scoring.predictor import LoadedModel, layout_for
from model.scoring.tree_scorer import TreeScorer

NOW = datetime(2026, 11, 23, 8, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def booster():
    pytest.importorskip("lightgbm")
    from tests.scoring_helpers import layout, train

    return train(layout(), trees=40, leaves=15, seed=5)


@pytest.fixture
def model(booster) -> LoadedModel:
    from tests.scoring_helpers import layout, manifest_for

    manifest = manifest_for(layout(), "v-test", {"compiled": "model.npz"})
    scorer = TreeScorer.from_dump(booster.dump_model())
    return LoadedModel("v-test", manifest, "compiled", layout_for(manifest), scorer=scorer)


def history(*events: tuple[str, str, datetime, float]) -> Aggregate:
    agg = Aggregate.empty()
    cat = catalogue()
    for i, (channel, etype, at, value) in enumerate(events):
        fold(agg, FoldEvent(f"e{i}", cat.code(channel), EVENT_INDEX[etype], at.timestamp(), value))
    return agg


def engaged(n: int = 6) -> Aggregate:
    """A customer with some history on email and push, well outside the caps windows."""
    old = NOW - timedelta(days=20)
    evs = []
    for i in range(n):
        evs += [
            ("email", "sent", old + timedelta(hours=i), 0.0),
            ("email", "opened", old + timedelta(hours=i, minutes=5), 0.0),
        ]
    evs += [("push", "sent", old, 0.0), ("email", "converted", old + timedelta(hours=2), 80.0)]
    return history(*evs)


def req(**kw: object) -> RecommendationRequest:
    return RecommendationRequest.model_validate({"customer_id": "cust-1", "now": NOW, **kw})


@pytest.fixture(autouse=True)
def _no_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0")
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")
    get_settings.cache_clear()


def test_no_consent_channel_is_never_recommended(model: LoadedModel) -> None:
    profile = Profile(consent={"email": False, "push": True})
    agg = history(*[*engaged_events(), ("push", "unsubscribed", NOW - timedelta(days=1), 0.0)])
    resp = decide(req(k=20), agg, profile, model)
    channels = {r.channel for r in resp.recommendations}
    assert not channels & {"email", "sms", "call_center", "push"}  # explicit no, opt-in required, opted out
    labels = {e.label: e.excluded for e in resp.rule_trace.excluded}
    assert labels["no_consent: email"] == labels["no_consent: sms"] == 48 * 3
    assert labels["opted_out: push"] == 48 * 3


def engaged_events() -> list[tuple[str, str, datetime, float]]:
    old = NOW - timedelta(days=20)
    return [
        ("email", "sent", old, 0.0),
        ("email", "opened", old + timedelta(minutes=5), 0.0),
        ("web", "visited", old, 0.0),
    ]


def test_quiet_hours_across_a_dst_change() -> None:
    """Europe/Paris leaves summer time on 2026-10-25 (03:00 -> 02:00): 06:00Z is 08:00 local the day
    before (allowed) and 07:00 local that day (quiet, window 21:00-08:00 wraps midnight)."""
    s = get_settings()
    profile = Profile(timezone="Europe/Paris", quiet_hours=QuietHours(start=time(21), end=time(8)))
    now = datetime(2026, 10, 23, 22, 30, tzinfo=UTC)
    r = RecommendationRequest(customer_id="c", channels=["email"], horizon_hours=72, now=now)
    grid = build_grid(r, Aggregate.empty(), profile, [], now, s)
    allowed = {datetime.fromtimestamp(t, UTC): bool(grid.allowed[0, i, 0]) for i, t in enumerate(grid.slots)}
    assert allowed[datetime(2026, 10, 24, 6, tzinfo=UTC)] is True  # 08:00 CEST
    assert allowed[datetime(2026, 10, 25, 6, tzinfo=UTC)] is False  # 07:00 CET
    assert allowed[datetime(2026, 10, 25, 7, tzinfo=UTC)] is True  # 08:00 CET
    assert allowed[datetime(2026, 10, 24, 18, tzinfo=UTC)] is True  # 20:00 CEST
    assert allowed[datetime(2026, 10, 24, 19, tzinfo=UTC)] is False  # 21:00 CEST
    assert allowed[datetime(2026, 10, 25, 19, tzinfo=UTC)] is True  # 20:00 CET
    for at, ok in allowed.items():  # no allowed slot inside the window, whatever the offset
        local = at.astimezone(profile.zone()).time()
        assert ok == (not (local >= time(21) or local < time(8)))
    trace = {e.label: e.excluded for e in grid.trace}
    assert trace["quiet_hours: 21:00-08:00"] == 72 - int(grid.allowed.sum())


def test_quiet_hours_window_within_a_day_and_slots_start_next_hour() -> None:
    s = get_settings()
    profile = Profile(timezone="America/New_York", quiet_hours=QuietHours(start=time(12), end=time(14)))
    r = RecommendationRequest(customer_id="c", channels=["push"], horizon_hours=24, now=NOW)
    grid = build_grid(r, Aggregate.empty(), profile, [], NOW, s)
    assert grid.slots[0] == datetime(2026, 11, 23, 9, tzinfo=UTC).timestamp()
    hours = [datetime.fromtimestamp(t, profile.zone()).hour for t in grid.slots[~grid.allowed[0, :, 0]]]
    assert sorted(hours) == [12, 13]


def test_caps_per_channel_and_total_count_the_decisions_own_send(model: LoadedModel) -> None:
    s = get_settings()
    sent = NOW - timedelta(hours=2)
    agg = history(("email", "sent", sent, 0.0), ("push", "sent", NOW - timedelta(hours=30), 0.0))
    profile = Profile(quiet_hours=QuietHours(start=time(0), end=time(0)))  # no quiet hours
    r = req(channels=["email", "push", "web"], horizon_hours=48)
    grid = build_grid(r, agg, profile, [], NOW, s)
    slots = [datetime.fromtimestamp(t, UTC) for t in grid.slots]
    email_ok = grid.allowed[0, :, 0]
    # 1 email per day: blocked until the earlier send leaves the day window.
    assert all(email_ok[i] == (slots[i] - sent >= timedelta(days=1)) for i in range(len(slots)))
    labels = {e.label for e in grid.trace}
    assert "cap: email 1/day" in labels
    # Total 2/day: with one send in the last day, the decision's own send is the second: still allowed.
    assert grid.allowed[2, 0, 0]
    agg2 = history(("email", "sent", sent, 0.0), ("sms", "sent", sent, 0.0))
    grid2 = build_grid(r, agg2, profile, [], NOW, s)
    assert not grid2.allowed[:, 0, 0].any()
    assert "cap: total 2/day" in {e.label for e in grid2.trace}
    # Week cap: 3 email sends this week -> no email in the horizon while they are in the window.
    agg3 = history(*[("email", "sent", NOW - timedelta(days=d), 0.0) for d in (1.5, 2.5, 3.5)])
    grid3 = build_grid(r, agg3, profile, [], NOW, s)
    first_free = NOW - timedelta(days=3.5) + timedelta(days=7)
    assert all(grid3.allowed[0, i, 0] == (slots[i] >= first_free) for i in range(len(slots)))
    # Every recommendation respects the caps.
    resp = decide(req(channels=["email", "push", "web"], k=20), agg, profile, model)
    for rec in resp.recommendations:
        if rec.channel == "email":
            assert rec.send_at is not None
            assert rec.send_at - sent >= timedelta(days=1)


def test_rule_counts_add_up(model: LoadedModel) -> None:
    profile = Profile(timezone="Asia/Tokyo", consent={"sms": False})
    resp = decide(req(), engaged(), profile, model)
    tr = resp.rule_trace
    assert tr.candidates == 8 * 48 * 3
    assert tr.candidates - sum(e.excluded for e in tr.excluded) == tr.allowed
    assert tr.positive <= tr.allowed


def test_ranking_by_expected_value_and_p_matches_the_model(
    model: LoadedModel, booster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBC_SEND_TIME_SMOOTHING_HOURS", "0")  # the raw prediction (smoothing: test_send_time.py)
    get_settings.cache_clear()
    s = get_settings()
    agg = engaged()
    profile = Profile(timezone="Europe/Berlin", attributes={"segment": "vip", "tenure_days": 300})
    resp = decide(req(k=5), agg, profile, model)
    assert resp.policy == Policy.model
    assert resp.model_version == "v-test"
    evs = [r.expected_value for r in resp.recommendations]
    assert evs == sorted(evs, reverse=True)
    assert all(e > 0 for e in evs)
    lay = model.layout
    value = 80.0  # the customer's average order value
    for rec in resp.recommendations:
        assert rec.send_at is not None
        code = catalogue().code(rec.channel)
        row = (
            customer_features(agg, profile.attributes, lay, NOW.timestamp())
            + channel_features(agg, code, NOW.timestamp())
            + slot_features(agg, rec.send_at.timestamp(), profile.zone())
            + message_features(rec.message_id, model.message_levels)
        )
        p = float(booster.predict(np.array([row]))[0])
        assert rec.p_convert == pytest.approx(p, abs=1e-9)
        assert rec.expected_value == pytest.approx(p * value - s.channel_costs[rec.channel], abs=1e-9)
        assert rec.reasons
        assert all(r.description for r in rec.reasons)
        assert rec.send_at_local is not None
        assert rec.send_at_local.endswith("+01:00")


def test_dont_contact_when_nothing_has_positive_value(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CHANNEL_COSTS", '{"email": 1000, "push": 1000}')
    get_settings.cache_clear()
    resp = decide(req(channels=["email", "push"]), engaged(), Profile(), model)
    assert [r.channel for r in resp.recommendations] == ["none"]
    assert resp.recommendations[0].send_at is None
    assert resp.recommendations[0].expected_value <= 0
    assert resp.rule_trace.positive == 0
    assert resp.propensity == 1.0


class Draw(random.Random):
    """A random source that explores and picks a chosen index."""

    def __init__(self, explore: bool, index: int = 0) -> None:
        super().__init__(0)
        self.explore, self.index = explore, index

    def random(self) -> float:
        return 0.0 if self.explore else 0.999

    def randrange(self, n: int) -> int:  # type: ignore[override]
        return self.index % n


def test_exploration_propensities_are_exact_and_sum_to_one(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_EXPLORATION_RATE", "0.2")
    get_settings.cache_clear()
    r = req(channels=["email", "push"], horizon_hours=3, messages={"email": ["msg-a"], "push": ["msg-b"]})
    profile = Profile(quiet_hours=QuietHours(start=time(0), end=time(0)))
    greedy = decide(r, engaged(), profile, model, rng=Draw(False))
    n = greedy.rule_trace.allowed
    assert n == 6
    assert greedy.policy == Policy.model
    assert greedy.propensity == pytest.approx(0.8 + 0.2 / n)
    seen: dict[tuple[str, object, object], float] = {}
    for i in range(n):
        resp = decide(r, engaged(), profile, model, rng=Draw(True, i))
        assert resp.policy == Policy.explore
        first = resp.recommendations[0]
        seen[(first.channel, first.send_at, first.message_id)] = resp.propensity
    assert len(seen) == n
    g = greedy.recommendations[0]
    assert seen[(g.channel, g.send_at, g.message_id)] == pytest.approx(0.8 + 0.2 / n)
    # The policy's distribution over first choices: exactly the propensities, summing to one.
    assert sum(seen.values()) == pytest.approx(1.0)


def test_holdout_is_deterministic_by_customer(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0.3")
    get_settings.cache_clear()
    ids = [f"cust-{i}" for i in range(300)]
    held = [i for i in ids if holdout_bucket(i) < 0.3]
    assert 60 < len(held) < 120
    assert held == [i for i in ids if holdout_bucket(i) < 0.3]
    profile = Profile(quiet_hours=QuietHours(start=time(0), end=time(0)))
    for cid in held[:3]:
        a = decide(req(customer_id=cid), engaged(), profile, model)
        b = decide(req(customer_id=cid), engaged(), profile, model)
        assert a.policy == b.policy == Policy.holdout
        assert a.propensity == 1.0
        # Never contacted: the holdout is the no-contact arm the uplift is measured against.
        assert [r.channel for r in a.recommendations] == [r.channel for r in b.recommendations] == ["none"]
    free = next(i for i in ids if holdout_bucket(i) >= 0.3)
    assert decide(req(customer_id=free), engaged(), profile, model).policy == Policy.model


def test_cold_start_unknown_customer_gets_population_scores(model: LoadedModel) -> None:
    a = decide(req(customer_id="never-seen"), None, None, model)
    assert a.policy == Policy.model  # cold start is a flag beside the policy, not a policy of its own
    assert a.cold_start is True
    assert decide(req(), engaged(), None, model).cold_start is False
    assert a.recommendations
    # Population level: any customer without history and the same (default) profile gets the same scores.
    b = decide(req(customer_id="another"), Aggregate.empty(), None, model)
    assert [(r.channel, r.send_at, r.p_convert) for r in a.recommendations] == [
        (r.channel, r.send_at, r.p_convert) for r in b.recommendations
    ]
    assert a.decision_id != b.decision_id


def test_fallback_heuristic_without_a_model() -> None:
    agg = history(*[("push", "sent", NOW - timedelta(days=30, hours=i), 0.0) for i in range(10)])
    fold(
        agg,
        FoldEvent(
            "cv", catalogue().code("push"), EVENT_INDEX["converted"], (NOW - 20 * timedelta(days=1)).timestamp(), 30.0
        ),
    )
    resp = decide(req(k=2), agg, Profile(quiet_hours=QuietHours(start=time(0), end=time(0))), None)
    assert resp.policy == Policy.fallback
    assert resp.model_version is None
    assert resp.recommendations[0].channel == "push"  # the best smoothed conversion rate
    assert resp.recommendations[0].reasons[0].feature == "ch_conversion_rate"


def test_a_message_the_model_never_saw_gets_no_lift(model: LoadedModel) -> None:
    # The model's message levels are msg-a..msg-c; msg-new came to the catalogue after it was trained. Its cells get
    # the prior "no lift" (worth minus their cost), not whatever branch the trees send an unseen category down.
    profile = Profile(quiet_hours=QuietHours(start=time(0), end=time(0)))
    known = decide(req(channels=["email"], horizon_hours=3, messages={"email": ["msg-c"]}), engaged(), profile, model)
    assert known.policy == Policy.model
    assert known.recommendations[0].message_id == "msg-c"
    assert known.recommendations[0].expected_value > 0
    new = decide(req(channels=["email"], horizon_hours=3, messages={"email": ["msg-new"]}), engaged(), profile, model)
    assert new.recommendations[0].channel == "none"  # nothing worth its cost: don't contact now
    both = req(channels=["email"], horizon_hours=3, messages={"email": ["msg-new", "msg-c"]}, k=6)
    recs = decide(both, engaged(), profile, model).recommendations
    assert recs
    assert all(r.message_id == "msg-c" for r in recs)


def test_values_equal_but_for_rounding_noise_are_ties_and_the_first_cell_wins() -> None:
    # Two scoring paths add the same leaves in other orders: 8.692613348510962 vs ...964 for two slots a day apart.
    allowed = np.ones((1, 3, 1), dtype=bool)
    noisy = np.array([[[8.692613348510962], [8.692613348510964], [1.0]]])
    assert greedy_cell(noisy, allowed) == 0  # the earliest slot, whichever path scored it
    assert greedy_cell(noisy[:, ::-1], allowed) == 1  # the first of the two tied cells, not the last bits' winner
    real = np.array([[[8.6926133], [8.6926134], [1.0]]])  # a difference a customer could earn
    assert greedy_cell(real, allowed) == 1
    probs, _ = action_probabilities(noisy, allowed, 0.0)
    assert probs.ravel().tolist() == [1.0, 0.0, 0.0]
