"""How much of the oracle's value can a policy reach without knowing each customer's hidden traits?

    python bench/ceiling.py                                   # 20k customers x 90 days, seed 7 (simulator defaults)
    python bench/ceiling.py --customers 3000 --days 60 --seed 21 --model

The oracle ranks every candidate by the simulator's exact incremental value, which depends on per-customer random
effects no log records: channel affinities (sd 0.45 each), the preferred hour (sd 1.5 h around the age band's), the
organic purchase rate (log-sd 1.4) and persuadability (sd 1.8 on the conversion logit once a customer has visited).
A learner can only infer them from the customer's history. This values, on the same held-out decisions as the
report, "informed" oracles that know the simulator's equations and the observable profile (segment, age band, time
zone, state) but not some of the traits: their expected incremental value is averaged over `--draws` draws of the
unknown traits from the simulator's own prior, the policy takes the argmax (served epsilon-greedy, as the model), and
the true oracle values it. The gap between the oracle and an informed oracle is value that only knowledge of those
traits (i.e. inference from each customer's own history) can earn. A last informed oracle does not know the channel
and hour taste either but infers it as well as anything can: the posterior of each customer's taste given its own
logged opens and clicks before the decision, under the simulator's exact equations (`--posterior-draws` prior draws,
importance-weighted by the likelihood of that history). It knows every other hidden trait exactly: its value is what
the best inference of taste from these logs earns when nothing else is unknown, more than a learner can expect.
`--model` trains the default model on the same set and prints its share beside them.
Prints a markdown table; it does not write bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import polars as pl

from model.domain.settings import get_settings
from training import dataset, evaluate, train
from training.ope import policies as pol
from training.sim_truth import (
    _AGE_AFFINITY,
    _AGE_PEAK,
    _ORGANIC_ENGAGED,
    _ORGANIC_SD,
    _SEG_ORGANIC,
    AFFINITY_SD,
    DAY,
    PEAK_SD,
    Oracle,
    Truth,
    affinity,
    organic_rate,
    persuadability,
)
from training.simulate import SimConfig, simulate

# What each informed oracle does not know (the rest of the truth it has exactly).
UNKNOWN: dict[str, tuple[str, ...]] = {
    "persuadability": ("persuade",),
    "channel and hour taste": ("affinity", "peak"),
    "persuadability, channel and hour taste": ("persuade", "affinity", "peak"),
    "every hidden trait (profile only)": ("persuade", "affinity", "peak", "organic", "value"),
}


def organic_effect(truth: Truth, engaged: np.ndarray) -> np.ndarray:
    """The standard-normal organic effect z0 of each customer, recovered from its true organic rate."""
    assert truth.organic_rate is not None
    base = np.array(_SEG_ORGANIC)[truth.segment]
    effect = np.log(truth.organic_rate / base) - _ORGANIC_ENGAGED * (engaged - engaged.mean())
    return np.asarray((effect + 0.5 * _ORGANIC_SD**2) / _ORGANIC_SD)


class Prior:
    """What every draw shares: the age band's channel affinities, and each customer's known organic effect z0 and
    mean affinity."""

    def __init__(self, truth: Truth) -> None:
        self.age_affinity = np.array([_AGE_AFFINITY.get(ch, (0.0,) * 5) for ch in truth.channels]).T[truth.age]
        self.engaged = truth.affinity.mean(axis=1)
        self.z0 = organic_effect(truth, self.engaged)
        n_seg = int(truth.segment.max()) + 1
        seg_mean = np.array([truth.mean_value[truth.segment == s].mean() for s in range(n_seg)])
        self.mean_value = seg_mean[truth.segment]  # the segment's mean order value


def draw(truth: Truth, prior: Prior, unknown: tuple[str, ...], rng: np.random.Generator) -> Truth:
    """A copy of the truth with the `unknown` traits redrawn from the simulator's prior given what is known."""
    n = len(truth.customer_ids)
    z0 = prior.z0
    out: dict[str, np.ndarray] = {}
    aff = truth.affinity
    if "affinity" in unknown:
        noise = rng.normal(0.0, AFFINITY_SD, size=aff.shape)
        aff = out["affinity"] = affinity(prior.age_affinity, noise, truth.segment)
    if "peak" in unknown:
        out["peak"] = np.array(_AGE_PEAK)[truth.age] + rng.normal(0.0, PEAK_SD, size=n)
    if "organic" in unknown:
        z0 = rng.normal(0.0, 1.0, size=n)
        out["organic_rate"] = organic_rate(truth.segment, z0, aff.mean(axis=1), float(prior.engaged.mean()))
    if "persuade" in unknown:  # given z0 (known or drawn): its conditional prior
        out["persuade"] = persuadability(z0, rng.normal(0.0, 1.0, size=n))
    if "value" in unknown:
        out["mean_value"] = prior.mean_value
    return dataclasses.replace(truth, **out)  # type: ignore[arg-type]


def logged_sends(touchpoints: Any, oracle: Oracle) -> dict[str, np.ndarray]:
    """Every logged send with what the simulator drew it from (customer, channel, local hour and weekday, message,
    the sends of the 7 days before it overall and on its channel) and its observed delivery, open and click."""
    tp = touchpoints if isinstance(touchpoints, pl.DataFrame) else pl.DataFrame(pl.from_arrow(touchpoints))
    tp = tp.filter(pl.col("decision_id").is_not_null())
    flags = tp.group_by("decision_id").agg(
        *[(pl.col("event_type") == ev).any().alias(ev) for ev in ("delivered", "opened", "clicked")]
    )
    sends = (
        tp.filter(pl.col("event_type") == "sent")
        .join(flags, on="decision_id")
        .with_columns((pl.col("occurred_at").dt.epoch("us") / 1e6).alias("ts"))
        .sort("customer_id", "ts")
    )
    cust = oracle.customers(sends["customer_id"].to_list())
    ch = np.array([oracle.channel_index[c] for c in sends["channel"].to_list()])
    msg = np.array([oracle.message_index.get(m, 0) for m in sends["message_id"].to_list()])
    ts = sends["ts"].to_numpy()
    n_ch = len(oracle.truth.channels)

    def recent(group: np.ndarray) -> np.ndarray:  # sends of the same group in [ts - 7 days, ts)
        key = group.astype(np.float64) * 1e10 + ts
        order = np.argsort(key, kind="stable")
        k = key[order]
        out = np.empty(len(ts), dtype=np.int64)
        out[order] = np.searchsorted(k, k, side="left") - np.searchsorted(k, k - 7 * DAY, side="left")
        return out

    lh, dow = oracle.local_hour_dow(cust, ts)
    return {
        "cust": cust,
        "ch": ch,
        "msg": msg,
        "ts": ts,
        "lh": lh,
        "dow": dow,
        "sends7": recent(cust),
        "chsends7": recent(cust * n_ch + ch),
        "delivered": sends["delivered"].to_numpy(),
        "opened": sends["opened"].to_numpy(),
        "clicked": sends["clicked"].to_numpy(),
    }


def log_likelihood(oracle: Oracle, s: dict[str, np.ndarray]) -> np.ndarray:
    """Log-probability of each delivered send's observed open and click under `oracle`'s truth (0 if bounced)."""
    t = oracle.truth
    eta, _ = oracle.terms(s["cust"], s["ch"], s["lh"], s["dow"], s["msg"], s["sends7"], s["chsends7"], s["ts"])
    p_open = 1.0 / (1.0 + np.exp(-(eta + t.open_offset[s["ch"]])))
    p_click = 1.0 / (1.0 + np.exp(-(eta + t.click_offset)))
    ll = np.where(s["opened"], np.log(p_open), np.log1p(-p_open))
    ll = ll + np.where(s["opened"], np.where(s["clicked"], np.log(p_click), np.log1p(-p_click)), 0.0)
    return np.asarray(np.where(s["delivered"], ll, 0.0))


def history_loglik(ll: np.ndarray, s: dict[str, np.ndarray], cust: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Sum of `ll` over each context customer's sends strictly before its decision instant."""
    key = s["cust"].astype(np.float64) * 1e10 + s["ts"]  # sends are sorted by customer, then time
    csum = np.concatenate([[0.0], np.cumsum(ll)])
    hi = np.searchsorted(key, cust.astype(np.float64) * 1e10 + before, side="left")
    lo = np.searchsorted(key, cust.astype(np.float64) * 1e10, side="left")
    return np.asarray(csum[hi] - csum[lo])


def posterior_values(
    truth: Truth, prior: Prior, sim_tp: Any, ts: Any, ctx: Any, draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Expected incremental value of every cell under the posterior of each customer's channel and hour taste given
    its own logged opens and clicks before the decision (self-normalised importance sampling over `draws` draws from
    the prior), and the median effective number of draws per decision."""
    oracle = Oracle(truth)
    sends = logged_sends(sim_tp, oracle)
    cust = oracle.customers(ctx.customer_id)
    before = ctx.decided_at.astype(np.float64)
    drawn = [Oracle(draw(truth, prior, ("affinity", "peak"), rng)) for _ in range(draws)]  # small: two traits each
    logw = np.array([history_loglik(log_likelihood(o, sends), sends, cust, before) for o in drawn])
    w = np.exp(logw - logw.max(axis=0))
    w /= w.sum(axis=0)
    out = np.zeros(ctx.allowed.shape)
    for k, believed in enumerate(drawn):
        out += w[k][:, None, None, None] * evaluate.oracle_values(believed, ts, ctx)
    return out, float(np.median(1.0 / (w**2).sum(axis=0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drift", action="store_true")
    parser.add_argument("--decisions", type=int, default=5000, help="held-out decisions valued (max_contexts)")
    parser.add_argument("--draws", type=int, default=16, help="draws of the unknown traits per informed oracle")
    parser.add_argument("--posterior-draws", type=int, default=64, help="prior draws weighted by each history")
    parser.add_argument("--model", action="store_true", help="also train the default model and value it")
    args = parser.parse_args()
    t0 = time.time()
    sim = simulate(SimConfig(customers=args.customers, days=args.days, seed=args.seed, drift=args.drift))
    ts = dataset.build(sim["touchpoints"], sim["profiles"], sim["decisions"], max_contexts=args.decisions)
    ctx = ts.contexts
    assert ctx is not None
    truth: Truth = sim["truth"]
    oracle = Oracle(truth)
    true_ev = evaluate.oracle_values(oracle, ts, ctx)
    eps = get_settings().exploration_rate
    greedy = pol.argmax_policy(true_ev, ctx.allowed, allow_none=True)
    best = evaluate.true_value(greedy, true_ev)
    values = {"oracle (greedy)": best}
    values[f"oracle, served (epsilon {eps})"] = evaluate.true_value(pol.served(true_ev, ctx.allowed, eps), true_ev)
    rng = np.random.default_rng(args.seed + 100)
    prior = Prior(truth)
    for label, unknown in UNKNOWN.items():
        believed = np.zeros_like(true_ev)
        for _ in range(args.draws):
            believed += evaluate.oracle_values(Oracle(draw(truth, prior, unknown, rng)), ts, ctx) / args.draws
        values[f"informed oracle, not knowing {label}"] = evaluate.true_value(
            pol.served(believed, ctx.allowed, eps), true_ev
        )
    believed, ess = posterior_values(truth, prior, sim["touchpoints"], ts, ctx, args.posterior_draws, rng)
    label = "informed oracle, inferring channel and hour taste from the customer's own opens and clicks"
    values[label] = evaluate.true_value(pol.served(believed, ctx.allowed, eps), true_ev)
    values[label + " (greedy)"] = evaluate.true_value(
        pol.argmax_policy(believed, ctx.allowed, allow_none=True), true_ev
    )
    print(f"posterior: median effective draws per decision {ess:.1f} of {args.posterior_draws}", flush=True)
    if args.model:
        booster = train.train_funnel(ts).booster
        values["model (served)"] = evaluate.true_value(evaluate.model_policy(booster, ts), true_ev)
    print(
        f"\n{args.customers:,} customers x {args.days} days, seed {args.seed}, drift {args.drift}; "
        f"{len(ctx):,} held-out decisions; {args.draws} draws per informed oracle; {time.time() - t0:.0f} s\n"
    )
    print("| policy | true value / decision | share of oracle |\n|---|---:|---:|")
    for name, value in values.items():
        print(f"| {name} | {value:.3f} | {value / best:.1%} |")


if __name__ == "__main__":
    main()
