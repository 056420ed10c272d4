"""Measured uplift: what the served decisions earned over the holdout (never contacted), from logs alone.

Holdout customers are chosen by a hash of their id (model.domain.policy.holdout_bucket), so the two arms are
comparable groups of customers. Per arm, over the decisions of the period:

    net value per decision = (conversion value of its customers within [first decision, last decision + window]
                              - cost of the contacts decided) / decisions
    (the window stops earlier at the customer's next, uncounted, decision: see below)

    uplift = served arm - holdout arm     (incremental net value per decision, in currency)

Conversions are counted once per customer (not once per overlapping decision window), and a contact's effect
lands wherever it lands, so the difference adds up the lifts of all contacts, negative ones included. Only
decisions with a complete window before the end of the log are counted, but the customer's later decisions
(in that last window) act too: their contacts' conversions would land in the counted window and be credited
to the counted decisions (+7% of the true uplift on average over 50 simulations). So a customer's window also
stops at their next decision after the last counted one: nothing before a decision can be caused by it (what
the last counted decision brings after that is lost: under 1% of the uplift on the simulator).

The 95% interval is a cluster bootstrap over customers (decisions of one customer are correlated). The value
customers bring without any contact is very uneven (a few heavy buyers hold a large share of it), and a small
arm, usually the holdout, often draws none of them: its own customers then understate how far its mean can
be from the served arm's by chance alone, and the interval is too narrow exactly when the estimate is off.
Both arms are random draws from the same customers, so each arm's spread is taken as the wider of its own
customers' and all customers' (residuals around their arm's mean, resampled at the arm's size); where the arms
differ in spread for another reason (the contacts' own effects, e.g. without organic conversions), this errs
on the wide side.
On simulated data, `true_uplift` gives the oracle's incremental value of the logged actions per decision.

In the objective's units (model.domain.objective), as the report's policy values: conversion value for
`conversion` and `value`; for `click` and `visit`, the customer's clicks (visits) in the window minus the contact
cost / `click_value` (`visit_value`), i.e. extra clicks (visits) per decision. The oracle values conversions, so
`true_uplift` exists for the conversion objectives only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from model.domain.aggregate import SENT
from model.domain.catalogue import catalogue
from model.domain.objective import UNITS, check_objective, cost_scale
from model.domain.recommend_schemas import NONE_CHANNEL
from model.domain.schemas import EVENT_INDEX
from model.domain.settings import get_settings
from training.labels import OBJECTIVE_EVENT
from training.records import _as_utc, _epoch, normalise_touchpoints
from training.sources import Sources

N_BOOT = 1000
DAY = 86400.0


def _decisions(src: Sources) -> pl.DataFrame:
    if src.decisions is None or src.decisions.num_rows == 0:
        raise ValueError("no decisions in the source: uplift needs the logged decisions (with their policy)")
    df = pl.from_arrow(src.decisions)
    assert isinstance(df, pl.DataFrame)
    missing = {"decision_id", "customer_id", "decided_at", "channel", "policy"} - set(df.columns)
    if missing:
        raise ValueError(f"the decisions lack {', '.join(sorted(missing))}: uplift cannot tell the arms apart")
    df = _as_utc(df, "decided_at")
    return df.select(
        pl.col("decision_id").cast(pl.String),
        pl.col("customer_id").cast(pl.String),
        _epoch("decided_at").alias("decided_at"),
        pl.col("channel").cast(pl.String),
        pl.col("policy").cast(pl.String),
    ).unique(subset="decision_id", keep="first")


def per_customer(
    src: Sources, window_days: float, as_of: float | None = None, objective: str = "conversion"
) -> pl.DataFrame:
    """One row per customer with decisions: arm, decisions, contact cost, outcome and net value, in the objective's
    units (conversion value; clicks or visits counted, the cost scaled by their configured value)."""
    check_objective(objective)
    dec = _decisions(src)
    tp = normalise_touchpoints(src.touchpoints)
    end = float(as_of if as_of is not None else tp["ts"].max())  # type: ignore[arg-type]
    window = window_days * DAY
    every = dec
    dec = dec.filter(pl.col("decided_at") + window <= end)  # a complete window after every decision counted
    if dec.height == 0:
        raise ValueError("no decision has a complete window before the end of the log")
    settings = get_settings()
    costs = {c: settings.cost_of(c) for c in settings.channels} | {NONE_CHANNEL: 0.0}
    unpriced = sorted(set(dec["channel"].drop_nulls().unique().to_list()) - set(costs))
    if unpriced:
        raise ValueError(f"decisions on channels without a configured cost: {', '.join(map(str, unpriced))}")
    scale = cost_scale(objective, settings)
    dec = dec.with_columns(
        (pl.col("channel").replace_strict(costs, default=0.0, return_dtype=pl.Float64) * scale).alias("cost"),
        (pl.col("policy") == "holdout").alias("holdout"),
    ).with_columns(pl.when(pl.col("channel") == NONE_CHANNEL).then(0.0).otherwise(pl.col("cost")).alias("cost"))
    cust = dec.group_by("customer_id").agg(
        pl.col("holdout").any().alias("holdout"),
        pl.len().alias("decisions"),
        pl.col("cost").sum().alias("cost"),
        pl.col("decided_at").min().alias("first"),
        pl.col("decided_at").max().alias("last_decision"),
    )
    # The window ends `window` after the last counted decision, or at the customer's next decision if that
    # comes first: conversions after it may be that (uncounted) decision's doing.
    following = (
        every.join(cust.select("customer_id", "last_decision"), on="customer_id")
        .filter(pl.col("decided_at") > pl.col("last_decision"))
        .group_by("customer_id")
        .agg(pl.col("decided_at").min().alias("next_decision"))
    )
    stop = pl.min_horizontal(pl.col("last_decision") + window, pl.col("next_decision").fill_null(float("inf")))
    cust = cust.join(following, on="customer_id", how="left").with_columns(stop.alias("last"))
    cust = cust.drop("last_decision", "next_decision")
    counted = objective in ("click", "visit")  # an event counts 1; a conversion counts its value
    conv = tp.filter(pl.col("ev") == EVENT_INDEX[OBJECTIVE_EVENT[objective]]).select(
        "customer_id", "ts", pl.lit(1.0).alias("value") if counted else "value"
    )
    value = (
        conv.join(cust.select("customer_id", "first", "last"), on="customer_id")
        .filter((pl.col("ts") > pl.col("first")) & (pl.col("ts") <= pl.col("last")))
        .group_by("customer_id")
        .agg(pl.col("value").sum().alias("conv_value"))
    )
    return (
        cust.join(value, on="customer_id", how="left")
        .with_columns(pl.col("conv_value").fill_null(0.0))
        .with_columns((pl.col("conv_value") - pl.col("cost")).alias("net"))
        .sort("customer_id")
    )


def _boot(rng: np.random.Generator, res: np.ndarray, n: np.ndarray, size: int) -> np.ndarray:
    """N_BOOT ratio means sum(res*) / sum(n*) of `size` customers drawn with replacement (in chunks: bounded
    memory on large logs)."""
    out = np.empty(N_BOOT)
    step = max(1, 2_000_000 // max(size, 1))
    for lo in range(0, N_BOOT, step):
        idx = rng.integers(0, len(res), size=(min(step, N_BOOT - lo), size))
        out[lo : lo + len(idx)] = res[idx].sum(axis=1) / n[idx].sum(axis=1)
    return out


def measured(
    src: Sources,
    window_days: float | None = None,
    as_of: float | None = None,
    seed: int = 7,
    objective: str = "conversion",
) -> dict[str, Any]:
    """The served arm's net value per decision minus the holdout's, with a 95% cluster-bootstrap interval, in the
    objective's units."""
    window = float(window_days if window_days is not None else get_settings().attribution_window_days)
    cust = per_customer(src, window, as_of, objective)
    arms = {}
    for name, sel in (("served", ~cust["holdout"]), ("holdout", cust["holdout"])):
        part = cust.filter(sel)
        if part.height == 0:
            raise ValueError(f"no {name} decisions in the log: uplift needs both arms (holdout_share > 0)")
        arms[name] = (part["net"].to_numpy(), part["decisions"].to_numpy().astype(np.float64))
    rng = np.random.default_rng(seed)
    (s_net, s_n), (h_net, h_n) = arms["served"], arms["holdout"]
    served, holdout = float(s_net.sum() / s_n.sum()), float(h_net.sum() / h_n.sum())
    # Residuals around each arm's mean: an arm's bootstrap mean minus its mean is sum(e*) / sum(n*).
    s_res, h_res = s_net - served * s_n, h_net - holdout * h_n
    pool = (np.concatenate([s_res, h_res]), np.concatenate([s_n, h_n]))
    spread = {}
    for name, res, n in (("served", s_res, s_n), ("holdout", h_res, h_n)):
        own, pooled = _boot(rng, res, n, len(res)), _boot(rng, *pool, len(res))
        spread[name] = own if own.std() >= pooled.std() else pooled
    diff = served - holdout + spread["served"] - spread["holdout"]
    return {
        "value": served - holdout,
        "ci": [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))],
        "served_per_decision": served,
        "holdout_per_decision": holdout,
        "served_decisions": int(s_n.sum()),
        "holdout_decisions": int(h_n.sum()),
        "served_customers": len(s_net),
        "holdout_customers": len(h_net),
        "window_days": window,
        "objective": objective,
        "unit": f"{UNITS[objective]}, net of contact cost",
    }


def true_uplift(src: Sources, oracle: Any, window_days: float | None = None, as_of: float | None = None) -> float:
    """The oracle's incremental value of the served arm's logged actions, per served decision (simulated data)."""
    window = float(window_days if window_days is not None else get_settings().attribution_window_days)
    dec = _decisions(src)
    tp = normalise_touchpoints(src.touchpoints)
    end = float(as_of if as_of is not None else tp["ts"].max())  # type: ignore[arg-type]
    dec = dec.filter((pl.col("decided_at") + window * DAY <= end) & (pl.col("policy") != "holdout"))
    sends = (
        tp.filter(pl.col("ev") == SENT)
        .select("customer_id", "ts", "ch", "decision_id", "message_id")
        .sort("customer_id", "ts")
    )
    # Fatigue inputs as the simulator saw them: the customer's sends (all, and on the channel) in the 7 days before.
    ts_all = sends["ts"].to_numpy()
    cid = sends["customer_id"].to_numpy()
    ch = sends["ch"].to_numpy()
    total7 = np.zeros(len(ts_all))
    same7 = np.zeros(len(ts_all))
    start = 0
    for i in range(len(ts_all)):
        while cid[start] != cid[i] or ts_all[start] < ts_all[i] - 7 * DAY:
            start += 1
        prev = slice(start, i)
        total7[i] = i - start
        same7[i] = float((ch[prev] == ch[i]).sum())
    sends = sends.with_columns(pl.Series("total7", total7), pl.Series("same7", same7))
    logged = dec.join(sends, on="decision_id", how="inner")
    names = catalogue().names
    cust = oracle.customers(
        logged["customer_id_right"].to_list()
        if "customer_id_right" in logged.columns
        else logged["customer_id"].to_list()
    )
    channel = np.array([oracle.channel_index[names[c]] for c in logged["ch"].to_list()])
    msg = np.array([oracle.message_index.get(m, 0) if m is not None else 0 for m in logged["message_id"].to_list()])
    value = oracle.incremental_value(
        cust, channel, logged["ts"].to_numpy(), msg, logged["total7"].to_numpy(), logged["same7"].to_numpy()
    )
    return float(np.sum(value) / max(1, dec.height))
