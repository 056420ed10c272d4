"""Off-policy estimators over per-decision arrays (pure numpy).

Every estimator reads n logged decisions as aligned 1-D arrays:

    reward    [n]  observed net reward of the logged action
    pscore    [n]  logging propensity of the logged action (NaN = unknown; such decisions are left out of the
                   weighted estimators, never of DM)
    pi_logged [n]  target policy's probability of the logged action
    q_logged  [n]  reward model's prediction for the logged action (cross-fitted, never the evaluated model)
    q_pi      [n]  reward model's expected reward under the target policy, sum_a pi(a|x) q(x, a)
    pi_embed  [n]  target policy's marginal probability of the logged action's embedding (e.g. its channel)
    p_embed   [n]  logging policy's marginal probability of that embedding (NaN = unknown)

An estimator is first a `Terms` object: per-decision numerators and denominators whose ratio of sums is the
estimate. Resampling decisions resamples those columns, so every estimator (self-normalised ones included) and
the difference of two policies on the same decisions (`paired_difference`) get percentile bootstrap intervals
from one shared index matrix. See docs/ope.md for the formulas, when each is reliable and the lead rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from training.ope.bootstrap import (
    LEVEL,
    N_BOOT,
    BoolArray,
    Estimate,
    FloatArray,
    IndexArray,
    Seed,
    Terms,
    estimate,
    estimate_many,
)

MIN_ESS_SHARE = 0.01  # lead rule: full-action weights are "thin" below this ESS share of the decisions used ...
MIN_MATCHED = 30  # ... or below this many decisions with a positive weight
ESTIMATORS = ("dm", "ips", "snips", "dr", "sndr", "switch", "mips", "mdr")
SWITCH_TAU = 100.0  # switch-DR: a logged action weighted above this is valued by the reward model alone

_TOL = 1e-9


# --- inputs -------------------------------------------------------------------------------------------------


def _arr(name: str, x: npt.ArrayLike, n: int | None) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} decisions, expected {n}")
    return a


def _finite(name: str, x: npt.ArrayLike, n: int | None = None) -> FloatArray:
    a = _arr(name, x, n)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _probability(name: str, x: npt.ArrayLike, n: int | None = None, *, unknown_ok: bool = False) -> FloatArray:
    a = _arr(name, x, n) if unknown_ok else _finite(name, x, n)
    known = a[np.isfinite(a)]
    if unknown_ok and np.isinf(a).any():
        raise ValueError(f"{name} must be a probability or NaN (unknown)")
    if ((known < -_TOL) | (known > 1.0 + _TOL)).any():
        raise ValueError(f"{name} must lie in [0, 1]")
    return a


def _weights(pi: FloatArray, p: FloatArray, clip: float | None) -> tuple[FloatArray, BoolArray]:
    """w = pi / p where p is known and positive (used), 0 elsewhere; optionally clipped at `clip`."""
    used = np.isfinite(p) & (p > 0)
    w = np.zeros(pi.shape[0], dtype=np.float64)
    np.divide(pi, p, out=w, where=used)
    if clip is not None:
        if clip <= 0:
            raise ValueError("clip must be positive")
        np.minimum(w, clip, out=w)
    return w, used


def _mean_part(term: FloatArray, used: BoolArray) -> tuple[FloatArray, FloatArray]:
    u = used.astype(np.float64)
    return (np.where(used, term, 0.0), u)


# --- terms of each estimator --------------------------------------------------------------------------------


def dm_terms(q_pi: npt.ArrayLike) -> Terms:
    """Direct method: mean_i q_pi[i], over every decision (no propensity needed)."""
    q = _finite("q_pi", q_pi)
    ones = np.ones(q.shape[0], dtype=np.float64)
    return Terms(((q, ones),), ones, np.ones(q.shape[0], dtype=np.bool_))


def ips_terms(
    reward: npt.ArrayLike, pscore: npt.ArrayLike, pi_logged: npt.ArrayLike, *, clip: float | None = None
) -> Terms:
    """IPS: mean over decisions with a known propensity of w_i r_i, w_i = pi_logged / pscore."""
    r = _finite("reward", reward)
    p = _probability("pscore", pscore, r.shape[0], unknown_ok=True)
    pi = _probability("pi_logged", pi_logged, r.shape[0])
    w, used = _weights(pi, p, clip)
    return Terms((_mean_part(w * r, used),), w, used)


def snips_terms(
    reward: npt.ArrayLike, pscore: npt.ArrayLike, pi_logged: npt.ArrayLike, *, clip: float | None = None
) -> Terms:
    """SNIPS: sum_i w_i r_i / sum_i w_i over decisions with a known propensity."""
    r = _finite("reward", reward)
    p = _probability("pscore", pscore, r.shape[0], unknown_ok=True)
    pi = _probability("pi_logged", pi_logged, r.shape[0])
    w, used = _weights(pi, p, clip)
    return Terms(((w * r, w),), w, used)


def _dr_parts(
    reward: npt.ArrayLike,
    pi_target: npt.ArrayLike,
    p_logging: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    clip: float | None,
    names: tuple[str, str],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, BoolArray]:
    r = _finite("reward", reward)
    n = r.shape[0]
    pi = _probability(names[0], pi_target, n)
    p = _probability(names[1], p_logging, n, unknown_ok=True)
    ql = _finite("q_logged", q_logged, n)
    qp = _finite("q_pi", q_pi, n)
    w, used = _weights(pi, p, clip)
    return r, ql, qp, w, used


def dr_terms(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    clip: float | None = None,
) -> Terms:
    """DR: mean over decisions with a known propensity of q_pi + w (r - q_logged)."""
    r, ql, qp, w, used = _dr_parts(reward, pi_logged, pscore, q_logged, q_pi, clip, ("pi_logged", "pscore"))
    return Terms((_mean_part(qp + w * (r - ql), used),), w, used)


def sndr_terms(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    clip: float | None = None,
) -> Terms:
    """Self-normalised DR: mean q_pi + sum w (r - q_logged) / sum w, over decisions with a known propensity."""
    r, ql, qp, w, used = _dr_parts(reward, pi_logged, pscore, q_logged, q_pi, clip, ("pi_logged", "pscore"))
    return Terms((_mean_part(qp, used), (w * (r - ql), w)), w, used)


def switch_terms(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    tau: float = SWITCH_TAU,
) -> Terms:
    """Switch-DR (Wang, Agarwal & Dudik, ICML 2017): mean of q_pi + w (r - q_logged) 1{w <= tau}.

    DR's correction where the weight is at most tau, the reward model alone where it is larger: one logged
    action the policy takes 1,000 times as often as the log did cannot swing the estimate (DR's failure with
    thin weights); the bias is the reward model's error on the actions so rarely logged."""
    if tau <= 0:
        raise ValueError("tau must be positive")
    r, ql, qp, w, used = _dr_parts(reward, pi_logged, pscore, q_logged, q_pi, None, ("pi_logged", "pscore"))
    kept = np.where(w <= tau, w, 0.0)
    return Terms((_mean_part(qp + kept * (r - ql), used),), kept, used)


def mips_terms(
    reward: npt.ArrayLike, pi_embed: npt.ArrayLike, p_embed: npt.ArrayLike, *, clip: float | None = None
) -> Terms:
    """MIPS: mean over decisions with a known embedding propensity of w_e r, w_e = pi_embed / p_embed."""
    r = _finite("reward", reward)
    pe = _probability("pi_embed", pi_embed, r.shape[0])
    p = _probability("p_embed", p_embed, r.shape[0], unknown_ok=True)
    w, used = _weights(pe, p, clip)
    return Terms((_mean_part(w * r, used),), w, used)


def mdr_terms(
    reward: npt.ArrayLike,
    pi_embed: npt.ArrayLike,
    p_embed: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    clip: float | None = None,
) -> Terms:
    """Marginalised DR: mean of q_pi + w_e (r - q_logged), w_e = pi_embed / p_embed."""
    r, ql, qp, w, used = _dr_parts(reward, pi_embed, p_embed, q_logged, q_pi, clip, ("pi_embed", "p_embed"))
    return Terms((_mean_part(qp + w * (r - ql), used),), w, used)


def dm(
    q_pi: npt.ArrayLike, *, idx: IndexArray | None = None, n_boot: int = N_BOOT, seed: Seed = 0, level: float = LEVEL
) -> Estimate:
    return estimate(dm_terms(q_pi), idx=idx, n_boot=n_boot, seed=seed, level=level)


def ips(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    *,
    clip: float | None = None,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> Estimate:
    return estimate(ips_terms(reward, pscore, pi_logged, clip=clip), idx=idx, n_boot=n_boot, seed=seed, level=level)


def snips(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    *,
    clip: float | None = None,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> Estimate:
    return estimate(snips_terms(reward, pscore, pi_logged, clip=clip), idx=idx, n_boot=n_boot, seed=seed, level=level)


def dr(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    clip: float | None = None,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> Estimate:
    t = dr_terms(reward, pscore, pi_logged, q_logged, q_pi, clip=clip)
    return estimate(t, idx=idx, n_boot=n_boot, seed=seed, level=level)


def sndr(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    clip: float | None = None,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> Estimate:
    t = sndr_terms(reward, pscore, pi_logged, q_logged, q_pi, clip=clip)
    return estimate(t, idx=idx, n_boot=n_boot, seed=seed, level=level)


def mips(
    reward: npt.ArrayLike,
    pi_embed: npt.ArrayLike,
    p_embed: npt.ArrayLike,
    *,
    clip: float | None = None,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> Estimate:
    return estimate(mips_terms(reward, pi_embed, p_embed, clip=clip), idx=idx, n_boot=n_boot, seed=seed, level=level)


def mdr(
    reward: npt.ArrayLike,
    pi_embed: npt.ArrayLike,
    p_embed: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    clip: float | None = None,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> Estimate:
    t = mdr_terms(reward, pi_embed, p_embed, q_logged, q_pi, clip=clip)
    return estimate(t, idx=idx, n_boot=n_boot, seed=seed, level=level)


def terms_all(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    pi_embed: npt.ArrayLike | None = None,
    p_embed: npt.ArrayLike | None = None,
    clip: float | None = None,
) -> dict[str, Terms]:
    """Terms of every estimator for one policy (mips and mdr only when the embedding probabilities are given).
    Keep them to compare two policies with `paired_difference`."""
    if (pi_embed is None) != (p_embed is None):
        raise ValueError("pi_embed and p_embed go together")
    out = {
        "dm": dm_terms(q_pi),
        "ips": ips_terms(reward, pscore, pi_logged, clip=clip),
        "snips": snips_terms(reward, pscore, pi_logged, clip=clip),
        "dr": dr_terms(reward, pscore, pi_logged, q_logged, q_pi, clip=clip),
        "sndr": sndr_terms(reward, pscore, pi_logged, q_logged, q_pi, clip=clip),
        "switch": switch_terms(reward, pscore, pi_logged, q_logged, q_pi, tau=min(clip or SWITCH_TAU, SWITCH_TAU)),
    }
    if pi_embed is not None and p_embed is not None:
        out["mips"] = mips_terms(reward, pi_embed, p_embed, clip=clip)
        out["mdr"] = mdr_terms(reward, pi_embed, p_embed, q_logged, q_pi, clip=clip)
    lengths = {len(t) for t in out.values()}
    if len(lengths) != 1:
        raise ValueError(f"inputs cover different numbers of decisions: {sorted(lengths)}")
    return out


def estimate_all(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    pi_logged: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_pi: npt.ArrayLike,
    *,
    pi_embed: npt.ArrayLike | None = None,
    p_embed: npt.ArrayLike | None = None,
    clip: float | None = None,
    idx: IndexArray | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = 0,
    level: float = LEVEL,
) -> dict[str, Estimate]:
    """Every estimator for one policy, all on the same bootstrap indices (drawn once unless `idx` is given)."""
    terms = terms_all(reward, pscore, pi_logged, q_logged, q_pi, pi_embed=pi_embed, p_embed=p_embed, clip=clip)
    return estimate_many(terms, idx=idx, n_boot=n_boot, seed=seed, level=level)


# --- the lead rule ------------------------------------------------------------------------------------------


def _usable(e: Estimate | None) -> TypeGuard[Estimate]:
    return e is not None and e.n > 0 and math.isfinite(e.value)


def lead_estimator(
    estimates: Mapping[str, Estimate], *, min_ess_share: float = MIN_ESS_SHARE, min_matched: int = MIN_MATCHED
) -> str:
    """The estimator a report leads with.

    1. DR, when it has decisions with propensities and its full-action weights are not thin.
    2. Switch-DR, when DR's weights are thin (ESS < min_ess_share x decisions used, or matched < min_matched):
       a few huge weights then decide DR (one decision weighted 1,830 moved a model's DR from 5.1 to -10.4 on
       300 decisions); Switch-DR keeps DR's correction where the weight is moderate and the reward model where
       it is not.
    3. MDR, when only the embedding's propensity is known (estimated channel propensities).
    4. DM when no weighted estimate is usable (no propensities at all).
    """
    dr_e, switch_e, mdr_e = estimates.get("dr"), estimates.get("switch"), estimates.get("mdr")
    if _usable(dr_e):
        thin = dr_e.ess < min_ess_share * dr_e.n or dr_e.matched < min_matched
        return "switch" if thin and _usable(switch_e) else "dr"
    if _usable(mdr_e):
        return "mdr"
    if "dm" not in estimates:
        raise ValueError("no usable estimate: neither dr, mdr nor dm")
    return "dm"


def policy_lead(policy: str, estimates: Mapping[str, Estimate], report_lead: str) -> str:
    """The estimator a policy's own headline value comes from: the report's lead (the model's, by
    `lead_estimator`), unless this policy's weights are thin for it, then the same rule on its own estimates.

    A baseline that picks one cell per decision can match a handful of logged decisions where the model's
    exploration matches thousands: on 20,000 simulated customers, DR valued global_best on 6 matched decisions
    at -0.55 for a true 3.39; Switch-DR, which the rule picks for it, at 2.60."""
    if policy != "model" and report_lead == "dr" and lead_estimator(estimates) == "switch":
        return "switch"
    return report_lead


def policy_report(policy: str, estimates: Mapping[str, Estimate], report_lead: str) -> dict[str, Any]:
    """A policy's estimates in report.json's layout: every estimator, its own lead (`policy_lead`) and that
    estimator's value and interval as its headline (both engines write it)."""
    own = policy_lead(policy, estimates, report_lead)
    chosen = estimates[own].to_dict()
    return {
        "estimates": {k: v.to_dict() for k, v in estimates.items()},
        "lead": own,
        "value": chosen["value"],
        "ci": chosen["ci"],
        "reward_model_share": reward_model_share(own, estimates[own]),
    }


MOSTLY_REWARD_MODEL = 0.5  # a value "rests mostly on the reward model" from this share of the policy's probability
# Estimators that value what their weights do not cover by the reward model (DM: everything).
_MODEL_BACKED = ("dr", "sndr", "switch", "mdr")


def reward_model_share(name: str, est: Estimate) -> float | None:
    """The share of the policy's probability that estimator `name` values by the reward model alone: 1 for DM;
    1 - mean weight for DR, SNDR, MDR (mass on actions the log never takes) and Switch-DR (whose mean weight
    counts only the weights it keeps, <= tau); None for the purely weighted estimators, which do not use it.

    The bootstrap interval holds that part fixed: it covers the sampling noise of the decisions, not the reward
    model's error. On the simulator greedy policies are ~95% reward model (bench/ope_bound.py: no estimator that
    does not lean on it can value them within +-200% on 20,000 decisions)."""
    if name == "dm":
        return 1.0
    if name not in _MODEL_BACKED or not math.isfinite(est.mean_weight):
        return None
    return float(min(1.0, max(0.0, 1.0 - est.mean_weight)))
