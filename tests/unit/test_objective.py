"""The value of a cell in each objective's units (model.domain.objective): what serving and evaluation share."""

from __future__ import annotations

import numpy as np
import pytest

from model.domain.objective import cell_values, cost_scale, realised_value, supported_cells
from model.domain.settings import get_settings


@pytest.fixture
def outcome_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_CLICK_VALUE", "0.5")
    monkeypatch.setenv("NBC_VISIT_VALUE", "4")
    get_settings.cache_clear()


@pytest.mark.usefixtures("outcome_values")
def test_each_objective_values_the_increment_in_its_own_units() -> None:
    s = get_settings()
    pred, none, order, cost = np.array([0.3, 0.1]), 0.05, 80.0, 0.2
    assert cell_values(pred, none, "conversion", order, cost, s) == pytest.approx([0.25 * 80 - 0.2, 0.05 * 80 - 0.2])
    assert cell_values(pred, none, "click", order, cost, s) == pytest.approx([0.25 - 0.4, 0.05 - 0.4])  # 0.2 / 0.5
    assert cell_values(pred, none, "visit", order, cost, s) == pytest.approx([0.25 - 0.05, 0.05 - 0.05])  # 0.2 / 4
    # A value model predicts currency: no clamp to [0, 1], no order value.
    assert cell_values(np.array([37.5]), 2.5, "value", order, cost, s) == pytest.approx([37.5 - 2.5 - 0.2])
    # Click / visit rank as probability x outcome value - cost: the same order and sign, another unit.
    p = np.array([0.02, 0.3, 0.11])
    for objective, per in (("click", s.click_value), ("visit", s.visit_value)):
        v = cell_values(p, 0.0, objective, order, np.array([0.001, 0.9, 0.2]), s)
        assert v * per == pytest.approx(p * per - np.array([0.001, 0.9, 0.2]))
    assert cost_scale("conversion", s) == cost_scale("value", s) == 1.0


def test_unsupported_cells_get_no_lift_and_cost_their_price() -> None:
    s = get_settings()
    pred = np.full((2, 3, 2), 0.4)  # (C, S, M): a tree leaf's confident guess everywhere
    costs = np.array([0.0, 0.6])[:, None, None] + np.zeros((1, 1, 2))
    ok = supported_cells(["email", "in_app"], ["a", "new"], ["in_app"], ["new"])
    assert ok is not None
    assert ok[:, 0, :].tolist() == [[True, False], [False, False]]
    v = cell_values(pred, 0.1, "conversion", 50.0, costs, s, ok)
    assert v[0, :, 0] == pytest.approx([0.3 * 50] * 3)
    assert v[0, :, 1] == pytest.approx([0.0] * 3)  # email with a new message: the prior, worth 0 - 0
    assert v[1] == pytest.approx(np.full((3, 2), -0.6))  # in_app: never positive, so never the greedy choice
    assert supported_cells(["email"], [None], [], []) is None


@pytest.mark.usefixtures("outcome_values")
def test_logged_rewards_are_in_the_same_units() -> None:
    s = get_settings()
    outcome, value, cost = np.array([0, 2, 1]), np.array([0.0, 0.0, 60.0]), np.array([0.2, 0.2, 0.0])
    assert realised_value(outcome, value, "visit", cost, s) == pytest.approx([-0.05, 0.95, 1.0])
    assert realised_value(outcome, value, "click", cost, s) == pytest.approx([-0.4, 0.6, 1.0])
    assert realised_value(outcome, value, "conversion", cost, s) == pytest.approx([-0.2, -0.2, 60.0])
    assert realised_value(outcome, value, "value", cost, s) == pytest.approx([-0.2, -0.2, 60.0])
    with pytest.raises(ValueError, match="unknown objective 'revenue'"):
        realised_value(outcome, value, "revenue", cost, s)
