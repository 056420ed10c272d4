"""The value of a candidate in the units of the model's objective: ONE definition for serving and evaluation.

What a model predicts depends on the objective it was trained for (the manifest's ``objective``):
click, visit and conversion models predict P(outcome | customer, action), a ``value`` model the expected
conversion value itself. Every cell is valued by its increment over not contacting, minus its cost, in one
unit per objective:

* ``conversion``: (p - p_none) x the customer's order value - cost, in currency;
* ``value``: (v - v_none) - cost, in currency (the prediction IS the value: no clamp, no order value);
* ``click`` / ``visit``: (p - p_none) - cost / the configured value of one click / visit, in clicks (visits)
  per decision: the cost is turned into outcomes, so the ranking and the sign ("worth its cost") are those of
  p x outcome value - cost, and the policy value reads as outcomes per decision.

A channel or message that no training send tried has no evidence: its cells get the prior "no incremental
effect" (lift 0, worth -cost), never a tree leaf's guess. They are then never the greedy choice (which needs
a positive value) and are reached only by exploration until the log has data for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from model.domain.settings import Settings

Objective = Literal["click", "visit", "conversion", "value"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
# The unit of a cell's expected value and of the policy value in the evaluation report.
UNITS: dict[str, str] = {
    "click": "clicks per decision",
    "visit": "visits per decision",
    "conversion": "conversion value per decision",
    "value": "conversion value per decision",
}
FloatArray = npt.NDArray[np.float64]


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    return objective


def is_probability(objective: str) -> bool:
    """Whether the model predicts a probability (click, visit, conversion) rather than a value."""
    return check_objective(objective) != "value"


def cost_scale(objective: str, settings: Settings) -> float:
    """What one unit of currency is worth in the objective's units (1 for conversion and value)."""
    if check_objective(objective) == "click":
        return 1.0 / settings.click_value
    if objective == "visit":
        return 1.0 / settings.visit_value
    return 1.0


def cell_values(
    pred: npt.ArrayLike,
    pred_none: npt.ArrayLike,
    objective: str,
    order_value: npt.ArrayLike,
    costs: npt.ArrayLike,
    settings: Settings,
    supported: npt.ArrayLike | None = None,
) -> FloatArray:
    """Incremental expected value of every cell, in the objective's units (module docstring).

    All arguments broadcast together: `pred` the model's prediction per cell, `pred_none` its prediction for
    "don't contact" (0 for a model that never learned it), `order_value` the customer's order value (used by
    the conversion objective only), `costs` the cell's contact cost in currency, `supported` False where the
    cell's channel or message had no training support (None: all supported)."""
    lift = np.asarray(pred, dtype=np.float64) - np.asarray(pred_none, dtype=np.float64)
    if supported is not None:
        lift = np.where(supported, lift, 0.0)
    cost = np.asarray(costs, dtype=np.float64)
    if check_objective(objective) == "conversion":
        return np.asarray(lift * np.asarray(order_value, dtype=np.float64) - cost)
    return np.asarray(lift - cost * cost_scale(objective, settings))


def realised_value(
    outcome: npt.ArrayLike, conversion_value: npt.ArrayLike, objective: str, costs: npt.ArrayLike, settings: Settings
) -> FloatArray:
    """A logged decision's reward in the same units: conversion value (conversion, value) or whether the outcome
    happened (click, visit), minus the contact's cost (0 for "don't contact")."""
    scale = cost_scale(objective, settings)
    if check_objective(objective) in ("click", "visit"):
        got = (np.asarray(outcome, dtype=np.float64) > 0).astype(np.float64)
    else:
        got = np.asarray(conversion_value, dtype=np.float64)
    return np.asarray(got - np.asarray(costs, dtype=np.float64) * scale)


def unknown_messages(messages: Sequence[str | None], levels: Sequence[str]) -> list[str]:
    """The grid's messages a model with message levels never saw: a message added to the catalogue after it was
    trained (its trees would send it down whichever branch unseen categories take). None for a model without
    message levels (it scores every cell as "no message")."""
    known = set(levels)
    return [m for m in messages if known and m is not None and m not in known]


def supported_cells(
    channels: list[str], messages: list[str | None], unsupported_channels: list[str], unsupported_messages: list[str]
) -> npt.NDArray[np.bool_] | None:
    """[C, 1, M] False where a grid cell's channel or message had no training support; None when all had."""
    if not unsupported_channels and not unsupported_messages:
        return None
    bad_c = set(unsupported_channels)
    bad_m = set(unsupported_messages)
    ch_ok = np.array([c not in bad_c for c in channels], dtype=bool)
    msg_ok = np.array([m is None or m not in bad_m for m in messages], dtype=bool)
    return np.asarray(ch_ok[:, None, None] & msg_ok[None, None, :])
