"""Policy distributions and prediction metrics on synthetic data where the truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import calibration, gains
from training.ope import policies as pol


def _grid(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ev = rng.normal(-0.5, 1.0, size=(50, 3, 4, 2))
    allowed = rng.random(ev.shape) < 0.6
    allowed[0] = False  # nothing allowed: "don't contact" for sure
    ev[1] = -1.0  # nothing positive: "don't contact" unless exploring
    return ev, allowed


def test_policies_are_distributions_over_the_allowed_grid() -> None:
    ev, allowed = _grid(1)
    eps = 0.1
    for dist in (pol.served(ev, allowed, eps), pol.uniform(allowed), pol.argmax_policy(ev, allowed, allow_none=True)):
        total = dist.cells.reshape(len(ev), -1).sum(axis=1) + dist.none
        assert np.allclose(total, 1.0)
        assert not (dist.cells[~allowed] > 0).any()  # never a candidate the rules removed
    served = pol.served(ev, allowed, eps)
    assert served.none[0] == 1.0
    assert abs(served.none[1] - (1 - eps)) < 1e-12  # no positive value: don't contact, except exploration
    greedy = pol.argmax_policy(ev, allowed, allow_none=True)
    # the served policy puts 1 - eps (+ its exploration share) on the greedy cell
    for i in range(2, len(ev)):
        if greedy.none[i] == 0:
            cell = np.unravel_index(int(greedy.cells[i].argmax()), ev.shape[1:])
            assert served.cells[i][cell] == 1 - eps + eps / allowed[i].sum()


def test_calibration_and_gains() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.3, size=50_000)
    y = (rng.random(len(p)) < p).astype(float)
    assert calibration(y, p)["ece"] < 0.01
    assert calibration(y, np.clip(p * 2, 0, 1))["ece"] > 0.1
    g = gains(y, p)
    assert g["captured"][-1] == 1.0
    assert g["captured"][3] > g["share"][3]  # the top 20% holds more than 20% of positives


def test_auc_by_week_groups_sends_by_monday_weeks_with_intervals() -> None:
    from datetime import UTC, datetime

    from sklearn.metrics import roc_auc_score

    from training.evaluate import auc_by_week

    rng = np.random.default_rng(3)
    monday = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday
    ts = np.concatenate([monday + rng.uniform(0, 7 * 86400, 400), monday + 7 * 86400 + rng.uniform(0, 7 * 86400, 400)])
    y = (rng.random(800) < 0.3).astype(float)
    # Week one: the score knows the outcome (AUC near 1); week two: pure noise (AUC near 0.5): drift.
    p = np.where(np.arange(800) < 400, y * 0.5 + rng.uniform(0, 0.6, 800), rng.random(800))
    weeks = auc_by_week(y, p, ts)
    assert [w["week"] for w in weeks] == ["2026-11-02", "2026-11-09"]
    assert [w["n"] for w in weeks] == [400, 400]
    assert weeks[0]["auc"] == pytest.approx(roc_auc_score(y[:400], p[:400]))
    assert weeks[0]["auc"] > 0.85
    assert abs(weeks[1]["auc"] - 0.5) < 0.1
    for w in weeks:
        lo, hi = w["ci"]
        assert lo <= w["auc"] <= hi
        assert lo < hi
    # The interval narrows with more data and a week with one class has no AUC.
    assert weeks[1]["ci"][1] - weeks[1]["ci"][0] < 0.15
    single = auc_by_week(np.zeros(5), np.arange(5.0), np.full(5, monday))
    assert single[0]["auc"] is None
    assert single[0]["ci"] is None
