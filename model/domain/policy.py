"""The serving policy as probabilities: ONE definition, used to decide and to evaluate the decision offline.

Outside the holdout the policy is epsilon-greedy over the candidates the rules allowed: with probability
1 - eps the best candidate by expected value if it is positive, else "don't contact"; with probability eps a
candidate drawn uniformly among the allowed ones. Every logged decision's propensity is therefore exact, and
offline evaluation scores the whole distribution pi(a | x), not only its argmax.

A deterministic holdout share of customers (by a hash of the customer id) is never contacted (channel
"none", propensity 1): what the served customers earn over the holdout is the measured uplift (`nbc uplift`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt


def holdout_bucket(customer_id: str) -> float:
    """A stable number in [0, 1) per customer: the holdout is the customers below `holdout_share`."""
    digest = hashlib.sha256(f"holdout:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


# Expected values equal to this many decimals are ties, and the first candidate (the earliest slot) wins. Two scoring
# paths (the compiled scorer and LightGBM, serving and evaluation) add the same leaves in other orders and differ in
# the last bits: without rounding, a customer's two equally good slots could swap between them.
TIE_DECIMALS = 9


def tie_key(ev: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Expected values as candidates are ranked by (rounded to TIE_DECIMALS)."""
    return np.round(ev, TIE_DECIMALS)


def greedy_cell(ev: npt.NDArray[np.float64], allowed: npt.NDArray[np.bool_]) -> int | None:
    """The flat index of the best allowed candidate with positive expected value (first on ties), else None."""
    flat_ev, flat_ok = tie_key(ev.ravel()), allowed.ravel()
    score = np.where(flat_ok & (flat_ev > 0), flat_ev, -np.inf)
    if not np.isfinite(score).any():
        return None
    return int(np.argmax(score))


def action_probabilities(
    ev: npt.NDArray[np.float64], allowed: npt.NDArray[np.bool_], eps: float
) -> tuple[npt.NDArray[np.float64], float]:
    """pi(a | x) for every candidate cell (same shape as `ev`, 0 where not allowed) and pi(don't contact)."""
    probs = np.zeros(ev.shape, dtype=np.float64)
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        return probs, 1.0
    probs[allowed] = eps / n_allowed
    best = greedy_cell(ev, allowed)
    if best is None:
        return probs, 1.0 - eps
    probs.flat[best] += 1.0 - eps
    return probs, 0.0
