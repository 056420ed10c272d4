"""The numbers of the marketer's page (report.json `marketing`): what the model's policy will do against what the
team does today (the logging policy), on the held-out decisions.

Every share and per-week figure carries a 95% bootstrap interval over the held-out decisions (the same resampled
decisions as the off-policy estimates) and the number of decisions it rests on. Layout (docs/training.md):

- `decisions`, `customers`, `weeks`, `decisions_per_customer_week`: the held-out data the numbers rest on;
- `mix.{channel,hour,message}.<policy>`: shares; the channel mix is over decisions ("none" = don't contact),
  the hour and message mixes over contacts (the logging policy's contacts outside the evaluated send-time grid
  are counted as `outside_grid` in the hour mix);
- `no_contact.<policy>` = {"share", "ci"};
- `heatmap` = {"channels", "hours", "mean_ev", "n"}: the model's mean expected value per channel x local hour
  (the best allowed message of the cell), over the held-out decisions where the cell was allowed (null: never);
- `per_customer_week.<policy>` = {"contacts", "contacts_ci", "cost", "cost_ci"};
- `vs_logging`: the model's policy value minus the logging policy's, paired, by the lead estimator;
- `uplift` = {"measured", "reason", "true"}: what the served decisions of the whole log earned over the holdout
  (training/uplift.py; null with the reason when the log has no holdout), and the oracle's on simulated data.
Policies: "model", "logging", and "oracle" on simulated data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from model.domain.catalogue import catalogue
from training import uplift as measure
from training.dataset import TrainingSet
from training.ope.contexts import Contexts
from training.ope.policies import PolicyDist
from training.sim_truth import Oracle
from training.sources import Sources

WEEK = 7 * 86400.0
HOURS = list(range(24))


def _interval(per_decision: np.ndarray, idx: np.ndarray, scale: float = 1.0) -> list[float | None]:
    """95% percentile interval of the mean of a per-decision quantity over the bootstrap resamples."""
    if idx.size == 0 or len(per_decision) == 0:
        return [None, None]
    boot = per_decision[idx].mean(axis=1) * scale
    return [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]


def _shares(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def held_out_rate(ts: TrainingSet) -> dict[str, float]:
    """Held-out decisions per customer per week: the decisions of the evaluation period over the customers decided
    about in it (the evaluated contexts may be a sample of them; the rate comes from all)."""
    ev = ts.meta.filter(pl.Series(ts.split == "eval")).unique(subset="decision_id")
    if ev.height == 0:
        return {"decisions": 0.0, "customers": 0.0, "weeks": 0.0, "decisions_per_customer_week": 0.0}
    decided = ev["decided_at"].cast(float).to_numpy() if "decided_at" in ev.columns else np.array([])
    decided = decided[np.isfinite(decided)]
    span = float(decided.max() - decided.min()) if len(decided) else 0.0
    weeks = max(span, 86400.0) / WEEK  # at least a day: one day of decisions is not a rate of zero weeks
    customers = float(ev["customer_id"].n_unique())
    return {
        "decisions": float(ev.height),
        "customers": customers,
        "weeks": weeks,
        "decisions_per_customer_week": ev.height / customers / weeks,
    }


def _logged(ctx: Contexts, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The logging policy as per-decision arrays: contacted, cost, local hour (-1: outside the grid), message."""
    rows = np.arange(len(ctx))
    contacted = ctx.logged_channel >= 0
    cost = np.where(contacted, costs[np.maximum(ctx.logged_channel, 0)], 0.0)
    in_grid = contacted & (ctx.logged_slot >= 0)
    hour = np.where(in_grid, ctx.local_hour[rows, np.maximum(ctx.logged_slot, 0)], -1)
    return contacted, cost, hour, np.where(contacted, ctx.logged_message, -2)


def _hour_mix(dist: PolicyDist, ctx: Contexts) -> dict[str, float]:
    per_slot = dist.cells.sum(axis=(1, 3))  # [D, S]
    hist = np.bincount(ctx.local_hour.ravel(), weights=per_slot.ravel(), minlength=24)[:24]
    total = hist.sum()
    return {str(h): float(hist[h] / total) if total > 0 else 0.0 for h in HOURS}


def _message_mix(dist: PolicyDist, messages: list[str]) -> dict[str, float]:
    per_msg = dist.cells.sum(axis=(0, 1, 2))
    total = per_msg.sum()
    return {m: float(per_msg[i] / total) if total > 0 else 0.0 for i, m in enumerate(messages)}


def heatmap(ev: np.ndarray, ctx: Contexts) -> dict[str, Any]:
    """Mean expected value per channel x local hour of the best allowed message, over the decisions allowing it."""
    allowed = ctx.allowed
    best = np.where(allowed, ev, -np.inf).max(axis=3)  # [D, C, S]
    ok = allowed.any(axis=3)
    d, c, s = ok.shape
    ch = np.broadcast_to(np.arange(c)[None, :, None], (d, c, s))
    hour = np.broadcast_to(ctx.local_hour[:, None, :], (d, c, s))
    total = np.zeros((c, 24))
    count = np.zeros((c, 24))
    np.add.at(total, (ch[ok], hour[ok]), best[ok])
    np.add.at(count, (ch[ok], hour[ok]), 1.0)
    mean = [[float(total[i, h] / count[i, h]) if count[i, h] else None for h in HOURS] for i in range(c)]
    return {
        "channels": list(catalogue().names),
        "hours": HOURS,
        "mean_ev": mean,
        "n": count.astype(int).tolist(),
    }


def summary(
    ts: TrainingSet,
    model_ev: np.ndarray,
    dists: dict[str, PolicyDist],
    costs: np.ndarray,
    idx: np.ndarray,
    vs_logging: dict[str, Any],
) -> dict[str, Any]:
    """The `marketing` block of report.json (layout in the module docstring)."""
    ctx = ts.contexts
    assert ctx is not None
    names = list(catalogue().names)
    messages = list(ts.levels.get("message") or [])
    rate = held_out_rate(ts)
    per_week = rate["decisions_per_customer_week"]
    contacted, log_cost, log_hour, log_msg = _logged(ctx, costs)
    d = len(ctx)
    n_contacts = max(1, int(contacted.sum()))

    log_channel = np.bincount(np.maximum(ctx.logged_channel, 0)[contacted], minlength=len(names)) / d
    log_hours = np.bincount(log_hour[log_hour >= 0], minlength=24)[:24] / n_contacts
    mix: dict[str, dict[str, dict[str, float]]] = {
        "channel": {"logging": {**_shares(names, log_channel), "none": float(1.0 - contacted.mean())}},
        "hour": {
            "logging": {
                **{str(h): float(log_hours[h]) for h in HOURS},
                "outside_grid": float((contacted & (log_hour < 0)).sum() / n_contacts),
            }
        },
        "message": {},
    }
    if messages:
        log_msgs = np.bincount(log_msg[log_msg >= 0], minlength=len(messages))[: len(messages)] / n_contacts
        mix["message"]["logging"] = {
            **_shares(messages, log_msgs),
            "other": float((contacted & (log_msg < 0)).sum() / n_contacts),
        }
    no_contact: dict[str, dict[str, Any]] = {
        "logging": {"share": float(1.0 - contacted.mean()), "ci": _interval((~contacted).astype(float), idx)}
    }
    weekly: dict[str, dict[str, Any]] = {
        "logging": {
            "contacts": float(contacted.mean() * per_week),
            "contacts_ci": _interval(contacted.astype(float), idx, per_week),
            "cost": float(log_cost.mean() * per_week),
            "cost_ci": _interval(log_cost, idx, per_week),
        }
    }
    for name in ("model", "oracle"):
        dist = dists.get(name)
        if dist is None:
            continue
        channel = dist.channel_mix().mean(axis=0)
        mix["channel"][name] = {**_shares(names, channel), "none": float(dist.none.mean())}
        mix["hour"][name] = _hour_mix(dist, ctx)
        if messages:
            mix["message"][name] = _message_mix(dist, messages)
        no_contact[name] = {"share": float(dist.none.mean()), "ci": _interval(dist.none, idx)}
        contact = 1.0 - dist.none
        cost = (dist.cells * costs[None, :, None, None]).reshape(d, -1).sum(axis=1)
        weekly[name] = {
            "contacts": float(contact.mean() * per_week),
            "contacts_ci": _interval(contact, idx, per_week),
            "cost": float(cost.mean() * per_week),
            "cost_ci": _interval(cost, idx, per_week),
        }
    return {
        **rate,
        "evaluated_decisions": d,
        "incremental": ts.no_contact,  # the expected values are over not contacting (else: net of cost only)
        "logged_no_contact": bool((~contacted).any()),  # whether the held-out log has don't-contact decisions
        "mix": mix,
        "no_contact": no_contact,
        "heatmap": heatmap(model_ev, ctx),
        "per_customer_week": weekly,
        "costs": _shares(names, costs),
        "vs_logging": vs_logging,
    }


def uplift(
    src: Sources, window_days: float, as_of: float | None, oracle: Oracle | None, objective: str = "conversion"
) -> dict[str, Any]:
    """Measured uplift of the served decisions over the holdout in the whole log (training/uplift.py), in the
    objective's units, and the oracle's true uplift on simulated data (conversion objectives: the oracle values
    conversions); {"measured": None, "reason": ...} when it cannot be measured."""
    out: dict[str, Any] = {"measured": None, "reason": None, "true": None}
    try:
        out["measured"] = measure.measured(src, window_days, as_of, objective=objective)
    except ValueError as exc:  # no decisions, no policy column, no holdout arm, no complete window
        out["reason"] = str(exc)
        return out
    if oracle is not None and objective in ("conversion", "value"):
        out["true"] = measure.true_uplift(src, oracle, window_days, as_of)
    return out
