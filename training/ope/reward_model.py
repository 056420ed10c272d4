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
from training.train import funnel_labels, has_clicks

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
REWARD_ROUNDS = 200
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
                data = lgb.Dataset(x[given], label=label[given], feature_name=names, categorical_feature=cats)
                booster = lgb.train(params, data, num_boost_round=REWARD_ROUNDS)
                pred *= grid_scores(booster, np.flatnonzero(target))
                given &= label > 0
        else:
            label = (yk > 0).astype(float) if objective != "value" else yk
            data = lgb.Dataset(x[train], label=label, feature_name=names, categorical_feature=cats)
            booster = lgb.train(params, data, num_boost_round=REWARD_ROUNDS)
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
