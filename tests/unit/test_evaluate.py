"""Off-policy estimators and prediction metrics on synthetic data where the truth is known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from training.evaluate import _estimate, calibration, gains


def _logged(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uniform logging over k actions; action a converts with probability means[a] (reward 1)."""
    rng = np.random.default_rng(seed)
    means = np.linspace(0.05, 0.5, k)
    action = rng.integers(0, k, size=n)
    reward = (rng.random(n) < means[action]).astype(float)
    return action, reward, np.full(n, 1.0 / k), means


def test_ips_and_snips_recover_the_value_of_a_deterministic_policy() -> None:
    action, reward, prop, means = _logged(40_000, 8, seed=1)
    target = 6  # always pick action 6
    ctx = SimpleNamespace(propensity=prop, reward=reward)
    res = _estimate((action == target).astype(float), ctx, np.zeros(len(action), dtype=bool))  # type: ignore[arg-type]
    truth = means[target]
    assert abs(res["ips"] - truth) < 0.02
    assert abs(res["snips"] - truth) < 0.02
    assert res["snips_ci"][0] < truth < res["snips_ci"][1]
    assert res["ips_ci"][0] < truth < res["ips_ci"][1]
    worst = _estimate((action == 0).astype(float), ctx, np.zeros(len(action), dtype=bool))  # type: ignore[arg-type]
    assert worst["snips_ci"][1] < res["snips_ci"][0]  # the estimator separates a bad policy from a good one


def test_no_contact_counts_as_known_zero() -> None:
    action, reward, prop, _ = _logged(1000, 4, seed=2)
    ctx = SimpleNamespace(propensity=prop, reward=reward)
    res = _estimate(np.zeros(len(action)), ctx, np.ones(len(action), dtype=bool))  # type: ignore[arg-type]
    assert res["ips"] == 0.0
    assert res["snips"] == 0.0
    assert res["share_no_contact"] == 1.0


def test_calibration_and_gains() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.3, size=50_000)
    y = (rng.random(len(p)) < p).astype(float)
    assert calibration(y, p)["ece"] < 0.01
    assert calibration(y, np.clip(p * 2, 0, 1))["ece"] > 0.1
    g = gains(y, p)
    assert g["captured"][-1] == 1.0
    assert g["captured"][3] > g["share"][3]  # the top 20% holds more than 20% of positives
