"""Evaluation: prediction quality on held-out sends, and the value of decision policies on held-out decisions.

Policy value = expected net value per decision (attributed conversion value - channel cost; "don't contact"
is worth 0). Each held-out logged decision gets the candidate grid SERVING would build (training/ope/
contexts.py); every policy is a distribution over that grid (training/ope/policies.py), the model's being the
served epsilon-greedy policy with its exploration. Off-policy estimates (training/ope/estimators.py: DM, IPS,
SNIPS, DR, SNDR, MIPS and MDR over the channel) use a cross-fitted reward model and logging-channel model
(training/ope/reward_model.py), each with a 95% bootstrap interval and diagnostics; `ope.lead` names the
estimator the report leads with (docs/ope.md). On simulated data the oracle gives every policy's exact value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from model.domain.catalogue import catalogue
from model.domain.manifest import Unsupported
from model.domain.objective import UNITS, cell_values, check_objective, cost_scale, supported_cells, unknown_messages
from model.domain.rules import message_costs
from model.domain.send_time import smooth_over_send_time
from model.domain.settings import get_settings
from training import marketing, ope
from training.dataset import TrainingSet
from training.ope import policies as pol
from training.ope import reward_model
from training.ope.contexts import Contexts
from training.sim_truth import Oracle

POLICIES = ("model", "random", "global_best", "most_engaged", "last_engaged", "logging", "oracle")


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


WEEK = 7 * 86400.0
MONDAY = 4 * 86400.0  # 1970-01-05 was a Monday: weeks start on Monday 00:00 UTC


def auc_interval(auc: float, positives: int, negatives: int) -> list[float]:
    """95% interval of an AUC by Hanley & McNeil (1982): SE^2 = (A(1-A) + (n1-1)(Q1-A^2) + (n0-1)(Q2-A^2)) / (n1 n0),
    Q1 = A/(2-A), Q2 = 2A^2/(1+A). Clipped to [0, 1]."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    a2 = auc**2
    var = (auc * (1 - auc) + (positives - 1) * (q1 - a2) + (negatives - 1) * (q2 - a2)) / (positives * negatives)
    half = 1.96 * float(np.sqrt(max(var, 0.0)))
    return [max(0.0, auc - half), min(1.0, auc + half)]


def auc_by_week(y: np.ndarray, p: np.ndarray, send_ts: np.ndarray) -> list[dict[str, Any]]:
    """Held-out AUC per calendar week of the send (Monday 00:00 UTC), with its interval and the rows it rests on:
    a model that fits the past but not the newest weeks shows a falling curve (drift)."""
    if not len(y):
        return []
    yb = y > 0
    weeks = np.floor((send_ts - MONDAY) / WEEK).astype(np.int64)
    out = []
    for week in np.unique(weeks).tolist():
        mask = weeks == week
        pos = int(yb[mask].sum())
        neg = int(mask.sum()) - pos
        auc = float(roc_auc_score(yb[mask], p[mask])) if pos and neg else None
        start = np.datetime64(int(week * WEEK + MONDAY), "s").astype("datetime64[D]")
        out.append(
            {
                "week": str(start),
                "n": int(mask.sum()),
                "positives": pos,
                "auc": auc,
                "ci": auc_interval(auc, pos, neg) if auc is not None else None,
            }
        )
    return out


# --- policies --------------------------------------------------------------------------------------------


def _costs() -> np.ndarray:
    settings = get_settings()
    return np.array([settings.cost_of(n) for n in catalogue().names])


def expected_value(
    scores: np.ndarray,
    none_scores: np.ndarray | float,
    ctx: Contexts,
    objective: str,
    costs: np.ndarray,
    supported: np.ndarray | None = None,
) -> np.ndarray:
    """[D, C, S, M] incremental expected value of every cell in the objective's units, as `decide` ranks
    candidates: the one definition of model.domain.objective. `scores` the predictions per cell, `none_scores`
    [D] the "don't contact" predictions (0 without), `costs` [C, M] channel + message cost, `supported` [C, M]."""
    none = np.asarray(none_scores, dtype=np.float64)
    return cell_values(
        scores,
        none[:, None, None, None] if none.ndim else none,
        objective,
        ctx.value_hat[:, None, None, None],
        costs[None, :, None, :],
        get_settings(),
        None if supported is None else supported[None, :, None, :],
    )


def value_unit(objective: str) -> str:
    """The unit of the policy values in the report (e.g. visits per decision for the visit objective)."""
    return UNITS[check_objective(objective)]


def oracle_values(oracle: Oracle, ts: TrainingSet, ctx: Contexts) -> np.ndarray:
    """Exact incremental net value of every candidate [D, C, S, M] under the simulator's ground truth (the value
    of contacting minus the value of not contacting, minus cost; "don't contact" is 0)."""
    n_msg = ctx.allowed.shape[3]
    cust = oracle.customers(ctx.customer_id)[:, None, None, None]
    ch = np.array([oracle.channel_index[n] for n in catalogue().names])[None, :, None, None]
    msg = np.array([oracle.message_index.get(mid, 0) for mid in ts.levels["message"]] or [0])[None, None, None, :]
    lh = ctx.local_hour[:, None, :, None]
    dow = ctx.local_dow[:, None, :, None]
    ch7 = ctx.ch_sends_7d.astype(np.float64)[..., None]
    total7 = ch7.sum(axis=1, keepdims=True)
    opted = ~ctx.consent[:, :, None, None]
    send_ts = ctx.slot_ts[:, None, :, None]
    value = oracle.incremental_value(cust, ch, send_ts, msg, total7, ch7, opted, local_hour=lh, dow=dow)
    return np.asarray(np.broadcast_to(value, (len(ctx), ch.shape[1], ctx.slot.shape[1], n_msg)))


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


def unsupported(ts: TrainingSet) -> dict[str, list[str]]:
    """Channels and messages that no training send tried: evaluation never credits them a conversion."""
    train = np.isin(ts.split, ["train", "valid"])
    ch = set(ts.meta["channel"].to_numpy()[train].tolist())
    msg = set(m for m in ts.meta["message_id"].to_numpy()[train].tolist() if m is not None)
    return {
        "channels": [n for n in catalogue().names if n not in ch],
        "messages": [m for m in ts.levels["message"] if m not in msg],
    }


def model_values(
    booster: Any,
    ts: TrainingSet,
    encode_levels: list[str] | None = None,
    no_contact: bool | None = None,
    gone: Unsupported | None = None,
) -> np.ndarray:
    """[D, C, S, M] the expected value serving ranks the held-out decisions' candidates by with this booster.
    `gone`: the booster's channels and messages without training support, as its manifest records them
    (default: the training set's, what the manifest of a model trained on it records)."""
    ctx = ts.contexts
    assert ctx is not None
    scores = pol.grid_scores(booster, ctx, ts.levels["message"], ts.layout, encode_levels)
    # As decide: each slot's prediction borrows from its neighbours' (model.domain.send_time).
    scores = smooth_over_send_time(
        scores, ctx.slot_ts.astype(np.float64), ctx.allowed, get_settings().send_time_smoothing_hours
    )
    # Incremental: what contacting adds over P(outcome | x, don't contact), as decide ranks.
    none = (
        pol.no_contact_scores(booster, ctx, ts.layout) if (ts.no_contact if no_contact is None else no_contact) else 0.0
    )
    gone = gone if gone is not None else Unsupported(**unsupported(ts))
    messages: list[str | None] = list(ts.levels["message"]) or [None]
    # As decide: the grid's messages the booster has no level for (another version's levels) get no lift either.
    unknown = unknown_messages(messages, encode_levels if encode_levels is not None else ts.levels["message"])
    supported = supported_cells(list(catalogue().names), messages, gone.channels, [*gone.messages, *unknown])
    # The message's catalogue cost on top of the channel's, as serving's Grid.costs (none declared: 0).
    costs = _costs()[:, None] + message_costs(messages, get_settings())[None, :]
    return expected_value(scores, none, ctx, ts.objective, costs, None if supported is None else supported[:, 0, :])


def model_policy(
    booster: Any,
    ts: TrainingSet,
    encode_levels: list[str] | None = None,
    no_contact: bool | None = None,
    gone: Unsupported | None = None,
) -> pol.PolicyDist:
    """The policy serving would run with this booster on the held-out decisions: compiled scores, expected value
    as `decide` ranks candidates, epsilon-greedy with the configured exploration. `encode_levels`: the booster's
    own message levels when it is another version than the one the training set was built for (the gate);
    `no_contact`: whether the booster scores "don't contact" (default: the training set's); `gone`: its
    unsupported channels and messages (default: the training set's)."""
    ev = model_values(booster, ts, encode_levels, no_contact, gone)
    assert ts.contexts is not None
    return pol.served(ev, ts.contexts.allowed, get_settings().exploration_rate)


def true_value(dist: pol.PolicyDist, true_ev: np.ndarray) -> float:
    """Exact value of a policy under the oracle: sum over the grid of pi x incremental value, averaged."""
    return float((dist.cells * true_ev).reshape(len(true_ev), -1).sum(axis=1).mean())


def policy_distributions(
    booster: Any, ts: TrainingSet, oracle_ev: np.ndarray | None, model_ev: np.ndarray | None = None
) -> dict[str, pol.PolicyDist]:
    """The model's served policy and the baselines, as distributions over each decision's grid (`model_ev`: the
    model's expected values when already computed)."""
    ctx = ts.contexts
    assert ctx is not None
    model = (
        model_policy(booster, ts)
        if model_ev is None
        else pol.served(model_ev, ctx.allowed, get_settings().exploration_rate)
    )
    out = {"model": model, "random": pol.uniform(ctx.allowed)}
    ch_pref, hour_pref, msg_pref = _training_preferences(ts)
    out["global_best"] = pol.rule_policy(ctx, np.broadcast_to(ch_pref, ctx.consent.shape), hour_pref, msg_pref)
    tie = 1e-6 * ch_pref.argsort().argsort()  # break ties (and "no engagement") by the global ranking
    out["most_engaged"] = pol.rule_policy(ctx, ctx.engaged + tie, hour_pref, msg_pref)
    out["last_engaged"] = pol.rule_policy(ctx, ctx.last_engaged + tie, hour_pref, msg_pref)
    if oracle_ev is not None:
        out["oracle"] = pol.argmax_policy(oracle_ev, ctx.allowed, allow_none=True)
    return out


class LoggedDecisions:
    """The logged side of every estimate: actions, rewards, propensities and the nuisance models' values."""

    def __init__(self, ts: TrainingSet, ctx: Contexts) -> None:
        d = len(ctx)
        self._logged(ctx)
        self.propensities = (
            "logged" if np.isfinite(self.pscore).all() else "none" if not np.isfinite(self.pscore).any() else "partial"
        )
        costs = _costs()
        gone = unsupported(ts)
        codes = [catalogue().code(n) for n in gone["channels"]]

        def score_subset(booster: Any, idx: np.ndarray) -> np.ndarray:
            sub = _subset(ctx, idx)
            return pol.grid_scores(booster, sub, ts.levels["message"], ts.layout)

        def score_none(booster: Any, idx: np.ndarray) -> np.ndarray:
            return pol.no_contact_scores(booster, _subset(ctx, idx), ts.layout)

        self.nuisance = reward_model.fit(ts, ctx, score_subset, costs, score_none if ts.no_contact else None)
        q = self.nuisance.q
        # Never-tried channels: no outcome credited (the serving prior), the cost in the objective's units.
        q[:, codes] = -costs[codes][None, :, None, None] * cost_scale(ts.objective, get_settings())
        # "Don't contact": its outcome (organic conversions) is learned when the log has such decisions, else 0.
        q_none = self.nuisance.q_none if self.nuisance.q_none is not None else np.zeros(d)
        self._nuisance_values(q, q_none, self.nuisance.p_channel)

    def _logged(self, ctx: Contexts) -> None:
        """The logged actions (grid indices, -1 outside the grid or "don't contact"), rewards and propensities."""
        self.rows = np.arange(len(ctx))
        self.c, self.s, self.m = ctx.logged_channel, ctx.logged_slot, ctx.logged_message
        self.in_grid = (self.c >= 0) & (self.s >= 0) & (self.m >= 0)
        self.cs, self.ss, self.ms = (np.maximum(a, 0) for a in (self.c, self.s, self.m))
        self.reward = ctx.reward
        self.pscore = ctx.propensity

    def _nuisance_values(self, q: np.ndarray, q_none: np.ndarray, p_channel: np.ndarray) -> None:
        """The reward model's values (q per cell, q_none) and the logging channel model's probabilities, read at
        each decision's logged action."""
        self.q, self.q_none = q, q_none
        self.logged_none = self.c < 0
        self.q_logged = np.where(
            self.in_grid, q[self.rows, self.cs, self.ss, self.ms], np.where(self.logged_none, self.q_none, 0.0)
        )
        embed = np.where(self.logged_none, q.shape[1], self.cs)  # the logged action's channel, or "don't contact"
        self.p_embed = p_channel[self.rows, embed]

    def pick(self, cells: np.ndarray) -> np.ndarray:
        """Each decision's value of a [D, C, S, M] array at its logged action (0 outside the grid)."""
        return np.where(self.in_grid, cells[self.rows, self.cs, self.ss, self.ms], 0.0)

    def terms(self, dist: pol.PolicyDist) -> dict[str, ope.Terms]:
        q_pi = (dist.cells * self.q).reshape(len(self.rows), -1).sum(axis=1) + dist.none * self.q_none
        mix = dist.channel_mix()[self.rows, self.cs]
        pi_embed = np.where(self.logged_none, dist.none, np.where(self.c >= 0, mix, 0.0))
        pi_logged = np.where(self.logged_none, dist.none, self.pick(dist.cells))
        return ope.terms_all(
            self.reward,
            self.pscore,
            pi_logged,
            self.q_logged,
            q_pi,
            pi_embed=pi_embed,
            p_embed=self.p_embed,
        )

    def on_policy_terms(self, same_support: bool = False) -> dict[str, ope.Terms]:
        """The logging policy itself: every weighted estimator is the observed mean reward.

        same_support: the full-action estimators (ips, snips, dr, sndr) use only the decisions with a logged
        propensity, as they do for a target policy (a paired difference then compares the same decisions)."""
        one = np.ones(len(self.rows))
        known = np.where(np.isfinite(self.pscore) & (self.pscore > 0), 1.0, np.nan) if same_support else one
        embed = np.where(np.isfinite(self.p_embed), 1.0, np.nan) if same_support else one
        return ope.terms_all(self.reward, known, one, self.q_logged, self.q_logged, pi_embed=one, p_embed=embed)


def _subset(ctx: Contexts, idx: np.ndarray) -> Contexts:
    """The contexts of some decisions (what the scorer reads)."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(ctx):
        v = getattr(ctx, f.name)
        fields[f.name] = v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx.tolist()]
    return Contexts(**fields)


def evaluate_policies(
    booster: Any, ts: TrainingSet, oracle: Oracle | None = None, seed: int = 7
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Value of every policy on the held-out decisions; returns (policies, details for the report)."""
    ctx = ts.contexts
    if ctx is None or len(ctx) == 0:
        return {}, {}
    d = len(ctx)
    true_ev = oracle_values(oracle, ts, ctx) if oracle is not None else None
    model_ev = model_values(booster, ts)
    dists = policy_distributions(booster, ts, true_ev, model_ev)
    logged = LoggedDecisions(ts, ctx)
    idx = ope.bootstrap_indices(d, ope.N_BOOT, seed)
    terms = {name: logged.terms(dist) for name, dist in dists.items()}
    terms["logging"] = logged.on_policy_terms(same_support=logged.propensities == "partial")
    estimates = {name: _estimates(t, idx) for name, t in terms.items()}
    lead = ope.lead_estimator(estimates["model"])
    results: dict[str, dict[str, Any]] = {}
    for name, est in estimates.items():
        res: dict[str, Any] = {
            **ope.policy_report(name, est, lead),
            "share_no_contact": float(dists[name].none.mean()) if name in dists else 0.0,
        }
        if true_ev is not None:
            if name in dists:
                res["true_value"] = true_value(dists[name], true_ev)
            else:  # the logged actions
                res["true_value"] = float(logged.pick(true_ev)[logged.in_grid].mean())
        results[name] = res
    if true_ev is not None:
        best = results["oracle"]["true_value"]
        for res in results.values():
            res["regret"] = best - res["true_value"]
            res["share_of_oracle"] = res["true_value"] / best if best > 0 else float("nan")
    names = catalogue().names
    details: dict[str, Any] = {
        "decisions": d,
        "ope": {
            "lead": lead,
            "propensities": logged.propensities,
            "estimated": logged.propensities != "logged",
            "bootstrap": ope.N_BOOT,
            "reward_model": "LightGBM, cross-fitted by customer on the held-out sends (2 folds)",
            "channel_model": {
                "logloss": logged.nuisance.channel_logloss,
                "calibration": logged.nuisance.channel_calibration,
            },
            "unsupported": unsupported(ts),
        },
    }
    for name in ("model", "oracle"):
        if name in dists:
            mix = dists[name].channel_mix().mean(axis=0)
            details[f"{name}_channel_mix"] = {n: float(mix[i]) for i, n in enumerate(names)}
            details[f"{name}_no_contact"] = float(dists[name].none.mean())
    vs_logging = ope.paired_difference(terms["model"][lead], terms["logging"][lead], idx=idx)
    details["marketing"] = marketing.summary(
        ts, model_ev, dists, _costs(), idx, {**vs_logging.to_dict(), "n": vs_logging.n, "estimator": lead}
    )
    return results, details


def _estimates(terms: dict[str, ope.Terms], idx: np.ndarray) -> dict[str, ope.Estimate]:
    return {name: ope.estimate(t, idx=idx) for name, t in terms.items()}


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
        "metrics_by_week": auc_by_week(y_ev, p, ts.meta["send_ts"].to_numpy()[ts.split == "eval"]),
        "calibration": calibration(yb, p) if ts.objective != "value" else {},
        "gains": gains(yb, p) if len(p) else {},
        "importance": feature_importance(booster),
        "policies": policies,
        "policy_details": details,
        "ope": details.pop("ope", {}),
        "marketing": details.pop("marketing", {}),  # the marketer's page (training/marketing.py)
        "dataset": ts.stats,
        "objective": ts.objective,
        # Policy values (estimates, intervals) are in the objective's units; the oracle's true values, on simulated
        # data, always in conversion value (the simulator's ground truth).
        "value_unit": value_unit(ts.objective),
        "labels": ts.labels,  # what the reward is: "window" outcomes or "attributed" conversions (training/labels.py)
        # How a customer's order value is estimated (model.domain.value): the prior learned from the training period.
        "value_prior": ts.value_prior.model_dump() if ts.value_prior is not None else None,
        "attribution_window_days": ts.window_days,
    }


def policy_value_summary(report: dict[str, Any]) -> dict[str, float]:
    """Flat numbers for the manifest: every policy's estimate by every estimator, and the true value if known."""
    out: dict[str, float] = {}
    for name, res in report.get("policies", {}).items():
        for est, e in res.get("estimates", {}).items():
            if e.get("value") is not None:
                out[f"{name}_{est}"] = float(e["value"])
        if res.get("true_value") is not None and res["true_value"] == res["true_value"]:
            out[f"{name}_true_value"] = float(res["true_value"])
    return out
