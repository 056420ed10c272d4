"""Nuisance models for off-policy evaluation, cross-fitted on the held-out period (never the evaluated model).

* The reward model q(x, a): LightGBM on the objective's label, two folds by customer over the held-out
  period: fold k's model learns from every training and validation row (the older period, all customers) and
  from the held-out rows of the other fold's customers, and scores the decisions of fold k's customers, so no
  decision is scored by a model that saw its outcome or any held-out outcome of its customer. The held-out
  period alone (a few thousand rows and ~100 positives on small logs) overfits: its out-of-fold predictions
  were half the observed rate, and DM / DR inherited that bias. With attributed conversion labels it learns
  through the funnel (P(click) x P(conversion | click), as the default model: `_funnel`), with channel and message
  as categorical features. Expected net reward of a cell: q valued in the objective's units as serving values a
  candidate (model.domain.objective), not net of "don't contact".
* The logging channel model: P(logged channel | x) (multiclass, the same two folds), the marginal logging
  propensity of the channel that MIPS / MDR weight by, and the estimated propensity when the log has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from model.domain.objective import cell_values
from model.domain.settings import get_settings
from training.ope.contexts import Contexts
from training.split import hash_share
from training.train import funnel_labels, has_clicks, refit_rounds

REWARD_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "verbose": -1,
    "num_threads": 1,  # OpenMP threads stall when other jobs share the cores (62 -> 7 s per fit seen)
    "seed": 11,
}
REWARD_ROUNDS = 200  # when a stage's rows are too few to probe
# Undersmoothing (docs/ope.md, "What the reward model must be"): each stage runs UNDERSMOOTH times the round count
# that early stopping on log loss picks. Log loss is best on the log's own distribution (mostly business as
# usual); the policies evaluated pick the extreme cells, which a log-loss-optimal model shrinks towards the mean.
# 2.5 measured on the simulator (bench/RESULTS.md): DM bias of the model's policy -25% -> -12% at 20,000 customers,
# -17% -> -11% at 3,000, where fixed large round counts (1,500, 3,000) overfit the small log (logging -32%, -51%).
UNDERSMOOTH = 2.5
MAX_ROUNDS = 5000
STOP_ROUNDS = 50
PROBE_SHARE = 0.15  # rows held out (at random) to find the log-loss-optimal round count
CLIP = 0.01  # estimated channel propensities are clipped below at this value


@dataclass
class Nuisance:
    q: np.ndarray  # [D, C, S, M] expected net reward of each cell
    p_channel: np.ndarray  # [D, C + 1] estimated logging probability of each channel and of "don't contact"
    channel_logloss: float  # held-out (cross-fitted) multiclass log loss of the channel model
    channel_calibration: dict[str, list[float]]  # predicted vs observed share of the logged channel, by decile
    q_none: np.ndarray | None = None  # [D] expected reward of "don't contact" (models that learned it), else None


def _folds(customers: list[str]) -> np.ndarray:
    return (hash_share_list(customers) >= 0.5).astype(np.int64)


def hash_share_list(ids: list[str]) -> np.ndarray:
    import polars as pl

    return hash_share(pl.Series(ids, dtype=pl.String))


def fit(
    ts: Any,
    ctx: Contexts,
    grid_scores: Any,
    costs: np.ndarray,
    none_scores: Any = None,
) -> Nuisance:
    """Cross-fitted reward and logging-channel models for the decisions of `ctx`.

    `grid_scores(booster, idx)` scores every cell of decisions `idx` with a booster (the evaluation's compiled
    path); `none_scores(booster, idx)`, when given, their "don't contact" action (training sets with such rows).
    """
    n_ch = ctx.chan.shape[1]
    ev_rows = ts.split == "eval"
    x, y = ts.X, ts.y
    row_fold = np.full(len(y), -1)  # -1: an older row, in both folds' training data
    row_fold[ev_rows] = _folds(ts.meta["customer_id"].to_numpy()[ev_rows].tolist())
    ctx_fold = _folds(ctx.customer_id)
    objective = ts.objective
    params = dict(REWARD_PARAMS)
    if objective == "value":
        params["objective"] = "regression"
    q = np.zeros(ctx.allowed.shape)
    stages = _funnel(ts)
    names, cats = list(ts.names), list(ts.layout.categorical)
    q_none = np.zeros(len(ctx)) if none_scores is not None else None
    for k in (0, 1):
        train = row_fold != k
        target = ctx_fold == k
        if not target.any():
            continue
        yk = y[train]
        if len(yk) == 0 or (objective != "value" and len(np.unique(yk > 0)) < 2):
            rate = float(np.mean(y)) if len(y) else 0.0
            pred = np.full((int(target.sum()), *ctx.allowed.shape[1:]), rate)
            if q_none is not None:
                q_none[target] = rate
        elif stages is not None:
            pred = np.ones((int(target.sum()), *ctx.allowed.shape[1:]))
            given = train.copy()
            for label in stages:
                booster = fit_stage(params, x[given], label[given], names, cats)
                pred *= grid_scores(booster, np.flatnonzero(target))
                given &= label > 0
        else:
            label = (yk > 0).astype(float) if objective != "value" else yk
            booster = fit_stage(params, x[train], label, names, cats)
            pred = grid_scores(booster, np.flatnonzero(target))
            if q_none is not None:
                q_none[target] = none_scores(booster, np.flatnonzero(target))
        q[target] = pred
    # Absolute (not incremental) expected reward in the objective's units, as the logged rewards are.
    settings = get_settings()
    q = cell_values(q, 0.0, objective, ctx.value_hat[:, None, None, None], costs[None, :, None, None], settings)
    if q_none is not None:
        q_none = cell_values(q_none, 0.0, objective, ctx.value_hat, 0.0, settings)  # "don't contact" costs nothing
    p_channel, logloss, calib = _channel_model(ctx, ctx_fold, n_ch)
    return Nuisance(q, p_channel, logloss, calib, q_none)


def probe_rows(n: int, seed: int) -> np.ndarray:
    """The PROBE_SHARE of rows (at random, reproducibly) early stopping is measured on."""
    return np.random.default_rng(seed).random(n) < PROBE_SHARE


def undersmoothed_rounds(best: int, n_fit: int, n_all: int) -> int:
    """UNDERSMOOTH x the log-loss-optimal round count `best` (found on n_fit rows), scaled to all n_all rows."""
    return max(1, round(UNDERSMOOTH * refit_rounds(best, n_fit, n_all)))


def can_probe(label: np.ndarray, probe: np.ndarray, binary: bool) -> bool:
    """Whether there are enough rows (50 to probe) and, for a binary stage, both classes on each side."""
    if probe.sum() < 50 or (~probe).sum() < 50:
        return False
    return not binary or all(len(np.unique(label[side])) == 2 for side in (probe, ~probe))


def stage_rounds(params: dict[str, Any], x: np.ndarray, label: np.ndarray, names: list[str], cats: list[str]) -> int:
    """UNDERSMOOTH x the round count early stopping picks on a random PROBE_SHARE of the rows, scaled to all rows
    (as the product model's refit); REWARD_ROUNDS when the rows are too few or one-class to probe."""
    probe = probe_rows(len(label), int(params.get("seed", 0)))
    if not can_probe(label, probe, params.get("objective") == "binary"):
        return REWARD_ROUNDS
    fit = ~probe
    dfit = lgb.Dataset(x[fit], label[fit], feature_name=names, categorical_feature=cats, free_raw_data=False)
    dprobe = lgb.Dataset(x[probe], label[probe], reference=dfit)
    stop = lgb.early_stopping(STOP_ROUNDS, verbose=False)
    booster = lgb.train(params, dfit, num_boost_round=MAX_ROUNDS, valid_sets=[dprobe], callbacks=[stop])
    best = booster.best_iteration or booster.current_iteration()
    return undersmoothed_rounds(best, int(fit.sum()), len(label))


def fit_stage(params: dict[str, Any], x: np.ndarray, label: np.ndarray, names: list[str], cats: list[str]) -> Any:
    """One reward-model booster on all the rows given, undersmoothed (`stage_rounds`)."""
    rounds = stage_rounds(params, x, label, names, cats)
    return lgb.train(params, lgb.Dataset(x, label, feature_name=names, categorical_feature=cats), rounds)


def _funnel(ts: Any) -> list[np.ndarray] | None:
    """The stage labels (click, then conversion) when the reward model learns through the funnel, as the default
    model does: clicks are many times more frequent than conversions, so the first stage learns channel, hour
    and message effects from far more positives. Attributed conversion labels only (window outcomes are not a
    funnel)."""
    if ts.objective != "conversion" or ts.labels == "window" or not has_clicks(ts):
        return None
    return funnel_labels(ts)


def _channel_model(ctx: Contexts, fold: np.ndarray, n_ch: int) -> tuple[np.ndarray, float, dict[str, list[float]]]:
    # Classes: the catalogue's channels and "don't contact" (code n_ch), the embedding MIPS / MDR weight by.
    sent = np.ones(len(ctx), dtype=bool)
    feats = np.hstack([ctx.cust, ctx.consent.astype(np.float32), ctx.engaged.astype(np.float32)])
    label = np.where(ctx.logged_channel >= 0, ctx.logged_channel, n_ch)
    n_ch += 1
    out = np.full((len(ctx), n_ch), 1.0 / n_ch)
    prior = np.bincount(label[sent], minlength=n_ch).astype(np.float64) + 1.0
    prior /= prior.sum()
    for k in (0, 1):
        train, target = sent & (fold != k), fold == k
        if not target.any():  # e.g. --split customer: the held-out customers' hash shares all fall in one fold
            continue
        classes = np.unique(label[train])
        if len(classes) < 2 or train.sum() < 50:
            out[target] = prior
            continue
        params = {
            "objective": "multiclass",
            "num_class": n_ch,
            "learning_rate": 0.1,
            "num_leaves": 7,
            "min_data_in_leaf": 30,
            "verbose": -1,
            "num_threads": 1,
            "seed": 5,
        }
        booster = lgb.train(params, lgb.Dataset(feats[train], label=label[train]), num_boost_round=60)
        out[target] = booster.predict(feats[target])
    out = np.clip(out, CLIP, 1.0)
    out /= out.sum(axis=1, keepdims=True)
    if not sent.any():
        return out, float("nan"), {"predicted": [], "observed": []}
    p_logged = out[np.flatnonzero(sent), label[sent]]
    logloss = float(-np.mean(np.log(p_logged)))
    # Calibration: for every (decision, channel), predicted probability vs whether that channel was logged.
    pred = out[sent].ravel()
    obs = (label[sent][:, None] == np.arange(n_ch)[None, :]).ravel().astype(float)
    edges = np.unique(np.quantile(pred, np.linspace(0, 1, 11)))
    idx = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, max(0, len(edges) - 2))
    calib: dict[str, list[float]] = {"predicted": [], "observed": []}
    for b in range(max(1, len(edges) - 1)):
        sel = idx == b
        if sel.any():
            calib["predicted"].append(float(pred[sel].mean()))
            calib["observed"].append(float(obs[sel].mean()))
    return out, logloss, calib
