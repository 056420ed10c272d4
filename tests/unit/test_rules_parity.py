"""THE rules and policy parity test: offline evaluation's candidate grid and policy == what serving decides.

For held-out decisions of a simulated log, the offline side (dataset replay -> ope/contexts -> ope/policies)
and the serving side (`decide` on the aggregate replayed up to the decision instant, the customer's profile
and the same model) must agree on the grid, every rule's exclusions (consent, opt-outs, quiet hours, caps and
the horizon), the chosen action and its exact propensity. It fails if either side changes alone.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from model.domain.aggregate import FoldEvent, replay
from model.domain.decide import decide
from model.domain.manifest import Unsupported
from model.domain.recommend_schemas import NONE_CHANNEL, RecommendationRequest
from model.domain.schemas import Profile
from model.domain.settings import get_settings
from tests.scoring_helpers import served_model
from training import dataset
from training.evaluate import model_policy, model_values, unsupported
from training.records import normalise_touchpoints, profiles_map
from training.simulate import SimConfig, simulate
from training.train import train_local


class NeverExplore(random.Random):
    def random(self) -> float:  # type: ignore[override]
        return 0.999


@pytest.fixture
def served_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_HOLDOUT_SHARE", "0")  # the holdout is a separate arm, not the model's policy
    monkeypatch.setenv("NBC_CAPS__PER_CHANNEL_WEEK", "2")  # tight caps, so the cap rules do bind
    monkeypatch.setenv("NBC_CAPS__TOTAL_WEEK", "3")
    get_settings.cache_clear()


@pytest.mark.usefixtures("served_settings")
@pytest.mark.parametrize(
    ("objective", "labels"),
    [("conversion", "window"), ("conversion", "attributed"), ("visit", "attributed"), ("value", "attributed")],
)
def test_offline_grid_rules_and_policy_equal_serving(objective: dataset.Objective, labels: dataset.Labels) -> None:
    sim = simulate(SimConfig(customers=150, days=30, seed=12))
    ts = dataset.build(
        sim["touchpoints"],
        sim["profiles"],
        sim["decisions"],
        split="customer",
        eval_fraction=0.5,
        max_contexts=60,
        # window: the model also scores "don't contact" and both sides rank by incremental value (on this log it
        # contacts nobody); attributed: contacts, valued in each objective's units (model.domain.objective).
        labels=labels,
        objective=objective,
    )
    ctx = ts.contexts
    assert ctx is not None
    assert len(ctx) >= 40
    # Small leaves: on 150 customers the default min_data_in_leaf (400) grows no tree, and equal values on every
    # cell would let the values' parity (send-time smoothing included) pass vacuously.
    small = {"min_data_in_leaf": 5, "min_sum_hessian_in_leaf": 0.0, "learning_rate": 0.3}
    booster = train_local(ts, rounds=30, early_stopping=30, threads=1, params=small).booster
    model = served_model(booster, ts, "parity", Unsupported(**unsupported(ts)))
    settings = get_settings()
    assert ts.no_contact == (labels == "window")
    # Both sides value a conversion with the learned order-value prior (model.domain.value), not the default.
    assert ts.value_prior is not None
    assert model.value_prior == ts.value_prior
    offline = model_policy(booster, ts)
    values = model_values(booster, ts)
    spread = np.where(ctx.allowed, values, -np.inf).max(axis=2) - np.where(ctx.allowed, values, np.inf).min(axis=2)
    assert np.nanmax(np.where(np.isfinite(spread), spread, np.nan)) > 0.01  # the send time matters to this model

    tp = normalise_touchpoints(sim["touchpoints"]).sort("ts", "event_id")
    profiles = profiles_map(sim["profiles"])
    rules_seen: set[str] = set()
    contacted = 0
    for k in range(len(ctx)):
        cid, t = ctx.customer_id[k], float(ctx.decided_at[k])
        before = tp.filter((pl.col("customer_id") == cid) & (pl.col("ts") < t))
        agg = replay([FoldEvent(*r) for r in before.select("event_id", "ch", "ev", "ts", "value").iter_rows()])
        req = RecommendationRequest(customer_id=cid, now=datetime.fromtimestamp(t, UTC), k=1)
        resp = decide(req, agg, profiles.get(cid) or Profile(), model, rng=NeverExplore())

        # The grid and every rule's exclusions.
        trace = [(r.rule, r.label, r.excluded) for r in resp.rule_trace.excluded]
        assert trace == ctx.trace[k]
        assert resp.rule_trace.candidates == ctx.allowed[k].size
        assert resp.rule_trace.allowed == int(ctx.allowed[k].sum())
        rules_seen.update(r for r, _, _ in trace)

        # The chosen action and its exact propensity under the served epsilon-greedy policy.
        rec = resp.recommendations[0]
        if rec.channel == NONE_CHANNEL:
            assert offline.none[k] == pytest.approx(resp.propensity)
            continue
        assert rec.send_at is not None
        c = settings.channels.index(rec.channel)
        s = int(np.flatnonzero(ctx.slot_ts[k] == rec.send_at.timestamp())[0])
        m = ts.levels["message"].index(rec.message_id) if ts.levels["message"] else 0
        assert offline.cells[k].max() == pytest.approx(offline.cells[k, c, s, m])
        assert offline.cells[k, c, s, m] == pytest.approx(resp.propensity)
        assert values[k, c, s, m] == pytest.approx(rec.expected_value)  # the same value, in the same units
        contacted += 1
    # The scenario exercises every kind of rule, so a rule changed on one side only cannot go unseen.
    assert {"no_consent", "quiet_hours", "cap"} <= rules_seen
    if labels == "attributed":  # the values were compared on contacts, not only on "don't contact"
        assert contacted >= 5, contacted
