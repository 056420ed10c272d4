"""Policy distributions and prediction metrics on synthetic data where the truth is known."""

from __future__ import annotations

import numpy as np

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
