"""The order-value estimate (model.domain.value) and how training learns its prior (training/value_prior.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from model.domain.aggregate import CONVERTED
from model.domain.manifest import Manifest
from model.domain.value import MAX_CREDIBILITY, ValuePrior, fit_prior, order_value
from training import dataset, value_prior
from training.records import normalise_touchpoints
from training.simulate import SimConfig, simulate


def test_fit_prior_on_a_hand_computed_example() -> None:
    # Customers: A orders 10 and 20, B 30 and 50, C once 100. Overall mean 210 / 5 = 42.
    # Within-customer variance: ((10-15)^2 + (20-15)^2 + (30-40)^2 + (50-40)^2) / (1 + 1) = 250 / 2 = 125.
    # Between: sum n (mean - 42)^2 = 2 x 27^2 + 2 x 2^2 + 58^2 = 4830, minus (3 - 1) x 125 = 4580, over
    # 5 - (4 + 4 + 1) / 5 = 3.2: 1431.25. Credibility k = 125 / 1431.25.
    n, total, sq = [2, 2, 1], [30.0, 80.0, 100.0], [500.0, 3400.0, 10000.0]
    prior = fit_prior(n, total, sq, {})
    assert prior is not None
    assert prior.overall == pytest.approx(42.0)
    assert prior.attribute is None
    assert prior.credibility == pytest.approx(125 / 1431.25)
    assert (prior.conversions, prior.customers) == (5, 3)
    k = 125 / 1431.25
    assert order_value(30.0, 2, {}, prior, 50.0) == pytest.approx((30 + k * 42) / (2 + k))


def test_without_any_difference_between_customers_the_prior_alone_counts() -> None:
    # Every customer orders around the same mean: no between-customer variance, k at its cap.
    prior = fit_prior([2, 2], [20.0, 20.0], [202.0, 202.0], {})
    assert prior is not None
    assert prior.credibility == MAX_CREDIBILITY
    assert order_value(1000.0, 1, None, prior, 50.0) == pytest.approx(10.0, rel=1e-3)
    assert fit_prior([0, 0], [0.0, 0.0], [0.0, 0.0], {}) is None  # no conversion: no prior


def _customers(seed: int, count: int = 4000) -> tuple[dict[str, list[str]], np.ndarray, list[np.ndarray]]:
    """Customers whose true mean order value depends on their segment (not on `noise`), lognormal orders."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(["a", "b", "c"], size=count, p=[0.5, 0.3, 0.2])
    level = {"a": 40.0, "b": 60.0, "c": 120.0}
    theta = np.array([level[x] for x in seg]) * rng.lognormal(0.0, 0.25, count)
    orders = [theta[i] * rng.lognormal(-0.08, 0.4, n) for i, n in enumerate(rng.poisson(1.5, count))]
    attrs = {"noise": rng.integers(0, 3, count).astype(str).tolist(), "segment": seg.tolist()}
    return attrs, theta, orders


def test_the_prior_finds_the_attribute_that_sets_order_values_and_halves_the_error() -> None:
    attrs, theta, orders = _customers(1)
    prior = fit_prior([len(o) for o in orders], [o.sum() for o in orders], [(o**2).sum() for o in orders], attrs)
    assert prior is not None
    assert prior.attribute == "segment"
    # The same prior whatever order the attributes are tried in.
    n = [len(o) for o in orders]
    swapped = fit_prior(n, [o.sum() for o in orders], [(o**2).sum() for o in orders], dict(reversed(attrs.items())))
    assert swapped == prior
    for level, mean in {"a": 40.0, "b": 60.0, "c": 120.0}.items():
        assert prior.means[level] == pytest.approx(mean * np.exp(0.25**2 / 2), rel=0.06)
    # k = within / between variance: orders vary ~2-3x more within a customer than customers' means around
    # their segment's. The estimate is about that, and a customer's own orders count as n / (n + k).
    assert 1.0 < prior.credibility < 6.0
    seg = attrs["segment"]
    new = np.array([order_value(o.sum(), len(o), {"segment": seg[i]}, prior, 50.0) for i, o in enumerate(orders)])
    old = np.array([order_value(o.sum(), len(o), {"segment": seg[i]}, None, 50.0) for i, o in enumerate(orders)])
    err_new, err_old = np.abs(new - theta).mean(), np.abs(old - theta).mean()
    assert err_new < 0.7 * err_old


def test_order_value_without_a_prior_is_the_old_rule_and_with_one_falls_back_by_level() -> None:
    assert order_value(120.0, 3, {"segment": "vip"}, None, 50.0) == 40.0
    assert order_value(0.0, 0, {"segment": "vip"}, None, 50.0) == 50.0
    prior = ValuePrior(overall=60.0, attribute="segment", means={"vip": 130.0, "new": 40.0}, credibility=4.0)
    assert order_value(0.0, 0, {"segment": "vip"}, prior, 50.0) == 130.0  # no order yet: the level's mean
    assert order_value(0.0, 0, {"segment": "unheard"}, prior, 50.0) == 60.0  # unknown level: overall
    assert order_value(0.0, 0, None, prior, 50.0) == 60.0
    # With many orders the customer's own average dominates.
    assert order_value(100 * 20.0, 100, {"segment": "vip"}, prior, 50.0) == pytest.approx((2000 + 4 * 130) / 104)


def test_manifests_carry_the_prior_and_older_ones_load_without_it() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    base = {
        "version": "v1",
        "created_at": now,
        "training_window": (now, now),
        "features": [],
        "categorical": [],
        "schema_hash": "x",
        "channels": ["email"],
    }
    assert Manifest.model_validate(base).value_prior is None
    prior = ValuePrior(overall=55.0, attribute="segment", means={"vip": 120.0}, credibility=3.0)
    back = Manifest.model_validate_json(Manifest(**base, value_prior=prior).model_dump_json())
    assert back.value_prior == prior


def test_training_learns_the_prior_from_the_training_period_only() -> None:
    sim = simulate(SimConfig(customers=600, days=40, seed=5, organic=False))
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=100)
    prior = ts.value_prior
    assert prior is not None
    assert prior.attribute == "segment"  # the simulator's order values differ by segment (sim_truth._SEG_VALUE)
    assert prior.means["vip"] > 1.5 * prior.means["regular"]
    # Only conversions before the first held-out send: a huge order after it changes nothing, one before does.
    cut = float(ts.meta.filter(pl.Series(ts.split == "eval"))["send_ts"].min())
    before, excluded = value_prior.learnable(ts.meta, ts.split, "temporal")
    assert (before, excluded) == (cut, set())
    tp = normalise_touchpoints(sim["touchpoints"])
    order = tp.filter(pl.col("ev") == CONVERTED).head(1).with_columns(pl.lit(1e6).alias("value"))

    def refit(at: float) -> ValuePrior | None:
        extra = order.with_columns(pl.lit(at).alias("ts"))
        return value_prior.fit(value_prior.customer_stats(pl.concat([tp, extra]), before, excluded, sim["profiles"]))

    after = refit(cut + 3600.0)
    assert after is not None
    assert after.overall == pytest.approx(prior.overall)
    assert after.means == pytest.approx(prior.means)
    assert after.credibility == pytest.approx(prior.credibility)
    earlier = refit(cut - 3600.0)
    assert earlier is not None
    assert earlier.overall > prior.overall + 100


def test_the_customer_split_learns_from_the_other_customers_only() -> None:
    sends = pl.DataFrame({"customer_id": ["a", "a", "b", "c"], "send_ts": [1.0, 5.0, 2.0, 9.0]})
    part = np.array(["train", "train", "eval", "eval"])
    assert value_prior.learnable(sends, part, "customer") == (float("inf"), {"b", "c"})
    assert value_prior.learnable(sends, part, "temporal") == (2.0, set())
    assert value_prior.learnable(sends, part, "temporal", eval_start=4.0) == (4.0, set())
