"""Evaluation: prediction quality on held-out sends, and the value of decision policies on held-out decisions.

Policy value = expected net value per decision (attributed conversion value - channel cost). For each
held-out logged decision, a policy picks one candidate (channel x hourly slot x message, among the allowed
channels and the slots outside quiet hours) or "don't contact" (value 0, known exactly). Off-policy:

    IPS   = mean_i  w_i r_i            w_i = pi(logged action | x_i) / propensity_i
    SNIPS = sum_i w_i r_i / sum_i w_i  (self-normalised: lower variance, slightly biased)

with 95% bootstrap intervals over decisions. A "don't contact" choice contributes its known reward 0 with
weight 1. On simulated data the oracle also gives each policy's exact value (`true_value`) and the regret
against the oracle's own best choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from model.domain.catalogue import catalogue
from model.domain.settings import get_settings
from training.dataset import Contexts, TrainingSet, candidate_matrix
from training.simulate import Oracle

POLICIES = ("model", "random", "global_best", "most_engaged", "last_engaged", "logging", "oracle")
BOOTSTRAP = 200


# --- prediction quality ----------------------------------------------------------------------------------


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Quantile bins of the prediction: mean predicted vs observed rate, and the expected calibration error."""
    if len(p) == 0:
        return {"predicted": [], "observed": [], "count": [], "ece": float("nan")}
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(0, len(edges) - 2))
    pred, obs, cnt = [], [], []
    for b in range(max(1, len(edges) - 1)):
        m = idx == b
        if m.any():
            pred.append(float(p[m].mean()))
            obs.append(float(y[m].mean()))
            cnt.append(int(m.sum()))
    ece = sum(c * abs(a - o) for a, o, c in zip(pred, obs, cnt, strict=True)) / max(1, sum(cnt))
    return {"predicted": pred, "observed": obs, "count": cnt, "ece": float(ece)}


def gains(y: np.ndarray, p: np.ndarray, points: int = 20) -> dict[str, list[float]]:
    """Cumulative share of positives captured by the top x% of sends ranked by prediction."""
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(y[order] > 0)
    total = max(1, int(hits[-1])) if len(hits) else 1
    share = np.linspace(0, 1, points + 1)[1:]
    captured = [float(hits[max(0, round(s * len(y)) - 1)] / total) if len(y) else 0.0 for s in share]
    lift = [c / s for c, s in zip(captured, share, strict=True)]
    return {"share": share.tolist(), "captured": captured, "lift": lift}


def prediction_metrics(y: np.ndarray, p: np.ndarray, objective: str) -> dict[str, float]:
    yb = (y > 0).astype(np.float64)
    out = {"n_eval": float(len(y)), "base_rate": float(yb.mean()) if len(y) else float("nan")}
    if len(np.unique(yb)) == 2:
        out["auc"] = float(roc_auc_score(yb, p))
    else:
        out["auc"] = float("nan")
    if objective == "value":
        out["rmse"] = float(np.sqrt(np.mean((y - p) ** 2)))
        out["logloss"] = float("nan")
        out["ece"] = float("nan")
    else:
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        out["logloss"] = float(log_loss(yb, pc, labels=[0, 1]))
        out["brier"] = float(np.mean((pc - yb) ** 2))
        out["ece"] = calibration(yb, pc)["ece"]
    return out


# --- policies --------------------------------------------------------------------------------------------


@dataclass
class Choice:
    """A policy's choice per decision: indices into the grid, or -1 for "don't contact"."""

    channel: np.ndarray
    slot: np.ndarray
    message: np.ndarray
    weight: np.ndarray  # pi(logged action | x) for the IPS weight's numerator
    true_value: np.ndarray | None = None  # exact expected value of the choice (simulated data)


def _valid(ctx: Contexts, n_msg: int) -> np.ndarray:
    """[D, C, S, M] candidate mask: allowed channel and slot outside quiet hours."""
    m = ctx.allowed[:, :, None] & ctx.slot_ok[:, None, :]
    return np.asarray(np.broadcast_to(m[..., None], (*m.shape, n_msg)))


def _logged_match(ctx: Contexts, ch: np.ndarray, slot: np.ndarray, msg: np.ndarray) -> np.ndarray:
    match = (ch == ctx.logged_channel) & (slot == ctx.logged_slot) & (msg == ctx.logged_message) & (ch >= 0)
    return np.asarray(match, dtype=bool)


def _argmax_choice(ctx: Contexts, ev: np.ndarray, valid: np.ndarray, allow_none: bool) -> Choice:
    d = len(ctx)
    flat = np.where(valid, ev, -np.inf).reshape(d, -1)
    best = flat.argmax(axis=1)
    best_ev = flat[np.arange(d), best]
    c, s, m = np.unravel_index(best, valid.shape[1:])
    none = ~np.isfinite(best_ev) | ((best_ev <= 0) if allow_none else False)
    c, s, m = (np.where(none, -1, a) for a in (c, s, m))
    match = _logged_match(ctx, c, s, m)
    return Choice(c, s, m, match.astype(np.float64))


def model_scores(
    booster: lgb.Booster, ts: TrainingSet, ctx: Contexts, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted score of every valid candidate [D, C, S, M] (NaN where invalid), and the expected value."""
    n_msg = max(1, len(ts.levels["message"]))
    valid = _valid(ctx, n_msg)
    d, c, s, m = valid.shape
    pred = np.full((d, c, s, m), np.nan)
    for lo in range(0, d, chunk):
        hi = min(d, lo + chunk)
        rows = np.stack([candidate_matrix(ctx, i, ts.levels["message"], ts.layout) for i in range(lo, hi)])
        mask = valid[lo:hi]
        block = np.full(mask.shape, np.nan)
        if mask.any():
            block[mask] = booster.predict(rows[mask], num_threads=2)
        pred[lo:hi] = block
    costs = _costs()
    if ts.objective == "value":
        ev = pred - costs[None, :, None, None]
    else:
        # p(conversion) x the customer's order value so far (default when none) - channel cost
        ev = pred * ctx.value_hat[:, None, None, None] - costs[None, :, None, None]
    return pred, ev


def _costs() -> np.ndarray:
    settings = get_settings()
    return np.array([settings.channel_costs.get(n, 0.0) for n in catalogue().names])


def oracle_values(oracle: Oracle, ts: TrainingSet, ctx: Contexts) -> np.ndarray:
    """Exact expected net value of every candidate [D, C, S, M] under the simulator's ground truth."""
    n_msg = max(1, len(ts.levels["message"]))
    cust = oracle.customers(ctx.customer_id)[:, None, None, None]
    ch = np.array([oracle.channel_index[n] for n in catalogue().names])[None, :, None, None]
    msg = np.array([oracle.message_index.get(mid, 0) for mid in ts.levels["message"]] or [0])[None, None, None, :]
    lh = ctx.local_hour[:, None, :, None]
    dow = ctx.local_dow[:, None, :, None]
    ch7 = ctx.ch_sends_7d.astype(np.float64)[..., None]
    total7 = ch7.sum(axis=1, keepdims=True)
    opted = ~ctx.allowed[:, :, None, None]
    p = oracle.p_convert(cust, ch, lh, dow, msg, total7, ch7, opted)
    p = np.broadcast_to(p, (len(ctx), ch.shape[1], ctx.slot.shape[1], n_msg))
    return oracle.expected_value(cust, ch, p)


def _training_preferences(ts: TrainingSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean reward per channel, per local hour and per message on the training sends (for the baselines)."""
    train = ts.split == "train"
    reward = ts.meta["reward"].to_numpy()[train]
    names = ts.names
    ch = ts.X[train, names.index("channel")].astype(int)
    hour = ts.X[train, names.index("local_hour")].astype(int)
    msg = ts.X[train, names.index("message")].astype(int)

    def means(keys: np.ndarray, size: int) -> np.ndarray:
        out = np.full(size, -np.inf)
        for k in range(size):
            sel = keys == k
            if sel.sum() >= 20:
                out[k] = reward[sel].mean()
        return out

    return means(ch, len(catalogue())), means(hour, 24), means(msg, max(1, len(ts.levels["message"])))


def _rule_choice(ctx: Contexts, channel_score: np.ndarray, hour_pref: np.ndarray, msg_pref: np.ndarray) -> Choice:
    """Channel by a per-decision score [D, C]; slot and message: the best on the training period."""
    score = np.where(ctx.allowed, channel_score, -np.inf)
    c = score.argmax(axis=1)
    ok = np.isfinite(score.max(axis=1))
    slot_score = np.where(ctx.slot_ok, hour_pref[ctx.local_hour], -np.inf)
    slot_score = np.where(np.isneginf(slot_score) & ctx.slot_ok, -1e9, slot_score)
    s = slot_score.argmax(axis=1)
    ok &= ctx.slot_ok.any(axis=1)
    m = np.full(len(ctx), int(np.argmax(msg_pref)))
    c, s, m = (np.where(ok, a, -1) for a in (c, s, m))
    return Choice(c, s, m, _logged_match(ctx, c, s, m).astype(np.float64))


def _estimate(weight: np.ndarray, ctx: Contexts, none: np.ndarray, seed: int = 7) -> dict[str, Any]:
    """IPS and SNIPS with 95% bootstrap intervals; a "don't contact" choice counts as weight 1, reward 0.

    Only decisions with a logged propensity count; without any, the estimates are NaN (unknown).
    """
    known = np.isfinite(ctx.propensity) & (ctx.propensity > 0)
    if not known.any():
        nan = float("nan")
        share = float(none.mean()) if len(none) else nan
        return {"ips": nan, "ips_ci": [nan, nan], "snips": nan, "snips_ci": [nan, nan], "matches": 0} | {
            "share_no_contact": share
        }
    prop, reward, weight, none = ctx.propensity[known], ctx.reward[known], weight[known], none[known]
    w = np.where(none, 1.0, weight / prop)
    wr = np.where(none, 0.0, w * reward)
    n = len(w)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(BOOTSTRAP, n))
    ips_b = wr[idx].mean(axis=1)
    wsum = w[idx].sum(axis=1)
    snips_b = np.where(wsum > 0, wr[idx].sum(axis=1) / np.where(wsum > 0, wsum, 1), np.nan)
    snips = float(wr.sum() / w.sum()) if w.sum() > 0 else float("nan")
    return {
        "ips": float(wr.mean()),
        "ips_ci": [float(np.quantile(ips_b, 0.025)), float(np.quantile(ips_b, 0.975))],
        "snips": snips,
        "snips_ci": [float(np.nanquantile(snips_b, 0.025)), float(np.nanquantile(snips_b, 0.975))]
        if np.isfinite(snips_b).any()
        else [float("nan"), float("nan")],
        "matches": int(((weight > 0) & ~none).sum()),
        "share_no_contact": float(none.mean()),
    }


def evaluate_policies(
    booster: lgb.Booster, ts: TrainingSet, oracle: Oracle | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Value of every policy on the held-out decisions; returns (policies, details for the report)."""
    ctx = ts.contexts
    if ctx is None or len(ctx) == 0:
        return {}, {}
    n_msg = max(1, len(ts.levels["message"]))
    valid = _valid(ctx, n_msg)
    _, ev = model_scores(booster, ts, ctx)
    ch_pref, hour_pref, msg_pref = _training_preferences(ts)
    d = len(ctx)
    choices: dict[str, Choice] = {"model": _argmax_choice(ctx, ev, valid, allow_none=True)}

    n_valid = valid.reshape(d, -1).sum(axis=1)
    logged_valid = (
        (ctx.logged_slot >= 0)
        & (ctx.logged_message >= 0)
        & valid[
            np.arange(d),
            ctx.logged_channel,
            np.maximum(ctx.logged_slot, 0),
            np.maximum(ctx.logged_message, 0),
        ]
    )
    rand_w = np.where(logged_valid, 1.0 / np.maximum(n_valid, 1), 0.0)
    minus = np.full(d, -1)
    choices["random"] = Choice(minus, minus, minus, rand_w)
    choices["global_best"] = _rule_choice(ctx, np.broadcast_to(ch_pref, ctx.allowed.shape), hour_pref, msg_pref)
    tie = 1e-6 * ch_pref.argsort().argsort()  # break ties (and "no engagement") by the global ranking
    choices["most_engaged"] = _rule_choice(ctx, ctx.engaged + tie, hour_pref, msg_pref)
    choices["last_engaged"] = _rule_choice(ctx, ctx.last_engaged + tie, hour_pref, msg_pref)
    choices["logging"] = Choice(ctx.logged_channel, ctx.logged_slot, ctx.logged_message, ctx.propensity.copy())

    true_ev = oracle_values(oracle, ts, ctx) if oracle is not None else None
    if true_ev is not None:
        choices["oracle"] = _argmax_choice(ctx, true_ev, valid, allow_none=True)

    results: dict[str, dict[str, Any]] = {}
    for name, ch in choices.items():
        is_random = name == "random"
        none = np.zeros(d, dtype=bool) if is_random or name == "logging" else ch.channel < 0
        res = _estimate(ch.weight, ctx, none)
        if true_ev is not None:
            if is_random:
                tv = np.where(valid, true_ev, 0.0).reshape(d, -1).sum(axis=1) / np.maximum(n_valid, 1)
            else:
                ok = (ch.channel >= 0) & (ch.slot >= 0) & (ch.message >= 0)
                tv = np.where(
                    ok,
                    true_ev[np.arange(d), np.maximum(ch.channel, 0), np.maximum(ch.slot, 0), np.maximum(ch.message, 0)],
                    0.0,
                )
            res["true_value"] = float(tv.mean())
        results[name] = res
    if true_ev is not None:
        best = results["oracle"]["true_value"]
        for res in results.values():
            res["regret"] = best - res["true_value"]
            res["share_of_oracle"] = res["true_value"] / best if best > 0 else float("nan")
    names = catalogue().names
    details: dict[str, Any] = {"decisions": d}
    for name in ("model", "oracle"):
        if name in choices:
            chosen = choices[name].channel
            details[f"{name}_channel_mix"] = {n: float((chosen == i).mean()) for i, n in enumerate(names)}
            details[f"{name}_no_contact"] = float((chosen < 0).mean())
    return results, details


def feature_importance(booster: lgb.Booster) -> dict[str, float]:
    gain = booster.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    return {n: float(g) / total for n, g in sorted(zip(booster.feature_name(), gain, strict=True), key=lambda x: -x[1])}


def evaluate(booster: lgb.Booster, ts: TrainingSet, oracle: Oracle | None = None) -> dict[str, Any]:
    """The full report (JSON-ready): metrics, calibration, gains, importance, policies."""
    x_ev, y_ev = ts.part("eval")
    p = np.asarray(booster.predict(x_ev, num_threads=2)) if len(y_ev) else np.array([])
    yb = (y_ev > 0).astype(np.float64)
    policies, details = evaluate_policies(booster, ts, oracle)
    return {
        "metrics": prediction_metrics(y_ev, p, ts.objective),
        "calibration": calibration(yb, p) if ts.objective != "value" else {},
        "gains": gains(yb, p) if len(p) else {},
        "importance": feature_importance(booster),
        "policies": policies,
        "policy_details": details,
        "dataset": ts.stats,
        "objective": ts.objective,
        "attribution_window_days": ts.window_days,
    }


def policy_value_summary(report: dict[str, Any]) -> dict[str, float]:
    """Flat numbers for the manifest (the promotion gate reads these)."""
    out: dict[str, float] = {}
    for name, res in report.get("policies", {}).items():
        for key in ("ips", "snips", "true_value"):
            if key in res and res[key] == res[key]:  # skip NaN
                out[f"{name}_{key}"] = float(res[key])
    return out
