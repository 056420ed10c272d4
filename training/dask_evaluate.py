"""Evaluation on Dask: the held-out decisions' grids, policies and estimator terms stay in their partitions.

Each partition (training/dask_dataset.py) holds its customers' held-out decisions with their candidate grids.
The driver computes only what needs every partition, from small summaries: the baselines' training preferences
(reward sums per channel / hour / message), the channels and messages training never tried, the logging
channel model (fitted on per-decision features, a few numbers per decision) and the two cross-fitted reward
models (lightgbm.dask on the rows where they are). Every partition then scores its grids, builds the same
policies as the local evaluation (training/evaluate.py) and returns, per estimator and policy, the column sums
of the estimator's terms (training/ope/bootstrap.py: an estimate is a ratio of sums) per block of customers.
Estimates are ratios of the summed columns; intervals come from a bootstrap over those customer blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from model.domain.catalogue import catalogue
from model.domain.manifest import Unsupported
from model.domain.objective import cell_values, cost_scale
from model.domain.settings import get_settings
from training import evaluate as local_eval
from training import ope
from training.dask_cluster import compute, delayed, stacked
from training.dask_dataset import DistributedSet
from training.dataset import TrainingSet
from training.ope import policies as pol
from training.ope import reward_model
from training.ope.contexts import Contexts
from training.sim_truth import Oracle
from training.train import fit_dask

BLOCKS = 64  # customer blocks (by id hash) the bootstrap resamples
_ORACLES: dict[str, Oracle] = {}  # per worker process: the truth file is read once


def _costs() -> np.ndarray:
    return local_eval._costs()  # the serving settings' prices, as the local evaluation


def _oracle(path: str | None) -> Oracle | None:
    if path is None:
        return None
    if path not in _ORACLES:
        _ORACLES[path] = Oracle.load(path)
    return _ORACLES[path]


# --- summaries the driver combines -------------------------------------------------------------------------


def _preference_sums(ts: TrainingSet | None) -> dict[str, Any]:
    """Reward sums and counts per channel, local hour and message over the training sends; what was tried."""
    n_ch, n_msg = len(catalogue()), 0 if ts is None else max(1, len(ts.levels["message"]))
    out: dict[str, Any] = {"ch": np.zeros((2, n_ch)), "hour": np.zeros((2, 24)), "msg": np.zeros((2, n_msg))}
    out["channels"], out["messages"] = set(), set()
    if ts is None:
        return out
    train = ts.split == "train"
    reward = ts.meta["reward"].to_numpy()[train]
    for key, name, size in (("ch", "channel", n_ch), ("hour", "local_hour", 24), ("msg", "message", n_msg)):
        codes = ts.X[train, ts.names.index(name)].astype(int)
        ok = (codes >= 0) & (codes < size)
        out[key][0] = np.bincount(codes[ok], weights=reward[ok], minlength=size)[:size]
        out[key][1] = np.bincount(codes[ok], minlength=size)[:size]
    fit = np.isin(ts.split, ["train", "valid"])
    out["channels"] = set(ts.meta["channel"].to_numpy()[fit].tolist())
    out["messages"] = {m for m in ts.meta["message_id"].to_numpy()[fit].tolist() if m is not None}
    return out


def _decision_features(ts: TrainingSet | None) -> dict[str, Any] | None:
    """What the logging channel model reads of each held-out decision (a few numbers, never the grid)."""
    if ts is None or ts.contexts is None:
        return None
    c = ts.contexts
    return {
        "cust": c.cust,
        "consent": c.consent,
        "engaged": c.engaged,
        "logged_channel": c.logged_channel,
        "customer_id": list(c.customer_id),
    }


def _fold_counts(ts: TrainingSet | None) -> list[int]:
    if ts is None:
        return [0, 0]
    fold = _row_fold(ts)
    return [int((fold != k).sum()) for k in (0, 1)]


def _row_fold(ts: TrainingSet) -> np.ndarray:
    """-1 for older rows (both reward models learn from them), else the held-out customer's fold."""
    ev = ts.split == "eval"
    fold = np.full(len(ts.y), -1)
    fold[ev] = (reward_model.hash_share_list(ts.meta["customer_id"].to_numpy()[ev].tolist()) >= 0.5).astype(int)
    return fold


def _fold_rows(ts: TrainingSet | None, k: int, width: int, value: bool) -> tuple[np.ndarray, np.ndarray]:
    if ts is None:
        return np.zeros((0, width), dtype=np.float32), np.zeros(0)
    keep = _row_fold(ts) != k
    y = ts.y[keep]
    return ts.X[keep], (y if value else (y > 0).astype(np.float64))


def _eval_predictions(ts: TrainingSet | None, booster: Any) -> tuple[np.ndarray, np.ndarray]:
    if ts is None:
        return np.zeros(0), np.zeros(0)
    x, y = ts.part("eval")
    return y, (np.asarray(booster.predict(x, num_threads=1)) if len(y) else np.zeros(0))


# --- the per-partition evaluation --------------------------------------------------------------------------


@dataclass
class _DecisionFeatures:
    """The held-out decisions' fields the logging channel model reads (reward_model._channel_model)."""

    KEYS: ClassVar[tuple[str, ...]] = ("cust", "consent", "engaged", "logged_channel")
    cust: np.ndarray
    consent: np.ndarray
    engaged: np.ndarray
    logged_channel: np.ndarray

    def __len__(self) -> int:
        return len(self.logged_channel)


class _PartitionDecisions(local_eval.LoggedDecisions):
    """The logged side of one partition's estimates, with nuisance values computed from global models."""

    def __init__(self, ctx: Contexts, q: np.ndarray, q_none: np.ndarray, p_channel: np.ndarray) -> None:
        self._logged(ctx)
        self._nuisance_values(q, q_none, p_channel)


def _nuisance_q(
    ts: TrainingSet, ctx: Contexts, boosters: list[Any], rates: list[float], unsupported: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Expected net reward of every cell (and of "don't contact") from the fold's reward model, as
    training/ope/reward_model.py values them: the fold model never saw these customers' held-out outcomes."""
    costs = _costs()
    fold = (reward_model.hash_share_list(ctx.customer_id) >= 0.5).astype(int)
    q = np.zeros(ctx.allowed.shape)
    q_none = np.zeros(len(ctx))
    for k in (0, 1):
        idx = np.flatnonzero(fold == k)
        if not len(idx):
            continue
        if boosters[k] is None:
            q[idx], q_none[idx] = rates[k], rates[k]
            continue
        sub = local_eval._subset(ctx, idx)
        q[idx] = pol.grid_scores(boosters[k], sub, ts.levels["message"], ts.layout)
        if ts.no_contact:
            q_none[idx] = pol.no_contact_scores(boosters[k], sub, ts.layout)
    # Absolute expected reward in the objective's units, as training/ope/reward_model.py values them.
    settings = get_settings()
    q = cell_values(q, 0.0, ts.objective, ctx.value_hat[:, None, None, None], costs[None, :, None, None], settings)
    q_none = cell_values(q_none, 0.0, ts.objective, ctx.value_hat, 0.0, settings)
    if not ts.no_contact:
        q_none = np.zeros(len(ctx))
    # Never-tried channels: nothing credited (the serving prior), the cost in the objective's units.
    q[:, unsupported] = -costs[unsupported][None, :, None, None] * cost_scale(ts.objective, settings)
    return q, q_none


def _partition_values(
    ts: TrainingSet | None,
    booster: Any,
    reward_boosters: list[Any],
    rates: list[float],
    p_channel: np.ndarray,
    prefs: tuple[np.ndarray, np.ndarray, np.ndarray],
    unsupported: list[int],
    truth: str | None,
    gone: Unsupported | None = None,
) -> dict[str, Any] | None:
    """One partition's contribution: per policy and estimator, column sums of the terms per customer block,
    weight diagnostics, and with a truth file the oracle's exact values summed. `gone`: the channels and
    messages without support in the whole training set (a partition alone would see fewer)."""
    if ts is None or ts.contexts is None or len(ts.contexts) == 0:
        return None
    ctx = ts.contexts
    oracle = _oracle(truth)
    true_ev = local_eval.oracle_values(oracle, ts, ctx) if oracle is not None else None
    ch_pref, hour_pref, msg_pref = prefs
    dists = {"model": local_eval.model_policy(booster, ts, gone=gone), "random": pol.uniform(ctx.allowed)}
    dists["global_best"] = pol.rule_policy(ctx, np.broadcast_to(ch_pref, ctx.consent.shape), hour_pref, msg_pref)
    tie = 1e-6 * ch_pref.argsort().argsort()
    dists["most_engaged"] = pol.rule_policy(ctx, ctx.engaged + tie, hour_pref, msg_pref)
    dists["last_engaged"] = pol.rule_policy(ctx, ctx.last_engaged + tie, hour_pref, msg_pref)
    if true_ev is not None:
        dists["oracle"] = pol.argmax_policy(true_ev, ctx.allowed, allow_none=True)
    q, q_none = _nuisance_q(ts, ctx, reward_boosters, rates, unsupported)
    logged = _PartitionDecisions(ctx, q, q_none, p_channel)
    terms = {name: logged.terms(dist) for name, dist in dists.items()}
    known = np.isfinite(ctx.propensity)
    partial = bool(known.any() and not known.all())
    terms["logging"] = logged.on_policy_terms(same_support=partial)
    block = np.minimum((reward_model.hash_share_list(ctx.customer_id) * BLOCKS).astype(int), BLOCKS - 1)
    out: dict[str, Any] = {"decisions": len(ctx), "known": int(known.sum()), "terms": {}, "true": {}, "mix": {}}
    for name, per_est in terms.items():
        out["terms"][name] = {}
        for est, t in per_est.items():
            cols = t.columns()
            sums = np.zeros((BLOCKS, cols.shape[1]))
            np.add.at(sums, block, cols)
            w = t.weight[t.used]
            out["terms"][name][est] = {
                "sums": sums,
                "parts": len(t.parts),
                "n": int(t.used.sum()),
                "total": len(t),
                "w": float(w.sum()),
                "w2": float((w * w).sum()),
                "max_w": float(w.max()) if len(w) else 0.0,
                "matched": int((w > 0).sum()),
            }
    for name, dist in dists.items():
        out["mix"][name] = (dist.channel_mix().sum(axis=0), float(dist.none.sum()))
        if true_ev is not None:
            out["true"][name] = (float((dist.cells * true_ev).reshape(len(true_ev), -1).sum()), len(true_ev))
    if true_ev is not None:
        picked = logged.pick(true_ev)[logged.in_grid]
        out["true"]["logging"] = (float(picked.sum()), len(picked))
    return out


# --- combining -----------------------------------------------------------------------------------------------


def _combine(sums: np.ndarray, parts: int) -> np.ndarray:
    """Estimate(s) from column sums [..., 2 x parts]: sum over parts of numerator / denominator."""
    total = np.zeros(sums.shape[:-1])
    for k in range(parts):
        num, den = sums[..., 2 * k], sums[..., 2 * k + 1]
        total = total + np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)
    return total


def _estimate(pieces: list[dict[str, Any]], boot: np.ndarray) -> ope.Estimate:
    """Value, bootstrap interval over customer blocks and diagnostics from the partitions' sums."""
    parts = pieces[0]["parts"]
    sums = np.sum([p["sums"] for p in pieces], axis=0)  # [BLOCKS, 2 x parts]
    n = sum(p["n"] for p in pieces)
    total = sum(p["total"] for p in pieces)
    if n == 0:
        return ope.Estimate(math.nan, (math.nan, math.nan), 0.0, 0.0, 0, 0.0, 0)
    value = float(_combine(sums.sum(axis=0), parts))
    resampled = _combine(boot @ sums, parts)
    finite = resampled[np.isfinite(resampled)]
    ci = (float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))) if finite.size else (math.nan,) * 2
    w, w2 = sum(p["w"] for p in pieces), sum(p["w2"] for p in pieces)
    return ope.Estimate(
        value=value,
        ci=(ci[0], ci[1]),
        ess=w * w / w2 if w2 > 0 else 0.0,
        max_weight=max(p["max_w"] for p in pieces),
        matched=sum(p["matched"] for p in pieces),
        support=n / total if total else 0.0,
        n=n,
        mean_weight=w / n,
    )


def _reward_models(client: Any, dset: DistributedSet) -> tuple[list[Any], list[float]]:
    """The two cross-fitted reward models, fitted with lightgbm.dask on the rows in their partitions."""
    width = len(dset.names)
    value = dset.objective == "value"
    counts = compute(*[delayed(_fold_counts)(p) for p in dset.parts])
    params = {k: v for k, v in reward_model.REWARD_PARAMS.items() if k not in ("objective", "num_threads")}
    boosters: list[Any] = []
    rates: list[float] = []
    for k in (0, 1):
        blocks = [
            (delayed(_fold_rows, nout=2)(part, k, width, value), n[k])
            for part, n in zip(dset.parts, counts, strict=True)
            if n[k]
        ]
        if not blocks:
            boosters.append(None)
            rates.append(0.0)
            continue
        x, y = stacked(blocks, width)
        positives, rows = compute((y > 0).sum(), y.shape[0])
        rates.append(float(y.mean().compute()) if rows else 0.0)
        if not value and (positives == 0 or positives == rows):
            boosters.append(None)  # one class only: the fold's rate, as the local reward model does
            continue
        fitted = fit_dask(
            client, (x, y), None, dset.names, [], dset.objective, reward_model.REWARD_ROUNDS, 0, params, base={}
        )
        boosters.append(fitted.booster)
    return boosters, rates


def evaluate(
    client: Any, dset: DistributedSet, booster: Any, truth: str | None = None, seed: int = 7
) -> dict[str, Any]:
    """The report of training/evaluate.py `evaluate` (same layout), computed partition by partition."""
    scattered = client.scatter(booster, broadcast=True)
    pairs = compute(*[delayed(_eval_predictions)(p, scattered) for p in dset.parts])
    y_ev = np.concatenate([y for y, _ in pairs]) if pairs else np.zeros(0)
    p_ev = np.concatenate([p for _, p in pairs]) if pairs else np.zeros(0)
    yb = (y_ev > 0).astype(np.float64)
    rep: dict[str, Any] = {
        "metrics": local_eval.prediction_metrics(y_ev, p_ev, dset.objective),
        "calibration": local_eval.calibration(yb, p_ev) if dset.objective != "value" else {},
        "gains": local_eval.gains(yb, p_ev) if len(p_ev) else {},
        "importance": local_eval.feature_importance(booster),
        "dataset": dset.stats,
        "objective": dset.objective,
        "value_unit": local_eval.value_unit(dset.objective),
        "labels": dset.labels,
        # How a customer's order value is estimated (model.domain.value): the prior learned from the training period.
        "value_prior": dset.value_prior.model_dump() if dset.value_prior is not None else None,
        "attribution_window_days": dset.window_days,
    }
    policies, details = _policies(client, dset, scattered, truth, seed)
    rep["policies"], rep["policy_details"], rep["ope"] = policies, details, details.pop("ope", {})
    return rep


def _policies(
    client: Any, dset: DistributedSet, booster: Any, truth: str | None, seed: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    names = catalogue().names
    pref_parts = compute(*[delayed(_preference_sums)(p) for p in dset.parts])
    n_msg = max(1, len(dset.levels["message"]))
    sums = {"ch": np.zeros((2, len(names))), "hour": np.zeros((2, 24)), "msg": np.zeros((2, n_msg))}
    tried_ch: set[str] = set()
    tried_msg: set[str] = set()
    for part in pref_parts:
        for key in sums:
            sums[key] += part[key]
        tried_ch |= part["channels"]
        tried_msg |= part["messages"]

    def means(s: np.ndarray) -> np.ndarray:  # at least 20 sends, as the local baselines
        return np.where(s[1] >= 20, s[0] / np.maximum(s[1], 1), -np.inf)

    prefs = (means(sums["ch"]), means(sums["hour"]), means(sums["msg"]))
    unsupported = {
        "channels": [n for n in names if n not in tried_ch],
        "messages": [m for m in dset.levels["message"] if m not in tried_msg],
    }
    codes = [catalogue().code(n) for n in unsupported["channels"]]

    feats = compute(*[delayed(_decision_features)(p) for p in dset.parts])
    present = [f for f in feats if f is not None]
    if not present:
        return {}, {}
    # The logging channel model on the decisions' features (cust, consent, engagement: no grid).
    joined = {
        key: np.concatenate([f[key] for f in present]) for key in ("cust", "consent", "engaged", "logged_channel")
    }
    ids = [cid for f in present for cid in f["customer_id"]]
    view: Any = type("DecisionFeatures", (), {**joined, "__len__": lambda self: len(ids)})()
    fold = (reward_model.hash_share_list(ids) >= 0.5).astype(np.int64)
    p_channel, logloss, calib = reward_model._channel_model(view, fold, len(names))
    bounds = np.cumsum([0] + [len(f["customer_id"]) if f is not None else 0 for f in feats])

    boosters, rates = _reward_models(client, dset)
    reward_boosters = client.scatter(boosters, broadcast=True)
    pieces = compute(
        *[
            delayed(_partition_values)(
                part,
                booster,
                reward_boosters,
                rates,
                p_channel[bounds[i] : bounds[i + 1]],
                prefs,
                codes,
                truth,
                Unsupported(**unsupported),
            )
            for i, part in enumerate(dset.parts)
        ]
    )
    got = [p for p in pieces if p is not None]
    d = sum(p["decisions"] for p in got)
    known = sum(p["known"] for p in got)
    rng = np.random.default_rng(seed)
    boot = rng.multinomial(BLOCKS, np.full(BLOCKS, 1.0 / BLOCKS), size=ope.N_BOOT).astype(np.float64)
    estimates = {
        name: {est: _estimate([p["terms"][name][est] for p in got], boot) for est in got[0]["terms"][name]}
        for name in got[0]["terms"]
    }
    lead = ope.lead_estimator(estimates["model"])
    results: dict[str, dict[str, Any]] = {}
    for name, est in estimates.items():
        mix = [p["mix"][name] for p in got if name in p["mix"]]
        res: dict[str, Any] = {
            **ope.policy_report(name, est, lead),
            "share_no_contact": sum(m[1] for m in mix) / d if mix else 0.0,
        }
        truths = [p["true"][name] for p in got if name in p["true"]]
        if truths:
            res["true_value"] = sum(t[0] for t in truths) / max(1, sum(t[1] for t in truths))
        results[name] = res
    if "oracle" in results and "true_value" in results["oracle"]:
        best = results["oracle"]["true_value"]
        for res in results.values():
            res["regret"] = best - res["true_value"]
            res["share_of_oracle"] = res["true_value"] / best if best > 0 else float("nan")
    propensities = "logged" if known == d else "none" if known == 0 else "partial"
    details: dict[str, Any] = {
        "decisions": d,
        "ope": {
            "lead": lead,
            "propensities": propensities,
            "estimated": propensities != "logged",
            "bootstrap": ope.N_BOOT,
            "bootstrap_unit": f"{BLOCKS} customer blocks (by id hash), resampled across partitions",
            "reward_model": "LightGBM (lightgbm.dask), cross-fitted by customer on the held-out sends (2 folds)",
            "channel_model": {"logloss": logloss, "calibration": calib},
            "unsupported": unsupported,
        },
    }
    for name in ("model", "oracle"):
        mixes = [p["mix"][name] for p in got if name in p["mix"]]
        if mixes:
            mix = np.sum([m[0] for m in mixes], axis=0) / d
            details[f"{name}_channel_mix"] = {n: float(mix[i]) for i, n in enumerate(names)}
            details[f"{name}_no_contact"] = sum(m[1] for m in mixes) / d
    return results, details
